"""AdamP and SGDP: Adam and SGD without the radial update of scale-invariant weights (Heo et al., ICLR 2021).

A weight ``w`` feeding a normalisation layer is scale-invariant, ``f(c w) = f(w)``: its
gradient is orthogonal to it, and any update component along ``w`` only changes its norm,
which shrinks the effective step ``lr / ||w||^2``. Momentum accumulates such components (the
buffer holds past gradients, orthogonal to past weights, not to the current one), so the norm
grows fast. AdamP and SGDP detect scale-invariant tensors from the gradient and remove the
radial part of their update; both share the projection code below.

Detection, per tensor with ``ndim > 1``, for a view with rows ``w_i``, ``g_i`` of length ``d``::

    cos_i = |<g_i, w_i>| / (max(||g_i||, eps) * max(||w_i||, eps))
    invariant in the view  <=>  max_i cos_i < delta / sqrt(d)

tried in the channel view (rows = slices along ``channel_dim``) first, then the layer view
(one row: the whole tensor), else none. Projection of the update ``u`` in the chosen view::

    u_i <- u_i - c_i w_i,   c_i = <w_i, u_i> / (||w_i|| + eps)^2     (the official code's w_hat = w / (||w|| + eps))

and the tensor's weight decay is multiplied by ``wd_ratio``. Everything is computed on the
device (no host synchronisation): row statistics per tensor, then one padded
``(tensors, rows)`` table for the tests, selected with ``torch.where`` masks. Since
``w - s (u - c w) = (1 + s c) w - s u``, the projection of the step is folded into the
per-row decay factor ``1 - lr * wd * ratio + s c``; the optimizers then multiply the weights
by that factor (one ``_foreach_mul_`` with a list of tensors) and take their ordinary step,
built from the shared primitives of ``regkit.optim._functional``.

Differences from the official ``adamp`` package (0.3.0), whose arithmetic is otherwise
followed (float64 results agree to rounding): ``reshape``-free reductions, so
channels_last weights work; no host synchronisation per tensor; the statistics (and, for
AdamP, ``m / (sqrt(v) + eps)``) are computed in float32 for float16/bfloat16 weights, so an
exact-zero gradient entry gives no NaN (eps = 1e-8 rounds to 0 in float16); arguments are
validated; ``channel_dim=1`` handles ConvTranspose weights ``(in, out, kH, kW)``, whose
output channels are dim 1 (the package always uses dim 0, so a ConvTranspose -> BatchNorm
weight falls back to the coarser layer view there, which is also our default).
"""

import math

import torch
from torch import Tensor

from regkit._validate import check_betas, check_flag, check_number
from regkit.optim import cpu_kernels
from regkit.optim._base import FunctionalOptimizer
from regkit.optim._functional import (
    adam_bias_corrections,
    adam_denominator,
    adam_moments_,
    adam_step_,
    decay_weights_,
    device_dtype_buckets,
    each,
    momentum_update_,
    nesterov_direction,
)
from regkit.optim.adam import ADAM_STATE, adam_state

LOW_PRECISION = (torch.float16, torch.bfloat16)


def _statistics_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float16/bfloat16 tensors (their norms and eps underflow), else the tensors' own dtype."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def _on_device(values: list[float], like: Tensor) -> Tensor:
    """Host floats as a 1-D tensor on ``like``'s device and dtype, without a blocking host-to-device copy.

    On an accelerator the values are written into a fresh device tensor by one
    ``_foreach_add_`` of Python scalars (kernel arguments), so no host synchronisation occurs.
    """
    if like.device.type == "cpu":
        return torch.tensor(values, dtype=like.dtype)
    out = torch.zeros(len(values), dtype=like.dtype, device=like.device)
    torch._foreach_add_(list(out.unbind(0)), values)
    return out


def _row_statistics(
    params: list[Tensor],
    grads: list[Tensor],
    directions: list[Tensor],
    denominators: list[Tensor] | None,
    channel_dim: int,
) -> Tensor:
    """``(4, tensors, max rows)``: per row of each channel view ``<g_i, w_i>, ||g_i||, ||w_i||, <w_i, u_i>``, zero-padded.

    ``u = directions / denominators`` (``u = directions`` when ``denominators`` is None) is
    never materialised: one scratch buffer, the size of the largest tensor, holds ``g * w``
    and then ``w * u`` of each tensor in turn (fresh temporaries for every tensor cost more
    than the arithmetic on a CPU). Rows are slices along ``channel_dim``; reductions run over
    the other dims, so any memory layout (channels_last included) works without a copy.
    """
    dtype = _statistics_dtype(params[0].dtype)
    w, g, u = ([t.to(dtype) for t in ts] for ts in (params, grads, directions))  # no copy unless fp16/bf16
    rows = [p.shape[channel_dim] for p in w]
    table = w[0].new_zeros((4, len(w), max(rows)))
    flat = w[0].new_empty(max(p.numel() for p in w))
    for k, (g_k, w_k, u_k) in enumerate(zip(g, w, u, strict=True)):
        dims = [d for d in range(w_k.ndim) if d != channel_dim]
        gw, g_norm, w_norm, wu = table[:, k, : rows[k]]
        scratch = flat[: w_k.numel()].view(w_k.shape)
        torch.sum(torch.mul(g_k, w_k, out=scratch), dims, out=gw)
        torch.linalg.vector_norm(g_k, dim=dims, out=g_norm)
        torch.linalg.vector_norm(w_k, dim=dims, out=w_norm)
        torch.mul(w_k, u_k, out=scratch)
        if denominators is not None:
            scratch.div_(denominators[k])
        torch.sum(scratch, dims, out=wu)
    return table


def invariance_masks(
    statistics: Tensor, channel_thresholds: Tensor, layer_thresholds: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """The scale-invariance test: boolean ``(tensors,)`` masks, scale-invariant in the channel view; else in the
    layer view. ``statistics``: the ``(4, tensors, rows)`` table ``<g_i, w_i>, ||g_i||, ||w_i||, <w_i, u_i>``
    per row of each tensor's channel view, zero-padded; thresholds ``delta / sqrt(d)`` per tensor (see `AdamP`).

    Padded rows have ``<g, w> = 0`` and so cosine 0: they never decide a maximum. The cosine
    divides by each clamped norm in turn (no ``eps^2`` that could underflow).
    """
    gw, g_norm, w_norm, _ = statistics
    cosine = gw.abs() / g_norm.clamp_min(eps) / w_norm.clamp_min(eps)
    channel = cosine.amax(dim=1) < channel_thresholds
    g_layer, w_layer = torch.linalg.vector_norm(g_norm, dim=1), torch.linalg.vector_norm(w_norm, dim=1)
    layer_cosine = gw.sum(1).abs() / g_layer.clamp_min(eps) / w_layer.clamp_min(eps)
    return channel, ~channel & (layer_cosine < layer_thresholds)


def _thresholds(params: list[Tensor], delta: float, channel_dim: int) -> tuple[list[float], list[float]]:
    """Host-side ``delta / sqrt(d)`` per tensor for the channel view (``d = numel / rows``) and the layer view."""
    channel = [delta / math.sqrt(p.numel() // p.shape[channel_dim]) for p in params]
    return channel, [delta / math.sqrt(p.numel()) for p in params]


def tested_indices(params: list[Tensor]) -> list[int]:
    """Indices of the tensors the scale-invariance test applies to: ``ndim > 1`` (and not empty)."""
    return [i for i, p in enumerate(params) if p.ndim > 1 and p.numel() > 0]


def _row_views(table: Tensor, params: list[Tensor], channel_dim: int) -> list[Tensor]:
    """Row ``k`` of a ``(tensors, max rows)`` table as a view broadcastable against ``params[k]``."""
    views = []
    for k, p in enumerate(params):
        shape = [1] * p.ndim
        shape[channel_dim] = p.shape[channel_dim]
        views.append(table[k, : p.shape[channel_dim]].reshape(shape))
    return views


def scale_invariant_factors(
    params: list[Tensor],
    grads: list[Tensor],
    directions: list[Tensor],
    step_sizes: list[float],
    *,
    denominators: list[Tensor] | None = None,
    keep: float,
    keep_projected: float,
    delta: float,
    eps: float,
    channel_dim: int,
) -> tuple[list[Tensor], list[Tensor]]:
    """Per-row decay factors and projection coefficients of tensors with ``ndim > 1`` (all on the device).

    ``u = directions`` (``directions / denominators`` when given: AdamP's ``m / den``). For the
    chosen view (channel, else layer, else none) ``c_i = <w_i, u_i> / (||w_i|| + eps)^2``
    (0 where nothing is projected), so ``Pi_w(u) = u - c w``, and::

        factor_i = keep_projected + s c_i   if the tensor is projected,   keep   otherwise

    with ``s = step_sizes[k]`` and ``keep = 1 - lr * wd`` (``keep_projected`` uses ``wd * wd_ratio``).
    Then ``factor * w - s u = keep' w - s Pi_w(u)``: a step ``w <- factor * w; w <- w - s u``
    decays and projects. Pass ``s = 0`` to get the plain masked decay and apply the
    coefficients yourself (SGDP's official mode projects its momentum buffer in place).
    Returns two lists of views broadcastable against the params (rows along ``channel_dim``).
    """
    statistics = _row_statistics(params, grads, directions, denominators, channel_dim)
    factors, coefficients = factor_tables(
        statistics, params, step_sizes, keep=keep, keep_projected=keep_projected, delta=delta, eps=eps,
        channel_dim=channel_dim,
    )  # fmt: skip
    return _row_views(factors, params, channel_dim), _row_views(coefficients, params, channel_dim)


def factor_tables(
    statistics: Tensor,
    params: list[Tensor],
    step_sizes: list[float],
    *,
    keep: float,
    keep_projected: float,
    delta: float,
    eps: float,
    channel_dim: int,
) -> tuple[Tensor, Tensor]:
    """`scale_invariant_factors` from the ``(4, tensors, rows)`` statistics table: ``(tensors, rows)`` tables of the
    factors and the projection coefficients (zero-padded rows)."""
    channel_thr, layer_thr = _thresholds(params, delta, channel_dim)
    constants = _on_device(channel_thr + layer_thr + list(step_sizes), statistics).view(3, -1)
    channel, layer = invariance_masks(statistics, constants[0], constants[1], eps)
    _, _, w_norm, wu = statistics
    channel_coef = wu / (w_norm + eps) / (w_norm + eps)
    w_layer = torch.linalg.vector_norm(w_norm, dim=1, keepdim=True)
    layer_coef = wu.sum(1, keepdim=True) / (w_layer + eps) / (w_layer + eps)
    coefficients = torch.where(channel[:, None], channel_coef, torch.where(layer[:, None], layer_coef, 0.0))
    projected = (channel | layer)[:, None]
    factors = torch.where(projected, keep_projected + constants[2][:, None] * coefficients, keep)
    return factors, coefficients


def invariant_views(
    params: list[Tensor], grads: list[Tensor], *, delta: float = 0.1, eps: float = 1e-8, channel_dim: int = 0
) -> list[str]:
    """The view in which AdamP/SGDP find each tensor scale-invariant: ``"channel"``, ``"layer"`` or ``"none"``.

    A diagnostic (it reads the answer on the host); tensors with ``ndim <= 1`` are ``"none"``.
    The optimizers make the same decision on the device inside ``step``.
    """
    tested = tested_indices(params)
    views = ["none"] * len(params)
    if tested:
        w = [params[i].detach() for i in tested]
        statistics = _row_statistics(w, [grads[i] for i in tested], w, None, channel_dim)
        channel_thr, layer_thr = _thresholds(w, delta, channel_dim)
        channel, layer = invariance_masks(
            statistics, torch.tensor(channel_thr).to(statistics), torch.tensor(layer_thr).to(statistics), eps
        )
        for i, is_channel, is_layer in zip(tested, channel.tolist(), layer.tolist(), strict=True):
            views[i] = "channel" if is_channel else "layer" if is_layer else "none"
    return views


def decay_and_project_(
    params: list[Tensor],
    grads: list[Tensor],
    directions: list[Tensor],
    step_sizes: list[float],
    *,
    denominators: list[Tensor] | None = None,
    lr: float,
    weight_decay: float,
    wd_ratio: float,
    delta: float,
    eps: float,
    channel_dim: int,
    project_directions: bool,
    foreach: bool,
) -> None:
    """Decoupled decay with the ``wd_ratio`` mask, and the projection of the coming step ``w <- w - s u``.

    ``u = directions`` (or ``directions / denominators``); ``s = step_sizes[i]``.
    Tensors with ``ndim <= 1``: ``w <- w * (1 - lr * wd)`` (`decay_weights_`). Others:
    ``w <- factor * w`` (`scale_invariant_factors`), which also projects the step
    ``w - s u`` the caller takes next, or, with ``project_directions``, the masked decay only
    while ``u <- u - c w`` edits the directions in place (the official SGDP's momentum buffer).
    """
    tested = tested_indices(params)
    others = sorted(set(range(len(params))) - set(tested))
    if weight_decay != 0 and others:
        decay_weights_([params[i] for i in others], lr, weight_decay, foreach=foreach)
    if not tested:
        return
    lists = [[ts[i] for i in tested] for ts in (params, grads, directions)]
    lists.append([] if denominators is None else [denominators[i] for i in tested])
    lists.append([0.0] * len(tested) if project_directions else [step_sizes[i] for i in tested])
    keep, keep_projected = 1 - lr * weight_decay, 1 - lr * (weight_decay * wd_ratio)
    for w, g, u, den, steps in device_dtype_buckets(*lists, foreach=True):  # one statistics table per dtype
        factors, coefficients = scale_invariant_factors(
            w, g, u, steps, denominators=den or None, keep=keep, keep_projected=keep_projected,
            delta=delta, eps=eps, channel_dim=channel_dim,
        )  # fmt: skip
        if project_directions:
            each("addcmul_", u, w, coefficients, value=-1, foreach=foreach)
        each("mul_", w, factors, foreach=foreach)


def adamp(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[float],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    delta: float,
    wd_ratio: float,
    nesterov: bool,
    channel_dim: int,
    foreach: bool,
    fused: bool = False,
) -> None:
    """The functional AdamP update over parallel lists; ``steps[i]`` counts parameter ``i``'s steps, this one included.

    ``fused`` on float32/float64 CPU tensors with ``channel_dim=0``: regkit's CPU kernels (`projection_by_kernels_`).
    """
    if fused and channel_dim == 0 and cpu_kernels.usable(params, grads, exp_avgs, exp_avg_sqs):
        kw = dict(beta1=beta1, beta2=beta2, eps=eps, nesterov=nesterov)
        step_sizes = [lr / bc for bc in adam_bias_corrections(steps, beta1, beta2)[0]]
        projection_by_kernels_(params, grads, exp_avgs, exp_avg_sqs, steps, step_sizes, lr=lr, weight_decay=weight_decay,
                               wd_ratio=wd_ratio, delta=delta, projection_eps=eps, **kw)  # fmt: skip
        return
    bias_correction1, bias_correction2_sqrt = adam_bias_corrections(steps, beta1, beta2)
    buckets = device_dtype_buckets(
        params, grads, exp_avgs, exp_avg_sqs, bias_correction1, bias_correction2_sqrt, foreach=foreach
    )
    for p, g, m, v, bc1, bc2_sqrt in buckets:
        adam_moments_(m, v, g, beta1, beta2, foreach=foreach)
        if p[0].dtype in LOW_PRECISION:  # sqrt(0) + 1e-8 would round to 0 in float16: 0/0
            m, v, g = ([t.float() for t in ts] for ts in (m, v, g))
        denominators = adam_denominator(v, bc2_sqrt, eps, foreach=foreach)
        numerators = each("lerp", m, g, 1 - beta1, foreach=foreach) if nesterov else m  # beta1 m + (1-beta1) g
        decay_and_project_(
            p, g, numerators, [lr / bc for bc in bc1], denominators=denominators, lr=lr, weight_decay=weight_decay, wd_ratio=wd_ratio,
            delta=delta, eps=eps, channel_dim=channel_dim, project_directions=False, foreach=foreach,
        )  # fmt: skip
        adam_step_(p, numerators, denominators, lr, bc1, foreach=foreach)


def sgdp(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    eps: float,
    delta: float,
    wd_ratio: float,
    project_buffer: bool,
    channel_dim: int,
    foreach: bool,
    fused: bool = False,
) -> None:
    """The functional SGDP update over parallel lists (``momentum_buffers`` empty when ``momentum == 0``).

    ``fused`` on float32/float64 CPU tensors with ``channel_dim=0`` and momentum (not the official mode that projects
    the buffer): regkit's CPU kernels (`projection_by_kernels_`).
    """
    if (fused and channel_dim == 0 and momentum != 0 and (nesterov or not project_buffer)
            and cpu_kernels.usable(params, grads, momentum_buffers)):  # fmt: skip
        ones = [1.0] * len(params)
        projection_by_kernels_(params, grads, momentum_buffers, [], ones, [lr] * len(params), lr=lr,
                               weight_decay=weight_decay / (1 - momentum), wd_ratio=wd_ratio, delta=delta,
                               projection_eps=eps, momentum=momentum, dampening=dampening, nesterov=nesterov)  # fmt: skip
        return
    for p, g, buffers in device_dtype_buckets(params, grads, momentum_buffers, foreach=foreach):
        if momentum != 0:
            momentum_update_(buffers, g, momentum, dampening, [False] * len(buffers), foreach=foreach)
            u = nesterov_direction(g, buffers, momentum, foreach=foreach) if nesterov else buffers
        else:
            u = each("mul", g, 1 - dampening, foreach=foreach) if dampening != 0 else g
        decay_and_project_(
            p, g, u, [lr] * len(p), lr=lr, weight_decay=weight_decay / (1 - momentum), wd_ratio=wd_ratio,
            delta=delta, eps=eps, channel_dim=channel_dim,
            project_directions=project_buffer and momentum != 0 and not nesterov, foreach=foreach,
        )  # fmt: skip
        each("add_", p, u, alpha=-lr, foreach=foreach)


def projection_by_kernels_(
    params: list[Tensor],
    grads: list[Tensor],
    states: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[float],
    step_sizes: list[float],
    *,
    lr: float,
    weight_decay: float,
    wd_ratio: float,
    delta: float,
    projection_eps: float,
    nesterov: bool,
    **moments,
) -> None:
    """AdamP (``exp_avg_sqs`` given) or SGDP in two passes of regkit's CPU kernels per tensor: the state update with
    the row statistics (`regkit.optim.cpu_kernels.projection_statistics_`), then ``w <- factor_i w - s u`` with the
    factors of `factor_tables` (rows along dim 0; ``1 - lr wd`` for tensors with ``ndim <= 1``). ``moments``:
    beta1/beta2/eps (AdamP) or momentum/dampening (SGDP)."""
    tables = cpu_kernels.projection_statistics_(params, grads, states, exp_avg_sqs, steps, nesterov=nesterov, **moments)
    keep, keep_projected = 1 - lr * weight_decay, 1 - lr * (weight_decay * wd_ratio)
    factors = [torch.full((table.shape[1],), keep, dtype=torch.float64) for table in tables]
    tested = tested_indices(params)
    if tested:
        statistics = torch.zeros(4, len(tested), max(tables[i].shape[1] for i in tested), dtype=torch.float64)
        for k, i in enumerate(tested):
            statistics[:, k, : tables[i].shape[1]] = tables[i]
        statistics[1:3].sqrt_()  # the norms from the sums of squares
        table, _ = factor_tables(
            statistics.to(_statistics_dtype(params[0].dtype)), [params[i] for i in tested],
            [step_sizes[i] for i in tested], keep=keep, keep_projected=keep_projected, delta=delta,
            eps=projection_eps, channel_dim=0,
        )  # fmt: skip
        for k, i in enumerate(tested):
            factors[i] = table[k, : tables[i].shape[1]].to(torch.float64)
    moments.pop("dampening", None)
    cpu_kernels.projected_step_(params, grads, states, exp_avg_sqs, steps, factors, lr=lr, nesterov=nesterov, **moments)


def check_projection(group: dict, eps_key: str = "eps") -> None:
    """ValueError naming the first bad option of the radial projection: ``group[eps_key] > 0``, ``delta >= 0``,
    ``wd_ratio`` in [0, 1], ``channel_dim`` 0 or 1 (AdamP/SGDP: ``eps``; `with_projection`: ``projection_eps``)."""
    eps = group[eps_key]
    check_number(eps_key, eps, 0.0)
    if eps == 0:
        raise ValueError(
            f"{eps_key} must be > 0 (it guards the cosine test and the projection against zero norms), got {eps!r}"
        )
    check_number("delta", group["delta"], 0.0)
    check_number("wd_ratio", group["wd_ratio"], 0.0, 1.0)
    if group["channel_dim"] not in (0, 1) or isinstance(group["channel_dim"], bool):
        raise ValueError(
            f"channel_dim must be 0 (Linear, Conv weights) or 1 (ConvTranspose weights), got {group['channel_dim']!r}"
        )


def _check_projection(group: dict) -> None:
    check_number("weight_decay", group["weight_decay"], 0.0)
    check_projection(group)
    check_flag("nesterov", group["nesterov"])
    check_flag("foreach", group["foreach"], allow_none=True)


class AdamP(FunctionalOptimizer):
    r"""Adam with decoupled weight decay that removes the radial update of scale-invariant weights.

    Per step, for each parameter ``w`` with gradient ``g`` (``t`` counts its steps from 1)::

        m <- beta1 m + (1 - beta1) g;   v <- beta2 v + (1 - beta2) g^2
        den = sqrt(v) / sqrt(1 - beta2^t) + eps
        u = m / den                     (nesterov: (beta1 m + (1 - beta1) g) / den)
        if ndim(w) > 1 and w is scale-invariant in the channel view, else the layer view
            (max_i cos(g_i, w_i) < delta / sqrt(row length)):
            u_i <- u_i - <w_i, u_i> / (||w_i|| + eps)^2 w_i;   ratio = wd_ratio
        else ratio = 1
        w <- w * (1 - lr * wd * ratio)
        w <- w - lr / (1 - beta1^t) * u

    The update rule of the official ``adamp.AdamP`` (0.3.0); see the module docstring for
    the detection and what differs (channels_last, no host sync, fp16, validation,
    ``channel_dim``). With ``delta = 0`` nothing is projected and AdamP is AdamW. Decay is
    decoupled in torch's convention (scaled by the scheduled ``lr``).

    ``state[p]``: ``step`` (CPU float tensor), ``exp_avg``, ``exp_avg_sq`` (torch.optim.Adam's keys).

    Args:
        params: parameters or param-group dicts. lr: default 1e-3. betas: default (0.9, 0.999).
        eps: > 0, default 1e-8 (Adam's eps, also the cosine and projection guard).
        weight_decay: default 0. delta: detection threshold >= 0, default 0.1. wd_ratio:
        decay multiplier in [0, 1] for projected tensors, default 0.1. nesterov: default
        False. Keyword-only: channel_dim: 0 (default; Linear and Conv weights, output
        channels first) or 1 (ConvTranspose weights ``(in, out, kH, kW)``: give them their
        own param group); foreach (default None = True when every parameter is on CUDA); fused
        (default False; True: regkit's CPU kernels on float32/float64 CPU tensors with channel_dim 0, two
        passes per tensor, `projection_by_kernels_`; elsewhere the foreach path).

    Example::

        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8))
        >>> opt = AdamP(model.parameters(), lr=1e-3, weight_decay=1e-2)
        >>> model(torch.randn(4, 3, 8, 8)).square().mean().backward()
        >>> opt.step()

    Reference: Heo, Chun, Oh, Han, Yun, Kim, Uh & Ha, "AdamP: Slowing Down the Slowdown for
    Momentum Optimizers on Scale-invariant Weights", ICLR 2021 (arXiv:2006.08217).
    """

    functional_update = staticmethod(adamp)
    fusable = True  # regkit's CPU kernels (float32/float64 CPU tensors, channel_dim 0); elsewhere the foreach path
    whole_tensor_norms = True  # cosines and norms of whole tensors: sharded (FSDP) params are refused

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        delta: float = 0.1,
        wd_ratio: float = 0.1,
        nesterov: bool = False,
        *,
        channel_dim: int = 0,
        foreach: bool | None = None,
        fused: bool | None = None,
    ):
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, delta=delta, wd_ratio=wd_ratio,
            nesterov=nesterov, channel_dim=channel_dim, foreach=foreach,
        )  # fmt: skip
        super().__init__(params, defaults, fused=fused)

    def check_hyperparameters(self, group: dict) -> None:
        check_number("lr", group["lr"], 0.0)
        check_betas(group["betas"])
        _check_projection(group)

    def required_state(self, group: dict) -> tuple[str, ...]:
        return ADAM_STATE

    def prepare_update(self, group: dict, params: list[Tensor]) -> tuple[tuple, dict]:
        exp_avgs, exp_avg_sqs, _, steps = adam_state(self.state, params)
        beta1, beta2 = group["betas"]
        hyper = {k: group[k] for k in ("lr", "eps", "weight_decay", "delta", "wd_ratio", "nesterov", "channel_dim")}
        foreach = self.resolve_foreach(group["foreach"], params)
        args = (params, [p.grad for p in params], exp_avgs, exp_avg_sqs, steps)
        return args, dict(hyper, beta1=beta1, beta2=beta2, foreach=foreach)


class SGDP(FunctionalOptimizer):
    r"""SGD with (Nesterov) momentum that removes the radial update of scale-invariant weights.

    Per step, for each parameter ``w`` with gradient ``g``::

        b <- mu b + (1 - dampening) g          (b starts at 0, unlike torch SGD's b = g; no b if mu = 0)
        u = g + mu b if nesterov else b
        if ndim(w) > 1 and w is scale-invariant (channel view, else layer view; see AdamP):
            u_i <- u_i - <w_i, u_i> / (||w_i|| + eps)^2 w_i;   ratio = wd_ratio
        else ratio = 1
        w <- w * (1 - lr * wd * ratio / (1 - mu))
        w <- w - lr * u

    By default (``project_buffer=False``) the momentum buffer ``b`` is never projected: the
    paper's Algorithm 1 projects the update ``q_t = Pi(p_t)`` and keeps ``p_t``. In the
    official ``adamp.SGDP`` (0.3.0), without nesterov ``u`` IS the buffer, so the projection
    also edits the stored momentum; ``project_buffer=True`` reproduces that (it changes
    nothing with nesterov or ``mu = 0``). The decay is divided by ``1 - mu`` as in the
    official code. With ``delta = 0`` and ``dampening = 0`` SGDP is
    ``SGD(..., weight_decay=wd / (1 - mu), decoupled_weight_decay=True)``.

    ``state[p]``: ``momentum_buffer`` (torch's key) when ``momentum != 0``.

    Args:
        params: parameters or param-group dicts. lr: default 1e-3 (as torch.optim.SGD). momentum: in [0, 1), default
        0. dampening: in [0, 1], default 0. weight_decay: default 0. nesterov: default False
        (needs momentum > 0 and dampening 0). eps: > 0, default 1e-8. delta: default 0.1.
        wd_ratio: in [0, 1], default 0.1. The positional order is ``adamp.SGDP``'s.
        Keyword-only: project_buffer (default False, see above); channel_dim: 0 (default)
        or 1 for ConvTranspose weights; foreach (default None = True when every parameter
        is on CUDA); fused (default False; True: regkit's CPU kernels on float32/float64 CPU tensors
        with channel_dim 0 and momentum, except project_buffer without nesterov; elsewhere foreach).

    Example::

        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8))
        >>> opt = SGDP(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-5, nesterov=True)
        >>> model(torch.randn(4, 3, 8, 8)).square().mean().backward()
        >>> opt.step()

    Reference: Heo, Chun, Oh, Han, Yun, Kim, Uh & Ha, "AdamP: Slowing Down the Slowdown for
    Momentum Optimizers on Scale-invariant Weights", ICLR 2021 (arXiv:2006.08217).
    """

    functional_update = staticmethod(sgdp)
    fusable = True  # regkit's CPU kernels (float32/float64 CPU tensors, channel_dim 0, momentum); else foreach
    whole_tensor_norms = True  # cosines and norms of whole tensors: sharded (FSDP) params are refused

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        eps: float = 1e-8,
        delta: float = 0.1,
        wd_ratio: float = 0.1,
        *,
        project_buffer: bool = False,
        channel_dim: int = 0,
        foreach: bool | None = None,
        fused: bool | None = None,
    ):
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
            eps=eps, delta=delta, wd_ratio=wd_ratio, project_buffer=project_buffer, channel_dim=channel_dim,
            foreach=foreach,
        )  # fmt: skip
        super().__init__(params, defaults, fused=fused)

    def check_hyperparameters(self, group: dict) -> None:
        check_number("lr", group["lr"], 0.0)
        check_number("momentum", group["momentum"], 0.0, 1.0, high_open=True)
        check_number("dampening", group["dampening"], 0.0, 1.0)
        _check_projection(group)
        check_flag("project_buffer", group["project_buffer"])
        if group["nesterov"] and (group["momentum"] == 0 or group["dampening"] != 0):
            raise ValueError(
                "nesterov=True needs momentum > 0 and dampening == 0, "
                f"got momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def required_state(self, group: dict) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def prepare_update(self, group: dict, params: list[Tensor]) -> tuple[tuple, dict]:
        buffers = []
        if group["momentum"] != 0:
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                buffers.append(state["momentum_buffer"])
        names = (
            "lr", "momentum", "dampening", "nesterov", "weight_decay", "eps", "delta", "wd_ratio",
            "project_buffer", "channel_dim",
        )  # fmt: skip
        hyper = {k: group[k] for k in names}
        foreach = self.resolve_foreach(group["foreach"], params)
        return (params, [p.grad for p in params], buffers), dict(hyper, foreach=foreach)
