"""When would CPR's inflection-point initialization set a bound? Two rules, run over a recorded norm path.

AdamCPR's ``kappa_init_method="inflection_point"`` sets ``kappa = R(w)`` once the growth of a weight
tensor slows down. The paper (Franke et al., 2024) and pytorch-cpr 0.3.1 detect that differently:

- :func:`package_rule_step`: pytorch-cpr's rule, which AdamCPR runs (``regkit.optim.cpr.detect_inflection_``):
  the relative slope of an EMA of ``||w||``, checked every ``reg_step_size`` steps, fires at the first
  check with ``g_prev > g > 0.01``: growth below 1% per check never fires.
- :func:`paper_rule_step`: the paper's rule: the first negative second difference of ``R = ||w||^2``,
  sampled every 10% of the learning-rate warmup.

Both take the path ``norms[t-1] = ||w||`` after step ``t`` and return the step at which the bound is set
(or None). They are analysis tools over a finished trajectory (they read values on the host).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from regkit._validate import check_int
from regkit.optim.cpr import detect_inflection_


def _check_path(norms: Tensor) -> Tensor:
    if not isinstance(norms, Tensor) or norms.dim() != 1 or len(norms) == 0:
        raise ValueError(f"norms must be a non-empty 1-D tensor of ||w|| per step, got {norms!r:.80}")
    return norms


def package_rule_step(norms: Tensor, reg_step_size: int = 200, reg_ema_decay: float = 0.99) -> int | None:
    """The step at which AdamCPR's (pytorch-cpr's) inflection-point rule sets ``kappa``, or None."""
    norms = _check_path(norms).float()
    ema, ema_prev, slope_prev = (torch.zeros((), dtype=torch.float32) for _ in range(3))
    kappa = torch.full((), math.inf)
    for age, length in enumerate(norms, 1):
        detect_inflection_([kappa], [length.square()], [length], [ema], [ema_prev], [slope_prev], float(age),
                           reg_step_size=reg_step_size, reg_ema_decay=reg_ema_decay, foreach=False)
        if torch.isfinite(kappa):
            return age
    return None


def paper_rule_step(norms: Tensor, warmup_steps: int) -> int | None:
    """The step at which the paper's rule sets ``kappa``: R sampled every ``max(1, warmup_steps // 10)``
    steps, the first negative second difference, known once its third sample is in; or None."""
    check_int("warmup_steps", warmup_steps, note="the lr warmup")
    every = max(1, warmup_steps // 10)
    r = _check_path(norms)[every - 1 :: every].double().square()  # R after steps every, 2 every, ...
    negative = torch.nonzero(r[2:] - 2 * r[1:-1] + r[:-2] < 0).flatten()
    return None if len(negative) == 0 else (int(negative[0]) + 3) * every
