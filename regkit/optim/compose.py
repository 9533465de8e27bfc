"""Composing regularizers: how `with_cpr` and `with_projection` extend any optimizer class.

Each wrapper returns a subclass of the base optimizer class it is given (a regkit optimizer,
a torch.optim one, or another wrapped class), so the result IS a base optimizer: the base's
own hyperparameters and state keys, its ``state_dict``, LR schedulers, per-group overrides
and ``isinstance`` checks all work unchanged. The wrapper's own hyperparameters live in the
param groups next to the base's (they survive ``state_dict``) and its buffers in
``self.state[p]`` next to the base's. Its ``step`` runs the closure once, then its own
step before and/or after the base's update, which it calls without the base's step hooks
(torch runs the hooks of an instance once, around the outermost ``step``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer


def check_base(base, wrapper: str) -> None:
    """TypeError unless ``base`` is an optimizer class (not an instance): ``wrapper(regkit.optim.Adam)``."""
    if not (isinstance(base, type) and issubclass(base, Optimizer)):
        raise TypeError(f"{wrapper} takes an optimizer class such as regkit.optim.Adam or torch.optim.SGD, "
                        f"got {base!r}")


def base_step(base: type[Optimizer]) -> Callable:
    """``base.step`` as a plain function, without the hook wrapper torch puts on a class's first instance.

    torch wraps ``type(opt).step`` once per class so that ``opt.step()`` runs the instance's step
    hooks; a subclass calling the wrapped base step would run them a second time.
    """
    step = base.step
    return step.__wrapped__ if getattr(step, "hooked", False) else step


def run_closure(closure: Callable[[], Tensor] | None) -> Tensor | None:
    """The closure's loss, computed with gradients enabled (as torch.optim's ``step``); None without one."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def with_options(params, options: dict) -> list[dict] | Iterable:
    """``params`` as param groups that carry ``options`` (a group's own values win); other inputs unchanged.

    A plain iterable of tensors becomes one group; a list of dicts gets the missing options.
    Anything else (None, one tensor) is passed on for the base optimizer to refuse.
    """
    if params is None or isinstance(params, Tensor):
        return params
    params = list(params)
    if params and all(isinstance(g, dict) for g in params):
        return [{**options, **g} for g in params]
    return [{"params": params, **options}] if params else params


def stepped(param_groups: list[dict]) -> list[tuple[dict, list[Tensor]]]:
    """``(group, params with a gradient)`` for every group that has any: what ``step`` updates."""
    pairs = [(group, [p for p in group["params"] if p.grad is not None]) for group in param_groups]
    return [(group, params) for group, params in pairs if params]


def resolve_foreach(group: dict, params: list[Tensor]) -> bool:
    """The group's ``foreach`` (regkit and torch.optim groups have one), else True when all params are on CUDA."""
    foreach = group.get("foreach")
    return all(p.is_cuda for p in params) if foreach is None else bool(foreach)
