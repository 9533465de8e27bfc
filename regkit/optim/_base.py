"""The thin Optimizer every regkit optimizer subclasses: validate, gather tensor lists, call one functional update."""

from collections.abc import Callable

import torch
from torch import Tensor


def step_counter() -> Tensor:
    """A fresh ``state["step"]``: a CPU float tensor, as torch.optim keeps it (float64 if that is the default dtype).

    Reading it with ``.item()`` in ``step`` costs no device sync, whatever the parameters' device.
    """
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    return torch.tensor(0.0, dtype=dtype)


def increment_steps(counters: list[Tensor]) -> list[float]:
    """``t <- t + 1`` for each CPU step counter; returns the new counts as Python floats."""
    torch._foreach_add_(counters, 1.0)
    return [t.item() for t in counters]


class FunctionalOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose ``step`` calls one functional update per param group.

    Subclasses set ``functional_update`` (a staticmethod over lists of tensors, built from
    ``regkit.optim._functional``) and implement ``check_hyperparameters(group)`` (raise
    ValueError naming the argument) and ``prepare_update(group, params) -> (args, kwargs)``
    (create missing state with torch's key names, gather parallel lists, host-side
    scalars, and the group's hyperparameters, ``foreach`` resolved). Every hyperparameter
    lives in the param group and every buffer in ``self.state[p]``, so ``state_dict``, LR
    schedulers and per-group overrides need no extra code. Each group, including one added
    later with ``add_param_group``, is validated with the defaults filled in.
    """

    functional_update: Callable[..., None]
    fixed_hyperparameters: dict = {}  # e.g. AdamW: {"decoupled_weight_decay": True}, also after load_state_dict

    def check_hyperparameters(self, group: dict) -> None:
        raise NotImplementedError

    def prepare_update(self, group: dict, params: list[Tensor]) -> tuple[tuple, dict]:
        raise NotImplementedError

    def add_param_group(self, param_group: dict) -> None:
        for key, value in self.fixed_hyperparameters.items():
            if param_group.get(key, value) != value:
                raise ValueError(f"{type(self).__name__} always has {key}={value}, got {param_group[key]!r}")
        self.check_hyperparameters({**self.defaults, **param_group})
        super().add_param_group(param_group)
        unsupported = {
            p.dtype for p in self.param_groups[-1]["params"] if p.is_complex() or not p.is_floating_point()
        }
        if unsupported:
            self.param_groups.pop()
            raise ValueError(
                f"params must be real floating-point tensors, got dtypes {sorted(map(str, unsupported))}"
            )

    def __setstate__(self, state: dict) -> None:
        """Also runs at the end of ``load_state_dict``: groups saved without one of our options get its default
        (a torch.optim.SGD checkpoint has no ``decoupled_weight_decay``), fixed ones are re-imposed."""
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            group.update(self.fixed_hyperparameters)

    @staticmethod
    def resolve_foreach(foreach: bool | None, params: list[Tensor]) -> bool:
        """``foreach`` as given, else True when every parameter is on CUDA (like torch.optim)."""
        return all(p.is_cuda for p in params) if foreach is None else foreach

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Update every parameter that has a ``.grad``; ``closure`` (recomputes the loss) is optional, its loss is returned."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                if any(p.grad.is_sparse for p in params):
                    raise ValueError(f"{type(self).__name__} does not support sparse gradients")
                args, kwargs = self.prepare_update(group, params)
                self.functional_update(*args, **kwargs)
        return loss
