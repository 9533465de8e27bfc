"""Rotational equilibrium: per-neuron norms and angular updates, measured and predicted.

For a scale-invariant weight (a neuron's row feeding a normalization layer) only its direction
matters; what moves the direction is the *angular update*, the angle between the row before and
after one optimizer step. With decoupled weight decay the row's norm and its angular update reach a
steady state in which the decay's shrinking balances the update's growth (Kosson, Messmer & Jaggi,
"Rotational Equilibrium: How Weight Decay Balances Learning Across Neural Networks", ICML 2024).
In their random-walk model (update directions uncorrelated across steps, gradients orthogonal to
``w``), with ``C`` the row length (fan-in), ``lr`` and ``wd`` torch's convention
``w <- (1 - lr wd) w - lr u``:

- AdamW: ``||w|| = sqrt(lr C / (2 wd))``, angle ``sqrt(2 lr wd (1 - beta1) / (1 + beta1))``;
- SGDW with momentum ``mu`` (buffer ``b <- mu b + g``, decay outside the buffer):
  ``||w||^4 = lr G / (2 wd (1 - mu)^2)``, angle ``sqrt(2 lr wd (1 - mu) / (1 + mu))``;
- SGD with coupled L2 (torch.optim.SGD, the paper's SGDM): ``||w||^4 = lr G / (2 wd (1 - mu))``,
  angle ``sqrt(2 lr wd / (1 + mu))``;

with ``G = E||g||^2 ||w||^2`` the squared gradient norm the row would have at unit norm. The
angles depend on ``lr * wd`` (and the momentum) only: every neuron of every layer rotates at the
same rate, whatever its gradient ("balanced rotation"). Notebook 09 derives these.

`RotationMonitor` measures both quantities during training as a ``regkit.train`` hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from regkit._validate import check_int, check_number
from regkit.train.hooks import select_parameters


class Equilibrium(NamedTuple):
    """A predicted steady state: the row norm, the per-step angle (radians) and the relaxation time (steps)."""

    norm: float
    angle: float
    relaxation_steps: float  # time constant of the approach (of ||w||^2 for AdamW, ||w||^4 for SGD)


def rows(w: Tensor) -> Tensor:
    """The neuron view of a weight: ``(shape[0], -1)`` (a 1-D tensor is one row). A view or a copy, like ``reshape``."""
    return w.reshape(w.shape[0], -1) if w.ndim >= 2 else w.reshape(1, -1)


def neuron_norms(w: Tensor) -> Tensor:
    """``||w_i||`` per row of `rows` (float64 for float64 tensors, else float32); no host sync."""
    r = rows(w.detach())
    return torch.linalg.vector_norm(r, dim=1, dtype=torch.float64 if r.dtype == torch.float64 else torch.float32)


def angular_updates(before: Tensor, after: Tensor, eps: float = 1e-30) -> Tensor:
    """Per row, the angle (radians) between ``before`` and ``after``: ``2 asin(||a_hat - b_hat|| / 2)``.

    That form is accurate for the tiny angles of one step (``acos`` of the cosine is not). A zero
    row counts as angle 0 against itself; no host sync.
    """
    if before.shape != after.shape:
        raise ValueError(f"before and after must have the same shape, got {tuple(before.shape)} and "
                         f"{tuple(after.shape)}")
    a, b = (rows(t.detach()).to(torch.float64 if t.dtype == torch.float64 else torch.float32) for t in (before, after))
    a_hat = a / a.norm(dim=1, keepdim=True).clamp_min(eps)
    b_hat = b / b.norm(dim=1, keepdim=True).clamp_min(eps)
    return 2 * torch.asin(((a_hat - b_hat).norm(dim=1) / 2).clamp(max=1.0))


def _check(lr: float, weight_decay: float, beta: float, beta_name: str) -> None:
    for name, value in (("lr", lr), ("weight_decay", weight_decay)):
        check_number(name, value, 0.0)
        if value == 0:
            raise ValueError(f"{name} must be > 0 for an equilibrium to exist, got 0")
    check_number(beta_name, beta, 0.0, 1.0, high_open=True)


def adamw_equilibrium(lr: float, weight_decay: float, fan_in: int, beta1: float = 0.9) -> Equilibrium:
    """AdamW's rotational equilibrium for a scale-invariant row of ``fan_in`` weights (see the module doc).

    ``||w|| = sqrt(lr C / (2 wd))`` (notebook 06's equilibrium with ``rho = 1``), angle
    ``sqrt(2 lr wd (1 - beta1) / (1 + beta1))``, relaxation ``1 / (2 lr wd)`` steps.
    """
    _check(lr, weight_decay, beta1, "beta1")
    check_int("fan_in", fan_in, note="inputs per neuron")
    return Equilibrium(
        math.sqrt(lr * fan_in / (2 * weight_decay)),
        math.sqrt(2 * lr * weight_decay * (1 - beta1) / (1 + beta1)),
        1 / (2 * lr * weight_decay),
    )


def sgd_equilibrium(
    lr: float, weight_decay: float, unit_grad_sq: float, momentum: float = 0.0, *, decoupled: bool = True
) -> Equilibrium:
    """SGD's rotational equilibrium for a scale-invariant row (see the module doc).

    ``unit_grad_sq``: ``G = E||g||^2 ||w||^2``, the mean squared gradient norm at unit weight norm.
    ``decoupled=True`` (SGDW): ``||w||^4 = lr G / (2 wd (1 - mu)^2)``, angle
    ``sqrt(2 lr wd (1 - mu) / (1 + mu))``; ``decoupled=False`` (coupled L2, the decay inside the
    momentum): ``||w||^4 = lr G / (2 wd (1 - mu))``, angle ``sqrt(2 lr wd / (1 + mu))``.
    Relaxation (of ``||w||^4``): ``(1 - mu) / (4 lr wd)`` steps with L2, ``1 / (4 lr wd)`` decoupled.
    """
    _check(lr, weight_decay, momentum, "momentum")
    check_number("unit_grad_sq", unit_grad_sq, 0.0)
    damping = weight_decay if decoupled else weight_decay / (1 - momentum)  # per-step shrink of ||w||^2 / (2 lr)
    norm4 = lr * unit_grad_sq / (2 * damping * (1 - momentum) ** 2)
    angle = math.sqrt(2 * lr * damping * (1 - momentum) / (1 + momentum))
    return Equilibrium(norm4**0.25, angle, 1 / (4 * lr * damping))


class RotationMonitor:
    """Per-neuron angular updates and norms of chosen weights, as a ``regkit.train`` hook.

    ``RotationMonitor(model, optimizer, names=None)`` registers optimizer step pre/post hooks that
    copy the chosen weights before each step and add each row's squared angle after it, on the
    device (no host sync per step). Called as a hook, ``monitor(step, model, optimizer)`` returns
    ``angle/<name>``: the RMS per-step angle (radians) over the rows and the steps since the last
    call, and ``norm/<name>``: the RMS row norm now (``sqrt(mean_i ||w_i||^2)``), then starts a new
    window; ``monitor.last_angles[name]`` keeps that window's per-row RMS angles (a CPU tensor).
    ``names``: parameter names or a predicate ``(name, param) -> bool``; default every parameter
    with ``ndim >= 2`` (the weights normalization makes scale-invariant). ``remove()`` unhooks.

    Example::

        monitor = RotationMonitor(model, opt)
        hist = train(model, opt, loader, steps=1000, hooks=[monitor])
        hist.df[["step", "angle/0.weight", "norm/0.weight"]]
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 names: Iterable[str] | Callable[[str, Tensor], bool] | None = None):
        self.params = dict(select_parameters(model, names, default=lambda n, p: p.ndim >= 2))
        if not self.params:
            raise ValueError("RotationMonitor: no parameter chosen (names matched none, or the model has no matrix)")
        self._before: dict[str, Tensor] = {}
        self._sums = {n: torch.zeros(rows(p).shape[0], dtype=torch.float64, device=p.device)
                      for n, p in self.params.items()}
        self._steps = 0
        self.last_angles: dict[str, Tensor] = {}
        self._handles = [optimizer.register_step_pre_hook(self._snapshot),
                         optimizer.register_step_post_hook(self._accumulate)]

    @torch.no_grad()
    def _snapshot(self, optimizer, args, kwargs) -> None:
        for n, p in self.params.items():
            if n in self._before:
                self._before[n].copy_(p)
            else:
                self._before[n] = p.detach().clone()

    @torch.no_grad()
    def _accumulate(self, optimizer, args, kwargs) -> None:
        for n, p in self.params.items():
            self._sums[n] += angular_updates(self._before[n], p).double().square()
        self._steps += 1

    def __call__(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        values = {}
        for n, p in self.params.items():
            per_row = (self._sums[n] / max(self._steps, 1)).sqrt()
            self.last_angles[n] = per_row.cpu()
            values[f"angle/{n}"] = per_row.square().mean().sqrt()
            values[f"norm/{n}"] = neuron_norms(p).double().square().mean().sqrt()
            self._sums[n].zero_()
        self._steps = 0
        names = list(values)
        floats = torch.stack([v.cpu() for v in values.values()]).tolist()  # one transfer for the window
        return dict(zip(names, floats, strict=True))

    def remove(self) -> None:
        """Remove the optimizer hooks (the monitor stops measuring)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
