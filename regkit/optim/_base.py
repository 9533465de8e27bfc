"""The thin Optimizer every regkit optimizer subclasses: validate, gather tensor lists, call one functional update."""

import contextlib
import os
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from regkit._validate import check_flag
from regkit.distributed import reject_sharded


def step_counter() -> Tensor:
    """A fresh ``state["step"]``: a CPU float tensor, as torch.optim keeps it (float64 if that is the default dtype).

    Reading it with ``.item()`` in ``step`` costs no device sync, whatever the parameters' device.
    """
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    return torch.tensor(0.0, dtype=dtype)


def tensor_steps_(states: dict) -> None:
    """Turn a loaded ``state[p]["step"]`` that is a Python number (an older or hand-made checkpoint) into
    the CPU float tensor that `step_counter` makes, so ``step()`` can count on it."""
    for buffers in states.values():
        if "step" in buffers and not torch.is_tensor(buffers["step"]):
            buffers["step"] = step_counter().fill_(float(buffers["step"]))


def check_loaded_state(name: str, defaults: dict, state: dict, required: Callable[[dict], tuple]) -> None:
    """Refuse a loaded state whose per-parameter state lacks a key optimizer ``name`` needs (``required(group)``).

    Runs before the loaded state replaces the current one, so a refused load changes nothing.
    A non-empty ``state[p]`` without, e.g., ``exp_avg`` was saved by another optimizer.
    """
    for index, group in enumerate(state["param_groups"]):
        needed = required({**defaults, **group})
        for position, p in enumerate(group["params"]):
            buffers = state["state"].get(p, {})
            missing = [key for key in needed if key not in buffers] if buffers else []
            if missing:
                raise ValueError(
                    f"{name}.load_state_dict: state of param_groups[{index}]['params'][{position}] has no "
                    f"{missing[0]!r} (it holds {sorted(buffers)}): the state dict was probably saved by another "
                    f"optimizer; load one saved by {name}.state_dict(), or start from a fresh {name}"
                )


def reject_unsupported_dtypes(params: list[Tensor], name: str, refused: dict) -> None:
    """ValueError for complex or non-floating-point params, and for the dtypes in ``refused`` ({dtype: advice})."""
    unsupported = {p.dtype for p in params if p.is_complex() or not p.is_floating_point()}
    if unsupported:
        raise ValueError(f"params must be real floating-point tensors, got dtypes {sorted(map(str, unsupported))}")
    for p in params:
        if p.dtype in refused:
            raise ValueError(f"{name} does not support {p.dtype} params (shape {tuple(p.shape)}): {refused[p.dtype]}")



def param_names(group: dict, index: int) -> list[str]:
    """Names of group ``index``'s tensors for messages: its ``names``, else ``param_groups[index]['params'][i]``."""
    return group.get("names") or [f"param_groups[{index}]['params'][{i}]" for i in range(len(group["params"]))]


@contextlib.contextmanager
def kept_if_valid(param_groups: list[dict]) -> Iterator[tuple[dict, int]]:
    """Yield ``(group, index)`` of the group just added; the block's ValueError removes it again, then propagates."""
    try:
        yield param_groups[-1], len(param_groups) - 1
    except ValueError:
        param_groups.pop()
        raise

class ChecksLoadedState:
    """Mixin for a ``torch.optim.Optimizer``: what ``__setstate__`` (also the end of ``load_state_dict``) does.

    A state saved by another optimizer (a non-empty ``state[p]`` without a key of `required_state`) is
    refused before anything changes; groups saved without one of our options get its default (a
    torch.optim.SGD checkpoint has no ``decoupled_weight_decay``); Python-number steps become tensors.
    torch's ``__setstate__`` adds ``differentiable`` to ``defaults``: regkit has no such option and drops
    it, so a checkpoint round trip gives the same param-group keys.
    """

    def required_state(self, group: dict) -> tuple[str, ...]:
        """The keys every non-empty ``state[p]`` of ``group`` must hold (a loaded state dict is checked)."""
        return ()

    def __setstate__(self, state: dict) -> None:
        own = state["defaults"] if "defaults" in state else self.defaults  # unpickling, else load_state_dict
        check_loaded_state(type(self).__name__, own, state, self.required_state)
        own = set(own)
        super().__setstate__(state)
        for key in set(self.defaults) - own:
            del self.defaults[key]
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        tensor_steps_(self.state)


class KeepsOwnAttributes:
    """Mixin for an Optimizer with attributes of its own (a schedule, a base optimizer): ``copy.deepcopy`` and
    pickle keep them (torch's ``__getstate__`` keeps only ``defaults``, ``state`` and ``param_groups``)."""

    def __getstate__(self) -> dict:
        own = {k: v for k, v in vars(self).items() if not k.startswith("_optimizer_")}  # not torch's hook dicts
        return {**own, **super().__getstate__()}


def peak_lr(group: dict) -> float:
    """``lr_max`` of schedule-corrected decay (``corrected=True``): the peak of the group's lr schedule.

    In order: ``group["max_lr"]`` (set by torch's ``OneCycleLR``), ``group["initial_lr"]`` (set by
    every torch LR scheduler to the base lr its multiplier scales, e.g. the peak of
    ``regkit.train.warmup_cosine``), else the group's lr at its first step, which is remembered
    as ``group["initial_lr"]`` (saved in ``state_dict``; a scheduler built later keeps it, as torch's
    schedulers only ``setdefault`` it). Raises ValueError when that value is not positive.
    """
    value = group["max_lr"] if "max_lr" in group else group.setdefault("initial_lr", group["lr"])
    value = float(value)
    if not value > 0:
        raise ValueError(
            f"corrected=True divides the decay by the peak lr, which is {value!r} for this group "
            "(its 'max_lr', 'initial_lr' or first lr): give the group a positive lr"
        )
    return value


def check_decay_options(group: dict) -> None:
    """``corrected`` and ``cautious`` change the decoupled decay: refused with coupled L2 (ValueError)."""
    for flag in ("corrected", "cautious"):
        if group.get(flag) and not group["decoupled_weight_decay"]:
            raise ValueError(
                f"{flag}=True changes the decoupled weight decay, but decoupled_weight_decay is False "
                f"(coupled L2): use decoupled_weight_decay=True (SGDW/AdamW) or {flag}=False"
            )


def decay_options(group: dict) -> dict:
    """The functional update's ``corrected``/``cautious``/``lr_max`` keywords, only when an option is on.

    Optimizers built on SGD/Adam with their own update (AdamAWD, AdamAdaDecay) never turn one on,
    so their functional updates need not accept the keywords.
    """
    if not (group.get("corrected") or group.get("cautious")):
        return {}
    lr_max = peak_lr(group) if group["corrected"] else None
    return {"corrected": group["corrected"], "cautious": group["cautious"], "lr_max": lr_max}


def increment_steps(counters: list[Tensor]) -> list[float]:
    """``t <- t + 1`` for each CPU step counter; returns the new counts as Python floats."""
    torch._foreach_add_(counters, 1.0)
    return [t.item() for t in counters]


FUSED_ENV = "REGKIT_FUSED"


def preferred_fused() -> bool:
    """``REGKIT_FUSED=1`` (or ``true``): optimizers built without ``fused=`` take their fused step, so notebooks,
    recipes and the course profiles use it without a code change; unset, empty or ``0``: they do not."""
    value = os.environ.get(FUSED_ENV, "").strip().lower()
    if value in ("", "0", "false"):
        return False
    if value in ("1", "true"):
        return True
    raise ValueError(f"{FUSED_ENV} must be 1 (fused steps) or 0 (not), got {value!r}; unset it for the default")


class FunctionalOptimizer(ChecksLoadedState, torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose ``step`` calls one functional update per param group.

    Subclasses set ``functional_update`` (a staticmethod over lists of tensors, built from
    ``regkit.optim._functional``) and implement ``check_hyperparameters(group)`` (raise
    ValueError naming the argument) and ``prepare_update(group, params) -> (args, kwargs)``
    (create missing state with torch's key names, gather parallel lists, host-side
    scalars, and the group's hyperparameters, ``foreach`` resolved). Every hyperparameter
    lives in the param group and every buffer in ``self.state[p]``, so ``state_dict``, LR
    schedulers and per-group overrides need no extra code. Each group, including one added
    later with ``add_param_group``, is validated with the defaults filled in.

    ``fused=True`` (a constructor keyword; classes with ``fusable = True`` accept it; the default None
    means False unless the environment sets ``REGKIT_FUSED=1``, see `preferred_fused`) runs the base
    step in torch's fused kernel and the method's own additions on the foreach path
    (`regkit.optim.fused`): ``step`` passes ``fused=True, foreach=True`` to the functional update.
    It is how this optimizer runs, not a hyperparameter: it is kept out of the param groups, so state
    dicts of both paths are the same and a loaded one keeps the path the optimizer was built with;
    pickling and deepcopy keep it. With ``fused=True`` a group's ``foreach=True`` is refused
    (ValueError), as in torch.optim.
    """

    functional_update: Callable[..., None]
    fixed_hyperparameters: dict = {}  # e.g. AdamW: {"decoupled_weight_decay": True}, also after load_state_dict
    # True for updates that use norms of whole tensors (AdamP, AdamCPR): sharded (FSDP/DTensor) params are refused
    whole_tensor_norms: bool = False
    refused_dtypes: dict = {}  # {dtype: what to do instead}, e.g. Adam refuses float16
    fusable: bool = False  # True: functional_update takes fused=True (torch's fused kernel for the base step)

    fused: bool = False  # the class default also serves optimizers pickled before the option existed

    def __init__(self, params, defaults: dict, *, fused: bool | None = None):
        if fused is None:  # not chosen: REGKIT_FUSED=1 asks for it wherever it applies (not with foreach=True)
            fused = preferred_fused() and self.fusable and not defaults.get("foreach")
        check_flag("fused", fused)
        if fused and not self.fusable:
            raise ValueError(
                f"{type(self).__name__} has no fused step (torch's fused kernels do not expose the update it "
                "changes): use fused=False (foreach=True is its fast path)"
            )
        self.fused = fused
        self.check_defaults(defaults)  # like torch.optim: bad hyperparameters fail before params are looked at
        super().__init__(params, defaults)

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "fused": self.fused}

    def check_defaults(self, defaults: dict) -> None:
        """Validate the constructor's hyperparameters (before any param group exists)."""
        self.check_hyperparameters(defaults)

    def check_hyperparameters(self, group: dict) -> None:
        raise NotImplementedError

    def prepare_update(self, group: dict, params: list[Tensor]) -> tuple[tuple, dict]:
        raise NotImplementedError

    def add_param_group(self, param_group: dict) -> None:
        for key, value in self.fixed_hyperparameters.items():
            if param_group.get(key, value) != value:
                raise ValueError(f"{type(self).__name__} always has {key}={value}, got {param_group[key]!r}")
        self.check_hyperparameters({**self.defaults, **param_group})
        if self.fused and {**self.defaults, **param_group}.get("foreach"):
            raise ValueError(
                f"{type(self).__name__}: fused=True and foreach=True cannot both be set (the fused kernel replaces "
                "the foreach path); pass foreach=None with fused=True"
            )
        super().add_param_group(param_group)
        with kept_if_valid(self.param_groups) as (group, index):
            reject_unsupported_dtypes(group["params"], type(self).__name__, self.refused_dtypes)
            if self.whole_tensor_norms:
                reject_sharded(group["params"], type(self).__name__, param_names(group, index))

    def __setstate__(self, state: dict) -> None:
        """`ChecksLoadedState`'s checks and defaults; then the fixed hyperparameters are re-imposed."""
        super().__setstate__(state)
        for group in self.param_groups:
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
                if self.fused:
                    kwargs = dict(kwargs, fused=True, foreach=True)  # the additions to the kernel's step: foreach
                self.functional_update(*args, **kwargs)
        return loss
