"""regkit.optim.graft: NGD step length, grafting's norm and direction, external schedules."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regkit.optim import NGD, Graft, GraftingSchedule, gradient_magnitude
from regkit.optim.graft import graft_update
from regkit.penalties import accumulate_microbatches


def tensors_with_grads(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    params = [
        torch.randn(shape, generator=g, dtype=dtype).requires_grad_() for shape in [(3, 4), (4,), (2, 2, 3)]
    ]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=dtype)
    return params


def flat(tensors):
    return torch.cat([t.flatten() for t in tensors])


def step_of(optimizer, params):
    before = [p.detach().clone() for p in params]
    optimizer.step()
    return [p.detach() - b for p, b in zip(params, before, strict=True)]


@pytest.mark.parametrize("foreach", [False, True])
def test_ngd_step_length_is_lr_and_direction_is_minus_gradient(foreach):
    params = tensors_with_grads()
    g = flat([p.grad for p in params])
    delta = flat(step_of(NGD(params, lr=0.3, foreach=foreach), params))
    torch.testing.assert_close(delta.norm(), torch.tensor(0.3, dtype=torch.float64), rtol=1e-14, atol=0)
    torch.testing.assert_close(delta, -0.3 * g / g.norm(), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("foreach", [False, True])
def test_ngd_per_layer_moves_every_tensor_by_lr(foreach):
    params = tensors_with_grads()
    for d, p in zip(step_of(NGD(params, lr=0.3, norm="layer", foreach=foreach), params), params, strict=True):
        torch.testing.assert_close(d.norm(), torch.tensor(0.3, dtype=torch.float64), rtol=1e-14, atol=0)
        torch.testing.assert_close(d, -0.3 * p.grad / p.grad.norm(), rtol=1e-13, atol=1e-15)


def test_zero_gradient_gives_zero_step():
    params = tensors_with_grads()
    for p in params:
        p.grad.zero_()
    for norm in ("global", "layer"):
        assert all((d == 0).all() for d in step_of(NGD(params, lr=0.3, norm=norm), params))


def micro_batch_setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=g)
    return model, x, y


@pytest.mark.parametrize("norm", ["global", "layer"])
def test_iterative_grafting_has_small_batch_norm_and_large_batch_direction(norm):
    """One large-batch step: direction of g_B (mean of the micro-batch gradients), length of
    g_M (the first micro-batch's gradient at the same point), both recomputed by plain autograd."""
    model, x, y = micro_batch_setup()
    params = list(model.parameters())
    g_big = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    g_small = torch.autograd.grad(F.cross_entropy(model(x[:3]), y[:3]), params)
    optimizer = Graft(params, lr=0.05, norm=norm)
    stats = accumulate_microbatches(model, F.cross_entropy, x, y, 3)
    optimizer.set_magnitude(stats.grad_norm[0] if norm == "global" else stats.param_grad_norms[0])
    delta = step_of(optimizer, params)
    if norm == "global":
        delta, g_big, g_small = [flat(delta)], [flat(g_big)], [flat(g_small)]
    for d, gb, gm in zip(delta, g_big, g_small, strict=True):
        torch.testing.assert_close(d.norm(), 0.05 * gm.norm(), rtol=1e-12, atol=0)
        torch.testing.assert_close(d / d.norm(), -gb / gb.norm(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("norm", ["global", "layer"])
def test_external_grafting_follows_the_recorded_schedule_by_step(norm):
    """Record ||g_M|| along a small-batch SGD run; the large-batch run's step t has length
    lr * schedule[t], also across a state_dict round trip."""
    small, x, y = micro_batch_setup()
    big = copy.deepcopy(small)
    schedule = GraftingSchedule(norm)
    sgd = torch.optim.SGD(small.parameters(), lr=0.1)
    for t in range(3):
        sgd.zero_grad()
        F.cross_entropy(small(x[3 * t : 3 * t + 3]), y[3 * t : 3 * t + 3]).backward()
        schedule.record(small.parameters())
        sgd.step()
    assert schedule.magnitudes.shape == ((3,) if norm == "global" else (3, 4))

    params = list(big.parameters())
    optimizer = Graft(params, lr=0.1, norm=norm, schedule=schedule)
    for t in range(3):
        if t == 2:  # resume from a checkpoint
            saved = copy.deepcopy(optimizer.state_dict())
            optimizer = Graft(params, lr=0.1, norm=norm, schedule=schedule)
            optimizer.load_state_dict(saved)
        optimizer.zero_grad()
        F.cross_entropy(big(x), y).backward()
        delta = step_of(optimizer, params)
        lengths = flat(delta).norm() if norm == "global" else torch.stack([d.norm() for d in delta])
        torch.testing.assert_close(lengths, 0.1 * schedule[t], rtol=1e-12, atol=0)
    with pytest.raises(IndexError, match="step 3 is outside the grafting schedule of 3 recorded steps"):
        optimizer.step()


def test_global_norm_spans_param_groups_with_their_own_lr():
    params = tensors_with_grads()
    optimizer = Graft([{"params": params[:2]}, {"params": params[2:], "lr": 0.5}], lr=0.1)
    optimizer.set_magnitude(2.0)
    delta = step_of(optimizer, params)
    g_norm = flat([p.grad for p in params]).norm()
    for d, p, lr in zip(delta, params, [0.1, 0.1, 0.5], strict=True):
        torch.testing.assert_close(d, -lr * 2.0 * p.grad / g_norm, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("norm", ["global", "layer"])
def test_foreach_equals_for_loop(norm):
    runs = []
    for foreach in (False, True):
        params = tensors_with_grads()
        optimizer = Graft(params, lr=0.2, norm=norm, foreach=foreach)
        for t in range(3):
            for p in params:
                p.grad = torch.sin(p.detach() * (t + 1))
            optimizer.set_magnitude(1.5 if norm == "global" else [0.5, 1.0, 2.0])
            optimizer.step()
        runs.append((params, optimizer))
    (loop, opt_loop), (fe, opt_fe) = runs
    for a, c in zip(fe, loop, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-14, atol=1e-15)
        assert opt_fe.state[a]["step"] == opt_loop.state[c]["step"] == 3


def test_update_compiles_without_graph_breaks():
    """No data-dependent Python branch (no host sync) in the functional update."""
    for norm, magnitudes in [
        ("global", [torch.tensor(1.5)]),
        ("layer", [torch.tensor(v) for v in (0.5, 1.0, 2.0)]),
    ]:
        for foreach in (False, True):
            eager, compiled = tensors_with_grads(), tensors_with_grads()
            kwargs = dict(lr=0.2, norm=norm, eps=1e-12, foreach=foreach)
            graft_update([p.detach() for p in eager], [p.grad for p in eager], magnitudes, **kwargs)
            update = torch.compile(graft_update, fullgraph=True, backend="eager")
            update([p.detach() for p in compiled], [p.grad for p in compiled], magnitudes, **kwargs)
            for a, c in zip(compiled, eager, strict=True):
                torch.testing.assert_close(a, c, rtol=1e-14, atol=0)


def test_contract_closure_grad_untouched_no_state_without_grad_bf16():
    params = tensors_with_grads()
    params[1].grad = None
    grads = [None if p.grad is None else p.grad.clone() for p in params]
    optimizer = NGD(params, lr=0.1)
    assert optimizer.step(lambda: torch.tensor(7.0)) == 7.0
    assert params[1] not in optimizer.state
    for p, g in zip(params, grads, strict=True):
        assert (p.grad is None) if g is None else torch.equal(p.grad, g)
    half = tensors_with_grads(dtype=torch.bfloat16)
    before = [p.detach().clone() for p in half]
    NGD(half, lr=0.1).step()
    assert all(not torch.equal(p, b) for p, b in zip(half, before, strict=True))


def test_gradient_magnitude_counts_missing_grads_as_zero():
    params = tensors_with_grads()
    params[1].grad = None
    per_tensor = gradient_magnitude(params, "layer")
    torch.testing.assert_close(
        per_tensor,
        torch.stack([params[0].grad.norm(), torch.zeros((), dtype=torch.float64), params[2].grad.norm()]),
    )
    torch.testing.assert_close(gradient_magnitude(params), flat([params[0].grad, params[2].grad]).norm())


def test_invalid_arguments_raise():
    params = tensors_with_grads()
    with pytest.raises(ValueError, match=r"lr must be in \[0.0, inf\], got -1"):
        Graft(params, lr=-1)
    with pytest.raises(ValueError, match="norm='tensor' is not one of 'global', 'layer'"):
        NGD(params, lr=0.1, norm="tensor")
    with pytest.raises(ValueError, match="eps must be > 0"):
        NGD(params, lr=0.1, eps=0)
    with pytest.raises(ValueError, match="norm='layer' differs from the first group's norm='global'"):
        Graft([{"params": params[:1]}, {"params": params[1:], "norm": "layer"}], lr=0.1)
    with pytest.raises(ValueError, match="schedule.norm='layer' differs from norm='global'"):
        Graft(params, lr=0.1, schedule=GraftingSchedule("layer"))
    with pytest.raises(RuntimeError, match="call set_magnitude\\(\\) before step\\(\\)"):
        Graft(params, lr=0.1).step()
    with pytest.raises(ValueError, match=r'norm="layer" takes one magnitude per parameter tensor \(3\)'):
        Graft(params, lr=0.1, norm="layer").set_magnitude([1.0, 2.0])
    with pytest.raises(ValueError, match='norm="global" takes one magnitude'):
        Graft(params, lr=0.1).set_magnitude([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="magnitude must be >= 0, got -2.0"):
        Graft(params, lr=0.1).set_magnitude(-2.0)
    with pytest.raises(RuntimeError, match="NGD has unit magnitude"):
        NGD(params, lr=0.1).set_magnitude(1.0)
    with pytest.raises(RuntimeError, match="conflicts with the schedule"):
        Graft(params, lr=0.1, schedule=GraftingSchedule()).set_magnitude(1.0)


@pytest.mark.parametrize("bad", [{"lr": -1.0}, {"eps": 0.0}, {"norm": "layer"}, {"foreach": "yes"}])
def test_rejected_param_group_is_not_kept(bad):
    opt = Graft([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    with pytest.raises(ValueError):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(3))], **bad})
    assert len(opt.param_groups) == 1
