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

import regkit.optim as ro

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
    Case("adamw_amsgrad", ro.AdamW, {"lr": 0.01, "weight_decay": 1e-2, "amsgrad": True}, ADAM_INVALID, ADAM_CONVERGE),
]
# fmt: on
