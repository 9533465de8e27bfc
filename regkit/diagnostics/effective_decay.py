"""Per-coordinate weight-decay rates of Adam with coupled L2 vs decoupled decay (AdamW).

The rate of coordinate ``i`` is the fraction of ``w_i`` that weight decay removes in one step:

- decoupled (AdamW, torch's convention): ``w <- w * (1 - lr * wd)``, the same ``lr * wd`` for
  every coordinate;
- coupled L2 (Adam): the term ``wd * w`` is added to the gradient, goes through both moments
  and leaves the step as ``lr * wd * w_i / (sqrt(v_hat_i) + eps)`` when it is steady over the
  memory of ``m`` (``w`` changes slowly): the rate ``lr * wd / (sqrt(v_hat_i) + eps)``, small
  where the gradient's second moment ``v_hat_i`` is large (Loshchilov & Hutter, ICLR 2019).

``v_hat = v / (1 - beta2^t)`` (the running maximum with amsgrad) is read from the optimizer's
state and the denominator is computed by the optimizer's own primitive, so the rates describe
the next step of that optimizer exactly as it would scale the decay term.
"""

from __future__ import annotations

import torch
from torch import Tensor

from regkit.diagnostics.metrics import NamedTensors, named_tensors
from regkit.optim._functional import adam_bias_corrections, adam_denominator
from regkit.optim.adam import Adam


@torch.no_grad()
def adam_decay_rates(optimizer: Adam, params: NamedTensors) -> dict[str, Tensor]:
    """``{name: rate}`` with each parameter's per-coordinate decay rate at the optimizer's current state.

    ``optimizer``: a regkit ``Adam`` or ``AdamW`` that has taken at least one step on every
    parameter asked for; ``params``: a module or named tensors (see ``regkit.diagnostics.metrics``), each in
    one of its param groups. Rates have the parameter's shape: ``lr * wd / (sqrt(v_hat) + eps)``
    for coupled groups, ``lr * wd`` for decoupled ones (zero where ``wd = 0``).
    """
    if not isinstance(optimizer, Adam):
        raise TypeError(f"optimizer must be a regkit.optim.Adam or AdamW, got {type(optimizer).__name__}")
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    rates = {}
    for name, p in named_tensors(params):
        group = group_of.get(id(p))
        if group is None:
            raise ValueError(f"parameter {name!r} is in none of the optimizer's param groups")
        state = optimizer.state.get(p, {})
        if "exp_avg_sq" not in state:
            raise ValueError(f"parameter {name!r} has no optimizer state yet: take a step first")
        lr, wd = group["lr"], group["weight_decay"]
        if group["decoupled_weight_decay"]:
            rates[name] = torch.full_like(p, lr * wd)
            continue
        v = state["max_exp_avg_sq"] if group["amsgrad"] else state["exp_avg_sq"]
        _, (bc2_sqrt,) = adam_bias_corrections([state["step"].item()], *group["betas"])
        (denominator,) = adam_denominator([v], [bc2_sqrt], group["eps"], foreach=False)
        rates[name] = (lr * wd) / denominator
    return rates
