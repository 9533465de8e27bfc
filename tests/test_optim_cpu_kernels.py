"""regkit's CPU kernels (`regkit.optim.cpu_kernels`): each kernel against its formula in float64 torch ops, the
methods on them against their foreach path over many steps (constraints and projections active), and the fallback.

Without a C++ compiler the kernels cannot be built: these tests then skip, except in CI, where they fail.
"""

import itertools
import os
from pathlib import Path

import pytest
import torch

import regkit.optim as ro
from regkit.optim import cpu_kernels
from regkit.optim.adamp import invariant_views
from regkit.optim.fused import FUSED_TOLERANCE


@pytest.fixture(scope="module", autouse=True)
def built_kernels():
    if cpu_kernels.disabled() or cpu_kernels.load() is None:
        message = "regkit's CPU kernels could not be built here (a C++ compiler and ninja are needed)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)


def rand(*shape, seed=0, dtype=torch.float32):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("magnitudes", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sums_are_the_sums_of_each_tensor(dtype, magnitudes):
    xs = [rand(100_003, seed=1, dtype=dtype) * 2, rand(3, 4, seed=2, dtype=dtype), rand(1, seed=3, dtype=dtype)]
    for row, x in zip(cpu_kernels.sums(xs, magnitudes=magnitudes), xs, strict=True):
        x = x.double()
        huber = torch.where(x.abs() < 1, 0.5 * x * x, x.abs() - 0.5).sum()
        y = x.abs() if magnitudes else x
        shifted = y - y.flatten()[0]
        expected = torch.stack([x.sum(), x.square().sum(), x.abs().sum(), huber, shifted.sum(), shifted.square().sum()])
        if magnitudes:  # only sum |x| and the shifted sums
            expected[[0, 1, 3]] = 0
        torch.testing.assert_close(torch.tensor(row, dtype=torch.float64), expected, rtol=1e-6, atol=1e-6)


def test_squares_of_pairs():
    xs, ys = [rand(30_001, seed=7), rand(2, 3, seed=8)], [rand(30_001, seed=9), rand(2, 3, seed=10)]
    for row, x, y in zip(cpu_kernels.squares(xs, ys), xs, ys, strict=True):
        assert row == pytest.approx([float(x.double().square().sum()), float(y.double().square().sum())], rel=1e-6)


@pytest.mark.parametrize("magnitudes", [False, True])
def test_the_spread_of_a_near_constant_tensor_is_accurate(magnitudes):
    """sum w^2 - (sum w)^2 / n would lose every digit here (a spread of 1e-4 around 3); the shifted sums keep them."""
    x = 3 + 1e-4 * rand(200_000, seed=5)
    centred = float((x.double() - x.double().mean()).square().sum())
    assert cpu_kernels.spread(cpu_kernels.sums([x], magnitudes=magnitudes)[0], x.numel())[1] == pytest.approx(
        centred, rel=1e-3
    )
    constant = torch.full((1000,), 0.7)
    assert cpu_kernels.spread(cpu_kernels.sums([constant], magnitudes=magnitudes)[0], 1000)[1] == 0.0


@pytest.mark.parametrize("mode", range(4))
def test_descend_takes_each_constraint_step(mode):
    w = rand(50_000, seed=4) * 2
    got = w.clone()
    cpu_kernels.descend_([got], mode, [0.3], [0.1])
    expected = [w * 0.3, w - w.clamp(-0.3, 0.3), w * 0.3 + 0.1, w - 0.3 * w.clamp(-1, 1)][mode]
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adam_step_is_torch_fused_adamw_and_sums_the_new_weights(dtype, maximize):
    p, g, m, v = (rand(70_001, seed=s, dtype=dtype) for s in range(4))
    v = v.abs()
    q, m2, v2 = p.clone(), m.clone(), v.clone()
    lr, wd, step = 0.01, 0.5, 3.0
    rows = cpu_kernels.adam_step_([p], [g], [m], [v], [step], lr=lr, beta1=0.9, beta2=0.99, eps=1e-8,
                                  maximize=maximize, keeps=[1 - lr * wd], stats=True)  # fmt: skip
    torch._fused_adamw_([q], [g], [m2], [v2], [], [torch.tensor(step)], amsgrad=False, lr=lr, beta1=0.9, beta2=0.99,
                        weight_decay=wd, eps=1e-8, maximize=maximize, grad_scale=None, found_inf=None)  # fmt: skip
    for ours, theirs in ((p, q), (m, m2), (v, v2)):
        torch.testing.assert_close(ours, theirs, **FUSED_TOLERANCE[dtype])
    assert rows[0][1] == pytest.approx(float(q.double().square().sum()), rel=1e-6)


def test_adam_step_decays_each_coordinate_by_the_adadecay_factor():
    p, g, m, v = (rand(10_000, seed=s) for s in range(4))
    v = v.abs()
    expected_p = p.clone()
    rate, slope, offset = 0.02, 3.0, -1.5
    cpu_kernels.adam_step_([p], [g], [m.clone()], [v.clone()], [1.0], lr=0.0, beta1=0.9, beta2=0.99, eps=1e-8,
                           maximize=False, rates=[rate], slopes=[slope], offsets=[offset])  # fmt: skip
    keep = 1 - rate * torch.sigmoid(slope * g.double().abs() + offset)  # lr = 0: the decay alone
    torch.testing.assert_close(p, (expected_p.double() * keep).float(), rtol=1e-6, atol=1e-7)


def test_a_step_counts_as_an_in_place_change_for_autograd():
    p = torch.nn.Parameter(rand(5, 4))
    opt = ro.AdamCPR([{"params": [p], "regularize": True}], kappa_init_method="uniform", kappa_init_param=0.1,
                     fused=True)  # fmt: skip
    p.grad = rand(5, 4, seed=1)
    before = p._version
    opt.step()
    assert p._version >= before + 2  # the Adam pass and the constraint step


CPR_INITS = {"uniform": 2.0, "warm_start": 3, "dependent": 0.6, "inflection_point": 1000.0}


def run(opt, params, steps=12):
    for t in range(steps):
        for i, p in enumerate(params):
            p.grad = rand(*p.shape, seed=100 * t + i, dtype=p.dtype) * (1 + 0.2 * t)
        opt.step()


def cpr_pair(dtype, **kw):
    out = []
    for fused in (False, True):
        params = [torch.nn.Parameter(rand(*s, seed=j, dtype=dtype)) for j, s in enumerate([(8, 6), (5, 3, 2), (4,)])]
        groups = [{"params": params[:2], "regularize": True}, {"params": params[2:], "regularize": False}]
        opt = ro.AdamCPR(groups, lr=0.05, kappa_update=10.0, reg_step_size=2, reg_by_lr=True, fused=fused,
                         foreach=None if fused else True, **kw)  # fmt: skip
        run(opt, params)
        out.append((opt, params))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("measure", "order", "init"),
                         list(itertools.product(["l2", "l1", "std", "huber"], ["post_step", "pre_step"], CPR_INITS)))
def test_adam_cpr_on_the_kernels_follows_the_foreach_path(measure, order, init, dtype, monkeypatch):
    calls = []
    original = cpu_kernels.descend_
    monkeypatch.setattr(cpu_kernels, "descend_", lambda *a: calls.append(1) or original(*a))
    bound = 0.5 if (measure, init) == ("std", "uniform") else CPR_INITS[init]  # std of N(0, 1) weights: about 1
    (ref, a), (fused, b) = cpr_pair(dtype, reg_function=measure, reg_order=order, kappa_init_method=init,
                                    kappa_init_param=bound, adaptive_bounds=init == "dependent")  # fmt: skip
    # the constraint step ran on the kernels; with lambda = 0 throughout (the detector has not fired) it was skipped
    assert bool(calls) == (init != "inflection_point")
    tol = FUSED_TOLERANCE[dtype]
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(q, p, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
        for key, value in ref.state[p].items():
            torch.testing.assert_close(fused.state[q][key], value, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10,
                                       msg=key)  # fmt: skip
    if init != "inflection_point":  # the bound is active: the test exercises the constraint step
        assert any(float(ref.state[p]["lagmul"]) > 0 for p in a[:2])


@pytest.mark.parametrize("cls", [ro.AdamAWD, ro.AdamAdaDecay])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_adaptive_decay_on_the_kernels_follows_the_foreach_path_and_keeps_a_nan_in_its_tensor(cls, dtype):
    """AWD: the NaN entry alone; AdaDecay: its tensor's gradient statistics, so the whole tensor (both paths)."""
    results = []
    for fused in (False, True):
        params = [torch.nn.Parameter(rand(*s, seed=j, dtype=dtype)) for j, s in enumerate([(8, 6), (30,), (1, 1)])]
        opt = cls(params, lr=0.05, weight_decay=0.3, fused=fused)
        run(opt, params, steps=8)
        params[1].grad[3] = float("nan")
        opt.step()
        results.append(params)
    for p, q in zip(*results, strict=True):
        torch.testing.assert_close(q, p, equal_nan=True, **FUSED_TOLERANCE[dtype])
    assert results[1][1].isnan().sum() == (1 if cls is ro.AdamAWD else 30)
    assert results[1][0].isfinite().all() and results[1][2].isfinite().all()


def scale_invariant_grads(params, t):
    """Random gradients, made orthogonal to the weights row by row (tensor 0) and as a whole (tensor 1): the
    projection of AdamP/SGDP then applies in the channel and in the layer view."""
    grads = [rand(*p.shape, seed=1000 + 100 * t + i, dtype=p.dtype) for i, p in enumerate(params)]
    for i, rows in ((0, params[0].shape[0]), (1, 1)):
        w, g = params[i].detach().reshape(rows, -1), grads[i].view(rows, -1)
        g -= (g * w).sum(1, keepdim=True) / (w * w).sum(1, keepdim=True) * w
    return grads


PROJECTION_CASES = {
    "AdamP": lambda ps, **kw: ro.AdamP(ps, lr=0.05, weight_decay=0.1, **kw),
    "AdamP_nesterov": lambda ps, **kw: ro.AdamP(ps, lr=0.05, weight_decay=0.1, nesterov=True, **kw),
    "SGDP_nesterov": lambda ps, **kw: ro.SGDP(ps, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True, **kw),
    "SGDP_dampening": lambda ps, **kw: ro.SGDP(ps, lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01, **kw),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(PROJECTION_CASES))
def test_adamp_and_sgdp_on_the_kernels_follow_the_foreach_path(name, dtype, monkeypatch):
    calls = []
    original = cpu_kernels.projected_step_
    monkeypatch.setattr(cpu_kernels, "projected_step_", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    results = []
    for fused in (False, True):
        params = [torch.nn.Parameter(rand(*s, seed=j, dtype=dtype)) for j, s in enumerate([(8, 5), (6, 3, 2, 2), (4,), ()])]
        opt = PROJECTION_CASES[name](params, fused=fused)
        for t in range(10):
            for p, g in zip(params, scale_invariant_grads(params, t), strict=True):
                p.grad = g
            if t == 0:
                assert invariant_views(params, [p.grad for p in params]) == ["channel", "layer", "none", "none"]
            opt.step()
        results.append((opt, params))
    assert len(calls) == 10
    (ref, a), (fused, b) = results
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(q, p, **FUSED_TOLERANCE[dtype])
        for key, value in ref.state[p].items():
            torch.testing.assert_close(fused.state[q][key], value, **FUSED_TOLERANCE[dtype], msg=key)


def test_tensors_the_kernels_cannot_take_keep_torch_kernels(monkeypatch):
    """channels_last weights (not contiguous), amsgrad, AdamP's channel_dim=1, SGDP projecting its buffer or without
    momentum: torch's fused kernel or the foreach path."""
    calls = []
    for name in ("adam_step_", "projected_step_"):
        monkeypatch.setattr(cpu_kernels, name, lambda *a, **kw: calls.append(1))
    w = torch.nn.Parameter(rand(4, 3, 2, 2).contiguous(memory_format=torch.channels_last))
    v = torch.nn.Parameter(rand(4, 3))
    for opt in (
        ro.AdamCPR([w], verbose=False, fused=True),
        ro.AdamAWD([v], amsgrad=True, fused=True),
        ro.AdamP([v], channel_dim=1, fused=True),
        ro.SGDP([v], lr=0.1, momentum=0.9, project_buffer=True, fused=True),  # the official mode: the buffer projected
        ro.SGDP([v], lr=0.1, fused=True),  # no momentum
    ):
        params = [p for g in opt.param_groups for p in g["params"]]
        run(opt, params, steps=2)
    assert calls == []


def test_without_a_compiler_fused_warns_once_and_takes_torch_kernels(monkeypatch):
    from torch.utils import cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension 'regkit_cpu_kernels': c++: command not found")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    cpu_kernels.load.cache_clear()
    try:
        (ref, a), (fused, b) = (None, None), (None, None)
        with pytest.warns(RuntimeWarning, match="could not build its CPU kernels .*command not found.*g\\+\\+"):
            (ref, a), (fused, b) = cpr_pair(torch.float32, reg_function="l2", kappa_init_method="uniform",
                                            kappa_init_param=2.0)  # fmt: skip
        for p, q in zip(a, b, strict=True):
            torch.testing.assert_close(q, p, **FUSED_TOLERANCE[torch.float32])
    finally:
        cpu_kernels.load.cache_clear()  # the next test builds (loads) the real kernels again


def test_the_build_runs_the_pypi_ninja_first_and_path_comes_back(monkeypatch):
    ninja = pytest.importorskip("ninja")
    monkeypatch.setenv("PATH", "/usr/bin")
    with cpu_kernels._pypi_ninja_first():
        assert os.environ["PATH"].split(os.pathsep)[0] == ninja.BIN_DIR
        assert (Path(ninja.BIN_DIR) / "ninja").exists()
    assert os.environ["PATH"] == "/usr/bin"
