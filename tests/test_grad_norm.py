"""Gradient-norm penalty: exact double backprop, the finite-difference GNP wrapper, SAM, warmups.

References: the full Hessian of a tiny float64 network (torch.func.hessian), torch.optim base
optimizers, a hand-written SAM step, and single-pass runs of the same model.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

import regkit.optim
from regkit import param_groups
from regkit.penalties import GNP, SAM, gr_warmup, gradient_norm, update_gradient
from regkit.penalties.grad_norm import combine_, inverse_norms, perturb_

torch.set_num_threads(1)


def tanh_net(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)
    return model, x, y


def dropout_net(seed=0, batchnorm=False):
    torch.manual_seed(seed)
    # Dropout before ReLU: its input is nonzero, so its output's zeros are exactly the dropped units
    layers = [nn.Linear(5, 8)] + ([nn.BatchNorm1d(8)] if batchnorm else []) + [nn.Dropout(0.5), nn.ReLU(),
                                                                              nn.Linear(8, 3)]
    model = nn.Sequential(*layers).double()
    x, y = torch.randn(12, 5, dtype=torch.float64), torch.randint(0, 3, (12,))
    return model, x, y


def make_closure(model, x, y, loss_fn=F.mse_loss, backward=True, calls=None):
    def closure():
        if calls is not None:
            calls.append([p.detach().clone() for p in model.parameters()])
        model.zero_grad()
        loss = loss_fn(model(x), y)
        if backward:
            loss.backward()
        return loss
    return closure


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def grads_of(model):
    return flat([p.grad for p in model.parameters()])


def gradient_and_hessian(model, x, y):
    """g and H (torch.autograd.functional.hessian) of the MSE loss in the flat parameter vector."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def loss(theta):
        chunks = theta.split([s.numel() for s in shapes])
        params = {n: c.view(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        return F.mse_loss(functional_call(model, params, (x,)), y)

    theta = flat([p.detach() for p in model.parameters()]).requires_grad_()
    g = torch.autograd.grad(loss(theta), theta)[0]
    return g, torch.autograd.functional.hessian(loss, theta.detach()), [s.numel() for s in shapes]


def penalty_gradient(model, x, y, lam, normalize="global"):
    """``g + lam H v`` with ``v = g/||g||`` (global) or ``g_i/||g_i||`` per tensor (layer)."""
    g, H, sizes = gradient_and_hessian(model, x, y)
    if normalize == "global":
        v = g / g.norm()
    else:
        v = torch.cat([c / c.norm() for c in g.split(sizes)])
    return g + lam * H @ v


# ---------------------------------------------------------------- exact penalty (double backprop)


def test_gradient_norm_value_and_gradients_match_the_hessian():
    model, x, y = tanh_net()
    g, H, _ = gradient_and_hessian(model, x, y)
    lam = 0.3
    loss = F.mse_loss(model(x), y)
    penalty = gradient_norm(loss, model.parameters())
    torch.testing.assert_close(penalty.detach(), g.norm(), rtol=1e-12, atol=0)
    (loss + lam * penalty).backward()
    torch.testing.assert_close(grads_of(model), g + lam * H @ g / g.norm(), rtol=1e-10, atol=1e-12)

    model.zero_grad()
    loss = F.mse_loss(model(x), y)
    squared = gradient_norm(loss, model.parameters(), squared=True)
    torch.testing.assert_close(squared.detach(), g.square().sum(), rtol=1e-12, atol=0)
    (loss + lam * squared).backward()
    torch.testing.assert_close(grads_of(model), g + 2 * lam * H @ g, rtol=1e-10, atol=1e-12)


def test_gradient_norm_at_zero_gradient_has_zero_gradient_not_nan():
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    loss = (w ** 2).sum() + (w ** 3).sum()  # g = 2w + 3w^2 = 0 at w = 0, H = 2 I
    penalty = gradient_norm(loss, [w])
    assert penalty.item() == 0.0
    penalty.backward()
    assert torch.equal(w.grad, torch.zeros(3, dtype=torch.float64))


def test_gradient_norm_rejects_unrelated_params():
    model, x, y = tanh_net()
    with pytest.raises(ValueError, match="does not depend"):
        gradient_norm(F.mse_loss(model(x), y), [torch.zeros(2, requires_grad=True)])


@pytest.mark.parametrize("normalize", ["global", "layer"])
def test_exact_mode_equals_hessian_reference(normalize):
    model, x, y = tanh_net()
    alpha, r = 0.8, 0.1
    expected = penalty_gradient(model, x, y, alpha * r, normalize)
    opt = GNP(model.parameters(), torch.optim.SGD, alpha=alpha, r=r, difference="exact", normalize=normalize,
              lr=0.0)
    opt.step(make_closure(model, x, y, backward=False))
    torch.testing.assert_close(grads_of(model), expected, rtol=1e-10, atol=1e-12)


def test_exact_mode_rejects_a_closure_that_calls_backward():
    model, x, y = tanh_net()
    opt = GNP(model.parameters(), torch.optim.SGD, difference="exact", lr=0.1)
    with pytest.raises(RuntimeError, match="WITHOUT calling backward"):
        opt.step(make_closure(model, x, y))


# ---------------------------------------------------------------- finite differences


@pytest.mark.parametrize("difference, order", [("forward", 1.0), ("central", 2.0)])
@pytest.mark.parametrize("normalize", ["global", "layer"])
def test_finite_difference_converges_to_exact_penalty_gradient(difference, order, normalize):
    """At fixed lam = alpha r, the update gradient -> g + lam H v with error ~ r (forward), r^2 (central)."""
    model, x, y = tanh_net()
    lam = 0.1
    expected = penalty_gradient(model, x, y, lam, normalize)
    radii = np.logspace(-4, -1.5, 6)  # truncation dominates: round-off ~ lam eps ||g|| / r is ~1e-13
    errors = []
    for r in radii:
        opt = GNP(model.parameters(), torch.optim.SGD, alpha=lam / r, r=float(r), difference=difference,
                  normalize=normalize, lr=0.0)
        opt.step(make_closure(model, x, y))
        errors.append((grads_of(model) - expected).norm().item())
    slope = np.polyfit(np.log(radii), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.05, (slope, errors)


def test_update_gradient_is_the_paper_combination():
    """forward: (1 - alpha) g + alpha g(theta + r v); central: g + alpha/2 (g(theta + r v) - g(theta - r v))."""
    model, x, y = tanh_net()
    alpha, r = 0.7, 0.05
    g = penalty_gradient(model, x, y, 0.0)
    theta = flat([p.detach() for p in model.parameters()])
    v = g / g.norm()

    def gradient_at(point):
        trial = copy.deepcopy(model)
        torch.nn.utils.vector_to_parameters(point, trial.parameters())
        make_closure(trial, x, y)()
        return grads_of(trial)

    g_plus, g_minus = gradient_at(theta + r * v), gradient_at(theta - r * v)
    for difference, expected in [("forward", (1 - alpha) * g + alpha * g_plus),
                                 ("central", g + alpha / 2 * (g_plus - g_minus))]:
        opt = GNP(model.parameters(), torch.optim.SGD, alpha=alpha, r=r, difference=difference, lr=0.0)
        opt.step(make_closure(model, x, y))
        torch.testing.assert_close(grads_of(model), expected, rtol=1e-12, atol=1e-14)
    opt = GNP(model.parameters(), torch.optim.SGD, alpha=alpha, r=r, mix="official", lr=0.0)
    opt.step(make_closure(model, x, y))
    torch.testing.assert_close(grads_of(model), (1 - alpha) * v + alpha * g_plus, rtol=1e-12, atol=1e-14)


def test_update_gradient_leaves_the_weights_and_returns_the_step_gradient():
    """alpha = 0: g; alpha = 1: g(theta + r v); exact: (d - g) / lam = H v; the weights never move."""
    model, x, y = tanh_net()
    theta = [p.detach().clone() for p in model.parameters()]
    g, H, _ = gradient_and_hessian(model, x, y)
    v = g / g.norm()
    r = 0.05
    trial = copy.deepcopy(model)
    torch.nn.utils.vector_to_parameters(flat(theta) + r * v, trial.parameters())
    make_closure(trial, x, y)()
    plain = update_gradient(model.parameters(), make_closure(model, x, y), alpha=0.0)
    sam = update_gradient(model.parameters(), make_closure(model, x, y), alpha=1.0, r=r)
    exact = update_gradient(model.parameters(), make_closure(model, x, y, backward=False), alpha=2.0, r=r,
                            difference="exact")
    torch.testing.assert_close(flat(plain), g, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(flat(sam), grads_of(trial), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close((flat(exact) - g) / (2.0 * r), H @ v, rtol=1e-9, atol=1e-12)
    assert all(torch.equal(p, t) for p, t in zip(model.parameters(), theta, strict=True))
    assert [d.data_ptr() for d in exact] == [p.grad.data_ptr() for p in model.parameters()]


# ---------------------------------------------------------------- special cases: base optimizer, SAM


@pytest.mark.parametrize("difference", ["forward", "central", "exact"])
@pytest.mark.parametrize("base, kwargs", [(torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
                                          (torch.optim.Adam, dict(lr=1e-2, weight_decay=1e-3))])
def test_alpha_zero_is_the_base_optimizer(difference, base, kwargs):
    model, x, y = dropout_net()
    reference = copy.deepcopy(model)
    opt = GNP(model.parameters(), base, alpha=0.0, r=0.1, difference=difference, **kwargs)
    ref_opt = base(reference.parameters(), **kwargs)
    calls = []
    for step in range(3):
        torch.manual_seed(step)
        opt.step(make_closure(model, x, y, F.cross_entropy, backward=difference != "exact", calls=calls))
        torch.manual_seed(step)
        ref_opt.step(make_closure(reference, x, y, F.cross_entropy))
    assert len(calls) == 3  # alpha = 0 takes one pass per step
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)


def test_alpha_zero_group_keeps_its_plain_gradient_while_others_are_penalized():
    model, x, y = tanh_net()
    g = penalty_gradient(model, x, y, 0.0)
    first, second = list(model[0].parameters()), list(model[2].parameters())
    opt = GNP([{"params": first, "gnp_alpha": 0.0}, {"params": second}], torch.optim.SGD, alpha=0.8, r=0.1,
              lr=0.0)
    opt.step(make_closure(model, x, y))
    n_first = sum(p.numel() for p in first)
    assert torch.equal(grads_of(model)[:n_first], g[:n_first])
    assert not torch.allclose(grads_of(model)[n_first:], g[n_first:])


def hand_written_sam_step(model, x, y, rho, base_opt):
    """Foret et al.: e = rho g/||g||; g+ = g(theta + e) with the same dropout masks; step from theta."""
    rng = torch.get_rng_state()
    params = list(model.parameters())
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    g = [p.grad.clone() for p in params]
    norm = torch.sqrt(sum((t ** 2).sum() for t in g))
    theta = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, t in zip(params, g, strict=True):
            p.add_(t * (rho / norm))
    torch.set_rng_state(rng)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        for p, t in zip(params, theta, strict=True):
            p.copy_(t)
    base_opt.step()


def test_alpha_one_is_a_hand_written_sam_step_and_sam_alias_is_identical():
    model, x, y = dropout_net()
    sam_model, ref_model = copy.deepcopy(model), copy.deepcopy(model)
    kwargs = dict(lr=0.1, momentum=0.9)
    opt = GNP(model.parameters(), torch.optim.SGD, alpha=1.0, r=0.05, **kwargs)
    sam = SAM(sam_model.parameters(), torch.optim.SGD, rho=0.05, **kwargs)
    ref_opt = torch.optim.SGD(ref_model.parameters(), **kwargs)
    for step in range(3):
        for m, o in [(model, opt), (sam_model, sam)]:
            torch.manual_seed(step)
            o.step(make_closure(m, x, y, F.cross_entropy))
        torch.manual_seed(step)
        hand_written_sam_step(ref_model, x, y, 0.05, ref_opt)
    for p, q, s in zip(model.parameters(), ref_model.parameters(), sam_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-13, atol=1e-15)
        assert torch.equal(p, s)


def test_sam_with_rho_zero_is_the_base_optimizer():
    model, x, y = tanh_net()
    reference = copy.deepcopy(model)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.0, lr=0.1, momentum=0.9)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.step(make_closure(model, x, y))
        ref_opt.step(make_closure(reference, x, y))
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)


# ---------------------------------------------------------------- practicalities


class RecordingOptimizer(torch.optim.Optimizer):
    """A base optimizer that does not move: it records the weights and gradients it is given."""

    def __init__(self, params):
        super().__init__(params, {})
        self.seen = []

    def step(self, closure=None):
        params = [p for g in self.param_groups for p in g["params"]]
        self.seen.append([(p.detach().clone(), p.data_ptr(), p.grad.clone()) for p in params])


@pytest.mark.parametrize("difference", ["forward", "central"])
def test_weights_restored_bitwise_in_place_before_the_base_step(difference):
    model, x, y = tanh_net()
    r = 0.1
    theta = [(p.detach().clone(), p.data_ptr()) for p in model.parameters()]
    g = penalty_gradient(model, x, y, 0.0)
    opt = GNP(model.parameters(), RecordingOptimizer, alpha=0.8, r=r, difference=difference)
    calls = []
    opt.step(make_closure(model, x, y, calls=calls))
    for (w0, ptr0), (w, ptr, _) in zip(theta, opt.base_optimizer.seen[0], strict=True):
        assert torch.equal(w, w0) and ptr == ptr0
    assert [p.data_ptr() for p in model.parameters()] == [ptr for _, ptr in theta]
    theta0 = flat([w for w, _ in theta])
    signs = [1.0] if difference == "forward" else [1.0, -1.0]
    assert len(calls) == 1 + len(signs)
    for sign, seen in zip(signs, calls[1:], strict=True):
        torch.testing.assert_close(flat(seen), theta0 + sign * r * g / g.norm(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("difference", ["forward", "central"])
def test_batchnorm_running_stats_see_only_the_first_pass(difference):
    model, x, y = dropout_net(batchnorm=True)
    reference = copy.deepcopy(model)
    torch.manual_seed(0)
    reference(x)  # one training-mode forward pass
    bn, ref_bn = model[1], reference[1]
    torch.manual_seed(0)
    GNP(model.parameters(), torch.optim.SGD, difference=difference, model=model, lr=0.1).step(
        make_closure(model, x, y, F.cross_entropy))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(getattr(bn, name), getattr(ref_bn, name)), name

    unprotected, _, _ = dropout_net(batchnorm=True)
    GNP(unprotected.parameters(), torch.optim.SGD, difference=difference, lr=0.1).step(
        make_closure(unprotected, x, y, F.cross_entropy))
    assert unprotected[1].num_batches_tracked.item() == (2 if difference == "forward" else 3)


@pytest.mark.parametrize("difference", ["forward", "central"])
def test_dropout_masks_identical_in_all_passes_and_rng_advances_as_one_pass(difference):
    model, x, y = dropout_net()
    masks = []
    model[1].register_forward_hook(lambda m, inp, out: masks.append(out != 0))
    opt = GNP(model.parameters(), torch.optim.SGD, difference=difference, lr=0.1)
    passes = 2 if difference == "forward" else 3
    closure = make_closure(model, x, y, F.cross_entropy)
    torch.manual_seed(123)
    probe = copy.deepcopy(model)
    closure_probe = make_closure(probe, x, y, F.cross_entropy)
    closure_probe()
    after_one_pass = torch.get_rng_state()
    masks.clear()
    torch.manual_seed(123)
    opt.step(closure)
    assert torch.equal(torch.get_rng_state(), after_one_pass)
    opt.step(closure)
    assert len(masks) == 2 * passes
    assert all(torch.equal(m, masks[0]) for m in masks[1:passes])
    assert all(torch.equal(m, masks[passes]) for m in masks[passes + 1:])
    assert not torch.equal(masks[0], masks[passes])  # a new step draws new masks


def test_step_without_closure_raises():
    model, _, _ = tanh_net()
    opt = GNP(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="GNP.step needs a closure"):
        opt.step()
    with pytest.raises(ValueError, match="SAM.step needs a closure"):
        SAM(model.parameters(), torch.optim.SGD, lr=0.1).step()


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha=-0.1), r"alpha=-0.1 is not valid"),
    (dict(alpha=float("nan")), r"alpha=nan is not valid"),
    (dict(r=-1.0), r"r=-1.0 is not valid"),
    (dict(difference="backward"), r"difference='backward' is not valid; choose one of \('forward', 'central', 'exact'\)"),
    (dict(normalize="filter"), r"normalize='filter' is not valid; choose one of \('global', 'layer'\)"),
    (dict(mix="both"), r"mix='both' is not valid; choose one of \('paper', 'official'\)"),
    (dict(mix="official", difference="central"), r"mix='official' is defined for difference='forward' only"),
    (dict(warmup="linear"), r"warmup='linear' is not valid; choose one of \(None, 'lambda', 'r', 'zero'\)"),
    (dict(warmup="lambda"), r"warmup_steps must be a positive int \(the length of warmup='lambda', which needs it\), "
                            r"got None"),
    (dict(warmup="zero", warmup_steps=0), r"warmup_steps must be a positive int .*got 0"),
    (dict(warmup_steps=10), r"warmup_steps=10 given without a warmup"),
])
def test_invalid_arguments_raise_with_the_argument_and_choices(kwargs, message):
    model, _, _ = tanh_net()
    with pytest.raises(ValueError, match=message):
        GNP(model.parameters(), torch.optim.SGD, lr=0.1, **kwargs)


def test_invalid_group_override_base_class_and_rho_raise():
    model, _, _ = tanh_net()
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['gnp_r'\]=-0.5 is not valid"):
        GNP([{"params": model.parameters(), "gnp_r": -0.5}], torch.optim.SGD, lr=0.1)
    with pytest.raises(TypeError, match="optimizer class"):
        GNP(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="rho=-0.05 is not valid"):
        SAM(model.parameters(), torch.optim.SGD, rho=-0.05, lr=0.1)


def test_teaching_passes_compose_to_step_and_check_their_order():
    model, x, y = tanh_net()
    twin = copy.deepcopy(model)
    opt = GNP(model.parameters(), torch.optim.SGD, difference="central", lr=0.1, momentum=0.9)
    manual = GNP(twin.parameters(), torch.optim.SGD, difference="central", lr=0.1, momentum=0.9)
    with pytest.raises(RuntimeError, match="needs first_pass"):
        manual.perturb()
    for _ in range(2):
        loss = opt.step(make_closure(model, x, y))
        closure = make_closure(twin, x, y)
        manual_loss = manual.first_pass(closure)
        with pytest.raises(RuntimeError, match="needs perturb"):
            manual.second_pass(closure)
        manual.perturb(+1.0)
        sharp_loss = manual.second_pass(closure)
        manual.perturb(-1.0)
        manual.second_pass(closure)
        manual.restore_and_step()
        assert torch.equal(loss, manual_loss) and sharp_loss > manual_loss
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


# ---------------------------------------------------------------- warmups


def test_gr_warmup_values():
    T = 4
    for t in range(1, 8):
        ramp = min(1.0, t / T)
        assert gr_warmup(None, t, None) == (1.0, 1.0)
        assert gr_warmup("lambda", t, T) == (ramp, 1.0)
        assert gr_warmup("r", t, T) == (1.0, ramp)
        assert gr_warmup("zero", t, T) == ((0.0, 0.0) if t <= T else (1.0, 1.0))
    assert gr_warmup("lambda", 1, T) == (0.25, 1.0) and gr_warmup("lambda", T, T) == (1.0, 1.0)


@pytest.mark.parametrize("warmup", ["lambda", "r", "zero"])
def test_warmup_step_t_equals_gnp_with_the_scheduled_alpha_and_r(warmup):
    """Each warmed-up step t equals one GNP step with alpha_t, r_t from the same weights and state."""
    model, x, y = tanh_net()
    alpha, r, T = 0.8, 0.1, 3
    kwargs = dict(lr=1e-2, betas=(0.9, 0.99))
    opt = GNP(model.parameters(), torch.optim.Adam, alpha=alpha, r=r, warmup=warmup, warmup_steps=T, **kwargs)
    for t in range(1, T + 3):
        twin = copy.deepcopy(model)
        alpha_t = alpha * min(1, t / T) if warmup == "lambda" else alpha
        r_t = r * min(1, t / T) if warmup == "r" else r
        if warmup == "zero" and t <= T:
            alpha_t = 0.0
        expected = GNP(twin.parameters(), torch.optim.Adam, **kwargs)
        expected.load_state_dict(copy.deepcopy(opt.state_dict()))  # Adam's moments at step t - 1
        # the checkpoint carries the warmup settings too (they live in the groups): the twin has none
        expected.param_groups[0].update(gnp_alpha=alpha_t, gnp_r=r_t, gnp_warmup=None, gnp_warmup_steps=None)
        calls = []
        opt.step(make_closure(model, x, y, calls=calls))
        expected.step(make_closure(twin, x, y))
        assert len(calls) == (1 if warmup == "zero" and t <= T else 2)
        for p, q in zip(model.parameters(), twin.parameters(), strict=True):
            assert torch.equal(p, q), (warmup, t)


# ---------------------------------------------------------------- optimizer plumbing


def test_state_dict_round_trip_resumes_the_same_trajectory():
    model, x, y = dropout_net()
    opt = GNP(model.parameters(), torch.optim.Adam, alpha=0.8, r=0.05, warmup="lambda", warmup_steps=4, lr=1e-2)
    closure = make_closure(model, x, y, F.cross_entropy)
    for _ in range(2):
        opt.step(closure)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    assert saved_opt["num_steps"] == 2 and "exp_avg" in saved_opt["state"][0]
    torch.manual_seed(7)
    for _ in range(3):
        opt.step(closure)

    resumed, _, _ = dropout_net(seed=1)
    resumed.load_state_dict(saved_model)
    resumed_opt = GNP(resumed.parameters(), torch.optim.Adam, alpha=0.8, r=0.05, warmup="lambda", warmup_steps=4,
                      lr=1e-2)
    resumed_opt.load_state_dict(saved_opt)
    assert resumed_opt.param_groups is resumed_opt.base_optimizer.param_groups
    torch.manual_seed(7)
    for _ in range(3):
        resumed_opt.step(make_closure(resumed, x, y, F.cross_entropy))
    assert resumed_opt.num_steps == 5
    for p, q in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="no 'num_steps'"):
        resumed_opt.load_state_dict(resumed_opt.base_optimizer.state_dict())


def test_lr_scheduler_and_state_are_shared_with_the_base():
    model, x, y = tanh_net()
    opt = GNP(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step(make_closure(model, x, y))
    scheduler.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == 0.05
    assert opt.state is opt.base_optimizer.state and "momentum_buffer" in opt.state[model[0].weight]
    assert opt.param_groups[0]["gnp_alpha"] == 0.8 and opt.param_groups[0]["gnp_r"] == 0.1


@pytest.mark.parametrize("regkit_base, torch_base, kwargs", [
    (regkit.optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (regkit.optim.AdamW, torch.optim.AdamW, dict(lr=1e-2, betas=(0.9, 0.99))),
])
def test_regkit_optimizer_bases_with_param_groups_match_torch_bases(regkit_base, torch_base, kwargs):
    """GNP around regkit.optim (decay / no-decay groups from regkit.param_groups) == around torch.optim."""
    model, x, y = dropout_net(batchnorm=True)
    twin = copy.deepcopy(model)
    opts = [GNP(param_groups(m, weight_decay=0.05, verbose=False), base, alpha=0.8, r=0.05, warmup="lambda",
                warmup_steps=2, model=m, **kwargs)
            for m, base in ((model, regkit_base), (twin, torch_base))]
    assert [g["weight_decay"] for g in opts[0].param_groups] == [0.05, 0.0]
    for step in range(4):
        for m, opt in zip((model, twin), opts, strict=True):
            torch.manual_seed(step)
            opt.step(make_closure(m, x, y, F.cross_entropy))
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-14, atol=1e-16)
    assert opts[0].state_dict()["num_steps"] == 4


@pytest.mark.parametrize("kwargs", [dict(difference="central", normalize="layer"), dict(mix="official")])
def test_foreach_equals_for_loop(kwargs):
    model, x, y = tanh_net()
    twin = copy.deepcopy(model)
    opt = GNP(model.parameters(), torch.optim.SGD, foreach=True, lr=0.1, **kwargs)
    loop = GNP(twin.parameters(), torch.optim.SGD, foreach=False, lr=0.1, **kwargs)
    for _ in range(3):
        opt.step(make_closure(model, x, y))
        loop.step(make_closure(twin, x, y))
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("foreach", [True, False])
def test_finite_difference_primitives_compile_without_graph_breaks(foreach):
    """No data-dependent Python branch (a host sync on GPU) in the tensor-list math."""

    def fd_update(params, origin, g0, g_plus, g_minus):
        inv = inverse_norms(g0, "global", foreach)
        perturb_(params, origin, g0, inv, 0.1, foreach)
        return combine_(g0, [(1.0, g_plus), (-1.0, g_minus)], 0.8, foreach)

    shapes = [(3, 4), (5,)]
    lists = [[torch.randn(s) for s in shapes] for _ in range(5)]
    expected = fd_update(*copy.deepcopy(lists))
    compiled = torch.compile(fd_update, fullgraph=True, backend="eager")(*lists)
    for a, b in zip(compiled, expected, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("foreach", [True, False])
def test_bfloat16_params_step_close_to_float64(foreach):
    model, x, y = tanh_net()
    low = copy.deepcopy(model).to(torch.bfloat16)
    for m, xx, yy in [(model, x, y), (low, x.bfloat16(), y.bfloat16())]:
        GNP(m.parameters(), torch.optim.SGD, difference="central", foreach=foreach, lr=0.5).step(
            make_closure(m, xx, yy))
    for p, q in zip(model.parameters(), low.parameters(), strict=True):
        assert q.dtype == torch.bfloat16
        torch.testing.assert_close(q.double(), p, rtol=2e-2, atol=2e-2)


def test_wrapper_settings_live_in_the_param_groups_and_come_back_from_a_checkpoint():
    model, x, y = tanh_net()
    opt = GNP(model.parameters(), torch.optim.SGD, difference="central", normalize="layer", warmup="r",
              warmup_steps=5, lr=0.1)
    group = opt.param_groups[0]
    assert (group["gnp_difference"], group["gnp_normalize"], group["gnp_warmup"], group["gnp_warmup_steps"]) == (
        "central", "layer", "r", 5)
    opt.step(make_closure(model, x, y))
    other = GNP(copy.deepcopy(model).parameters(), torch.optim.SGD, lr=0.1)
    other.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert (other.difference, other.normalize, other.warmup, other.warmup_steps) == ("central", "layer", "r", 5)
    with pytest.raises(ValueError, match=r"gnp_difference must be the same in every param group"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2, dtype=torch.float64))],
                             "gnp_difference": "forward"})
    assert len(opt.param_groups) == 1
    with pytest.raises(ValueError, match=r"param_group\['gnp_mix'\]='nope' is not valid"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "gnp_mix": "nope"})

