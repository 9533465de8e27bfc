"""``fused=True``: torch's fused Adam/SGD kernels for the base step, regkit's own additions on the foreach path.

torch ships one fused kernel per base optimizer (``torch._fused_adam_``, ``torch._fused_adamw_``,
``torch._fused_sgd_``, on CPU and CUDA): each reads and writes every tensor once per step, where
the foreach path makes one pass per operation (3-5x faster on a CPU, see the README's benchmarks).
regkit's methods are a base step plus a correction that is exact to split off:

- SGD/SGDW, Adam/AdamW: the step itself; decoupled decay ``w *= 1 - lr * wd`` (with ``corrected``:
  ``wd * lr / lr_max``) is the kernel's AdamW line, and for SGDW it runs before an SGD kernel without
  decay (the momentum does not read ``w``, so the order does not matter);
- AdamAWD, AdamAdaDecay: their decay (foreach), then the Adam kernel without decay, as their update does;
- AdamCPR: the Adam kernel without decay, and the constraint step (foreach) after or before it.

On float32/float64 CPU tensors (no amsgrad) those three run on regkit's own kernels instead
(`regkit.optim.cpu_kernels`): one Adam pass that also measures ``R(w)``, and one pass for the constraint
step or the gradient statistics; so do AdamP and SGDP (two passes: the state update with the row
statistics of the scale-invariance test, then the projected step).

``cautious=True`` decays by a mask of the update's signs, which the kernels do not expose: such a
group keeps the foreach path, as does an SGD group with bfloat16/float16 tensors (torch 2.13's CPU
fused SGD drifts there: 0.65 from the float64 trajectory after 6 steps where foreach stays within
0.012, in tests/test_optim_fused.py's setting). AdamP and SGDP project the update itself, which no torch kernel
exposes: their fused step is regkit's CPU kernels (float32/float64, ``channel_dim=0``), elsewhere the foreach path.
Results equal the foreach path's up to rounding (the kernels compute ``lr * wd``, the bias
corrections and the update in their own order: ``FUSED_TOLERANCE``); the state is the same, so a
checkpoint saved on one path loads on the other. No compiler is involved: nothing to build at run time.
"""

import torch
from torch import Tensor

from regkit.optim._functional import decoupled_decay_, device_dtype_buckets, schedule_corrected_decay

# How far one fused step may land from the foreach step (relative, absolute): a few ulps of the dtype.
FUSED_TOLERANCE = {
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float64: dict(rtol=1e-12, atol=1e-14),
    torch.bfloat16: dict(rtol=2e-2, atol=1e-2),
}


def step_tensors(steps: list[float], device: torch.device) -> list[Tensor]:
    """The kernels' ``state_steps``: each count as a float32 tensor on ``device`` (one tensor per distinct count).

    regkit keeps its counters on the CPU (read without a device sync) and has already counted this step;
    ``torch.full`` fills on the device (``torch.tensor(s, device="cuda")`` would copy and wait for it).
    """
    made = {s: torch.full((), s, dtype=torch.float32, device=device) for s in set(steps)}
    return [made[s] for s in steps]


def sgd_fusable(params: list[Tensor]) -> bool:
    """True when torch's fused SGD kernel is accurate for every tensor: float32 or float64."""
    return all(p.dtype in (torch.float32, torch.float64) for p in params)


def fused_adam_(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    steps: list[float],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    amsgrad: bool,
    maximize: bool,
    corrected: bool = False,
    lr_max: float | None = None,
) -> None:
    """`regkit.optim.adam.adam` (without ``cautious``) in torch's fused Adam/AdamW kernel."""
    if corrected:
        weight_decay = schedule_corrected_decay(lr, weight_decay, lr_max)
    kernel = torch._fused_adamw_ if decoupled_weight_decay else torch._fused_adam_
    buckets = device_dtype_buckets(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, foreach=True)
    for p, g, m, v, v_max, counts in buckets:
        kernel(
            p, g, m, v, v_max, step_tensors(counts, p[0].device), amsgrad=amsgrad, lr=lr, beta1=beta1, beta2=beta2,
            weight_decay=weight_decay, eps=eps, maximize=maximize, grad_scale=None, found_inf=None,
        )  # fmt: skip


def fused_sgd_(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    first_steps: list[bool],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
    corrected: bool = False,
    lr_max: float | None = None,
) -> None:
    """`regkit.optim.sgd.sgd` (without ``cautious``) in torch's fused SGD kernel; decoupled decay first."""
    if weight_decay != 0 and decoupled_weight_decay:
        decoupled_decay_(params, [], lr, weight_decay, corrected=corrected, cautious=False, lr_max=lr_max,
                         foreach=True)  # fmt: skip
        weight_decay = 0.0
    for p, g, bufs, first in device_dtype_buckets(params, grads, momentum_buffers, first_steps, foreach=True):
        # the kernel takes one is_first_step for all its tensors: fresh and running buffers in two calls
        for fresh in {bool(f) for f in first} or {False}:
            index = [i for i in range(len(p)) if not first or bool(first[i]) == fresh]
            torch._fused_sgd_(
                [p[i] for i in index], [g[i] for i in index], [bufs[i] for i in index] if bufs else [],
                weight_decay=weight_decay, momentum=momentum, lr=lr, dampening=dampening, nesterov=nesterov,
                maximize=maximize, is_first_step=fresh, grad_scale=None, found_inf=None,
            )  # fmt: skip
