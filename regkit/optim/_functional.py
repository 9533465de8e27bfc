"""Tensor-list primitives shared by every regkit optimizer.

Each primitive takes parallel lists of tensors (one entry per parameter) and has one
definition of the math that runs on two paths, chosen by ``foreach``:

- ``foreach=True``: one ``torch._foreach_*`` call per operation over the whole list (one
  kernel launch per operation on CUDA; the lists must share a device and dtype, see
  `device_dtype_buckets`);
- ``foreach=False``: a for-loop over the tensors, the readable reference.

`each` is that switch. Conventions: a name ending in ``_`` updates its first list in place
and returns it; other primitives return new tensors, so ``p.grad`` is never written. No
primitive reads a tensor value on the host (no ``.item()``, no Python ``if`` on a tensor):
an optimizer's functional update built from them compiles with
``torch.compile(update, fullgraph=True)``. Per-parameter host scalars (Adam's bias
corrections) are Python floats that the optimizer's ``step`` derives from its CPU step
counters and passes in.

Weight decay follows torch.optim's conventions: coupled L2 adds ``wd * w`` to a copy of the
gradient before the moments (`add_l2`); decoupled decay multiplies the weights by
``1 - lr * wd`` with the scheduled ``lr`` (`decay_weights_`; Loshchilov & Hutter scale by a
schedule multiplier instead of ``lr``).
"""

from collections.abc import Sequence

import torch
from torch import Tensor


def each(op: str, *args, foreach: bool, **kwargs) -> list[Tensor]:
    """Apply ``Tensor.<op>`` to every tensor of the list arguments.

    List arguments are zipped (a list of floats gives each tensor its own scalar), other
    arguments are shared. ``foreach=True`` makes one ``torch._foreach_<op>`` call; the
    for-loop path calls ``Tensor.<op>`` per tensor. In-place ops (``op`` ending in ``_``)
    return the first list, the others a new list. Example: ``each("mul_", params, 0.5,
    foreach=True)`` halves every parameter.
    """
    if foreach:
        if isinstance(kwargs.get("value"), (list, tuple)):
            args = (*args, kwargs.pop("value"))  # torch's foreach ops take per-tensor values positionally
        out = getattr(torch, f"_foreach_{op}")(*args, **kwargs)
    else:
        method, n = getattr(Tensor, op), len(args[0])
        columns = [a if isinstance(a, (list, tuple)) else [a] * n for a in args]
        per_tensor = {k: v for k, v in kwargs.items() if isinstance(v, (list, tuple))}
        if per_tensor:
            shared = {k: v for k, v in kwargs.items() if k not in per_tensor}
            out = [
                method(*row, **shared, **{k: v[i] for k, v in per_tensor.items()})
                for i, row in enumerate(zip(*columns, strict=True))
            ]
        else:
            out = [method(*row, **kwargs) for row in zip(*columns, strict=True)]
    return args[0] if op.endswith("_") else list(out)


def device_dtype_buckets(*lists: Sequence, foreach: bool) -> list[tuple[list, ...]]:
    """Split parallel lists by the (device, dtype) of the first list's tensors.

    ``torch._foreach_*`` ops need one device and dtype per call. Returns one tuple of
    sublists per bucket, in order of first appearance; an empty list (an unused buffer
    list) stays empty in every bucket. With ``foreach=False`` (or a single bucket) the
    lists come back unchanged.
    """
    keys = [(t.device, t.dtype) for t in lists[0]]
    if not foreach or all(key == keys[0] for key in keys):
        return [tuple(lists)]
    buckets: dict = {}
    for i, key in enumerate(keys):
        buckets.setdefault(key, []).append(i)
    return [tuple([seq[i] for i in idx] if len(seq) else [] for seq in lists) for idx in buckets.values()]


def descent_grads(grads: list[Tensor], *, maximize: bool, foreach: bool) -> list[Tensor]:
    """The gradient to descend along: ``g``, or ``-g`` (a copy) when ``maximize``."""
    return each("neg", grads, foreach=foreach) if maximize else grads


def add_l2(grads: list[Tensor], params: list[Tensor], weight_decay: float, *, foreach: bool) -> list[Tensor]:
    """Coupled L2: ``g + wd * w`` in new tensors (``grads`` untouched). The gradient of ``wd/2 ||w||^2``."""
    return each("add", grads, params, alpha=weight_decay, foreach=foreach)


def decay_weights_(params: list[Tensor], lr: float, weight_decay: float, *, foreach: bool) -> list[Tensor]:
    """Decoupled weight decay ``w <- w * (1 - lr * wd)`` (torch's convention: scaled by the scheduled lr)."""
    return each("mul_", params, 1 - lr * weight_decay, foreach=foreach)


def schedule_corrected_decay(lr: float, weight_decay: float, lr_max: float) -> float:
    """AdamC's decay coefficient ``wd * lr / lr_max``: the decay follows the lr schedule (a host float).

    Decoupled decay then multiplies by ``1 - lr * wd * lr / lr_max``, so the ratio ``wd_t / lr_t``
    that sets the equilibrium of normalized layers stays ``wd / lr_max`` while the lr decays
    (Defazio, "Why Gradients Rapidly Increase Near the End of Training", 2025).
    """
    return weight_decay * lr / lr_max


def cautious_decay_weights_(
    params: list[Tensor], directions: list[Tensor], lr: float, weight_decay: float, *, foreach: bool
) -> list[Tensor]:
    """Cautious decoupled decay ``w <- w - lr * wd * 1[u * w >= 0] * w`` (Chen et al., arXiv:2510.12402, 2025).

    ``directions``: the optimizer's update ``u`` (the step is ``w <- w - lr * u``), or any tensor
    with its signs (Adam's ``m``). Only coordinates that the update already moves towards zero
    (``u`` and ``w`` of the same sign, or a zero) are decayed. The mask ``1[u w >= 0]`` is built
    without a host sync, as ``min(sign(u w) + 1, 1)``, on both paths.
    """
    factors = each("mul", directions, params, foreach=foreach)
    each("sign_", factors, foreach=foreach)
    each("add_", factors, 1.0, foreach=foreach)
    each("clamp_max_", factors, 1.0, foreach=foreach)  # the mask: 1 where u w >= 0, else 0
    each("mul_", factors, -lr * weight_decay, foreach=foreach)
    each("add_", factors, 1.0, foreach=foreach)  # 1 - lr wd mask
    return each("mul_", params, factors, foreach=foreach)


def decoupled_decay_(
    params: list[Tensor],
    directions: list[Tensor],
    lr: float,
    weight_decay: float,
    *,
    corrected: bool,
    cautious: bool,
    lr_max: float | None,
    foreach: bool,
) -> list[Tensor]:
    """The decoupled decay step of SGDW/AdamW with its two options.

    ``w <- w * (1 - lr * wd_t * mask)`` with ``wd_t = wd * lr / lr_max`` when ``corrected``
    (`schedule_corrected_decay`), else ``wd``; ``mask = 1[u * w >= 0]`` when ``cautious``
    (`cautious_decay_weights_`, ``directions`` = the update ``u`` or a tensor with its signs),
    else 1. With both off this is `decay_weights_`, torch's AdamW/SGDW line.
    """
    if corrected:
        weight_decay = schedule_corrected_decay(lr, weight_decay, lr_max)
    if cautious:
        return cautious_decay_weights_(params, directions, lr, weight_decay, foreach=foreach)
    return decay_weights_(params, lr, weight_decay, foreach=foreach)


def momentum_update_(
    buffers: list[Tensor],
    grads: list[Tensor],
    momentum: float,
    dampening: float,
    first_steps: list[bool],
    *,
    foreach: bool,
) -> list[Tensor]:
    """Heavy-ball buffer ``b <- momentum * b + (1 - dampening) * g``; ``b <- g`` on a buffer's first step.

    The first-step copy (no dampening) is torch.optim.SGD's convention; ``first_steps[i]``
    says whether ``buffers[i]`` is fresh (its content is then ignored). To start from
    zeros instead (SGDP), pass zero buffers and all ``False``.
    """
    if any(first_steps):
        fresh = [i for i, first in enumerate(first_steps) if first]
        each("copy_", [buffers[i] for i in fresh], [grads[i] for i in fresh], foreach=foreach)
        old = [i for i, first in enumerate(first_steps) if not first]
        if not old:
            return buffers
        buffers_old, grads_old = [buffers[i] for i in old], [grads[i] for i in old]
    else:
        buffers_old, grads_old = buffers, grads
    each("mul_", buffers_old, momentum, foreach=foreach)
    each("add_", buffers_old, grads_old, alpha=1 - dampening, foreach=foreach)
    return buffers


def nesterov_direction(
    grads: list[Tensor], buffers: list[Tensor], momentum: float, *, foreach: bool
) -> list[Tensor]:
    """Nesterov's look-ahead direction ``g + momentum * b`` in new tensors (torch.optim.SGD's form)."""
    return each("add", grads, buffers, alpha=momentum, foreach=foreach)


def adam_moments_(
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    grads: list[Tensor],
    beta1: float,
    beta2: float,
    *,
    foreach: bool,
) -> None:
    """Adam's moments ``m <- beta1 m + (1 - beta1) g`` (as ``lerp``), ``v <- beta2 v + (1 - beta2) g^2``."""
    each("lerp_", exp_avgs, grads, 1 - beta1, foreach=foreach)
    each("mul_", exp_avg_sqs, beta2, foreach=foreach)
    each("addcmul_", exp_avg_sqs, grads, grads, value=1 - beta2, foreach=foreach)


def amsgrad_max_(max_exp_avg_sqs: list[Tensor], exp_avg_sqs: list[Tensor], *, foreach: bool) -> list[Tensor]:
    """AMSGrad's running maximum ``v_max <- max(v_max, v)``; returns ``v_max`` (Reddi et al., ICLR 2018)."""
    if foreach:
        torch._foreach_maximum_(max_exp_avg_sqs, exp_avg_sqs)
    else:
        for v_max, v in zip(max_exp_avg_sqs, exp_avg_sqs, strict=True):
            torch.maximum(v_max, v, out=v_max)
    return max_exp_avg_sqs


def adam_bias_corrections(steps: list[float], beta1: float, beta2: float) -> tuple[list[float], list[float]]:
    """Host-side ``(1 - beta1^t, sqrt(1 - beta2^t))`` per parameter, ``t`` its step count (from 1)."""
    return [1 - beta1**t for t in steps], [(1 - beta2**t) ** 0.5 for t in steps]


def adam_denominator(
    exp_avg_sqs: list[Tensor], bias_correction2_sqrt: list[float], eps: float, *, foreach: bool
) -> list[Tensor]:
    """``sqrt(v) / sqrt(1 - beta2^t) + eps`` in new tensors: Adam's per-coordinate scale ``sqrt(v_hat) + eps``."""
    denominators = each("sqrt", exp_avg_sqs, foreach=foreach)
    each("div_", denominators, bias_correction2_sqrt, foreach=foreach)
    return each("add_", denominators, eps, foreach=foreach)


def adam_step_(
    params: list[Tensor],
    exp_avgs: list[Tensor],
    denominators: list[Tensor],
    lr: float,
    bias_correction1: list[float],
    *,
    foreach: bool,
) -> list[Tensor]:
    """``w <- w - lr / (1 - beta1^t) * m / denominator``, the bias-corrected Adam direction ``m_hat / (sqrt(v_hat) + eps)``."""
    step_sizes = [(lr / bc) * -1 for bc in bias_correction1]
    return each("addcdiv_", params, exp_avgs, denominators, value=step_sizes, foreach=foreach)
