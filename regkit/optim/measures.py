"""The measures ``R(w)`` that constrained parameter regularization (CPR) bounds, and the step along ``grad R``.

Each measure is evaluated on a whole tensor and returns a 0-dim tensor, in float32 for
float16/bfloat16 tensors (their sums would round away) and in the tensor's dtype otherwise:

=========  ==============================================  ======================================
measure    ``R(w)``                                        ``grad R(w)``
=========  ==============================================  ======================================
``l2``     ``sum w^2``                                     ``2 w``
``l1``     ``sum |w|``                                     ``sign(w)`` (taken as a proximal step)
``std``    ``sqrt(sum (w - mean)^2 / (n - 1))``            ``(w - mean) / ((n - 1) std)``
``huber``  ``sum 0.5 w^2 if |w| < 1 else |w| - 0.5``       ``d = clamp(w, -1, 1)``
=========  ==============================================  ======================================

`descend_` moves ``w <- w - c * lambda * grad R(w)`` with one multiplier ``lambda`` per tensor
(a 0-dim float32 device tensor) and a host float ``c``. Two edge cases are defined so that
nothing becomes NaN:

- ``std`` of a one-element or constant tensor is 0 and its gradient is taken as 0 (``std`` is
  not differentiable there; any subgradient would do). A step longer than the distance to the
  mean stops there (``w <- mean``) instead of flipping ``w - mean``: the proximal step of
  ``std``, equal to the gradient step otherwise. Near-constant tensors (a spread of rounding
  noise) therefore cannot be thrown around by a large multiplier.
- ``l1``: a plain ``sign(w)`` step of size ``t = c * lambda`` overshoots every coordinate with
  ``|w| < t`` to the other side of zero, where the next step pushes it back: the coordinates
  oscillate with amplitude ``~t``, ``R`` stays above the bound, ``lambda`` keeps growing and the
  run diverges (pytorch-cpr 0.3.1's single-tensor path). The step here is the proximal step of
  ``t |w|`` (soft thresholding), ``w <- sign(w) max(|w| - t, 0) = w - clamp(w, -t, t)``: it equals
  the ``sign(w)`` step wherever ``|w| >= t`` and stops at zero otherwise.

``l2`` and ``huber`` take the plain gradient step, as pytorch-cpr does: it shrinks ``w`` by the
factor ``1 - 2 c lambda`` (``l2``), so it is stable while ``c lambda < 1/2`` (``huber``: ``< 1``);
``kappa_update`` sets how fast ``lambda`` can grow.

Both execution paths share one definition: ``foreach=True`` uses ``torch._foreach_*`` ops on a
list of tensors of one device and dtype, ``foreach=False`` the same ops tensor by tensor.
Reductions without a foreach form (``std``, ``huber``'s sum) run per tensor on both paths. No
function reads a tensor value on the host.
"""

from __future__ import annotations

import torch
from torch import Tensor

from regkit.optim import cpu_kernels
from regkit.optim._functional import device_dtype_buckets, each

MEASURES = ("l2", "l1", "std", "huber")


def reduction_dtype(tensor: Tensor) -> torch.dtype:
    """float32 for half-precision tensors, else the tensor's own dtype: the dtype of ``R(w)``."""
    return torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.dtype


def norms(params: list[Tensor], order: float, *, foreach: bool) -> list[Tensor]:
    """``||w||_order`` of each tensor as a 0-dim tensor in `reduction_dtype` (one ``_foreach_norm`` call).

    On the CPU the 1-norm is ``abs().sum()`` on both paths (twice as fast as torch's 1-norm there).
    """
    if order == 1 and not params[0].is_cuda:
        return [p.abs().sum(dtype=reduction_dtype(p)) for p in params]
    if foreach:  # one device and dtype per call (see device_dtype_buckets)
        return list(torch._foreach_norm(params, order, dtype=reduction_dtype(params[0])))
    return [torch.linalg.vector_norm(p, order, dtype=reduction_dtype(p)) for p in params]


def joint_norm(tensors: list[Tensor], *, foreach: bool) -> Tensor:
    """``sqrt(sum_i ||w_i||^2)``, the L2 norm of all tensors concatenated: a 0-dim tensor on the first
    tensor's device, float64 if any tensor is float64 else float32. No host synchronisation."""
    parts = [n for (bucket,) in device_dtype_buckets(tensors, foreach=foreach) for n in norms(bucket, 2, foreach=foreach)]
    dtype = torch.float64 if any(n.dtype == torch.float64 for n in parts) else torch.float32
    return torch.linalg.vector_norm(torch.stack([n.to(tensors[0].device, dtype) for n in parts]))


def _clamp(params: list[Tensor], low, high, *, foreach: bool) -> list[Tensor]:
    """``clamp(w, low, high)`` in new tensors; bounds are floats or lists of 0-dim tensors.

    foreach has no two-sided clamp, and a CPU ``clamp`` with tensor bounds is several times
    slower than ``clamp_min`` then ``clamp_max_``: only float bounds on the for-loop path use it.
    """
    if not foreach and not isinstance(low, (list, tuple)):
        return [p.clamp(low, high) for p in params]
    clamped = each("clamp_min", params, low, foreach=foreach)
    return each("clamp_max_", clamped, high, foreach=foreach)


def _in_reduction_dtype(params: list[Tensor]) -> list[Tensor]:
    return [p if reduction_dtype(p) == p.dtype else p.to(reduction_dtype(p)) for p in params]


def evaluate(measure: str, params: list[Tensor], *, foreach: bool) -> tuple[list[Tensor], list[Tensor] | None]:
    """``(R, aux)``: ``R(w)`` per tensor, and what `descend_` needs besides ``w``.

    ``aux``: the L2 norms for ``l2`` (``R = ||w||^2``; the inflection-point detector reuses
    them), nothing for ``l1``, the directions ``d = clamp(w, -1, 1)`` for ``huber`` (``R =
    ||d||^2 / 2 + ||w - d||_1``), and for ``std`` the centred tensors ``w - mean`` followed by
    the coefficients ``1 / ((n - 1) std)`` (0 where ``std == 0``), with ``std = ||w - mean|| /
    sqrt(n - 1)`` (two passes; ``std = 0`` for one element).
    """
    if measure == "l2":
        lengths = norms(params, 2, foreach=foreach)
        return each("mul", lengths, lengths, foreach=foreach), lengths
    if measure == "l1":
        return norms(params, 1, foreach=foreach), None
    if measure == "huber":
        directions = _clamp(params, -1.0, 1.0, foreach=foreach)
        squares = norms(directions, 2, foreach=foreach)
        each("mul_", squares, squares, foreach=foreach)
        values = norms(each("sub", params, directions, foreach=foreach), 1, foreach=foreach)
        return each("add_", values, squares, alpha=0.5, foreach=foreach), directions
    if measure == "std":
        x = _in_reduction_dtype(params)
        centred = each("sub", x, [t.mean() for t in x], foreach=foreach)  # a mean per tensor on both paths
        dof = [max(p.numel() - 1, 1) for p in params]
        stds = each("div_", norms(centred, 2, foreach=foreach), [d**0.5 for d in dof], foreach=foreach)
        coefficients = [torch.where(s > 0, 1 / (d * s), 0.0) for s, d in zip(stds, dof, strict=True)]
        return stds, centred + coefficients
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
        each("addcmul_", params, aux, multipliers, value=-step_size, foreach=foreach)
    elif measure == "std":  # grad = (w - mean) * coefficient; stop at the mean (std 0), never beyond
        n = len(params)
        centred, coefficients = aux[:n], aux[n:]
        scales = each("mul", multipliers, coefficients, foreach=foreach)
        if step_size > 0:
            each("clamp_max_", scales, 1 / step_size, foreach=foreach)
        each("addcmul_", params, centred, scales, value=-step_size, foreach=foreach)
    elif measure == "l1":  # prox of t |w|: w - clamp(w, -t, t), t = step_size * lambda
        thresholds = each("mul", multipliers, step_size, foreach=foreach)
        each("sub_", params, _clamp(params, each("neg", thresholds, foreach=foreach), thresholds, foreach=foreach),
             foreach=foreach)  # fmt: skip
    else:
        raise ValueError(f"reg_function must be one of {MEASURES}, got {measure!r}")


KERNEL_MODES = {"l2": 0, "l1": 1, "std": 2, "huber": 3}
"""The ``mode`` of `regkit.optim.cpu_kernels.descend_` that takes each measure's step."""


def _spread(row: list[float], n: int) -> tuple[float, float]:
    """``(mean, std)`` of a tensor from its row of sums (unbiased std, 0 for one element; see `evaluate`)."""
    mean, centred = cpu_kernels.spread(row, n)
    return mean, (centred / max(n - 1, 1)) ** 0.5


def from_sums(measure: str, rows: list[list[float]], params: list[Tensor]) -> list[Tensor]:
    """``R(w)`` per tensor, as `evaluate` gives it, from the kernels' sums of each tensor (`cpu_kernels.COLUMNS`)."""
    if measure == "std":
        values = [_spread(row, p.numel())[1] for row, p in zip(rows, params, strict=True)]
    elif measure in KERNEL_MODES:
        column = cpu_kernels.COLUMNS[{"l2": "squares", "l1": "absolute", "huber": "huber"}[measure]]
        values = [row[column] for row in rows]
    else:
        raise ValueError(f"reg_function must be one of {MEASURES}, got {measure!r}")
    return list(torch.tensor(values, dtype=reduction_dtype(params[0])).unbind())


def lengths_from_sums(rows: list[list[float]], params: list[Tensor]) -> list[Tensor]:
    """``||w||`` per tensor from the kernels' sums (the inflection-point detector's input)."""
    squares = [row[cpu_kernels.COLUMNS["squares"]] for row in rows]
    return list(torch.tensor(squares, dtype=reduction_dtype(params[0])).sqrt_().unbind())


def descend_by_kernel_(
    measure: str, params: list[Tensor], multipliers: list[Tensor], step_size: float, rows: list[list[float]]
) -> None:
    """`descend_` in one kernel pass per tensor, ``rows`` the kernels' sums of the same ``w`` (CPU tensors only).

    The multipliers are read on the host (a CPU tensor waits for no device), and tensors with ``lambda = 0``
    (the bound not reached, or not set yet) are skipped: their step is the identity. Each measure's step becomes
    the kernel's ``(a, b)``: l2 ``w *= 1 - 2 c lambda``; l1 and huber ``t = c lambda``; std
    ``w <- (1 - c s) w + c s mean`` with ``s = min(lambda / ((n - 1) std), 1 / c)`` (0 where ``std = 0``).
    """
    lams = torch.stack(multipliers).tolist()
    active = [i for i, lam in enumerate(lams) if lam != 0]  # lambda = 0 leaves w as it is: no pass (NaN != 0 runs)
    if len(active) < len(lams):
        if not active:
            return
        params, rows = [params[i] for i in active], [rows[i] for i in active]
        multipliers, lams = [multipliers[i] for i in active], [lams[i] for i in active]
    if measure == "l2":
        a, b = [1 - 2 * step_size * lam for lam in lams], [0.0] * len(lams)
    elif measure == "huber":
        a, b = [step_size * lam for lam in lams], [0.0] * len(lams)
    elif measure == "l1":  # the threshold in the multipliers' dtype, as `descend_` computes it
        a, b = torch.stack(multipliers).mul(step_size).tolist(), [0.0] * len(lams)
    elif measure == "std":
        a, b = [], []
        for lam, row, p in zip(lams, rows, params, strict=True):
            mean, std = _spread(row, p.numel())
            scale = lam / (max(p.numel() - 1, 1) * std) if std > 0 else 0.0
            if step_size > 0:
                scale = min(scale, 1 / step_size)
            a.append(1 - step_size * scale)
            b.append(step_size * scale * mean)
    else:
        raise ValueError(f"reg_function must be one of {MEASURES}, got {measure!r}")
    cpu_kernels.descend_(params, KERNEL_MODES[measure], a, b)
