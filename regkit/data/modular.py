"""Modular-arithmetic tables for grokking (Power et al., 2022, arXiv:2201.02177).

Every pair ``(x, y)`` with ``x, y in {0, ..., p-1}`` becomes the token sequence
``[x, y, =]`` (the ``=`` token has id ``p``, so the vocabulary has ``p + 1`` tokens) with the
label ``(x op y) mod p``. Division ``x / y = x * y^(p-2) mod p`` (Fermat's little theorem)
needs a prime ``p`` and ``y != 0``, so it has ``p * (p - 1)`` pairs; the other operations
have ``p * p``. A seeded permutation splits the table into train and validation parts.
"""

from dataclasses import dataclass

import torch

from regkit._validate import check_int
OPERATIONS = ("add", "sub", "mul", "div")


@dataclass(frozen=True)
class ModularArithmetic:
    """Token sequences ``x_*`` (int64, shape ``(n, 3)``) and labels ``y_*`` (int64, ``(n,)``)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    p: int
    op: str
    vocab_size: int

    @property
    def equals_token(self) -> int:
        return self.p


def is_prime(n: int) -> bool:
    """Trial division; fine for the small moduli used in grokking."""
    if n < 2:
        return False
    return all(n % d for d in range(2, int(n**0.5) + 1))


def _labels(x: torch.Tensor, y: torch.Tensor, p: int, op: str) -> torch.Tensor:
    if op == "add":
        return (x + y) % p
    if op == "sub":
        return (x - y) % p
    if op == "mul":
        return (x * y) % p
    inverse = torch.tensor([0] + [pow(v, p - 2, p) for v in range(1, p)], dtype=torch.int64)
    return (x * inverse[y]) % p


def modular_arithmetic(
    p: int = 113, op: str = "add", train_fraction: float = 0.3, seed: int = 0
) -> ModularArithmetic:
    """The full table of ``x op y mod p``, split into train/validation by a seeded permutation.

    ``train_fraction`` of the pairs (rounded) go to training, the rest to validation; the
    same ``seed`` always gives the same split. Example::

        >>> data = modular_arithmetic(p=7, op="add", train_fraction=0.5)
        >>> data.x_train.shape[1], data.vocab_size
        (3, 8)
    """
    check_int("p", p, 2, note="the modulus")
    if op not in OPERATIONS:
        raise ValueError(f"op must be one of {', '.join(OPERATIONS)}; got op={op!r}")
    if op == "div" and not is_prime(p):
        raise ValueError(f"op='div' needs a prime modulus (every y != 0 invertible), got p={p}")
    if not isinstance(train_fraction, (int, float)) or not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got train_fraction={train_fraction!r}")

    x, y = torch.cartesian_prod(torch.arange(p), torch.arange(p)).unbind(1)
    if op == "div":
        x, y = x[y != 0], y[y != 0]
    tokens = torch.stack([x, y, torch.full_like(x, p)], dim=1)
    labels = _labels(x, y, p, op)

    n = len(labels)
    n_train = round(train_fraction * n)
    if not 0 < n_train < n:
        raise ValueError(
            f"train_fraction={train_fraction} leaves an empty split of the {n} pairs for p={p}, op={op!r}"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train, val = order[:n_train], order[n_train:]
    return ModularArithmetic(
        x_train=tokens[train],
        y_train=labels[train],
        x_val=tokens[val],
        y_val=labels[val],
        p=p,
        op=op,
        vocab_size=p + 1,
    )
