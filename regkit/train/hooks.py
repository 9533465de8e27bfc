"""Metric hooks for ``train``: ``hook(step, model, optimizer) -> {name: value}``, called at every evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from regkit.diagnostics.metrics import grad_norm, weight_norms

Hook = Callable[[int, nn.Module, torch.optim.Optimizer], Mapping[str, float]]


class StopTraining(Exception):  # noqa: N818 (a signal, like StopIteration, not an error)
    """Raised by a hook to end the run after this evaluation (e.g. once a target accuracy is reached): the
    other hooks of the evaluation still run and the checkpoint is written; ``History.meta["stopped_at"]``
    is the step. Under torch.distributed every rank must raise it at the same step."""


def select_parameters(model: nn.Module, names: Iterable[str] | Callable[[str, Tensor], bool] | None,
            default: Callable[[str, Tensor], bool] = lambda n, p: True) -> list[tuple[str, Tensor]]:
    """The named parameters chosen by a list of names or a predicate ``(name, param) -> bool``."""
    named = dict(model.named_parameters())
    if names is None or callable(names):
        keep = default if names is None else names
        return [(n, p) for n, p in named.items() if keep(n, p)]
    names = list(names)
    unknown = [n for n in names if n not in named]
    if unknown:
        raise ValueError(f"names {unknown} are not parameters of the model; valid: {', '.join(list(named)[:8])}"
                         f"{', ...' if len(named) > 8 else ''}")
    return [(n, named[n]) for n in names]


def weight_norm_hook(model: nn.Module, names: Iterable[str] | Callable | None = None,
                     per_tensor: bool = True) -> Hook:
    """Hook logging ``wnorm`` (L2 norm of all chosen weights together) and ``wnorm/<name>`` per tensor.

    ``names``: parameter names or a predicate ``(name, param) -> bool``; default all parameters.
    """
    params = select_parameters(model, names)

    def hook(step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        norms = weight_norms(params)
        values = {f"wnorm/{n}": v for n, v in norms.items()} if per_tensor else {}
        values["wnorm"] = math.sqrt(sum(v * v for v in norms.values()))
        return values

    return hook


def grad_norm_hook(model: nn.Module, names: Iterable[str] | Callable | None = None,
                   per_tensor: bool = False) -> Hook:
    """Hook logging ``gnorm`` (L2 norm of the gradients left by the last step) and optionally ``gnorm/<name>``.

    With a two-pass optimizer the gradients are those of its last closure call.
    """
    params = select_parameters(model, names)

    def hook(step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        with_grad = [(n, p) for n, p in params if p.grad is not None]
        norms = grad_norm(with_grad, per_tensor=True).tolist()
        values = {f"gnorm/{n}": v for (n, _), v in zip(with_grad, norms, strict=True)} if per_tensor else {}
        values["gnorm"] = math.sqrt(sum(v * v for v in norms))
        return values

    return hook


def effective_step_hook(model: nn.Module, names: Iterable[str] | Callable | None = None) -> Hook:
    """Hook logging ``eff_step/<name> = lr / ||w||^2`` (see :func:`regkit.diagnostics.metrics.effective_step_sizes`).

    Meant for scale-invariant tensors (weights followed by a normalisation layer); ``names``
    defaults to every parameter with ``ndim >= 2``. The lr is read from the optimizer group
    holding each tensor at call time (so schedules show); tensors in no group are skipped.
    """
    params = select_parameters(model, names, default=lambda n, p: p.ndim >= 2)

    def hook(step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        lr_of = {id(p): float(group["lr"]) for group in optimizer.param_groups for p in group["params"]}
        chosen = [(n, p) for n, p in params if id(p) in lr_of]
        norms = weight_norms(chosen)
        return {f"eff_step/{n}": lr_of[id(p)] / norms[n] ** 2 for n, p in chosen}

    return hook
