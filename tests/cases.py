"""The optimizer case table: every regkit optimizer joins the contract suite with ONE `Case(...)` line in CASES.

A case names a constructor ``make(params_or_model, **kwargs)`` (a class or a factory) and
its ``kwargs``; the generic tests in test_optim_contract.py run on all of them (a
``maximize=True`` kwarg makes them hand the optimizer the negated loss). The ``"compile"``
check needs a ``regkit.optim._base.FunctionalOptimizer`` (``functional_update`` and
``prepare_update``). What a case can declare:

- ``invalid``: ``{argument: bad_value}``; each must raise ValueError naming the argument and
  the value when merged into ``kwargs`` (check ``"invalid"``), and, for arguments that are
  param-group keys, when set in a group added by ``add_param_group`` (``"invalid_group"``).
- ``takes_model``: the constructor receives the ``nn.Module`` instead of its parameters
  (AdamCPR groups the model itself); tests that need hand-made param groups skip.
- ``needs_closure``: ``step`` must get a closure (two-pass wrappers: SAM, GNP); tests
  that step without one skip.
- ``converge``: per problem (``"quadratic"``, ``"rosenbrock"``) the kwargs overrides,
  ``steps`` and optionally ``below`` (the required loss reduction, default 1e-3) with
  which the optimizer converges there.
- ``group_override``: the hyperparameters a second param group changes (default: half
  the lr).
- ``tolerance``: ``{check: {"rtol": r, "atol": a}}`` where exact agreement cannot hold
  (say why in a comment); checks compare bit for bit by default (``"compile"``: to 1e-14,
  since Dynamo may round the traced host-float arithmetic differently).
- ``skip``: ``{check: reason}`` for checks that do not apply (e.g. ``"direction"`` for a
  method whose first step is not a descent step; ``"foreach"`` for an optimizer without a
  ``foreach`` switch, whose path-parametrized checks then run its default path only;
  ``"compile"`` for one without ``functional_update``/``prepare_update``, e.g. a wrapper).

Check names (the keys of ``tolerance`` and ``skip``) are listed in CHECKS.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch

import regkit.optim as ro
from regkit.penalties import GNP, SAM

CHECKS = (
    "direction",
    "quadratic",
    "rosenbrock",
    "foreach",
    "state_dict",
    "param_groups",
    "closure",
    "no_grad_state",
    "invalid",
    "invalid_group",
    "bf16",
    "grad_untouched",
    "lr_scheduler",
    "compile",
)


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable
    kwargs: dict = field(default_factory=dict)
    invalid: dict = field(default_factory=dict)
    converge: dict = field(default_factory=dict)
    takes_model: bool = False
    needs_closure: bool = False
    group_override: dict | None = None
    tolerance: dict = field(default_factory=dict)
    skip: dict = field(default_factory=dict)

    @property
    def maximize(self) -> bool:
        return bool(self.kwargs.get("maximize", False))

    def tol(self, check: str) -> dict:
        return self.tolerance.get(check, {"rtol": 0.0, "atol": 0.0})


SGD_INVALID = {"lr": -0.1, "momentum": -0.5, "dampening": 1.5, "weight_decay": -1e-4, "maximize": "yes"}
ADAM_INVALID = {"lr": -1e-3, "betas": (0.9, 1.0), "eps": -1e-8, "weight_decay": -0.1, "amsgrad": 1}
# corrected/cautious: flags, and only with decoupled decay (SGD(decoupled_weight_decay=False, cautious=True) is refused)
DECAY_OPTIONS_INVALID = {**SGD_INVALID, "corrected": "yes", "cautious": 1}
ADAM_DECAY_OPTIONS_INVALID = {**ADAM_INVALID, "corrected": "yes", "cautious": 1}
# Convergence settings: kwargs overrides, steps, and optionally `below` (default 1e-3): the final
# loss must fall below `below` times the initial one. Plain gradient descent crawls along
# Rosenbrock's curved valley (Hessian condition number ~2500 at the minimum), so
# low-momentum cases only have to reach the valley floor near the minimum.
SGD_CONVERGE = {"quadratic": {"lr": 0.1, "steps": 80}, "rosenbrock": {"lr": 1.4e-3, "steps": 250}}
SLOW_SGD_CONVERGE = {
    "quadratic": {"lr": 0.2, "steps": 80},
    "rosenbrock": {"lr": 1.4e-3, "steps": 1100, "below": 1e-2},
}
ADAM_CONVERGE = {"quadratic": {"lr": 0.1, "steps": 80}, "rosenbrock": {"lr": 0.2, "steps": 700}}
ADAMP_NESTEROV_CONVERGE = {**ADAM_CONVERGE, "rosenbrock": {"lr": 0.1, "steps": 700}}  # Nesterov Adam oscillates at 0.2
ADAMP_INVALID = {**{k: v for k, v in ADAM_INVALID.items() if k != "amsgrad"}, "eps": 0.0, "delta": -0.1, "wd_ratio": 1.5, "nesterov": "no", "channel_dim": 2}
SGDP_INVALID = {
    **{k: v for k, v in SGD_INVALID.items() if k != "maximize"},
    "eps": -1e-8, "delta": -1.0, "wd_ratio": -0.1, "project_buffer": 1, "channel_dim": -1,
}  # fmt: skip
# Normalized GD moves exactly lr per step, so with a constant lr it ends in a ball of radius ~lr.
NGD_CONVERGE = {
    "quadratic": {"lr": 0.01, "steps": 600, "below": 1e-2},
    "rosenbrock": {"lr": 2e-3, "steps": 1500, "below": 1e-2},
}
# AdamCPR takes the model and regularizes its matrices: Quadratic's w (zero init) is one, Rosenbrock's
# 1-D w is not (plain Adam there). A bound below R(w*) would stop the quadratic short of its minimum,
# so the quadratic runs keep the bound out of reach (uniform/warm start) or unset (inflection point).
CPR_INVALID = {
    "lr": -1e-3, "betas": (0.9, 1.0), "eps": -1e-8, "kappa_init_method": "random", "reg_function": "l3",
    "kappa_update": -1.0, "reg_step_size": 0, "reg_ema_decay": 1.5, "reg_order": "after", "amsgrad": 1,
}  # fmt: skip
CPR_CONVERGE = {
    "quadratic": {"lr": 0.1, "steps": 80, "kappa_init_param": 1e3, "reg_step_size": 1000},
    "rosenbrock": {"lr": 0.2, "steps": 700},
}
# AWD's decay lr * wd * ||g|| / ||w|| is not normalized like Adam's step: Rosenbrock's start (||g|| ~ 230,
# ||w|| ~ 1.6) with lr 0.2 needs wd ~ 1e-3 to keep lr * lambda_bar below 1.
AWD_CONVERGE = {"quadratic": {"lr": 0.1, "steps": 80}, "rosenbrock": {"lr": 0.2, "steps": 700, "weight_decay": 1e-3}}
# Compiled (even with backend="eager") addcmul_ rounds float32 differently from eager addcmul_ by an ulp
# (checked on a bare w.addcmul_(t, s, value=-2.0)); the constraint step uses it on MixedDtypeNet's float32 tensors.
CPR = dict(make=ro.AdamCPR, invalid=CPR_INVALID, converge=CPR_CONVERGE, takes_model=True,
           tolerance={"compile": {"rtol": 1e-6, "atol": 1e-9}})


# Composed regularizers (regkit.optim.with_cpr / with_projection over any base, SAM/GNP over AdamCPR and AdamP).
# The wrappers' own steps run after the base's functional update: constrain_ (AdamCPR's case) and
# scale_invariant_factors (AdamP's) have the compile test; the projection's own one is in test_compose.py.
COMPOSED_SKIP = {"compile": "a wrapper class: the base's functional_update is compiled in its own case, the added step in test_compose.py"}
CPR_ONLY_INVALID = {"kappa_init_method": "random", "reg_function": "l3", "kappa_update": -1.0, "reg_step_size": 0,
                    "reg_ema_decay": 1.5, "reg_order": "after"}
PROJECTION_ONLY_INVALID = {"delta": -0.1, "wd_ratio": 1.5, "projection_eps": 0.0, "channel_dim": 2}
SGD_CPR_CONVERGE = {"quadratic": {"lr": 0.1, "steps": 80, "kappa_init_param": 1e3}, "rosenbrock": {"lr": 1.4e-3, "steps": 250}}
SGD_CPR = dict(make=ro.with_cpr(ro.SGD), invalid={**SGD_INVALID, **CPR_ONLY_INVALID}, converge=SGD_CPR_CONVERGE,
               takes_model=True, skip=COMPOSED_SKIP)
# an inflection-point bound set at the first checks would stop the quadratic short of its minimum: checks kept out of reach
TORCH_SGD_CPR_CONVERGE = {**SGD_CPR_CONVERGE, "quadratic": {"lr": 0.1, "steps": 80, "reg_step_size": 1000}}
TORCH_SGD_CPR = dict(make=ro.with_cpr(torch.optim.SGD), invalid=CPR_ONLY_INVALID, converge=TORCH_SGD_CPR_CONVERGE,
                     takes_model=True, skip=COMPOSED_SKIP)  # torch.optim's messages do not name lr etc.
PROJECTED_ADAM_CPR = dict(make=ro.with_cpr(ro.with_projection(ro.Adam)),
                          invalid={**CPR_ONLY_INVALID, **PROJECTION_ONLY_INVALID, "lr": -1e-3}, converge=CPR_CONVERGE,
                          takes_model=True, skip=COMPOSED_SKIP)


def sam_adamcpr(params, **kwargs):
    return SAM(params, ro.AdamCPR, verbose=False, **kwargs)


def gnp_adamp(params, **kwargs):
    return GNP(params, ro.AdamP, **kwargs)


def sam(params, **kwargs):
    return SAM(params, ro.SGD, **kwargs)


def gnp(params, **kwargs):
    return GNP(params, ro.SGD, **kwargs)


def graft(params, **kwargs):
    """External grafting with the magnitudes of a run whose gradient norm halves every 200 steps."""
    rows = [torch.tensor(0.5 ** (t / 200), dtype=torch.float64) for t in range(2000)]
    return ro.Graft(params, schedule=ro.GraftingSchedule("global", rows), **kwargs)


def graft_sgd_adamcpr(params, lr, momentum=0.9, norm="global", foreach=None, **cpr):
    """Grafting (regkit.optim.Grafted): momentum SGD's step length on AdamCPR's direction (both get ``lr``)."""
    magnitude = partial(ro.SGD, lr=lr, momentum=momentum, foreach=foreach)
    direction = partial(ro.AdamCPR, lr=lr, foreach=foreach, verbose=False, **cpr)
    return ro.Grafted(params, magnitude, direction, norm=norm, foreach=foreach)


def graft_adam_sgd_projection(params, lr, betas=(0.9, 0.999), delta=0.1, norm="layer", foreach=None):
    """Grafting: Adam's per-tensor step length on the direction of with_projection(SGD) (its lr cancels)."""
    magnitude = partial(ro.Adam, lr=lr, betas=betas, foreach=foreach)
    direction = partial(ro.with_projection(ro.SGD), lr=lr, momentum=0.9, delta=delta, foreach=foreach)
    return ro.Grafted(params, magnitude, direction, norm=norm, foreach=foreach)


# Two-pass wrappers around regkit SGD: the base optimizer validates lr etc. (a group added later goes to it);
# foreach and for-loop paths take different norms (torch._foreach_norm vs vector_norm): equal to rounding.
WRAPPER = dict(
    needs_closure=True,
    tolerance={"foreach": {"rtol": 1e-12, "atol": 1e-14}},
    skip={"compile": "a wrapper: its step runs backward passes; the base optimizer's update has the compile test"},
)
# The penalty's fixed radius r keeps GNP a distance ~r from Rosenbrock's minimum: a smaller r there.
GNP_CONVERGE = {**SGD_CONVERGE, "rosenbrock": {"lr": 1.4e-3, "steps": 250, "r": 1e-3}}
GRAFT_CONVERGE = {"quadratic": {"lr": 0.02, "steps": 600}, "rosenbrock": {"lr": 0.02, "steps": 1500}}
SAM_INVALID = {"rho": -0.1, "lr": -0.1, "momentum": -0.5, "foreach": "yes"}
GNP_INVALID = {"alpha": -0.5, "r": -0.1, "difference": "backward", "lr": -0.1, "momentum": 1.5}
# Grafting (regkit.optim.Grafted) over composed optimizers; its own ops are the functional graft primitives.
# The magnitude optimizer sets the step length: Adam's settings for Adam's, SGD's for SGD's.
GRAFTED_CONVERGE = {**ADAM_CONVERGE, "rosenbrock": {"lr": 0.1, "steps": 700}}
GRAFTED_CPR_CONVERGE = {"quadratic": {"lr": 0.1, "steps": 80, "kappa_init_param": 1e3}, "rosenbrock": {"lr": 1.4e-3, "steps": 250}}
GRAFTED_CPR_SKIP = {**COMPOSED_SKIP, "param_groups": "AdamCPR's hand-made groups must say regularize=True/False (test_cpr)"}
GRAFT_SKIP = {
    "compile": "Graft/NGD step spans all groups (one global norm); the functional graft_update has its own compile test",
    "param_groups": "one global norm and one schedule across all groups: separate optimizers are a different method",
}

# fmt: off
CASES = [
    Case("sgd", ro.SGD, {"lr": 0.05}, {**SGD_INVALID, "nesterov": True}, SLOW_SGD_CONVERGE),
    Case("sgd_nesterov_l2", ro.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}, SGD_INVALID, SGD_CONVERGE),
    Case("sgd_dampening_maximize", ro.SGD, {"lr": 0.05, "momentum": 0.5, "dampening": 0.1, "maximize": True}, SGD_INVALID, SLOW_SGD_CONVERGE),
    Case("sgd_decoupled", ro.SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3, "decoupled_weight_decay": True}, SGD_INVALID, SGD_CONVERGE),
    Case("sgdw", ro.SGDW, {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}, SGD_INVALID, SGD_CONVERGE),
    Case("adam", ro.Adam, {"lr": 0.01}, ADAM_INVALID, ADAM_CONVERGE),
    Case("adam_l2_amsgrad", ro.Adam, {"lr": 0.01, "weight_decay": 1e-3, "amsgrad": True}, ADAM_INVALID, ADAM_CONVERGE),
    Case("adam_decoupled_maximize", ro.Adam, {"lr": 0.01, "weight_decay": 1e-3, "decoupled_weight_decay": True, "maximize": True}, ADAM_INVALID, ADAM_CONVERGE),
    Case("adamw", ro.AdamW, {"lr": 0.01, "weight_decay": 1e-2}, ADAM_INVALID, ADAM_CONVERGE),
    Case("sgdw_corrected_cautious", ro.SGDW, {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3, "corrected": True, "cautious": True}, DECAY_OPTIONS_INVALID, SGD_CONVERGE),
    Case("sgd_decoupled_cautious_nesterov", ro.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2, "decoupled_weight_decay": True, "cautious": True}, DECAY_OPTIONS_INVALID, SGD_CONVERGE),
    Case("sgdw_corrected_plain", ro.SGDW, {"lr": 0.05, "weight_decay": 1e-2, "corrected": True}, DECAY_OPTIONS_INVALID, SLOW_SGD_CONVERGE),
    Case("adamw_corrected", ro.AdamW, {"lr": 0.01, "weight_decay": 1e-2, "corrected": True}, ADAM_DECAY_OPTIONS_INVALID, ADAM_CONVERGE),
    Case("adamw_cautious_amsgrad", ro.AdamW, {"lr": 0.01, "weight_decay": 1e-2, "cautious": True, "amsgrad": True}, ADAM_DECAY_OPTIONS_INVALID, ADAM_CONVERGE),
    Case("adam_decoupled_corrected_cautious_maximize", ro.Adam, {"lr": 0.01, "weight_decay": 1e-2, "decoupled_weight_decay": True, "corrected": True, "cautious": True, "maximize": True}, {**ADAM_DECAY_OPTIONS_INVALID, "decoupled_weight_decay": False}, ADAM_CONVERGE),
    Case("ngd_layer", ro.NGD, {"lr": 0.01, "norm": "layer"}, {"lr": -0.1, "eps": 0.0, "norm": "rows"}, NGD_CONVERGE, skip={"compile": "Graft/NGD step spans all groups (one global norm); the functional graft_update has its own compile test"}),
    Case("adamw_amsgrad", ro.AdamW, {"lr": 0.01, "weight_decay": 1e-2, "amsgrad": True}, ADAM_INVALID, ADAM_CONVERGE),
    Case("adamp", ro.AdamP, {"lr": 0.01, "weight_decay": 1e-2}, ADAMP_INVALID, ADAM_CONVERGE),
    Case("adamp_nesterov", ro.AdamP, {"lr": 0.01, "weight_decay": 1e-2, "nesterov": True, "delta": 0.5, "wd_ratio": 0.5}, ADAMP_INVALID, ADAMP_NESTEROV_CONVERGE),
    Case("sgdp", ro.SGDP, {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}, SGDP_INVALID, SGD_CONVERGE),
    Case("sgdp_nesterov", ro.SGDP, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}, SGDP_INVALID, SGD_CONVERGE),
    Case("sgdp_project_buffer_dampening", ro.SGDP, {"lr": 0.05, "momentum": 0.5, "dampening": 0.1, "project_buffer": True, "delta": 0.5}, {**SGDP_INVALID, "nesterov": True}, SLOW_SGD_CONVERGE),
    Case("cpr_l2_uniform", kwargs={"lr": 0.01, "kappa_init_method": "uniform", "kappa_init_param": 0.5, "kappa_update": 0.1}, **CPR),
    Case("cpr_std_dependent_pre_step_amsgrad", kwargs={"lr": 0.01, "kappa_init_method": "dependent", "kappa_init_param": 0.5, "reg_function": "std", "reg_order": "pre_step", "amsgrad": True}, **CPR),
    Case("cpr_huber_warm_start_adaptive_by_lr", kwargs={"lr": 0.01, "kappa_init_method": "warm_start", "kappa_init_param": 2, "reg_function": "huber", "adaptive_bounds": True, "reg_by_lr": True}, **CPR),
    Case("cpr_l1_inflection_maximize", kwargs={"lr": 0.01, "kappa_init_method": "inflection_point", "reg_step_size": 1, "reg_function": "l1", "maximize": True}, **CPR),
    Case("adam_awd", ro.AdamAWD, {"lr": 0.01, "weight_decay": 0.1}, ADAM_INVALID, AWD_CONVERGE),
    Case("adam_awd_amsgrad_maximize", ro.AdamAWD, {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True, "maximize": True}, ADAM_INVALID, AWD_CONVERGE),
    Case("adam_adadecay", ro.AdamAdaDecay, {"lr": 0.01, "weight_decay": 1e-2, "alpha": 2.0}, {**ADAM_INVALID, "alpha": -1.0}, ADAM_CONVERGE),
    Case("sam_sgd_momentum", sam, {"rho": 0.01, "lr": 0.05, "momentum": 0.9}, SAM_INVALID, SGD_CONVERGE, **WRAPPER),
    Case("gnp_forward_sgd", gnp, {"alpha": 0.8, "r": 0.01, "lr": 0.05, "momentum": 0.9}, GNP_INVALID, GNP_CONVERGE, **WRAPPER),
    Case("gnp_central_layer_sgd", gnp, {"alpha": 0.5, "r": 0.01, "difference": "central", "normalize": "layer", "lr": 0.05, "momentum": 0.9}, GNP_INVALID, GNP_CONVERGE, **WRAPPER),
    Case("sgd_cpr_uniform", kwargs={"lr": 0.05, "momentum": 0.9, "kappa_init_method": "uniform", "kappa_init_param": 0.5, "kappa_update": 0.1, "verbose": False}, **SGD_CPR),
    Case("sgd_cpr_dependent_pre_step_nesterov", kwargs={"lr": 0.05, "momentum": 0.9, "nesterov": True, "kappa_init_method": "dependent", "kappa_init_param": 0.8, "reg_order": "pre_step", "verbose": False}, **SGD_CPR),
    Case("torch_sgd_cpr_std_inflection", kwargs={"lr": 0.05, "momentum": 0.9, "reg_function": "std", "kappa_init_method": "inflection_point", "reg_step_size": 1, "verbose": False}, **TORCH_SGD_CPR),
    Case("adamw_projection", ro.with_projection(ro.AdamW), {"lr": 0.01, "weight_decay": 1e-2}, {**ADAM_INVALID, **PROJECTION_ONLY_INVALID}, ADAM_CONVERGE, skip=COMPOSED_SKIP),
    Case("sgd_projection_nesterov_decoupled", ro.with_projection(ro.SGD), {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2, "decoupled_weight_decay": True, "delta": 0.5, "wd_ratio": 0.5}, {**SGD_INVALID, **PROJECTION_ONLY_INVALID}, SGD_CONVERGE, skip=COMPOSED_SKIP),
    Case("torch_adamw_projection", ro.with_projection(torch.optim.AdamW), {"lr": 0.01, "weight_decay": 1e-2}, PROJECTION_ONLY_INVALID, ADAM_CONVERGE, skip=COMPOSED_SKIP),
    Case("adam_projection_cpr", kwargs={"lr": 0.01, "kappa_init_method": "uniform", "kappa_init_param": 0.5, "kappa_update": 0.1, "delta": 0.5, "verbose": False}, **PROJECTED_ADAM_CPR),
    Case("sam_adamcpr", sam_adamcpr, {"rho": 0.01, "lr": 0.01, "kappa_init_method": "uniform", "kappa_init_param": 0.5, "kappa_update": 0.1}, {"rho": -0.1, "lr": -1e-3, "kappa_update": -1.0}, CPR_CONVERGE, **{**WRAPPER, "skip": {**WRAPPER["skip"], "invalid_group": "an added AdamCPR group must say regularize=True/False: refused for that first (test_cpr)"}}),
    Case("gnp_adamp", gnp_adamp, {"alpha": 0.8, "r": 0.01, "lr": 0.01, "weight_decay": 1e-2}, {"alpha": -0.5, "r": -0.1, "wd_ratio": 1.5}, {**ADAM_CONVERGE, "rosenbrock": {"lr": 0.2, "steps": 700, "r": 1e-3}}, **WRAPPER),
    Case("graft_sgd_adamcpr_global", graft_sgd_adamcpr, {"lr": 0.05, "kappa_init_method": "uniform", "kappa_init_param": 0.5, "kappa_update": 0.1}, {"lr": -0.1, "momentum": -0.5, "kappa_update": -1.0, "norm": "rows"}, GRAFTED_CPR_CONVERGE, skip=GRAFTED_CPR_SKIP),
    Case("graft_adam_sgd_projection_layer", graft_adam_sgd_projection, {"lr": 0.01, "delta": 0.5}, {"lr": -0.1, "betas": (0.9, 1.0), "delta": -0.1, "norm": "rows"}, GRAFTED_CONVERGE, skip=COMPOSED_SKIP),
    Case("graft_schedule", graft, {"lr": 0.01}, {"lr": -0.1, "eps": 0.0, "foreach": "yes"}, GRAFT_CONVERGE, skip=GRAFT_SKIP),
]
# fmt: on
