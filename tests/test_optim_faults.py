"""Optimizer fault policy (issue 19, items 3, 7, 8, 9, 13): failures leave the weights intact, bad inputs fail
with errors that name the value and say what to do, and a NaN/inf gradient entry stays in its own tensor."""

import copy

import pytest
import torch
from torch import nn

import regkit.optim as ro
from regkit.penalties import GNP, SAM

NAN, INF = float("nan"), float("inf")


class Net(nn.Module):
    """A matrix ``w`` and a bias ``b`` (float64); BatchNorm statistics to check they are restored too."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.w = nn.Parameter(torch.randn(3, 2, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(2, dtype=torch.float64))
        self.bn = nn.BatchNorm1d(2, affine=False, dtype=torch.float64)

    def loss(self):
        g = torch.Generator().manual_seed(0)
        x, y = (torch.randn(8, k, generator=g, dtype=torch.float64) for k in (3, 2))
        return (self.bn(x @ self.w) + self.b - y).square().mean()


def snapshot(net):
    """The parameters (running statistics keep pass 1's update of the failed step: that pass did run)."""
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def closure_for(opt, net, *, fail_on=None, error=RuntimeError, poison=None):
    """A closure that raises ``error`` on call number ``fail_on`` and writes ``poison`` into w.grad[0, 0]."""
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == fail_on:
            raise error("the loss failed")
        opt.zero_grad()
        loss = net.loss()
        loss.backward()
        if poison is not None:
            net.w.grad[0, 0] = poison
        return loss

    return closure


WRAPPERS = {
    "sam": lambda net, **kw: SAM(net.parameters(), ro.SGD, rho=0.1, lr=0.1, momentum=0.9, model=net, **kw),
    "gnp_forward": lambda net, **kw: GNP(net.parameters(), ro.SGD, alpha=0.8, r=0.1, lr=0.1, model=net, **kw),
    "gnp_central_layer": lambda net, **kw: GNP(
        net.parameters(), ro.SGD, alpha=0.8, r=0.1, difference="central", normalize="layer", lr=0.1, model=net, **kw
    ),
}


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("name", list(WRAPPERS))
def test_a_failing_later_pass_restores_the_weights_and_does_not_count_the_step(name, error, foreach):
    """Issue 19.3: before the fix the weights stayed perturbed and the next step continued from them."""
    net, reference = Net(), Net()
    opt, ref_opt = WRAPPERS[name](net, foreach=foreach), WRAPPERS[name](reference, foreach=foreach)
    opt.step(closure_for(opt, net))
    ref_opt.step(closure_for(ref_opt, reference))
    before = snapshot(net)
    for fail_on in (2, 3) if "central" in name else (2,):
        with pytest.raises(error, match="the loss failed"):
            opt.step(closure_for(opt, net, fail_on=fail_on, error=error))
        after = snapshot(net)
        assert all(torch.equal(before[k], after[k]) for k in before), f"weights moved ({fail_on=})"
        assert opt.num_steps == 1
    opt.step(closure_for(opt, net))  # continues exactly as a run that never failed
    ref_opt.step(closure_for(ref_opt, reference))
    assert all(torch.equal(a, b) for a, b in zip(snapshot(net).values(), snapshot(reference).values(), strict=True))


def test_a_failing_first_pass_does_not_count_the_step():
    net = Net()
    opt = WRAPPERS["sam"](net)
    with pytest.raises(RuntimeError):
        opt.step(closure_for(opt, net, fail_on=1))
    assert opt.num_steps == 0


@pytest.mark.parametrize("make", [ro.NGD, ro.Graft])
def test_ngd_and_graft_refuse_nan_lr(make):
    """Issue 19.7: lr=nan was accepted (every other optimizer refuses it)."""
    with pytest.raises(ValueError, match="lr must be in .*got nan"):
        make([nn.Parameter(torch.ones(2))], lr=NAN)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.int64])
def test_ngd_refuses_non_real_floating_params(dtype):
    with pytest.raises(ValueError, match=f"params must be real floating-point tensors, got dtypes \\['{dtype}'\\]"):
        ro.NGD([torch.ones(2, dtype=dtype)], lr=0.1)


# --- issue 19.8: a NaN/inf gradient entry ------------------------------------------------------------

def poisoned_step(opt, net, poison):
    opt.step(closure_for(opt, net, poison=poison))


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("poison", [NAN, INF])
@pytest.mark.parametrize("norm", ["global", "layer"])
def test_ngd_skips_the_tensors_whose_norm_is_not_finite(norm, poison, foreach):
    """Global norm: no tensor moves (before: every parameter became NaN); layer norm: only the bad tensor stays."""
    net, clean = Net(), Net()
    opt = ro.NGD(net.parameters(), lr=0.1, norm=norm, foreach=foreach)
    clean_opt = ro.NGD([clean.b], lr=0.1, norm=norm, foreach=foreach)
    w0, b0 = net.w.detach().clone(), net.b.detach().clone()
    poisoned_step(opt, net, poison)
    assert torch.equal(net.w, w0)
    if norm == "global":
        assert torch.equal(net.b, b0)
    else:
        clean_opt.step(closure_for(clean_opt, clean))
        assert torch.equal(net.b, clean.b) and not torch.equal(net.b, b0)


def test_graft_skips_a_step_with_a_non_finite_magnitude():
    net = Net()
    opt = ro.Graft(net.parameters(), lr=0.1)
    before = snapshot(net)
    opt.set_magnitude(torch.tensor(NAN))
    opt.step(closure_for(opt, net))
    assert torch.equal(net.w, before["w"]) and torch.equal(net.b, before["b"])


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("poison", [NAN, INF])
def test_adam_awd_keeps_its_coefficient_and_the_other_tensors_finite(poison, foreach):
    """Before: the group's joint norm made lambda_bar NaN and decayed every tensor to NaN."""
    net, reference = Net(), Net()
    opt = ro.AdamAWD(net.parameters(), lr=0.01, weight_decay=0.1, foreach=foreach)
    ref_opt = ro.AdamAWD(reference.parameters(), lr=0.01, weight_decay=0.1, foreach=foreach)
    for o, n in ((opt, net), (ref_opt, reference)):
        o.step(closure_for(o, n))
    lam = opt.state[net.b]["awd_lambda"].clone()
    b_before = net.b.detach().clone()
    poisoned_step(opt, net, poison)
    assert torch.equal(opt.state[net.b]["awd_lambda"], lam)
    assert torch.isfinite(net.b).all() and not torch.equal(net.b, b_before)
    assert torch.isfinite(net.w).sum() == net.w.numel() - 1 or poison == INF  # the bad entry stays in w


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", list(WRAPPERS))
def test_sam_and_gnp_confine_a_nan_gradient_entry_to_its_tensor(name, foreach):
    """Before: ||g0|| = NaN perturbed every weight to NaN, so every parameter became NaN. Now the tensors
    whose norm is not finite are not perturbed (all of them for a global norm: the step is then the base
    optimizer's on g0), and only the bad entry's tensor is spoiled."""
    net, plain = Net(), Net()
    opt = WRAPPERS[name](net, foreach=foreach)
    base = ro.SGD(plain.parameters(), lr=0.1, momentum=0.9 if name == "sam" else 0.0)
    poisoned_step(opt, net, NAN)
    base.zero_grad()
    plain.loss().backward()
    base.step()
    if "layer" not in name:
        torch.testing.assert_close(net.b, plain.b, rtol=1e-12, atol=1e-15)
    assert torch.isfinite(net.b).all() and torch.isnan(net.w).sum() == 1


def test_gnp_exact_confines_a_non_finite_gradient_to_its_tensor():
    net = Net()
    opt = GNP(net.parameters(), ro.SGD, alpha=0.8, r=0.1, difference="exact", lr=0.1)
    mask = torch.zeros(3, 2, dtype=torch.bool)
    mask[0, 0] = True
    net.w.register_hook(lambda g: torch.where(mask, NAN, g))  # one NaN entry in w's gradient
    opt.step(net.loss)
    assert torch.isfinite(net.b).all() and torch.isnan(net.w).sum() == 1


# --- issue 19.9: float16 ------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [ro.Adam, ro.AdamW, ro.AdamAWD, ro.AdamAdaDecay,
                                  lambda ps, **kw: ro.AdamCPR(ps, verbose=False, **kw)])
def test_adam_family_refuses_float16_and_points_to_bfloat16_or_autocast(make):
    """Before: 5 steps with gradients of 1e-3 made the weights inf/NaN (v underflows, eps rounds to 0)."""
    with pytest.raises(ValueError, match=r"does not support torch.float16 params \(shape \(4, 4\)\).*autocast.*bfloat16"):
        make([nn.Parameter(torch.ones(4, 4, dtype=torch.float16))], lr=1e-3)
    w = nn.Parameter(torch.ones(4, 4, dtype=torch.bfloat16))
    opt = make([w], lr=1e-3)
    for _ in range(5):
        w.grad = torch.full_like(w, 1e-3)
        opt.step()
    assert torch.isfinite(w).all()


@pytest.mark.parametrize("make, kwargs", [(ro.AdamP, {}), (ro.SGD, {"momentum": 0.9}), (ro.SGDP, {"momentum": 0.9})])
def test_optimizers_without_that_underflow_keep_float16(make, kwargs):
    w = nn.Parameter(torch.full((4, 4), 0.01, dtype=torch.float16))
    opt = make([w], lr=1e-3, **kwargs)
    for _ in range(5):
        w.grad = torch.full_like(w, 1e-3)
        opt.step()
    assert torch.isfinite(w).all() and not torch.equal(w, torch.full_like(w, 0.01))


# --- issue 19.13: clear errors ------------------------------------------------------------------------

def test_adam_cpr_refuses_an_empty_regularized_matrix_and_routes_it_when_it_groups_itself():
    empty = nn.Parameter(torch.zeros(0, 3))
    with pytest.raises(ValueError, match=r"empty tensor: param_groups\[0\]\['params'\]\[0\] \(shape \(0, 3\)\).*"
                                         r"regularize=False"):
        ro.AdamCPR([{"params": [empty], "regularize": True}])
    w = nn.Parameter(torch.ones(2, 3))
    opt = ro.AdamCPR([w, empty], kappa_init_method="uniform", kappa_init_param=0.5, verbose=False)
    assert [g["regularize"] for g in opt.param_groups] == [True, False]
    w.grad, empty.grad = torch.ones(2, 3), torch.zeros(0, 3)
    opt.step()  # ZeroDivisionError before the fix
    assert torch.isfinite(w).all()


@pytest.mark.parametrize("make, foreign, missing", [
    (lambda ps: ro.Adam(ps), lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), "step"),
    (lambda ps: ro.AdamCPR([{"params": ps, "regularize": True}]), lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), "step"),
    (lambda ps: ro.SGD(ps, lr=0.1, momentum=0.9), lambda ps: torch.optim.Adam(ps), "momentum_buffer"),
    (lambda ps: ro.NGD(ps, lr=0.1), lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), "step"),
])  # fmt: skip
def test_a_foreign_state_dict_is_refused_on_load_and_changes_nothing(make, foreign, missing):
    """Before: KeyError 'exp_avg' (Adam) or 'norm' (NGD) at the first step after loading."""
    net = Net()
    other = foreign(net.parameters())
    other.zero_grad()
    net.loss().backward()
    other.step()
    opt = make(list(net.parameters()))
    opt.step()
    state, groups = copy.deepcopy(opt.state_dict()), copy.deepcopy(opt.param_groups)
    with pytest.raises(ValueError, match=f"has no '{missing}' .*saved by another optimizer"):
        opt.load_state_dict(other.state_dict())
    assert str(opt.state_dict()) == str(state) and str(opt.param_groups) == str(groups)
    opt.step()


def test_ngd_loads_a_torch_sgd_state_dict_without_state_and_fills_its_options():
    net = Net()
    opt = ro.NGD(net.parameters(), lr=0.1, norm="layer")
    opt.load_state_dict(torch.optim.SGD(net.parameters(), lr=0.2).state_dict())
    assert opt.param_groups[0]["norm"] == "layer" and opt.param_groups[0]["lr"] == 0.2  # this NGD's default
    opt.step(closure_for(opt, net))  # KeyError 'norm' before the fix


def test_gnp_exact_with_a_closure_returning_none_says_what_it_needs():
    net = Net()
    opt = GNP(net.parameters(), ro.SGD, difference="exact", lr=0.1)
    with pytest.raises(TypeError, match="returns the loss tensor .*returned NoneType"):
        opt.step(lambda: None)
    assert opt.num_steps == 0


@pytest.mark.parametrize("make", [lambda ps: ro.NGD(ps, lr=0.1), lambda ps: SAM(ps, ro.SGD, lr=0.1)])
def test_sparse_gradients_are_refused_by_ngd_and_sam(make):
    emb = nn.Embedding(5, 2, sparse=True)
    opt = make(emb.parameters())

    def closure():
        opt.zero_grad()
        loss = emb(torch.tensor([1, 2])).sum()
        loss.backward()
        return loss

    with pytest.raises(ValueError, match="does not support sparse gradients"):
        opt.step(closure)
