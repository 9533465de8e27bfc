"""AdamP and SGDP: agreement with the official ``adamp`` package, the delta = 0 limits, the paper's SGDP,
and the flaws of the packaged versions we fix (channels_last, fp16, ConvTranspose weights, host syncs).

The generic optimizer contract (state_dict, param groups, foreach == for-loop, compile, ...) runs
on the AdamP/SGDP lines of tests/cases.py.
"""

import adamp
import pytest
import torch

import regkit.optim as ro
from regkit.optim.adamp import invariant_views
from tests.problems import ConvTransposeBN, ScaleInvariantNet

STEPS = 12
PATHS = pytest.mark.parametrize("foreach", [False, True], ids=["for_loop", "foreach"])


def step(model, opt, t):
    opt.zero_grad()
    model.loss(t).backward()
    opt.step()


def conv_update(model, opt, t):
    """One step; returns ``(w_before, w_after)`` of the conv weight."""
    before = model.conv.weight.detach().clone()
    step(model, opt, t)
    return before, model.conv.weight.detach().clone()


def test_model_exercises_all_three_branches():
    model = ScaleInvariantNet()
    for t in range(3):
        model.zero_grad()
        model.loss(t).backward()
        params = list(model.parameters())
        names = [n for n, _ in model.named_parameters()]
        views = dict(zip(names, invariant_views(params, [p.grad for p in params]), strict=True))
        assert (views["conv.weight"], views["lin.weight"], views["head.weight"]) == ("channel", "layer", "none")
        assert views["bn.weight"] == views["head.bias"] == "none"  # ndim <= 1: never tested


CONFIGS = {  # id: (ours, official, kwargs, our extra kwargs)
    "adamp": (ro.AdamP, adamp.AdamP, dict(lr=1e-2, weight_decay=0.1), {}),
    "adamp_nesterov": (ro.AdamP, adamp.AdamP, dict(lr=1e-2, weight_decay=0.1, nesterov=True, delta=0.2), {}),
    "sgdp_nesterov": (ro.SGDP, adamp.SGDP, dict(lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True), {}),
    "sgdp_project_buffer": (
        ro.SGDP, adamp.SGDP, dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-2, wd_ratio=0.3),
        {"project_buffer": True},
    ),
}


@PATHS
@pytest.mark.parametrize("config", CONFIGS)
def test_matches_the_official_package_in_float64(config, foreach):
    ours_cls, official_cls, kwargs, extra = CONFIGS[config]
    model, reference = ScaleInvariantNet(), ScaleInvariantNet()
    ours = ours_cls(model.parameters(), **kwargs, **extra, foreach=foreach)
    official = official_cls(reference.parameters(), **kwargs)
    for t in range(STEPS):
        step(model, ours, t)
        step(reference, official, t)
    moved = (model.conv.weight - ScaleInvariantNet().conv.weight).abs().max()
    assert moved > 1e-3  # the comparison is not between two models that barely moved
    keys = {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq", "momentum_buffer": "momentum"}
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12, msg=lambda m, name=name: f"{config} {name}: {m}")
        for key, official_key in keys.items():
            if key in ours.state[p]:
                torch.testing.assert_close(ours.state[p][key], official.state[q][official_key], rtol=0, atol=1e-12)


@PATHS
def test_default_sgdp_keeps_the_momentum_buffer_unprojected(foreach):
    """The paper's Algorithm 1: the buffer is the plain momentum of the gradients; the official code projects it."""
    kwargs = dict(lr=0.1, momentum=0.9, weight_decay=1e-2)
    model, official_model = ScaleInvariantNet(), ScaleInvariantNet()
    opt = ro.SGDP(model.parameters(), **kwargs, foreach=foreach)
    official = adamp.SGDP(official_model.parameters(), **kwargs)
    buffer = torch.zeros_like(model.conv.weight)
    for t in range(STEPS):
        step(model, opt, t)
        step(official_model, official, t)
        buffer = 0.9 * buffer + model.conv.weight.grad
    torch.testing.assert_close(opt.state[model.conv.weight]["momentum_buffer"], buffer, rtol=1e-13, atol=1e-15)
    assert (model.conv.weight - official_model.conv.weight).abs().max() > 1e-3  # the two modes really differ


@pytest.mark.parametrize("nesterov", [False, True], ids=["heavy_ball", "nesterov"])
@PATHS
def test_sgdp_with_delta_zero_is_sgd_with_decoupled_decay(foreach, nesterov):
    """Nothing is projected; SGDP's decay is divided by 1 - momentum, and with dampening 0 its
    zero-initialised buffer gives torch SGD's first step b = g."""
    kwargs = dict(lr=0.1, momentum=0.9, nesterov=nesterov, foreach=foreach)
    model, reference = ScaleInvariantNet(), ScaleInvariantNet()
    opt = ro.SGDP(model.parameters(), **kwargs, weight_decay=0.02, delta=0.0)
    sgd = ro.SGD(reference.parameters(), **kwargs, weight_decay=0.02 / (1 - 0.9), decoupled_weight_decay=True)
    for t in range(STEPS):
        step(model, opt, t)
        step(reference, sgd, t)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)


def test_sgdp_buffer_starts_from_zero_with_dampening():
    """b = mu * 0 + (1 - dampening) g on the first step (the official rule), where torch SGD sets b = g."""
    model = ScaleInvariantNet()
    w0 = model.head.weight.detach().clone()
    opt = ro.SGDP(model.parameters(), lr=0.1, momentum=0.9, dampening=0.25)
    step(model, opt, 0)
    torch.testing.assert_close(model.head.weight, w0 - 0.1 * 0.75 * model.head.weight.grad, rtol=0, atol=1e-15)


@PATHS
def test_adamp_with_delta_zero_is_adamw(foreach):
    model, reference, torch_model = ScaleInvariantNet(), ScaleInvariantNet(), ScaleInvariantNet()
    opt = ro.AdamP(model.parameters(), lr=1e-2, weight_decay=0.1, delta=0.0, foreach=foreach)
    adamw = ro.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.1, foreach=foreach)
    official = adamp.AdamP(torch_model.parameters(), lr=1e-2, weight_decay=0.1, delta=0.0)
    for t in range(STEPS):
        step(model, opt, t)
        step(reference, adamw, t)
        step(torch_model, official, t)
    for p, q, r in zip(model.parameters(), reference.parameters(), torch_model.parameters(), strict=True):
        assert torch.equal(p, q)  # same primitives, nothing projected: bit for bit
        torch.testing.assert_close(r, q, rtol=0, atol=1e-12)  # the package is AdamW too at delta = 0


@PATHS
def test_project_buffer_changes_nothing_with_nesterov(foreach):
    models = ScaleInvariantNet(), ScaleInvariantNet()
    kwargs = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2, foreach=foreach)
    opts = [ro.SGDP(m.parameters(), **kwargs, project_buffer=flag) for m, flag in zip(models, (False, True), strict=True)]
    for t in range(4):
        for model, opt in zip(models, opts, strict=True):
            step(model, opt, t)
    for p, q in zip(*(m.parameters() for m in models), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("make", [
    lambda ps: ro.SGDP(ps, lr=0.1, momentum=0.9, eps=1e-15), lambda ps: ro.AdamP(ps, lr=1e-2, eps=1e-15),
], ids=["sgdp", "adamp"])  # fmt: skip
def test_projected_update_is_orthogonal_to_each_channel(make):
    """On the BN-fed conv weight (wd = 0) every output channel's step is orthogonal to it, so
    ||w_{t+1}||^2 = ||w_t||^2 + ||w_{t+1} - w_t||^2 per channel: the norm grows at the plain-GD rate.

    The projection divides by (||w|| + eps)^2, leaving a radial part of relative size
    ~2 eps / ||w||: a tiny eps makes the identities hold to rounding error."""
    model = ScaleInvariantNet()
    opt = make(model.parameters())
    for t in range(6):
        before, after = conv_update(model, opt, t)
        delta = (after - before).flatten(1)
        radial = (delta * before.flatten(1)).sum(1) / before.flatten(1).norm(dim=1)
        assert radial.abs().max() < 1e-12 * delta.norm(dim=1).max()
        torch.testing.assert_close(
            after.flatten(1).norm(dim=1) ** 2, before.flatten(1).norm(dim=1) ** 2 + delta.norm(dim=1) ** 2,
            rtol=1e-12, atol=0,
        )


@PATHS
@pytest.mark.parametrize("optimizer", ["sgdp", "adamp"])
def test_channels_last_weights_give_the_contiguous_result(optimizer, foreach):
    make = {"sgdp": lambda ps: ro.SGDP(ps, lr=0.1, momentum=0.9, weight_decay=1e-2, foreach=foreach),
            "adamp": lambda ps: ro.AdamP(ps, lr=1e-2, weight_decay=0.1, foreach=foreach)}[optimizer]  # fmt: skip
    dense, channels_last = ScaleInvariantNet(), ScaleInvariantNet(conv_memory_format=torch.channels_last)
    assert channels_last.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not channels_last.conv.weight.is_contiguous()
    opts = make(dense.parameters()), make(channels_last.parameters())
    for t in range(6):
        step(dense, opts[0], t)
        step(channels_last, opts[1], t)
    for p, q in zip(dense.parameters(), channels_last.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-14)
    assert channels_last.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_the_official_package_fails_on_channels_last_weights():
    """The flaw we fix: ``.view`` on a channels_last weight raises."""
    model = ScaleInvariantNet(conv_memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="view"):
        step(model, adamp.SGDP(model.parameters(), lr=0.1), 0)


def fp16_step(opt_cls, **kwargs):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3, 3, 3).half())
    grad = (1e-2 * torch.randn(4, 3, 3, 3)).half()
    grad[0, 0, 0, 0] = 0.0  # one exact zero: v = 0 there, and 1e-8 rounds to 0 in float16
    grad[1] = 0.0  # a whole channel without gradient: zero norms in the cosine test
    w.grad = grad
    opt_cls([w], **kwargs).step()
    return w


@PATHS
@pytest.mark.parametrize("opt_cls,kwargs", [
    (ro.AdamP, dict(lr=1e-3, weight_decay=0.1)), (ro.SGDP, dict(lr=0.1, momentum=0.9, weight_decay=1e-2)),
], ids=["adamp", "sgdp"])  # fmt: skip
def test_fp16_weights_with_zero_gradient_entries_stay_finite(opt_cls, kwargs, foreach):
    w = fp16_step(opt_cls, **kwargs, foreach=foreach)
    assert w.dtype == torch.float16 and torch.isfinite(w).all()


def test_the_official_adamp_breaks_in_fp16():
    assert not torch.isfinite(fp16_step(adamp.AdamP, lr=1e-3, weight_decay=0.1)).all()


@PATHS
def test_conv_transpose_output_channels_with_channel_dim_1(foreach):
    """ConvTranspose weights are (in, out, kH, kW): BatchNorm makes each slice w[:, o] scale-invariant.

    channel_dim=1 projects per output channel; the default channel_dim=0 (the package's rule)
    finds only the layer view, which keeps the whole tensor's step orthogonal but not each slice's.
    """
    kwargs = dict(lr=0.1, momentum=0.9, eps=1e-15)  # tiny eps: orthogonality to rounding error
    per_slice, layer, official_model = ConvTransposeBN(), ConvTransposeBN(), ConvTransposeBN()
    opts = (ro.SGDP(per_slice.parameters(), **kwargs, channel_dim=1, foreach=foreach),
            ro.SGDP(layer.parameters(), **kwargs, project_buffer=True, foreach=foreach), adamp.SGDP(official_model.parameters(), **kwargs))  # fmt: skip
    for t in range(5):
        updates = []
        for model, opt in zip((per_slice, layer, official_model), opts, strict=True):
            before = model.up.weight.detach().clone()
            opt.zero_grad()
            model.loss(t).backward()
            if model is per_slice:
                grad = model.up.weight.grad
                assert invariant_views([model.up.weight], [grad], channel_dim=1) == ["channel"]
                assert invariant_views([model.up.weight], [grad]) == ["layer"]
            opt.step()
            updates.append((before, model.up.weight.detach() - before))
        for before, update in updates[:2]:
            assert abs((update * before).sum()) < 1e-12 * update.norm() * before.norm()  # layer-wise: both
        slice_dots = [(update * before).sum(dim=(0, 2, 3)).abs().max() / (update.norm() * before.norm())
                      for before, update in updates[:2]]  # fmt: skip
        assert slice_dots[0] < 1e-12 < slice_dots[1]
    torch.testing.assert_close(layer.up.weight, official_model.up.weight, rtol=0, atol=1e-12)  # the package's view


@pytest.mark.parametrize("kwargs,message", [
    (dict(channel_dim=2), "channel_dim must be 0 .* or 1 .*ConvTranspose.*got 2"),
    (dict(eps=0.0), "eps must be > 0.*got 0.0"),
    (dict(wd_ratio=2.0), r"wd_ratio must be in \[0.0, 1.0\], got 2.0"),
    (dict(nesterov=True), "nesterov=True needs momentum > 0"),
])  # fmt: skip
def test_invalid_arguments_name_the_argument_and_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ro.SGDP(ScaleInvariantNet().parameters(), lr=0.1, **kwargs)


@pytest.mark.cuda
@PATHS
@pytest.mark.parametrize("optimizer", ["sgdp", "adamp"])
def test_cuda_step_with_every_branch_makes_no_host_sync(optimizer, foreach):
    """All three branches (channel view on a channels_last conv, layer view, none) inside one sync-free step."""
    model = ScaleInvariantNet(torch.float32, conv_memory_format=torch.channels_last).cuda()
    make = {"sgdp": lambda ps: ro.SGDP(ps, lr=0.1, momentum=0.9, weight_decay=1e-2, foreach=foreach),
            "adamp": lambda ps: ro.AdamP(ps, lr=1e-2, weight_decay=0.1, foreach=foreach)}[optimizer]  # fmt: skip
    opt = make(model.parameters())
    reference = ScaleInvariantNet(torch.float32)
    ref_opt = make(reference.parameters())
    for t in range(3):
        model.zero_grad()
        model.loss(t).backward()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        step(reference, ref_opt, t)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.isfinite(p).all()
        if optimizer == "sgdp":  # Adam's m / sqrt(v) turns rounding-level gradient differences into +-lr steps
            torch.testing.assert_close(p.cpu(), q, rtol=1e-4, atol=1e-5)
