"""regkit.optim.Grafted: M's step length on D's step direction (Agarwal et al. 2020), over any two optimizers.

References: (1) the grafting formula with SGD's and Adam's updates written out by hand; (2) for composed
optimizers (AdamCPR, with_cpr(SGD), with_projection(...)), standalone twins of M and D stepped from the
same weights, whose steps the formula combines. The contract suite runs the cases of tests/cases.py.
"""

from functools import partial

import pytest
import torch
from torch import nn

import regkit.optim as ro
from regkit.penalties import SAM
from tests.problems import ScaleInvariantNet, TinyNet


def graft_reference(w, step_m, step_d, norm):
    """``w + ||Delta_M|| / ||Delta_D|| * Delta_D`` over lists of tensors, per tensor or with one global norm."""
    if norm == "layer":
        return [x + dm.norm() / dd.norm() * dd for x, dm, dd in zip(w, step_m, step_d, strict=True)]
    flat = lambda ts: torch.cat([t.flatten() for t in ts])
    scale = flat(step_m).norm() / flat(step_d).norm()
    return [x + scale * dd for x, dd in zip(w, step_d, strict=True)]


def closure_for(opt, model, step):
    def closure():
        opt.zero_grad()
        loss = model.loss(step)
        loss.backward()
        return loss

    return closure


@pytest.mark.parametrize("norm", ["layer", "global"])
@pytest.mark.parametrize("pair", ["sgd#adam", "adam#sgd"])
def test_grafting_follows_the_formula_with_hand_written_updates(pair, norm):
    """SGD (heavy ball): Delta = -lr b, b <- mu b + g; Adam: Delta = -lr m_hat / (sqrt(v_hat) + eps)."""
    lr_sgd, mu, lr_adam, (b1, b2), eps = 0.1, 0.9, 0.01, (0.8, 0.95), 1e-8
    sgd, adam = partial(ro.SGD, lr=lr_sgd, momentum=mu), partial(ro.Adam, lr=lr_adam, betas=(b1, b2), eps=eps)
    magnitude, direction = (sgd, adam) if pair == "sgd#adam" else (adam, sgd)
    model, reference = TinyNet(), TinyNet()
    opt = ro.Grafted(model.parameters(), magnitude, direction, norm=norm)
    trained = [p for name, p in reference.named_parameters() if name != "unused"]
    buf, m, v = ([torch.zeros_like(p) for p in trained] for _ in range(3))
    for t in range(1, 11):
        opt.step(closure_for(opt, model, t))
        grads = torch.autograd.grad(reference.loss(t), trained)
        with torch.no_grad():
            buf = [g if t == 1 else mu * b + g for b, g in zip(buf, grads, strict=True)]
            m = [b1 * a + (1 - b1) * g for a, g in zip(m, grads, strict=True)]
            v = [b2 * a + (1 - b2) * g * g for a, g in zip(v, grads, strict=True)]
            step_sgd = [-lr_sgd * b for b in buf]
            step_adam = [
                -lr_adam * (a / (1 - b1**t)) / ((s / (1 - b2**t)).sqrt() + eps)
                for a, s in zip(m, v, strict=True)
            ]
            steps = (step_sgd, step_adam) if pair == "sgd#adam" else (step_adam, step_sgd)
            for p, w in zip(trained, graft_reference(trained, *steps, norm), strict=True):
                p.copy_(w)
        for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(
                p, q, rtol=1e-12, atol=1e-14, msg=lambda s, name=name, t=t: f"step {t} {name}: {s}"
            )


def cpr(base, **kwargs):
    return partial(
        ro.with_cpr(base) if base is not ro.AdamCPR else base,
        kappa_init_method="dependent",
        kappa_init_param=0.9,
        kappa_update=1.0,
        verbose=False,
        **kwargs,
    )


# (magnitude, direction): composed optimizers on either side (CPR bounds the tensors with ndim > 1)
COMPOSED = {
    "sgd#adamcpr": (partial(ro.SGD, lr=0.1, momentum=0.9), cpr(ro.AdamCPR, lr=0.01)),
    "adamw#sgd_cpr": (partial(ro.AdamW, lr=0.01, weight_decay=0.1), cpr(ro.SGD, lr=0.1, momentum=0.9)),
    "sgd_cpr#adamw_projection": (
        cpr(ro.SGD, lr=0.1),
        partial(ro.with_projection(ro.AdamW), lr=0.01, weight_decay=0.1),
    ),
    "adam#sgd_projection_cpr": (
        partial(ro.Adam, lr=0.01),
        cpr(ro.with_projection(ro.SGD), lr=0.1, momentum=0.9),
    ),
    "torch_sgd#torch_adam_cpr": (partial(torch.optim.SGD, lr=0.1), cpr(torch.optim.Adam, lr=0.01)),
}


@pytest.mark.parametrize("norm", ["layer", "global"])
@pytest.mark.parametrize("pair", list(COMPOSED))
def test_grafting_over_composed_optimizers_combines_their_own_steps(pair, norm):
    """Each step equals the formula applied to the steps that standalone twins of M and D take from the same
    weights with the same gradient (their states evolve as the grafted optimizer's inner ones)."""
    magnitude, direction = COMPOSED[pair]
    model, twin_m, twin_d = ScaleInvariantNet(), ScaleInvariantNet(), ScaleInvariantNet()
    grafted = ro.Grafted(model.parameters(), magnitude, direction, norm=norm)
    opt_m, opt_d = magnitude(twin_m.parameters()), direction(twin_d.parameters())
    for t in range(12):
        w0 = [p.detach().clone() for p in model.parameters()]
        steps = []
        for twin, opt in ((twin_m, opt_m), (twin_d, opt_d)):
            with torch.no_grad():
                for p, w in zip(twin.parameters(), w0, strict=True):
                    p.copy_(w)
            opt.step(closure_for(opt, twin, t))
            steps.append([p.detach() - w for p, w in zip(twin.parameters(), w0, strict=True)])
        grafted.step(closure_for(grafted, model, t))
        expected = graft_reference(w0, *steps, norm)
        for (name, p), q in zip(model.named_parameters(), expected, strict=True):
            torch.testing.assert_close(
                p.detach(), q, rtol=1e-12, atol=1e-15, msg=lambda s, name=name, t=t: f"step {t} {name}: {s}"
            )
    cpr_opt = next(o for o in (grafted.magnitude, grafted.direction) if "CPR" in type(o).__name__)
    assert max(s["lagmul"].item() for s in cpr_opt.state.values() if "lagmul" in s) > 0  # a bound was active
    lengths = [s.norm() for s in steps[0]], [s.norm() for s in steps[1]]
    assert not torch.allclose(torch.stack(lengths[0]), torch.stack(lengths[1]))  # the two step lengths differ


@pytest.mark.parametrize("norm", ["layer", "global"])
@pytest.mark.parametrize(
    "make",
    [
        cpr(ro.AdamCPR, lr=0.01),
        cpr(ro.SGD, lr=0.1, momentum=0.9),
        partial(ro.with_projection(ro.AdamW), lr=0.01),
        partial(torch.optim.SGD, lr=0.1, momentum=0.9, nesterov=True),
    ],
    ids=["adamcpr", "sgd_cpr", "adamw_projection", "torch_sgd"],
)
def test_an_optimizer_grafted_onto_itself_is_itself_bit_for_bit(make, norm):
    models = ScaleInvariantNet(), ScaleInvariantNet()
    opts = make(models[0].parameters()), ro.Grafted(models[1].parameters(), make, make, norm=norm)
    for t in range(8):
        for model, opt in zip(models, opts, strict=True):
            opt.step(closure_for(opt, model, t))
    for p, q in zip(*(m.parameters() for m in models), strict=True):
        assert torch.equal(p, q)


def test_sam_over_grafting_with_rho_zero_is_grafting():
    """SAM wraps grafting from outside (its base is any optimizer factory); rho = 0 takes the base's step."""
    magnitude, direction = partial(ro.SGD, lr=0.1, momentum=0.9), partial(ro.Adam, lr=0.01)
    models = TinyNet(), TinyNet()
    opts = (
        ro.Grafted(models[0].parameters(), magnitude, direction),
        SAM(models[1].parameters(), lambda ps: ro.Grafted(ps, magnitude, direction), rho=0.0),
    )
    for t in range(5):
        for model, opt in zip(models, opts, strict=True):
            opt.step(closure_for(opt, model, t))
    for p, q in zip(*(m.parameters() for m in models), strict=True):
        assert torch.equal(p, q)


def test_lr_scheduler_scales_the_magnitude_and_state_dict_holds_both_optimizers():
    model = TinyNet()
    opt = ro.Grafted(model.parameters(), partial(ro.SGD, lr=0.1), partial(ro.Adam, lr=0.01), norm="global")
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    lengths = []
    for t in range(3):
        before = [p.detach().clone() for p in model.parameters()]
        opt.step(closure_for(opt, model, t))
        scheduler.step()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        moved = torch.cat(
            [(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)]
        )
        lengths.append((moved.norm() / grads.norm()).item())  # SGD without momentum: ||Delta_M|| = lr ||g||
    assert lengths == pytest.approx([0.1, 0.05, 0.025], rel=1e-12)
    assert opt.magnitude.param_groups[0]["lr"] == 0.0125 and opt.direction.param_groups[0]["lr"] == 0.01
    saved = opt.state_dict()
    assert set(saved) == {"state", "param_groups", "direction"} and len(saved["direction"]["state"]) == 5
    assert saved["param_groups"][0]["graft_norm"] == "global"


@pytest.mark.parametrize("norm", ["layer", "global"])
def test_a_non_finite_step_leaves_the_tensors_it_scales_unchanged(norm):
    model = TinyNet()
    opt = ro.Grafted(model.parameters(), partial(ro.SGD, lr=0.1), partial(ro.Adam, lr=0.01), norm=norm)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    def closure():
        opt.zero_grad()
        loss = model.loss(0)
        loss.backward()
        model.out.weight.grad[0, 0] = float("nan")
        return loss

    opt.step(closure)
    for name, p in model.named_parameters():
        unchanged = name == "out.weight" or norm == "global" or name == "unused"
        assert torch.equal(p, before[name]) == unchanged, name
        assert torch.isfinite(p).all()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda ps: ro.Grafted(ps, ro.SGD(TinyNet().parameters()), ro.Adam),
            TypeError,
            "magnitude must be an optimizer class or factory",
        ),
        (
            lambda ps: ro.Grafted(ps, ro.SGD, lambda _: nn.Linear(2, 2)),
            TypeError,
            "direction(params) built Linear, not a torch.optim.Optimizer",
        ),
        (
            lambda ps: ro.Grafted(ps, ro.SGD, ro.Adam, norm="tensor"),
            ValueError,
            "norm='tensor' is not one of 'global', 'layer'",
        ),
        (lambda ps: ro.Grafted(ps, ro.SGD, ro.Adam, eps=0.0), ValueError, "eps must be a number > 0"),
        (
            lambda ps: ro.Grafted(ps, ro.SGD, lambda _: ro.Adam(TinyNet().parameters())),
            ValueError,
            "build both on the same params",
        ),
        (
            lambda ps: ro.Grafted(ps, ro.SGD, ro.Adam).load_state_dict(ro.SGD(ps).state_dict()),
            ValueError,
            "state_dict has no 'direction'",
        ),
    ],
)
def test_clear_errors(call, error, message):
    with pytest.raises(error) as raised:
        call(list(TinyNet().parameters()))
    assert message in str(raised.value)


def test_an_added_group_goes_to_both_optimizers_and_a_refused_one_to_neither():
    model = TinyNet()
    opt = ro.Grafted(model.hidden.parameters(), partial(ro.SGD, lr=0.1), partial(ro.Adam, lr=0.01))
    with pytest.raises(ValueError, match="graft_norm"):
        opt.add_param_group({"params": model.out.parameters(), "graft_norm": "global"})
    with pytest.raises(ValueError, match="betas"):
        opt.add_param_group({"params": model.out.parameters(), "betas": (0.9, 1.0)})  # refused by Adam only
    assert len(opt.magnitude.param_groups) == len(opt.direction.param_groups) == 1
    opt.add_param_group({"params": model.out.parameters(), "lr": 0.05})
    assert [g["lr"] for g in opt.magnitude.param_groups] == [0.1, 0.05]
    assert [g["lr"] for g in opt.direction.param_groups] == [0.01, 0.05]
    opt.step(closure_for(opt, model, 0))
    assert len(opt.direction.state) == 3  # hidden.weight, hidden.bias, out.weight
