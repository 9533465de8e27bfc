r"""Large-batch gradients by micro-batch accumulation, with per-micro-batch penalties.

A batch of ``B`` examples is split into ``k = B / b`` consecutive micro-batches ``M`` of
``b = micro_batch_size`` examples. Each micro-batch gets its own forward pass, so BatchNorm
normalizes it with its own statistics (ghost BatchNorm), and the gradient written into
``.grad`` is the mean over micro-batches (Novack et al., ICLR 2023, "Disentangling the
mechanisms behind implicit regularization in SGD")::

    grad  +=  (1/k) sum_M grad_theta [ L_M + lam * P_M ]

    P_M = || grad_theta s_M ||^2          (squared global norm over all parameters)
    s_M = L_M                              "gn"             gradient norm
          L_M(y_hat), y_hat ~ softmax(f)   "fisher"         Fisher trace; labels sampled once per
                                                            example and held constant
          sum_c mean_{i in M} f_c(x_i)     "avg_jacobian"   all-ones logit direction
          u . mean_{i in M} f(x_i)         "unit_jacobian"  u uniform on the unit sphere, one per M

``L_M = loss_fn(model(x_M), y_M)`` uses the true labels (``loss_fn`` must average over the
micro-batch). The gradient of ``P_M`` is exact (double backprop). Expected values, with
``g_M = grad L_M`` and per-example gradient covariance ``Sigma`` (examples drawn i.i.d.):
``E ||g_M||^2 = ||g_bar||^2 + tr(Sigma) / b`` and ``E_{y_hat} P_M^fisher = tr(F_M) / b``
(``F_M`` the model's Fisher averaged over the micro-batch's inputs).

Two paths compute the same gradients:

- serial: a loop over micro-batches with ``torch.autograd.grad``; BatchNorm updates its running
  statistics once per micro-batch, in order (k exponential-moving-average updates).
- vectorized: ``torch.func.vmap`` over the micro-batch axis (``x`` viewed as ``(k, b, ...)``) of
  ``functional_call`` + ``vjp`` (inner gradients) + ``grad_and_value`` (outer gradient of the
  penalty). Under ``vmap`` a BatchNorm cannot update its buffers in place, so its running
  statistics are switched off during the pass (each micro-batch is still normalized with its own
  batch statistics), the per-micro-batch mean and unbiased variance of its input are recorded,
  and afterwards the k updates are applied in closed form:
  ``r_k = (1 - m)^k r_0 + sum_j m (1 - m)^(k - j) s_j`` (``momentum=m``), or
  ``r = (n_0 r_0 + sum_j s_j) / (n_0 + k)`` (``momentum=None``, cumulative average);
  ``num_batches_tracked`` grows by k. Dropout draws different masks per micro-batch
  (``randomness="different"``), so with dropout the two paths agree only in distribution.

``vectorized=None`` chooses: serial if a module cannot be vmapped (a BatchNorm subclass other
than BatchNorm1d/2d/3d, such as SyncBatchNorm; warns), otherwise vectorized, processing as many
micro-batches per chunk (``vmap(chunk_size=...)``) as fit into half the free memory (free GPU
memory on CUDA, available RAM otherwise), estimated from one probe forward of a micro-batch
(bytes saved for backward, times 4 with a penalty for the double-backprop graph, plus the
per-micro-batch gradients); serial if not even two fit. On the CPU, vectorized only while that
probe saves at most ``CPU_VMAP_MAX_SAVED_BYTES`` (6 MiB): vmap removes the loop's fixed cost per
micro-batch (Python and operator dispatch), which dominates small micro-batches, but its batched
per-micro-batch weight gradients run slower than the loop's plain kernels on large ones
(``python -m regkit.bench penalties --part microbatch``; a sweep of small BN CNNs and narrow
ResNet-18s, 14-32 px images, micro-batches of 4-64, with and without the GN penalty, one CPU
thread: vmap took 0.4-1.1x the serial time up to 5.4 MiB, 0.8-1.3x from 6.4 MiB, 1.1-1.9x from
19 MiB). Elsewhere (CUDA, MPS) vectorized is the default wherever it fits. If the vectorized
pass raises, a warning says why and the serial path runs instead (nothing is written before a
pass succeeds).

The random parts (Fisher labels by inverse-CDF sampling from pre-drawn uniforms; unit
directions from pre-drawn Gaussians) come from ``generator`` (default: torch's global RNG) and
are drawn in the same order by both paths, so both give the same gradients.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vjp, vmap

from regkit._validate import check_int

PENALTIES = ("gn", "fisher", "avg_jacobian", "unit_jacobian")
CPU_VMAP_MAX_SAVED_BYTES = 6 * 2**20  # the CPU rule of vectorized=None (module docstring)
_VMAPPABLE_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class MicroBatchStats:
    """Per-micro-batch statistics of one call (tensors of length k on the model's device).

    loss: ``L_M``; penalty: ``P_M`` (None without a penalty); param_grad_norms: ``(k, n)`` norms
    of ``grad L_M`` (data loss only) per parameter tensor, in the order of the model's parameters
    that require grad; vectorized: which path ran.
    """

    loss: Tensor
    penalty: Tensor | None
    param_grad_norms: Tensor
    vectorized: bool

    @property
    def grad_norm(self) -> Tensor:
        """``||grad L_M||``, the global norm of each micro-batch's data-loss gradient, shape (k,)."""
        return torch.linalg.vector_norm(self.param_grad_norms, dim=1)


def accumulate_microbatches(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    micro_batch_size: int,
    penalty: str | None = None,
    lam: float = 0.0,
    vectorized: bool | None = None,
    generator: torch.Generator | None = None,
) -> MicroBatchStats:
    """Add ``(1/k) sum_M grad(L_M + lam * P_M)`` to ``.grad`` (like ``backward``) and return stats.

    ``penalty``: None or one of ``PENALTIES`` (see the module docstring), ``lam >= 0`` its weight;
    with ``lam == 0`` the penalty is still reported but not differentiated. ``vectorized``: True
    (all micro-batches in one vmap), False (a loop) or None (choose, see the module docstring).
    ``generator`` drives the Fisher labels and unit directions. ``loss_fn(logits, targets)`` must
    average over the micro-batch; the Fisher penalty calls it with sampled class indices, and
    penalties need logits of shape ``(b, num_classes)``.

    Example::

        stats = accumulate_microbatches(model, F.cross_entropy, x, y, 128, "gn", lam=0.01)
        optimizer.step()          # the large-batch step; stats.loss.mean() is the batch loss
    """
    k = _validate(model, loss_fn, x, y, micro_batch_size, penalty, lam, vectorized)
    xs = x.reshape(k, micro_batch_size, *x.shape[1:])
    ys = y.reshape(k, micro_batch_size, *y.shape[1:])
    params = [p for p in model.parameters() if p.requires_grad]
    draw_noise = _noise_drawer(penalty, k, micro_batch_size, params[0], generator)

    blocker = _vmap_blocker(model)
    if vectorized is not False and blocker is not None:
        warnings.warn(
            f"accumulate_microbatches: {blocker} cannot be vmapped; using the serial path", stacklevel=2
        )
        vectorized = False
    noise, chunk_size = None, None
    if vectorized is not False:
        if vectorized is None or penalty == "unit_jacobian":
            saved_bytes, num_classes = _probe(model, xs[0])
            noise = draw_noise(num_classes)
            if vectorized is None:
                chunk_size = _chunk_size(params, saved_bytes, k, penalty is not None)
                vectorized = chunk_size >= 2 and (
                    params[0].device.type != "cpu" or saved_bytes <= CPU_VMAP_MAX_SAVED_BYTES
                )
        else:
            noise = draw_noise(None)
    if vectorized:
        try:
            grads, stats = _vectorized(model, loss_fn, xs, ys, penalty, lam, noise, chunk_size)
        except (RuntimeError, NotImplementedError) as err:
            warnings.warn(
                f"accumulate_microbatches: the vectorized path failed ({err}); using the serial path",
                stacklevel=2,
            )
            vectorized = False
    if not vectorized:
        grads, stats = _serial(model, loss_fn, xs, ys, penalty, lam, noise, draw_noise)
    for p, g in zip(params, grads, strict=True):
        if p.grad is None:
            p.grad = g
        else:
            p.grad.add_(g)
    return stats


def microbatch_grad_fn(
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    micro_batch_size: int,
    penalty: str | None = None,
    lam: float = 0.0,
    *,
    vectorized: bool | None = None,
    generator: torch.Generator | None = None,
    on_stats: Callable[[MicroBatchStats], None] | None = None,
) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    """A ``grad_fn(model, x, y) -> loss`` for ``regkit.train.train``: accumulates, returns the mean
    micro-batch loss (the large-batch loss) and hands the stats to ``on_stats`` (for iterative
    grafting: ``on_stats=lambda s: optimizer.set_magnitude(s.grad_norm[0])``)."""

    def grad_fn(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        stats = accumulate_microbatches(
            model, loss_fn, x, y, micro_batch_size, penalty, lam, vectorized, generator
        )
        if on_stats is not None:
            on_stats(stats)
        return stats.loss.mean()

    return grad_fn


def micro_batch_grad_norms(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    micro_batch_size: int,
    vectorized: bool | None = None,
) -> Tensor:
    """``||grad L_M||`` of each micro-batch of ``(x, y)`` at the current weights, shape ``(k,)``.

    Measured in training mode (ghost BatchNorm, as in a training step) and free of side effects:
    ``.grad``, the BatchNorm buffers and the train/eval mode are restored afterwards. The mean
    over micro-batches is the quantity whose square small-batch SGD implicitly penalizes (Smith et
    al., ICLR 2021) and that Novack et al. plot over training at ``b = 128``.
    """
    grads = [(p, p.grad) for p in model.parameters()]
    buffers = [(buf, buf.clone()) for buf in model.buffers()]
    was_training = model.training
    try:
        for p, _ in grads:
            p.grad = None
        model.train()
        with torch.enable_grad():
            stats = accumulate_microbatches(model, loss_fn, x, y, micro_batch_size, vectorized=vectorized)
    finally:
        model.train(was_training)
        for p, g in grads:
            p.grad = g
        with torch.no_grad():
            for buf, saved in buffers:
                buf.copy_(saved)
    return stats.grad_norm


def micro_grad_norm_hook(
    x: Tensor,
    y: Tensor,
    micro_batch_size: int,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> Callable[[int, nn.Module, torch.optim.Optimizer], dict[str, float]]:
    """A ``regkit.train.train`` hook logging, on the fixed probe batch ``(x, y)`` (on the model's
    device), ``micro_grad_norm`` = mean_M ``||grad L_M||`` and ``micro_grad_norm_sq`` = mean_M
    ``||grad L_M||^2`` over its micro-batches of ``micro_batch_size`` (see
    ``micro_batch_grad_norms``). A fixed probe measures every run the same way, whatever batch or
    micro-batch size it trains with."""
    _validate_probe(x, y, micro_batch_size)

    def hook(step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        norms = micro_batch_grad_norms(model, loss_fn, x, y, micro_batch_size)
        mean, mean_sq = torch.stack([norms.mean(), norms.pow(2).mean()]).tolist()
        return {"micro_grad_norm": mean, "micro_grad_norm_sq": mean_sq}

    return hook


# --- the math shared by both paths ---------------------------------------------------------------


def penalty_output(penalty: str, logits: Tensor, y: Tensor, loss_fn, noise: Tensor | None) -> Tensor:
    """``s_M``, the scalar whose parameter gradient's squared norm is the penalty (not "gn")."""
    if logits.dim() != 2:
        raise ValueError(
            f"penalty={penalty!r} needs logits of shape (batch, num_classes), got {tuple(logits.shape)}"
        )
    if penalty == "fisher":
        return loss_fn(logits, _sample_labels(logits.detach(), noise))
    mean_logits = logits.mean(0)
    if penalty == "avg_jacobian":
        return mean_logits.sum()
    return mean_logits @ noise.to(mean_logits.dtype)  # unit_jacobian


def _sample_labels(logits: Tensor, uniforms: Tensor) -> Tensor:
    """One label per row from softmax(logits) by inverse-CDF sampling: y = #{c : cdf_c < u}."""
    cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)
    return (cdf < uniforms.to(cdf.dtype).unsqueeze(-1)).sum(dim=-1).clamp_max(logits.shape[-1] - 1)


def _noise_drawer(penalty, k, b, param, generator):
    """Draws the penalty's random inputs for all k micro-batches at once (same order in both paths)."""
    dtype = param.dtype if param.is_floating_point() else torch.get_default_dtype()

    def draw(num_classes: int | None) -> Tensor | None:
        if penalty == "fisher":
            return torch.rand(k, b, generator=generator, dtype=dtype, device=param.device)
        if penalty == "unit_jacobian":
            z = torch.randn(k, num_classes, generator=generator, dtype=dtype, device=param.device)
            return z / torch.linalg.vector_norm(z, dim=1, keepdim=True)
        return None

    return draw


def _squared_norm(tensors: Sequence[Tensor]) -> Tensor:
    return sum(t.pow(2).sum() for t in tensors)


# --- serial path ---------------------------------------------------------------------------------


def _serial(model, loss_fn, xs, ys, penalty, lam, noise, draw_noise):
    """Loop over micro-batches with torch.autograd; BatchNorm updates its buffers in place."""
    params = [p for p in model.parameters() if p.requires_grad]
    k = xs.shape[0]
    differentiate_penalty = penalty is not None and lam != 0
    total = [torch.zeros_like(p) for p in params]
    losses, penalties, norms = [], [], []
    for j in range(k):
        logits = model(xs[j])
        data = loss_fn(logits, ys[j])
        if penalty is None:
            g_data = torch.autograd.grad(data, params, materialize_grads=True)
        else:
            if noise is None:
                noise = draw_noise(logits.shape[-1])
            if penalty == "gn":
                g_probe = torch.autograd.grad(
                    data, params, create_graph=differentiate_penalty, materialize_grads=True
                )
                g_data = [g.detach() for g in g_probe]
            else:
                probe = penalty_output(penalty, logits, ys[j], loss_fn, None if noise is None else noise[j])
                g_data = torch.autograd.grad(data, params, retain_graph=True, materialize_grads=True)
                g_probe = torch.autograd.grad(
                    probe, params, create_graph=differentiate_penalty, materialize_grads=True
                )
            pen = _squared_norm(g_probe)
            if differentiate_penalty and pen.requires_grad:
                g_pen = torch.autograd.grad(pen, params, materialize_grads=True)
                torch._foreach_add_(total, g_pen, alpha=lam / k)
            penalties.append(pen.detach())
        torch._foreach_add_(total, g_data, alpha=1 / k)
        losses.append(data.detach())
        norms.append(torch.stack(torch._foreach_norm(g_data)))
    stats = MicroBatchStats(
        loss=torch.stack(losses),
        penalty=torch.stack(penalties) if penalty is not None else None,
        param_grad_norms=torch.stack(norms),
        vectorized=False,
    )
    return total, stats


# --- vectorized path -----------------------------------------------------------------------------


def _vectorized(model, loss_fn, xs, ys, penalty, lam, noise, chunk_size):
    """vmap over micro-batches of functional_call + vjp (+ grad_and_value for the penalty)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    differentiate_penalty = penalty is not None and lam != 0

    with _GhostBatchNorm(model) as ghost:

        def outputs(p, xb, yb, noise_j):
            ghost.records.clear()
            logits = functional_call(model, p, (xb,))
            data = loss_fn(logits, yb)
            if penalty in (None, "gn"):
                return (data,), ghost.batch_stats()
            return (data, penalty_output(penalty, logits, yb, loss_fn, noise_j)), ghost.batch_stats()

        def penalty_and_grads(p, xb, yb, noise_j):
            out, pullback, bn_stats = vjp(lambda q: outputs(q, xb, yb, noise_j), p, has_aux=True)
            one, zero = torch.ones_like(out[0]), torch.zeros_like(out[0])
            g_data = pullback((one,) if len(out) == 1 else (one, zero))[0]
            if penalty is None:
                return out[0], (out[0], g_data, bn_stats)
            g_probe = g_data if penalty == "gn" else pullback((zero, one))[0]
            return _squared_norm(list(g_probe.values())), (out[0], g_data, bn_stats)

        def micro_batch(xb, yb, noise_j):
            if differentiate_penalty:
                g_pen, (pen, (data, g_data, bn_stats)) = grad_and_value(penalty_and_grads, has_aux=True)(
                    params, xb, yb, noise_j
                )
                g_total = {n: g_data[n] + lam * g_pen[n] for n in names}
            else:
                pen, (data, g_data, bn_stats) = penalty_and_grads(params, xb, yb, noise_j)
                g_total = g_data
            norms = torch.stack([torch.linalg.vector_norm(g_data[n]) for n in names])
            return [g_total[n] for n in names], data, pen.detach(), norms, bn_stats

        in_dims = (0, 0, None if noise is None else 0)
        grads, losses, pens, norms, bn_stats = vmap(
            micro_batch, in_dims=in_dims, randomness="different", chunk_size=chunk_size
        )(xs, ys, noise)
        modules = list(ghost.calls)
    _update_running_stats(modules, bn_stats)
    stats = MicroBatchStats(
        loss=losses,
        penalty=pens if penalty is not None else None,
        param_grad_norms=norms,
        vectorized=True,
    )
    return [g.mean(0) for g in grads], stats


class _GhostBatchNorm:
    """Inside: training BatchNorms keep normalizing with batch statistics but do not update their
    buffers; each call's input mean and unbiased variance are recorded (``batch_stats``)."""

    def __init__(self, model: nn.Module):
        self.modules = [
            m
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
        ]
        self.records: list[tuple[nn.Module, Tensor, Tensor]] = []
        self.calls: list[nn.Module] = []
        self._handles = []

    def _record(self, module, args):
        inp = args[0]
        inp = inp.to(torch.promote_types(inp.dtype, torch.float32))  # BN's statistics precision
        dims = [0, *range(2, inp.dim())]
        self.records.append((module, inp.mean(dims), inp.var(dims, correction=1)))

    def batch_stats(self) -> tuple[Tensor, ...]:
        self.calls = [m for m, _, _ in self.records]
        return tuple(t.detach() for _, mean, var in self.records for t in (mean, var))

    def __enter__(self):
        for m in self.modules:
            m.track_running_stats = False
            self._handles.append(m.register_forward_pre_hook(self._record))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        for m in self.modules:
            m.track_running_stats = True
        return False


def _update_running_stats(calls: list[nn.Module], stats: tuple[Tensor, ...]) -> None:
    """Apply the k sequential BatchNorm updates per recorded call, in closed form.

    ``stats`` holds (mean, var) of shape (k, C) for each call in ``calls`` order; a module called
    c times per forward gets k * c updates in the serial order (micro-batch major)."""
    for module in dict.fromkeys(calls):
        idx = [i for i, m in enumerate(calls) if m is module]
        means = torch.stack([stats[2 * i] for i in idx], dim=1).flatten(0, 1)
        vars_ = torch.stack([stats[2 * i + 1] for i in idx], dim=1).flatten(0, 1)
        n = means.shape[0]
        dtype = module.running_mean.dtype
        if module.momentum is None:
            n0 = module.num_batches_tracked.to(dtype)
            for running, s in ((module.running_mean, means), (module.running_var, vars_)):
                running.mul_(n0).add_(s.to(dtype).sum(0)).div_(n0 + n)
        else:
            m = module.momentum
            weights = m * (1 - m) ** torch.arange(n - 1, -1, -1, dtype=dtype, device=means.device)
            for running, s in ((module.running_mean, means), (module.running_var, vars_)):
                running.mul_((1 - m) ** n).add_(weights @ s.to(dtype))
        module.num_batches_tracked.add_(n)


def _vmap_blocker(model: nn.Module) -> str | None:
    """The first module that the vectorized path cannot handle, as text; None if all can."""
    for name, m in model.named_modules():
        if (
            isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.training
            and m.track_running_stats
            and type(m) not in _VMAPPABLE_BATCH_NORMS
        ):
            return f"module {name!r} ({type(m).__name__})"
    return None


def _probe(model: nn.Module, xb: Tensor) -> tuple[int, int]:
    """One forward of a micro-batch (buffers untouched): bytes saved for backward, output width."""
    saved = 0

    def pack(t: Tensor) -> Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with _GhostBatchNorm(model), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(xb)
    return saved, out.shape[-1]


def _chunk_size(params: list[Tensor], saved_bytes: int, k: int, has_penalty: bool) -> int:
    """How many micro-batches one vmap chunk may hold: half the free memory / bytes per micro-batch."""
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    factor = 4 if has_penalty else 1
    per_micro_batch = factor * (saved_bytes + param_bytes)
    return max(1, min(k, int(0.5 * _free_memory(params[0].device) // max(per_micro_batch, 1))))


def _free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def _validate_probe(x: Tensor, y: Tensor, micro_batch_size: int) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same batch size, got {x.shape[0]} and {y.shape[0]}")
    check_int("micro_batch_size", micro_batch_size)
    if x.shape[0] % micro_batch_size != 0:
        raise ValueError(f"micro_batch_size={micro_batch_size} must divide the batch size {x.shape[0]}")


def _validate(model, loss_fn, x, y, micro_batch_size, penalty, lam, vectorized) -> int:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no parameters that require grad")
    _validate_probe(x, y, micro_batch_size)
    if penalty is not None and penalty not in PENALTIES:
        raise ValueError(f"penalty={penalty!r} is not one of None, {', '.join(map(repr, PENALTIES))}")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    if penalty is None and lam != 0:
        raise ValueError(f"lam={lam!r} needs a penalty (one of {', '.join(map(repr, PENALTIES))})")
    if vectorized not in (None, True, False):
        raise ValueError(f"vectorized must be None, True or False, got {vectorized!r}")
    return x.shape[0] // micro_batch_size
