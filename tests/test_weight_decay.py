"""Properties of coupled L2 vs decoupled weight decay (METHODS.md section 1), in torch's convention.

Exact-arithmetic checks use dyadic numbers (few significant bits, lr * wd = 1/8): every
product and sum is then exactly representable in float64, so algebraic identities show up
as bit-for-bit equality. With arbitrary floats the two sides of an identity round
differently (``w - lr (g + wd w)`` vs ``w (1 - lr wd) - lr g``) and agree to ~1e-16 only.
"""

import pytest
import torch

import regkit.optim as ro

LR, WD = 0.5, 0.25  # lr * wd = 1/8: 1 - lr * wd = 7/8 exactly


def dyadic(shape, seed, scale=8):
    """Small integers divided by ``scale``: exact float64 arithmetic for dozens of steps."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-40, 40, shape, generator=g).double() / scale


def trajectory(make, w0, grads):
    w = torch.nn.Parameter(w0.clone())
    opt = make([w])
    for g in grads:
        w.grad = g.clone()
        opt.step()
    return w.detach()


@pytest.mark.parametrize("foreach", [False, True])
def test_plain_sgd_l2_equals_sgdw_bit_for_bit(foreach):
    """No momentum: ``w - lr (g + wd w) == w (1 - lr wd) - lr g``, exactly when the arithmetic is exact."""
    w0, grads = dyadic((50,), 0), [dyadic((50,), t + 1, scale=16) for t in range(8)]
    l2 = trajectory(lambda ps: ro.SGD(ps, lr=LR, weight_decay=WD, foreach=foreach), w0, grads)
    decoupled = trajectory(lambda ps: ro.SGDW(ps, lr=LR, weight_decay=WD, foreach=foreach), w0, grads)
    assert torch.equal(l2, decoupled)
    assert not torch.equal(l2, trajectory(lambda ps: ro.SGD(ps, lr=LR, foreach=foreach), w0, grads))


def test_plain_sgd_l2_equals_sgdw_to_rounding_on_arbitrary_floats():
    torch.manual_seed(0)
    w0, grads = (
        torch.randn(1000, dtype=torch.float64),
        [torch.randn(1000, dtype=torch.float64) for _ in range(20)],
    )
    l2 = trajectory(lambda ps: ro.SGD(ps, lr=0.1, weight_decay=0.01), w0, grads)
    decoupled = trajectory(lambda ps: ro.SGDW(ps, lr=0.1, weight_decay=0.01), w0, grads)
    torch.testing.assert_close(l2, decoupled, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("nesterov", [False, True])
def test_with_momentum_l2_and_decoupled_decay_differ(nesterov):
    """The L2 term enters the momentum buffer and keeps acting for ~1/(1 - mu) steps: a different algorithm."""
    w0, grads = dyadic((50,), 0), [dyadic((50,), t + 1, scale=16) for t in range(8)]
    kw = dict(lr=0.125, momentum=0.5, nesterov=nesterov, weight_decay=WD)
    l2 = trajectory(lambda ps: ro.SGD(ps, **kw), w0, grads)
    decoupled = trajectory(lambda ps: ro.SGDW(ps, **kw), w0, grads)
    assert (l2 - decoupled).abs().max() > 1e-3


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: ro.SGDW(ps, lr=LR, weight_decay=WD),
        lambda ps: ro.SGDW(ps, lr=LR, momentum=0.9, nesterov=True, weight_decay=WD, foreach=True),
        lambda ps: ro.SGD(
            ps, lr=LR, momentum=0.9, dampening=0.5, weight_decay=WD, decoupled_weight_decay=True
        ),
        lambda ps: ro.AdamW(ps, lr=LR, weight_decay=WD),
        lambda ps: ro.AdamW(ps, lr=LR, weight_decay=WD, amsgrad=True, foreach=True),
        lambda ps: ro.Adam(ps, lr=LR, weight_decay=WD, decoupled_weight_decay=True, maximize=True),
    ],
    ids=[
        "sgdw",
        "sgdw_nesterov_foreach",
        "sgd_decoupled_dampening",
        "adamw",
        "adamw_amsgrad_foreach",
        "adam_decoupled_max",
    ],
)
def test_decoupled_decay_with_zero_gradient_is_geometric(make):
    """Zero loss gradient: every decoupled optimizer gives ``w_t = (1 - lr wd)^t w_0`` exactly (moments stay 0)."""
    w0, steps = dyadic((50,), 0), 12
    w = trajectory(make, w0, [torch.zeros(50, dtype=torch.float64)] * steps)
    assert torch.equal(w, w0 * (1 - LR * WD) ** steps)


def test_adam_l2_with_zero_gradient_is_not_geometric():
    """Adam + L2 normalizes the decay term: a first step of ~lr per coordinate whatever its size."""
    torch.manual_seed(0)
    w0, lr, wd = torch.randn(100, dtype=torch.float64), 1e-3, 0.1
    w1 = trajectory(
        lambda ps: ro.Adam(ps, lr=lr, weight_decay=wd), w0, [torch.zeros(100, dtype=torch.float64)]
    )
    decay = wd * w0  # the L2 gradient: Adam's first step is lr * d / (|d| + eps)
    torch.testing.assert_close(w1, w0 - lr * decay / (decay.abs() + 1e-8), rtol=1e-14, atol=1e-16)
    geometric = w0 * (1 - lr * wd)
    assert ((w1 - geometric).abs() > 1e-4).float().mean() > 0.5


def test_adam_l2_and_adamw_first_steps_match_their_closed_forms():
    """From zero moments, bias correction makes ``m_hat = d`` and ``v_hat = d^2`` exactly for the fed gradient ``d``."""
    torch.manual_seed(1)
    w0, g = torch.randn(100, dtype=torch.float64), torch.randn(100, dtype=torch.float64)
    lr, wd, eps = 1e-2, 0.5, 1e-8
    adam_l2 = trajectory(lambda ps: ro.Adam(ps, lr=lr, weight_decay=wd, eps=eps), w0, [g])
    adamw = trajectory(lambda ps: ro.AdamW(ps, lr=lr, weight_decay=wd, eps=eps), w0, [g])
    d = g + wd * w0
    torch.testing.assert_close(adam_l2, w0 - lr * d / (d.abs() + eps), rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(adamw, w0 * (1 - lr * wd) - lr * g / (g.abs() + eps), rtol=1e-13, atol=1e-15)


def test_adam_l2_differs_from_adamw():
    torch.manual_seed(2)
    w0 = torch.randn(200, dtype=torch.float64)
    grads = [
        torch.randn(200, dtype=torch.float64) * torch.linspace(0.01, 10, 200, dtype=torch.float64)
        for _ in range(30)
    ]
    adam_l2 = trajectory(lambda ps: ro.Adam(ps, lr=1e-2, weight_decay=0.1), w0, grads)
    adamw = trajectory(lambda ps: ro.AdamW(ps, lr=1e-2, weight_decay=0.1), w0, grads)
    assert (adam_l2 - adamw).abs().max() > 1e-2


@pytest.mark.parametrize("decoupled_cls, coupled_cls", [(ro.SGDW, ro.SGD), (ro.AdamW, ro.Adam)])
def test_decoupled_classes_stay_decoupled(decoupled_cls, coupled_cls):
    """SGDW/AdamW refuse a coupled param group and re-impose decoupling when loading a coupled checkpoint."""
    w = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match="decoupled_weight_decay"):
        decoupled_cls([{"params": [w], "decoupled_weight_decay": False}], lr=0.1)
    opt = decoupled_cls([w], lr=0.1)
    opt.load_state_dict(coupled_cls([w], lr=0.1).state_dict())
    assert opt.param_groups[0]["decoupled_weight_decay"] is True
