"""The tensor-list primitives that later optimizers build on: both paths, list semantics, bucketing."""

import pytest
import torch

from regkit.optim import _functional as F
from regkit.optim import functional

PATHS = pytest.mark.parametrize("foreach", [False, True], ids=["for_loop", "foreach"])


def tensors(*shapes, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype) for s in shapes]


@PATHS
def test_each_zips_lists_and_shares_scalars(foreach):
    a, b = tensors((3,), (2, 2)), tensors((3,), (2, 2), seed=1)
    out = F.each("add", a, b, alpha=0.5, foreach=foreach)
    assert all(torch.equal(o, x + 0.5 * y) for o, x, y in zip(out, a, b, strict=True))
    scaled = F.each("mul", a, [2.0, -1.0], foreach=foreach)  # a list of floats: one scalar per tensor
    assert torch.equal(scaled[0], 2 * a[0]) and torch.equal(scaled[1], -a[1])
    expected = [x + s * y / z for x, y, z, s in zip(a, b, a, [0.5, -2.0], strict=True)]
    result = F.each("addcdiv_", [x.clone() for x in a], b, a, value=[0.5, -2.0], foreach=foreach)
    assert all(torch.allclose(r, e, rtol=1e-15, atol=0) for r, e in zip(result, expected, strict=True))


@PATHS
def test_in_place_ops_return_their_first_list(foreach):
    a = tensors((3,), (4,))
    ids = [id(t) for t in a]
    out = F.each("mul_", a, 3.0, foreach=foreach)
    assert out is a and [id(t) for t in a] == ids


def test_device_dtype_buckets_split_by_dtype_in_order_and_keep_empty_lists():
    params = tensors((2,), (3,), dtype=torch.float32) + tensors((4,), (5,))
    params = [params[0], params[2], params[1], params[3]]  # f32, f64, f32, f64
    scalars = [0.0, 1.0, 2.0, 3.0]
    buckets = F.device_dtype_buckets(params, scalars, [], foreach=True)
    assert [[p.dtype for p in b[0]] for b in buckets] == [[torch.float32] * 2, [torch.float64] * 2]
    assert [b[1] for b in buckets] == [[0.0, 2.0], [1.0, 3.0]] and all(b[2] == [] for b in buckets)
    assert F.device_dtype_buckets(params, scalars, [], foreach=False) == [(params, scalars, [])]


@PATHS
def test_momentum_update_copies_fresh_buffers_and_updates_the_others(foreach):
    grads = tensors((3,), (3,), (2,))
    buffers = [
        torch.full((3,), float("nan"), dtype=torch.float64),
        torch.ones(3, dtype=torch.float64),
        torch.ones(2, dtype=torch.float64),
    ]
    F.momentum_update_(buffers, grads, 0.9, 0.25, [True, False, False], foreach=foreach)
    assert torch.equal(buffers[0], grads[0])  # first step: b = g, no dampening (torch.optim.SGD)
    for b, g in zip(buffers[1:], grads[1:], strict=True):
        torch.testing.assert_close(b, 0.9 + 0.75 * g, rtol=1e-15, atol=1e-15)


@PATHS
def test_adam_primitives_compose_to_the_textbook_update(foreach):
    w, g = tensors((4,), (2, 3)), tensors((4,), (2, 3), seed=1)
    m, v = [torch.zeros_like(x) for x in w], [torch.zeros_like(x) for x in w]
    beta1, beta2, lr, eps, t = 0.9, 0.99, 0.1, 1e-8, 1.0
    F.adam_moments_(m, v, g, beta1, beta2, foreach=foreach)
    bc1, bc2_sqrt = F.adam_bias_corrections([t, t], beta1, beta2)
    denominators = F.adam_denominator(v, bc2_sqrt, eps, foreach=foreach)
    new = F.adam_step_([x.clone() for x in w], m, denominators, lr, bc1, foreach=foreach)
    for x, x_new, grad in zip(w, new, g, strict=True):  # first step: m_hat = g, v_hat = g^2
        torch.testing.assert_close(x_new, x - lr * grad / (grad.abs() + eps), rtol=1e-14, atol=1e-15)


def test_the_public_module_exports_every_primitive():
    defined = {name for name, value in vars(F).items()
               if callable(value) and not name.startswith("_") and getattr(value, "__module__", None) == F.__name__}
    assert set(functional.__all__) == defined
    assert all(getattr(functional, name) is getattr(F, name) for name in defined)
