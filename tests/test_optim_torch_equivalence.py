"""regkit SGD/SGDW/Adam/AdamW == torch.optim in float64, bit for bit: parameters AND state, 50 steps.

Every flag combination, on the for-loop path (== torch's single-tensor path) and the foreach
path (== torch's multi-tensor path). Bitwise agreement holds everywhere because the
primitives reproduce torch's operations in torch's order (``lerp_`` for the first moment,
``mul_`` + ``addcmul_`` for the second, ``addcdiv_`` with ``-lr / (1 - beta1^t)``,
``add(alpha=...)`` for L2 and Nesterov), and the bias corrections are computed in Python
floats from the same step counts. torch has no decoupled SGD: SGDW is checked against
torch.optim.SGD preceded by the one decoupled line ``w *= 1 - lr * wd``.
"""

import io
import itertools

import pytest
import torch

import regkit.optim as ro
from tests.problems import MixedDtypeNet

STEPS = 50
SHAPES = [(5, 3), (3,), (2, 2, 2), (1,)]


def make_params(dtypes=(torch.float64,)):
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, dtype=dtypes[i % len(dtypes)])) for i, s in enumerate(SHAPES)]


def set_grads(params, step):
    """A weight-dependent gradient plus seeded noise (no autograd: cheap, and still a feedback loop)."""
    g = torch.Generator().manual_seed(step)
    for p in params:
        p.grad = torch.sin(3 * p.detach()) + 0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(
            p.dtype
        )


def assert_bitwise(params, opt, ref_params, ref_opt):
    for i, (p, q) in enumerate(zip(params, ref_params, strict=True)):
        assert torch.equal(p, q), f"param {i}: max diff {(p - q).abs().max().item():.3g}"
        state, ref_state = opt.state[p], ref_opt.state[q]
        assert state.keys() == ref_state.keys(), (i, state.keys(), ref_state.keys())
        for key in ref_state:
            assert state[key].dtype == ref_state[key].dtype and torch.equal(state[key], ref_state[key]), (
                i,
                key,
            )


def run_pair(make, make_ref, *, decoupled_ref=None, dtypes=(torch.float64,), steps=STEPS):
    """Step a regkit optimizer and its torch reference on identical params and gradients."""
    params, ref_params = make_params(dtypes), make_params(dtypes)
    opt, ref_opt = make(params), make_ref(ref_params)
    for step in range(steps):
        set_grads(params, step)
        set_grads(ref_params, step)
        opt.step()
        if decoupled_ref is not None:  # lr * wd of group 0: the one decoupled line torch's SGD lacks
            with torch.no_grad():
                torch._foreach_mul_(ref_params, 1 - decoupled_ref)
        ref_opt.step()
    assert_bitwise(params, opt, ref_params, ref_opt)


PATHS = pytest.mark.parametrize("foreach", [False, True], ids=["for_loop", "foreach"])
SGD_FLAGS = [
    dict(momentum=m, dampening=d, nesterov=n, weight_decay=wd, maximize=mx)
    for m, d, n, wd, mx in itertools.product([0.0, 0.9], [0.0, 0.1], [False, True], [0.0, 0.1], [False, True])
    if not (n and (m == 0 or d != 0))
]
ADAM_FLAGS = [
    dict(amsgrad=a, weight_decay=wd, decoupled_weight_decay=dec, maximize=mx)
    for a, (wd, dec), mx in itertools.product(
        [False, True], [(0.0, False), (0.1, False), (0.1, True)], [False, True]
    )
]
flag_id = lambda flags: "-".join(f"{k}={v}" for k, v in flags.items())


@PATHS
@pytest.mark.parametrize("flags", SGD_FLAGS, ids=flag_id)
def test_sgd_matches_torch(flags, foreach):
    run_pair(
        lambda ps: ro.SGD(ps, lr=0.05, foreach=foreach, **flags),
        lambda ps: torch.optim.SGD(ps, lr=0.05, foreach=foreach, **flags),
    )


@PATHS
@pytest.mark.parametrize("flags", [f for f in SGD_FLAGS if f["weight_decay"] != 0], ids=flag_id)
def test_sgdw_matches_torch_sgd_plus_decoupled_decay(flags, foreach):
    run_pair(
        lambda ps: ro.SGDW(ps, lr=0.05, foreach=foreach, **flags),
        lambda ps: torch.optim.SGD(ps, lr=0.05, foreach=foreach, **{**flags, "weight_decay": 0.0}),
        decoupled_ref=0.05 * flags["weight_decay"],
    )


@PATHS
@pytest.mark.parametrize("flags", ADAM_FLAGS, ids=flag_id)
def test_adam_matches_torch(flags, foreach):
    kwargs = dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, foreach=foreach, **flags)
    run_pair(lambda ps: ro.Adam(ps, **kwargs), lambda ps: torch.optim.Adam(ps, **kwargs))


@PATHS
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
def test_adamw_matches_torch(amsgrad, maximize, foreach):
    kwargs = dict(lr=0.01, weight_decay=0.1, amsgrad=amsgrad, maximize=maximize, foreach=foreach)
    run_pair(lambda ps: ro.AdamW(ps, **kwargs), lambda ps: torch.optim.AdamW(ps, **kwargs))


@pytest.mark.parametrize(
    "make, make_ref",
    [
        (lambda ps: ro.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.1, foreach=True),
         lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.1, foreach=True)),
        (lambda ps: ro.AdamW(ps, lr=0.01, amsgrad=True, foreach=True),
         lambda ps: torch.optim.AdamW(ps, lr=0.01, amsgrad=True, foreach=True)),
    ],
    ids=["sgd", "adamw"],
)  # fmt: skip
def test_foreach_buckets_mixed_dtypes_like_torch(make, make_ref):
    """float32 and float64 params in one group: both libraries bucket by dtype; the float32 bucket agrees too."""
    run_pair(make, make_ref, dtypes=(torch.float64, torch.float32), steps=10)


@pytest.mark.parametrize("direction", ["torch_to_regkit", "regkit_to_torch"])
@pytest.mark.parametrize(
    "regkit_cls, torch_cls, kwargs",
    [
        (ro.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
        (ro.Adam, torch.optim.Adam, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
        (ro.AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    ],
    ids=["sgd", "adam", "adamw"],
)
def test_state_dict_interchanges_with_torch(regkit_cls, torch_cls, kwargs, direction):
    """A checkpoint written by one library resumes in the other on the identical trajectory."""
    first, second = (torch_cls, regkit_cls) if direction == "torch_to_regkit" else (regkit_cls, torch_cls)
    params = make_params()
    opt = first(params, **kwargs)
    for step in range(5):
        set_grads(params, step)
        opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = second(resumed_params, **kwargs)
    resumed.load_state_dict(torch.load(buffer))
    for step in range(5, 10):
        for ps, o in ((params, opt), (resumed_params, resumed)):
            set_grads(ps, step)
            o.step()
    assert_bitwise(resumed_params, resumed, params, opt)


def test_mixed_dtype_model_matches_torch_with_autograd():
    """The same check through a real backward pass (gradients from autograd, two dtypes, foreach)."""
    model, ref = MixedDtypeNet(), MixedDtypeNet()
    opt = ro.Adam(model.parameters(), lr=0.01, weight_decay=0.1, foreach=True)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=0.01, weight_decay=0.1, foreach=True)
    for step in range(10):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            m.loss(step).backward()
            o.step()
    assert_bitwise(list(model.parameters()), opt, list(ref.parameters()), ref_opt)
