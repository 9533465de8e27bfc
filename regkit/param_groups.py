"""Split a model's parameters into a weight-decay group and a no-decay group."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from regkit._validate import check_flag, check_number

if TYPE_CHECKING:
    from torch import nn


def _module_kinds() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(normalization, embedding) module types. torch is imported here, not at module level, so that
    ``import regkit`` (e.g. the course runner) stays free of torch's import time."""
    from torch import nn
    from torch.nn.modules.batchnorm import _NormBase  # BatchNorm*, SyncBatchNorm, InstanceNorm*

    norms = (_NormBase, nn.LayerNorm, nn.GroupNorm) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
    return norms, (nn.Embedding, nn.EmbeddingBag)


def _no_decay_reason(
    module: nn.Module, name: str, p, *, kinds, decay_norms, decay_embeddings, skip
) -> str | None:
    norms, embeddings = kinds
    if any(fnmatchcase(name, pattern) for pattern in skip):
        return "skip pattern"
    if isinstance(module, norms) and not decay_norms:
        return "normalization"
    if isinstance(module, embeddings):
        return None if decay_embeddings else "embedding"
    return None if p.ndim >= 2 else "bias/1-D"


def param_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    decay_embeddings: bool = False,
    decay_norms: bool = False,
    skip: tuple[str, ...] | list[str] = (),
    verbose: bool = True,
) -> list[dict]:
    """Param groups for an optimizer: matrices decay; biases, normalization weights and embeddings do not.

    A trainable parameter decays (group ``weight_decay=weight_decay``) when it has
    ``ndim >= 2``, unless it belongs to a normalization layer (BatchNorm/InstanceNorm,
    LayerNorm, GroupNorm, RMSNorm; ``decay_norms=True`` decays them by the same rule) or an
    ``nn.Embedding``/``nn.EmbeddingBag`` (``decay_embeddings=True`` decays them), or its
    name matches a glob in ``skip`` (e.g. ``"*.pos_embedding"``). Everything else
    (biases, other 1-D tensors) goes to the ``weight_decay=0.0`` group. A parameter shared
    by several modules is exempt if any of its owners exempts it; frozen parameters
    (``requires_grad=False``) are left out. Each group lists its parameter ``names``;
    empty groups are dropped. With ``verbose`` the counts per reason are printed.

    Example::

        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
        >>> opt = regkit.optim.AdamW(param_groups(model, 0.1, verbose=False), lr=1e-3)
        >>> [g["names"] for g in opt.param_groups]
        [['0.weight', '2.weight'], ['0.bias', '1.weight', '1.bias', '2.bias']]
    """
    check_number("weight_decay", weight_decay, 0.0)
    for flag, value in (
        ("decay_embeddings", decay_embeddings),
        ("decay_norms", decay_norms),
        ("verbose", verbose),
    ):
        check_flag(flag, value)
    if isinstance(skip, str) or not all(isinstance(pattern, str) for pattern in skip):
        raise ValueError(f"skip must be a list of name patterns (strings), got {skip!r}")
    names = {id(p): name for name, p in model.named_parameters() if p.requires_grad}
    unmatched = [
        pattern for pattern in skip if not any(fnmatchcase(name, pattern) for name in names.values())
    ]
    if unmatched:
        raise ValueError(
            f"skip patterns {unmatched} match no trainable parameter; names are e.g. {list(names.values())[:5]}"
        )

    kinds = _module_kinds()
    reasons: dict[int, str | None] = {}
    params = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if id(p) in names:
                reason = _no_decay_reason(
                    module,
                    names[id(p)],
                    p,
                    kinds=kinds,
                    decay_norms=decay_norms,
                    decay_embeddings=decay_embeddings,
                    skip=skip,
                )
                reasons[id(p)] = reasons.get(id(p)) or reason
                params[id(p)] = p
    decay = [i for i in names if reasons[i] is None]
    no_decay = [i for i in names if reasons[i] is not None]
    groups = [
        {"params": [params[i] for i in ids], "weight_decay": wd, "names": [names[i] for i in ids]}
        for ids, wd in ((decay, float(weight_decay)), (no_decay, 0.0))
        if ids
    ]
    if verbose:
        count = lambda ids: f"{len(ids)} tensors ({sum(params[i].numel() for i in ids):,} values)"
        why = sorted({reasons[i] for i in no_decay})
        detail = ", ".join(f"{r} {sum(reasons[i] == r for i in no_decay)}" for r in why)
        print(
            f"param_groups: decay (wd={weight_decay}) {count(decay)}; no decay {count(no_decay)}"
            + (f": {detail}" if detail else "")
        )
    return groups
