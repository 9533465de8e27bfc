"""Weight norms, gradient norms, effective step sizes and cosine similarities.

Every function takes parameters in any of these forms: an ``nn.Module`` (its
``named_parameters()``), a mapping ``name -> tensor``, an iterable of ``(name, tensor)``
pairs, or an iterable of tensors (named ``"0"``, ``"1"``, ...). Norms are computed with
``torch._foreach_norm`` in float32 (or float64 for float64 tensors), so bf16 weights get
accurate norms.

Functions that return a ``dict`` (for logging) return Python floats after one host
synchronisation; ``grad_norm`` and ``cosine_similarity`` return tensors on the device and
never synchronise, so they can be used inside a training step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

NamedTensors = nn.Module | Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] | Iterable[Tensor]


def named_tensors(params: NamedTensors) -> list[tuple[str, Tensor]]:
    """Normalise the accepted parameter forms to a list of ``(name, tensor)`` pairs."""
    if isinstance(params, nn.Module):
        return list(params.named_parameters())
    if isinstance(params, Tensor):
        raise TypeError("params must be a module, a mapping or an iterable of tensors, not a single tensor; "
                        "wrap it in a list")
    items = list(params.items()) if isinstance(params, Mapping) else list(params)
    named = []
    for i, item in enumerate(items):
        if isinstance(item, Tensor):
            named.append((str(i), item))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Tensor):
            named.append((str(item[0]), item[1]))
        else:
            raise TypeError(f"params item {i} is {type(item).__name__}; expected a tensor or a (name, tensor) pair")
    return named


def _norms(tensors: list[Tensor]) -> list[Tensor]:
    """L2 norm of each tensor (``torch._foreach_norm``), in float64 for float64 tensors, else float32."""
    norms: list[Tensor] = [None] * len(tensors)  # type: ignore[list-item]
    for dtype in (torch.float32, torch.float64):
        index = [i for i, t in enumerate(tensors) if (t.dtype == torch.float64) == (dtype == torch.float64)]
        if index:
            for i, n in zip(index, torch._foreach_norm([tensors[i] for i in index], 2, dtype=dtype), strict=True):
                norms[i] = n
    return norms


def _to_floats(values: list[Tensor]) -> list[float]:
    """One host synchronisation for a list of scalar tensors (possibly on several devices)."""
    if not values:
        return []
    device = values[0].device
    return torch.stack([v.to(device=device, dtype=torch.float64) for v in values]).tolist()


def weight_norms(params: NamedTensors) -> dict[str, float]:
    """``{name: ||w||_2}`` for every tensor (one host synchronisation)."""
    named = named_tensors(params)
    norms = _to_floats(_norms([p.detach() for _, p in named]))
    return dict(zip([n for n, _ in named], norms, strict=True))


def total_weight_norm(params: NamedTensors) -> float:
    """``sqrt(sum_i ||w_i||^2)`` over all tensors, i.e. the norm of the concatenated weights."""
    return sum(v * v for v in weight_norms(params).values()) ** 0.5


def grad_norm(params: NamedTensors, per_tensor: bool = False) -> Tensor:
    """L2 norm of the gradients, skipping tensors whose ``.grad`` is None; no host synchronisation.

    ``per_tensor=False``: a 0-dim tensor ``sqrt(sum_i ||g_i||^2)`` (0 when no tensor has a
    gradient). ``per_tensor=True``: a 1-D tensor of ``||g_i||`` in the order of the tensors
    that have a gradient.
    """
    grads = [p.grad.detach() for _, p in named_tensors(params) if p.grad is not None]
    if not grads:
        return torch.zeros(0 if per_tensor else ())
    device = grads[0].device
    norms = torch.stack([n.to(device) for n in _norms(grads)])
    return norms if per_tensor else norms.norm()


def effective_step_sizes(params: NamedTensors, lr: float | Mapping[str, float]) -> dict[str, float]:
    """``{name: lr / ||w||^2}``: the step size seen by the direction of a scale-invariant tensor.

    For a weight followed by normalisation, ``L(c w) = L(w)``, so the gradient is orthogonal
    to ``w`` and shrinks as ``1/||w||``; an SGD step of size ``lr`` then rotates ``w/||w||``
    by about ``lr ||g(w/||w||)|| / ||w||^2`` (van Laarhoven 2017, arXiv:1706.05350).
    ``lr`` is one float or a mapping ``name -> lr`` covering every tensor.
    """
    norms = weight_norms(params)
    if isinstance(lr, Mapping):
        missing = [n for n in norms if n not in lr]
        if missing:
            raise KeyError(f"lr has no entry for {missing[:3]}{'...' if len(missing) > 3 else ''}")
        return {n: float(lr[n]) / (w * w) for n, w in norms.items()}
    return {n: float(lr) / (w * w) for n, w in norms.items()}


def cosine_similarity(a: Tensor | Iterable[Tensor], b: Tensor | Iterable[Tensor], eps: float = 1e-12) -> Tensor:
    """``<a, b> / max(||a|| ||b||, eps)`` of the flattened (and concatenated) tensors.

    ``a`` and ``b`` are tensors or equally long lists of tensors with matching shapes
    (e.g. two gradients of a model). Returns a 0-dim float tensor; no host synchronisation.
    """
    xs = [a] if isinstance(a, Tensor) else list(a)
    ys = [b] if isinstance(b, Tensor) else list(b)
    if len(xs) != len(ys) or not xs:
        raise ValueError(f"a and b must hold the same positive number of tensors, got {len(xs)} and {len(ys)}")
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if x.shape != y.shape:
            raise ValueError(f"tensor {i}: shapes differ, {tuple(x.shape)} vs {tuple(y.shape)}")
    dtype = torch.float64 if any(x.dtype == torch.float64 for x in xs + ys) else torch.float32
    device = xs[0].device
    dot = sum(torch.dot(x.detach().reshape(-1).to(dtype), y.detach().reshape(-1).to(dtype)).to(device)
              for x, y in zip(xs, ys, strict=True))
    norm_a = torch.stack([n.to(device, dtype) for n in _norms([x.detach() for x in xs])]).norm()
    norm_b = torch.stack([n.to(device, dtype) for n in _norms([y.detach() for y in ys])]).norm()
    return dot / (norm_a * norm_b).clamp_min(eps)


def minibatch_gradient_moments(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
                               loss_fn=None) -> dict[str, tuple[Tensor, Tensor]]:
    """``{name: (mean, variance)}`` per coordinate of the loss gradient over minibatches, in float64.

    One gradient ``grad loss_fn(model(x), y)`` per ``(x, y)`` of ``batches`` (at least two), at
    the current weights and in the model's current mode, by ``torch.autograd.grad`` (``.grad``
    is untouched); trainable parameters only. ``variance`` is the unbiased sample variance over
    the batches (Welford's update). ``loss_fn`` defaults to cross-entropy.
    """
    import torch.nn.functional as F

    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    device = named[0][1].device if named else torch.device("cpu")
    means = [torch.zeros_like(p, dtype=torch.float64) for _, p in named]
    m2 = [torch.zeros_like(p, dtype=torch.float64) for _, p in named]
    count = 0
    for x, y in batches:
        grads = torch.autograd.grad(loss_fn(model(x.to(device)), y.to(device)), [p for _, p in named])
        count += 1
        for mean, acc, g in zip(means, m2, grads, strict=True):
            delta = g.double() - mean
            mean.add_(delta / count)
            acc.addcmul_(delta, g.double() - mean)
    if count < 2:
        raise ValueError(f"batches must hold at least 2 batches to estimate a variance, got {count}")
    return {n: (mean, acc / (count - 1)) for (n, _), mean, acc in zip(named, means, m2, strict=True)}
