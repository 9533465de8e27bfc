"""AdamCPR against pytorch-cpr 0.3.1 (test-only dependency) in float64 over 300 steps, and the 0.3.1 bugs we do not copy.

Agreement is to float32 rounding, not bit for bit: both keep the multiplier in float32, and
0.3.1 computes ``R`` as ``square().sum()`` on one path and ``norm()**2`` on the other.
"""

import warnings

import pytest
import torch
from torch import nn

import regkit.optim as ro

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # 0.3.1 uses deprecated torch._utils.is_compiling
    import pytorch_cpr

pytestmark = [  # pytorch-cpr 0.3.1 calls torch APIs deprecated since
    pytest.mark.filterwarnings("ignore:`torch._utils.is_compiling` is deprecated"),
    pytest.mark.filterwarnings("ignore:Use _accelerator_graph_capture_health_check instead"),
]
STEPS = 300


def small_model() -> nn.Module:
    """Two Linear layers around a LayerNorm: both packages regularize the two weight matrices only."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 3)).double()


def batches(steps: int = STEPS):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(steps, 16, 4, generator=g, dtype=torch.float64)
    y = 4 * (3 * x[..., :3]).sin() + 0.1 * torch.randn(steps, 16, 3, generator=g, dtype=torch.float64)
    return list(zip(x, y, strict=True))


DATA = batches()


def train(model: nn.Module, opt: torch.optim.Optimizer, data=DATA) -> int:
    """Runs ``opt`` on ``data``; returns how many (tensor, step) pairs had an active multiplier."""
    active = 0
    for x, y in data:
        opt.zero_grad()
        (model(x) - y).square().mean().backward()
        opt.step()
        active += sum(int(s["lagmul"].item() > 0) for s in opt.state.values() if "lagmul" in s)
    return active


def regularized(opt) -> list[torch.Tensor]:
    return [p for g in opt.param_groups if g["regularize"] for p in g["params"]]


def run_ours(kwargs: dict, foreach: bool = False, data=DATA) -> tuple[nn.Module, ro.AdamCPR, int]:
    model = small_model()
    opt = ro.AdamCPR(model, foreach=foreach, verbose=False, **kwargs)
    return model, opt, train(model, opt, data)


def run_theirs(kwargs: dict, foreach: bool, data=DATA) -> tuple[nn.Module, pytorch_cpr.AdamCPR]:
    model = small_model()
    opt = pytorch_cpr.AdamCPR(model, foreach=foreach, **kwargs)
    train(model, opt, data)
    return model, opt


def assert_agree(ours, opt, theirs, ref):
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    for p, q in zip(regularized(opt), regularized(ref), strict=True):
        torch.testing.assert_close(opt.state[p]["kappa"], ref.state[q]["kappa"].reshape(()), rtol=1e-6, atol=0)
        torch.testing.assert_close(opt.state[p]["lagmul"], ref.state[q]["lagmul"].reshape(()), rtol=1e-5, atol=1e-7)


# kappa_init_param per method and measure: the bounds bind for most of the run
KAPPA = {
    "uniform": {"l2": 2.0, "std": 0.2, "huber": 1.0},
    "dependent": {"l2": 0.9, "std": 0.9, "huber": 0.9},
    "warm_start": {"l2": 30, "std": 30, "huber": 30},
}


@pytest.mark.parametrize("measure", ["l2", "std", "huber"])
@pytest.mark.parametrize("method", list(KAPPA))
def test_matches_pytorch_cpr_on_both_of_its_paths(method, measure):
    kwargs = dict(lr=1e-2, kappa_init_method=method, kappa_init_param=KAPPA[method][measure], reg_function=measure)
    ours, opt, active = run_ours(kwargs)
    assert active > STEPS // 3, f"the constraint was active in only {active} tensor-steps: a weak test"
    for foreach in (False, True):
        assert_agree(ours, opt, *run_theirs(kwargs, foreach))


@pytest.mark.parametrize("measure", ["l2", "std", "huber"])
def test_inflection_point_matches_pytorch_cpr_foreach_path(measure):
    kwargs = dict(lr=3e-2, kappa_init_method="inflection_point", reg_function=measure, reg_step_size=10)
    ours, opt, active = run_ours(kwargs, foreach=True)
    kappas = torch.stack([opt.state[p]["kappa"] for p in regularized(opt)])
    assert torch.isfinite(kappas).all() and active > STEPS // 3, "the detector fires early for both matrices"
    assert_agree(ours, opt, *run_theirs(kwargs, foreach=True))


def test_inflection_point_never_fires_on_pytorch_cpr_single_tensor_path_but_does_on_both_of_ours():
    """0.3.1's single-tensor path compares kappa with 1000 instead of its 1e6 marker: the bound is never set."""
    kwargs = dict(lr=3e-2, kappa_init_method="inflection_point", reg_function="l2", reg_step_size=10)
    _, ref = run_theirs(kwargs, foreach=False)
    assert all(ref.state[p]["kappa"].item() == 1e6 for p in regularized(ref))
    (loop, opt_loop, _), (vectorized, opt_foreach, _) = run_ours(kwargs), run_ours(kwargs, foreach=True)
    for p, q in zip(loop.parameters(), vectorized.parameters(), strict=True):
        assert torch.equal(p, q)
    for p, q in zip(regularized(opt_loop), regularized(opt_foreach), strict=True):
        kappa = opt_loop.state[p]["kappa"]
        assert torch.isfinite(kappa) and torch.equal(kappa, opt_foreach.state[q]["kappa"])


def test_l1_matches_pytorch_cpr_sign_step_until_a_weight_reaches_zero():
    """Our l1 step is 0.3.1's sign(w) step (its single-tensor path) wherever that does not cross zero.

    Both run in lockstep until our proximal step first stops a coordinate at exactly 0 (a
    coordinate within ``c * lambda`` of zero, where the sign step would jump across). 0.3.1's
    foreach path steps along ``w`` instead of ``sign(w)`` for l1 (not a gradient of ``R``), so
    it is no reference here.
    """
    kwargs = dict(lr=1e-2, kappa_init_method="warm_start", kappa_init_param=30, reg_function="l1", reg_by_lr=True)
    ours, theirs = small_model(), small_model()
    opt = ro.AdamCPR(ours, foreach=False, verbose=False, **kwargs)
    ref = pytorch_cpr.AdamCPR(theirs, foreach=False, **kwargs)
    steps = active = 0
    for x, y in DATA:
        for model, optimizer in ((ours, opt), (theirs, ref)):
            optimizer.zero_grad()
            (model(x) - y).square().mean().backward()
            optimizer.step()
        if any((p == 0).any() for p in regularized(opt)):
            break
        steps += 1
        active += sum(int(opt.state[p]["lagmul"].item() > 0) for p in regularized(opt))
        for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert steps >= 100 and active >= 10, (steps, active)


def test_l1_sign_step_of_pytorch_cpr_diverges_while_ours_settles_at_the_bound():
    """With a bound well below R(w_0) 0.3.1's sign(w) step overshoots zero, R stays above kappa and lambda
    grows until NaN; the proximal step stops those coordinates at zero instead, and R settles at kappa."""
    kwargs = dict(lr=1e-2, kappa_init_method="uniform", kappa_init_param=2.0, reg_function="l1")
    long_run = batches(600)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN in the reference's forward pass
        theirs, _ = run_theirs(kwargs, foreach=False)
    assert not all(torch.isfinite(p).all() for p in theirs.parameters())
    ours, opt, _ = run_ours(kwargs, data=long_run)
    for p in regularized(opt):
        assert torch.isfinite(p).all() and torch.isfinite(opt.state[p]["lagmul"])
        assert p.abs().sum().item() <= 2.0 * 1.05, "R(w) sits at (or below) the bound kappa = 2"
