"""The measures ``R(w)`` that constrained parameter regularization (CPR) bounds, and the step along ``grad R``.

Each measure is evaluated on a whole tensor and returns a 0-dim tensor, in float32 for
float16/bfloat16 tensors (their sums would round away) and in the tensor's dtype otherwise:

=========  ==============================================  ======================================
measure    ``R(w)``                                        ``grad R(w)``
=========  ==============================================  ======================================
``l2``     ``sum w^2``                                     ``2 w``
``l1``     ``sum |w|``                                     ``sign(w)`` (taken as a proximal step)
``std``    ``sqrt(sum (w - mean)^2 / (n - 1))``            ``(w - mean) / ((n - 1) std)``
``huber``  ``sum 0.5 w^2 if |w| < 1 else |w| - 0.5``       ``clamp(w, -1, 1)``
=========  ==============================================  ======================================

`descend_` moves ``w <- w - c * lambda * grad R(w)`` with one multiplier ``lambda`` per tensor
(a 0-dim float32 device tensor) and a host float ``c``. Two edge cases are defined so that
nothing becomes NaN:

- ``std`` of a one-element or constant tensor is 0 and its gradient is taken as 0 (``std`` is
  not differentiable there; any subgradient would do).
- ``l1``: a plain ``sign(w)`` step of size ``t = c * lambda`` overshoots every coordinate with
  ``|w| < t`` to the other side of zero, where the next step pushes it back: the coordinates
  oscillate with amplitude ``~t``, ``R`` stays above the bound, ``lambda`` keeps growing and the
  run diverges (pytorch-cpr 0.3.1's single-tensor path). The step here is the proximal step of
  ``t |w|`` (soft thresholding), ``w <- sign(w) max(|w| - t, 0) = w - clamp(w, -t, t)``: it equals
  the ``sign(w)`` step wherever ``|w| >= t`` and stops at zero otherwise.

Both execution paths share one definition: ``foreach=True`` uses ``torch._foreach_*`` ops on a
list of tensors of one device and dtype, ``foreach=False`` the same ops tensor by tensor.
Reductions without a foreach form (``std``, ``huber``'s sum) run per tensor on both paths. No
function reads a tensor value on the host.
"""

from __future__ import annotations

import torch
from torch import Tensor

from regkit.optim._functional import device_dtype_buckets, each

MEASURES = ("l2", "l1", "std", "huber")


def reduction_dtype(tensor: Tensor) -> torch.dtype:
    """float32 for half-precision tensors, else the tensor's own dtype: the dtype of ``R(w)``."""
    return torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.dtype


def norms(params: list[Tensor], order: float, *, foreach: bool) -> list[Tensor]:
    """``||w||_order`` of each tensor as a 0-dim tensor in `reduction_dtype` (one ``_foreach_norm`` call)."""
    if foreach:  # one device and dtype per call (see device_dtype_buckets)
        return list(torch._foreach_norm(params, order, dtype=reduction_dtype(params[0])))
    return [torch.linalg.vector_norm(p, order, dtype=reduction_dtype(p)) for p in params]


def joint_norm(tensors: list[Tensor], *, foreach: bool) -> Tensor:
    """``sqrt(sum_i ||w_i||^2)``, the L2 norm of all tensors concatenated: a 0-dim tensor on the first
    tensor's device, float64 if any tensor is float64 else float32. No host synchronisation."""
    parts = [n for (bucket,) in device_dtype_buckets(tensors, foreach=foreach) for n in norms(bucket, 2, foreach=foreach)]
    dtype = torch.float64 if any(n.dtype == torch.float64 for n in parts) else torch.float32
    return torch.linalg.vector_norm(torch.stack([n.to(tensors[0].device, dtype) for n in parts]))


def _std_mean(p: Tensor) -> tuple[Tensor, Tensor]:
    """Unbiased std and mean of all entries; std 0 for a one-element tensor (instead of NaN)."""
    x = p if reduction_dtype(p) == p.dtype else p.to(reduction_dtype(p))
    return torch.std_mean(x, correction=1 if p.numel() > 1 else 0)


def _huber(p: Tensor) -> Tensor:
    x = p if reduction_dtype(p) == p.dtype else p.to(reduction_dtype(p))
    a = x.abs()
    return torch.where(a < 1, 0.5 * x.square(), a - 0.5).sum()


def evaluate(measure: str, params: list[Tensor], *, foreach: bool) -> tuple[list[Tensor], list[Tensor] | None]:
    """``(R, aux)``: ``R(w)`` per tensor, and what `descend_` needs besides ``w``.

    ``aux``: the L2 norms for ``l2`` (``R = ||w||^2``; the inflection-point detector reuses
    them), ``None`` for ``l1`` and ``huber``, and for ``std`` the means followed by the
    coefficients ``1 / ((n - 1) std)`` (0 where ``std == 0``).
    """
    if measure == "l2":
        lengths = norms(params, 2, foreach=foreach)
        return each("mul", lengths, lengths, foreach=foreach), lengths
    if measure == "l1":
        return norms(params, 1, foreach=foreach), None
    if measure == "huber":
        return [_huber(p) for p in params], None
    if measure == "std":
        stds, means = zip(*(_std_mean(p) for p in params), strict=True)
        coefficients = [
            torch.where(s > 0, 1 / (max(p.numel() - 1, 1) * s), 0.0) for s, p in zip(stds, params, strict=True)
        ]
        return list(stds), list(means) + coefficients
    raise ValueError(f"reg_function must be one of {MEASURES}, got {measure!r}")


def descend_(
    measure: str,
    params: list[Tensor],
    multipliers: list[Tensor],
    step_size: float,
    aux: list[Tensor] | None,
    *,
    foreach: bool,
) -> None:
    """``w <- w - step_size * lambda * grad R(w)`` in place, ``aux`` from `evaluate` on the same ``w``.

    ``l1`` takes the proximal (soft-thresholding) step described in the module docstring.
    """
    if measure == "l2":  # grad = 2 w
        each("addcmul_", params, params, multipliers, value=-2 * step_size, foreach=foreach)
    elif measure == "huber":  # grad = clamp(w, -1, 1)
        directions = each("clamp_min", params, -1.0, foreach=foreach)
        each("clamp_max_", directions, 1.0, foreach=foreach)
        each("addcmul_", params, directions, multipliers, value=-step_size, foreach=foreach)
    elif measure == "std":  # grad = (w - mean) * coefficient
        n = len(params)
        means, coefficients = aux[:n], aux[n:]
        centred = each("sub", params, means, foreach=foreach)
        scales = each("mul", multipliers, coefficients, foreach=foreach)
        each("addcmul_", params, centred, scales, value=-step_size, foreach=foreach)
    elif measure == "l1":  # prox of t |w|: w - clamp(w, -t, t), t = step_size * lambda
        thresholds = each("mul", multipliers, step_size, foreach=foreach)
        negated = each("neg", thresholds, foreach=foreach)
        shrink = each("clamp_min", params, negated, foreach=foreach)
        each("clamp_max_", shrink, thresholds, foreach=foreach)
        each("sub_", params, shrink, foreach=foreach)
    else:
        raise ValueError(f"reg_function must be one of {MEASURES}, got {measure!r}")
