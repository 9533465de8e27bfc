"""`with_cpr`: CPR's constraint step (Franke et al., NeurIPS 2024) on top of any optimizer class."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from regkit._validate import check_flag
from regkit.distributed import reject_sharded
from regkit.optim._base import increment_steps, kept_if_valid, param_names, step_counter
from regkit.optim._float32_state import Float32State
from regkit.optim.compose import base_step, check_base, resolve_foreach, run_closure, stepped, with_options
from regkit.optim.cpr import (
    CONSTRAINT_OPTIONS,
    CONSTRAINT_STATE,
    check_constrained_tensors,
    check_constraint,
    constrain_,
    constraint_groups,
    constraint_lists,
    constraint_state_,
)

CPR_OPTIONS = ("regularize", "kappa_init_method", "kappa_init_param", "reg_function", "kappa_update", "reg_step_size",
               "reg_ema_decay", "reg_by_lr", "adaptive_bounds", "reg_order")  # the param-group keys with_cpr adds
COUNTER = "constraint_step"  # state key: how many steps of the wrapped optimizer the tensor has taken


class ConstraintStep(Float32State):
    """What `with_cpr` adds to a base optimizer class: CPR's options, checks, state and constraint step."""

    float32_state = CONSTRAINT_STATE
    base_step: Callable[[Optimizer], None]  # the wrapped class's own step and name, set by `with_cpr`
    base_name: str

    def __init__(self, params, *args, kappa_init_method: str = "inflection_point",
                 kappa_init_param: float = 1000.0, reg_function: str = "l2", kappa_update: float = 1.0,
                 reg_step_size: int = 200, reg_ema_decay: float = 0.99, reg_by_lr: bool = False,
                 adaptive_bounds: bool = False, reg_order: str = "post_step", reg_embedding: bool = False,
                 verbose: bool = True, **kwargs):
        options = dict(
            regularize=None, kappa_init_method=kappa_init_method, kappa_init_param=kappa_init_param,
            reg_function=reg_function, kappa_update=kappa_update, reg_step_size=reg_step_size,
            reg_ema_decay=reg_ema_decay, reg_by_lr=reg_by_lr, adaptive_bounds=adaptive_bounds, reg_order=reg_order,
        )  # fmt: skip
        check_constraint({**options, "regularize": False})  # before params are looked at
        check_flag("reg_embedding", reg_embedding)
        check_flag("verbose", verbose)
        groups = constraint_groups(params, reg_embedding, verbose, type(self).__name__)
        super().__init__(with_options(groups, options), *args, **kwargs)
        self.defaults.update(options)
        if not any(g["regularize"] for g in self.param_groups if g["params"]):
            warnings.warn(f"{type(self).__name__} regularizes no tensor: it is plain {self.base_name}", stacklevel=2)

    def add_param_group(self, param_group: dict) -> None:
        """The base's checks, then CPR's: ``regularize`` and the options, no empty or sharded regularized tensor."""
        super().add_param_group({**{k: self.defaults[k] for k in CPR_OPTIONS if k in self.defaults}, **param_group})
        with kept_if_valid(self.param_groups) as (added, index):
            check_constraint(added)
            check_constrained_tensors(type(self).__name__, added, index)
            if added["regularize"]:  # R(w) of a shard is not R(w)
                reject_sharded(added["params"], type(self).__name__, param_names(added, index))

    def load_state_dict(self, state_dict: dict) -> None:
        """As Base (CPR scalars kept float32); the step counters stay CPU tensors (torch casts them like
        buffers to the parameter's dtype and device: bfloat16 counts past 256 would round)."""
        counts = {i: buffers[COUNTER] for i, buffers in state_dict["state"].items() if COUNTER in buffers}
        super().load_state_dict(state_dict)
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        for i, p in zip(saved_ids, [p for group in self.param_groups for p in group["params"]], strict=True):
            if i in counts:
                self.state[p][COUNTER] = step_counter().fill_(float(counts[i]))

    def step(self, closure=None):
        """The closure (if any), then Base's step with the constraint step after it (or before: ``pre_step``)."""
        loss = run_closure(closure)
        work = [(g, ps) for g, ps in stepped(self.param_groups) if g["regularize"]]
        with torch.no_grad():
            pending = [self._constraint_states(group, params) for group, params in work]
            for (group, params), (states, ages) in zip(work, pending, strict=True):
                if group["reg_order"] == "pre_step":
                    self._constrain(group, params, states, [age - 1 for age in ages])
        type(self).base_step(self)
        with torch.no_grad():
            for (group, params), (states, ages) in zip(work, pending, strict=True):
                for p, buffers in zip(params, states, strict=True):
                    self.state[p].update(buffers)  # after Base's step: Base creates its state in an empty one
                if group["reg_order"] == "post_step":
                    self._constrain(group, params, states, ages)
        return loss

    def _constraint_states(self, group: dict, params: list[Tensor]) -> tuple[list[dict], list[float]]:
        """Each tensor's CPR buffers (fresh ones before its first step) and its step count after this step."""
        states = []
        for p in params:
            buffers = self.state[p] if COUNTER in self.state[p] else {COUNTER: step_counter()}
            states.append(constraint_state_(buffers, group, p))
        return states, increment_steps([buffers[COUNTER] for buffers in states])

    @staticmethod
    def _constrain(group: dict, params: list[Tensor], states: list[dict], ages: list[float]) -> None:
        constrain_(params, **constraint_lists(states, group), ages=ages,
                   **{k: group[k] for k in CONSTRAINT_OPTIONS}, foreach=resolve_foreach(group, params))


def with_cpr(base: type[Optimizer]) -> type[Optimizer]:
    r"""The optimizer class ``base`` plus CPR's constraint step: one bound ``R(w) <= kappa`` per weight matrix.

    ``with_cpr(Base)(params, *base_args, <CPR options>, **base_kwargs)``: each step, with ``t``
    the tensor's step count (state key ``constraint_step``) and ``c = lr if reg_by_lr else 1``::

        w <- Base's step of w (its own hyperparameters: momentum, Adam moments, decay, ...)
        for each regularized tensor (once its bound applies):
            lambda <- max(0, lambda + mu * (R(w) - kappa))   mu = kappa_update / numel(w) (std: kappa_update)
            w      <- w - c * lambda * grad R(w)

    (``reg_order="pre_step"``: the constraint step first, on the weights before Base's step.)
    The constraint step is `regkit.optim.cpr.constrain_`, AdamCPR's own code, with the same
    options and defaults (``kappa_init_method``, ``kappa_init_param``, ``reg_function``,
    ``kappa_update``, ``reg_step_size``, ``reg_ema_decay``, ``reg_by_lr``, ``adaptive_bounds``,
    ``reg_order``, keyword-only, kept in the param groups) and the same choice of tensors
    (``params``: a model, param groups with ``regularize``, or tensors split by ``ndim``;
    ``reg_embedding``, ``verbose``). So ``with_cpr(regkit.optim.Adam)(model, lr, ...)`` is
    `AdamCPR` bit for bit (tested in float64), and ``with_cpr(regkit.optim.SGD)`` is the CPR
    paper's SGD+CPR. Leave Base's weight decay at 0 (the bound replaces it). The CPR scalars
    stay float32 after ``load_state_dict``; a ``dependent`` bound is measured on the weights
    before their first update. The result is a subclass of ``base``.

    Example::

        >>> SGDCPR = with_cpr(regkit.optim.SGD)
        >>> opt = SGDCPR(model, lr=0.1, momentum=0.9, kappa_init_method="dependent", kappa_init_param=0.8)

    Reference: Franke, Hefenbrock, Koehler & Hutter, "Improving Deep Learning Optimization through
    Constrained Parameter Regularization", NeurIPS 2024 (arXiv:2311.09058).
    """
    check_base(base, "with_cpr")
    name = f"{base.__name__}CPR"
    doc = f"``{base.__name__}`` with CPR's constraint step: ``regkit.optim.with_cpr({base.__name__})``.\n\n"
    return type(name, (ConstraintStep, base), {"base_step": staticmethod(base_step(base)), "base_name": base.__name__,
                                              "__qualname__": name, "__doc__": doc + (with_cpr.__doc__ or ""),
                                              "__module__": __name__})
