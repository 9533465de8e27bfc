"""Composed regularizers (issue 24): with_cpr / with_projection over any base, equal to the hand-made optimizers.

Exactness: ``with_cpr(Adam)`` is AdamCPR bit for bit; ``with_projection(AdamW)`` / ``(SGD)`` equal AdamP /
SGDP to a few ulps (a wrapper sees the base's rounded weights, not its direction: see the docstring) and
bit for bit where nothing is projected. The generic contract runs on the combinations in tests/cases.py.
"""

import copy
from functools import partial

import pytest
import torch
from torch import nn

import regkit.optim as ro
from regkit.optim.with_projection import project_step_
from regkit.penalties import GNP, SAM
from tests.problems import ScaleInvariantNet, TinyNet

# Projection through a wrapper vs AdamP/SGDP: a few ulps of weights of size ~0.1-1 after 20 steps
# (measured: at most 2.2e-16 absolute), where the projected views agree.
PROJECTION_TOL = {"rtol": 1e-13, "atol": 1e-15}


def train(models, opts, steps):
    for step in range(steps):
        for model, opt in zip(models, opts, strict=True):

            def closure(model=model, opt=opt, step=step):
                opt.zero_grad()
                loss = model.loss(step)
                loss.backward()
                return loss

            opt.step(closure)


def assert_params(models, **tol):
    for (name, p), q in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        if tol:
            torch.testing.assert_close(p, q, **tol, msg=lambda m, name=name: f"{name}: {m}")
        else:
            assert torch.equal(p, q), (name, (p - q).abs().max())


CPR_SETTINGS = [
    dict(kappa_init_method="dependent", kappa_init_param=0.8),
    dict(kappa_init_method="uniform", kappa_init_param=0.5, kappa_update=0.1, reg_function="std", amsgrad=True),
    dict(kappa_init_method="inflection_point", reg_step_size=1, reg_function="l1", maximize=True),
    dict(kappa_init_method="warm_start", kappa_init_param=2, reg_function="huber", adaptive_bounds=True,
         reg_order="pre_step", reg_by_lr=True),
]


@pytest.mark.parametrize("foreach", [False, True], ids=["for_loop", "foreach"])
@pytest.mark.parametrize("settings", CPR_SETTINGS, ids=lambda s: f"{s['kappa_init_method']}")
def test_with_cpr_of_adam_is_adamcpr_bit_for_bit(settings, foreach):
    models = TinyNet(), TinyNet()
    opts = (ro.AdamCPR(models[0], lr=0.05, foreach=foreach, verbose=False, **settings),
            ro.with_cpr(ro.Adam)(models[1], lr=0.05, foreach=foreach, verbose=False, **settings))
    train(models, opts, 30)
    assert_params(models)
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        state, wrapped = opts[0].state[p], opts[1].state[q]
        assert set(wrapped) - set(state) <= {"constraint_step"}
        for key, value in state.items():
            assert torch.equal(value, wrapped[key]), key
    assert isinstance(opts[1], ro.Adam) and type(opts[1]).__name__ == "AdamCPR"


def test_with_cpr_of_sgd_is_the_papers_sgd_plus_cpr():
    """One SGD step, then lambda <- max(0, lambda + mu (||w||^2 - kappa)) and w <- (1 - 2 lambda) w per matrix (l2).

    CPR keeps lambda in float32 (for every parameter dtype): agreement to float32 rounding of lambda."""
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    b = nn.Parameter(torch.randn(3, dtype=torch.float64))
    opt = ro.with_cpr(ro.SGD)([w, b], lr=0.1, momentum=0.9, kappa_init_method="uniform", kappa_init_param=1.0,
                              verbose=False)
    w_ref, b_ref, buf_w, buf_b, lam = w.detach().clone(), b.detach().clone(), None, None, 0.0
    for _ in range(5):
        opt.zero_grad()
        ((w @ b).sin().sum() + w.sum()).backward()
        g_w, g_b = w.grad.clone(), b.grad.clone()
        opt.step()
        buf_w = g_w if buf_w is None else 0.9 * buf_w + g_w
        buf_b = g_b if buf_b is None else 0.9 * buf_b + g_b
        w_ref, b_ref = w_ref - 0.1 * buf_w, b_ref - 0.1 * buf_b
        lam = max(0.0, lam + (w_ref.square().sum().item() - 1.0) / w_ref.numel())
        w_ref = w_ref - lam * 2 * w_ref
        torch.testing.assert_close(w.detach(), w_ref, rtol=1e-7, atol=1e-8)
        torch.testing.assert_close(b.detach(), b_ref, rtol=1e-14, atol=1e-15)  # a vector: not regularized
        w_ref, b_ref = w.detach().clone(), b.detach().clone()  # continue from the same point
        assert opt.state[w]["lagmul"].item() == pytest.approx(lam, rel=1e-6)
        lam = opt.state[w]["lagmul"].item()
    assert lam > 0 and "lagmul" not in opt.state[b]


@pytest.mark.parametrize("foreach", [False, True], ids=["for_loop", "foreach"])
def test_with_projection_of_adamw_equals_adamp(foreach):
    models = ScaleInvariantNet(), ScaleInvariantNet()
    opts = (ro.AdamP(models[0].parameters(), lr=0.01, weight_decay=0.1, foreach=foreach),
            ro.with_projection(ro.AdamW)(models[1].parameters(), lr=0.01, weight_decay=0.1, foreach=foreach))
    train(models, opts, 20)
    assert_params(models, **PROJECTION_TOL)
    assert not torch.equal(models[0].conv.weight, ScaleInvariantNet().conv.weight)


@pytest.mark.parametrize("nesterov", [False, True], ids=["heavy_ball", "nesterov"])
def test_with_projection_of_sgd_equals_sgdp(nesterov):
    """SGDP divides its decay by 1 - mu: the decoupled SGD base gets weight_decay = wd / (1 - mu)."""
    models, mu, wd = (ScaleInvariantNet(), ScaleInvariantNet()), 0.9, 1e-2
    opts = (ro.SGDP(models[0].parameters(), lr=0.1, momentum=mu, nesterov=nesterov, weight_decay=wd),
            ro.with_projection(ro.SGD)(models[1].parameters(), lr=0.1, momentum=mu, nesterov=nesterov,
                                       weight_decay=wd / (1 - mu), decoupled_weight_decay=True))
    train(models, opts, 20)
    assert_params(models, **PROJECTION_TOL)


def test_with_projection_without_projected_tensors_is_the_base_bit_for_bit():
    """delta = 0: no tensor is scale-invariant, every step is the base's own (no rounding added)."""
    models = ScaleInvariantNet(), ScaleInvariantNet()
    opts = (ro.AdamW(models[0].parameters(), lr=0.01, weight_decay=0.1),
            ro.with_projection(ro.AdamW)(models[1].parameters(), lr=0.01, weight_decay=0.1, delta=0.0))
    train(models, opts, 10)
    assert_params(models)


def test_projection_step_is_orthogonal_to_the_weights_on_scale_invariant_tensors():
    model = ScaleInvariantNet()
    opt = ro.with_projection(ro.SGD)(model.parameters(), lr=0.1, momentum=0.9, wd_ratio=1.0)
    for step in range(3):
        before = model.conv.weight.detach().clone()
        train_at(model, opt, step)
        update = (model.conv.weight.detach() - before).reshape(before.shape[0], -1)
        rows = before.reshape(before.shape[0], -1)
        cosine = (update * rows).sum(1) / (update.norm(dim=1) * rows.norm(dim=1))
        assert cosine.abs().max() < 1e-7, cosine  # radial part removed (up to eps / ||w||)


def train_at(model, opt, step):
    opt.zero_grad()
    model.loss(step).backward()
    opt.step()


@pytest.mark.parametrize("foreach", [False, True], ids=["for_loop", "foreach"])
def test_project_step_compiles_without_graph_breaks(foreach):
    model = ScaleInvariantNet()
    model.loss(0).backward()
    params = [p for p in model.parameters() if p.grad is not None]
    before = [p.detach().clone() for p in params]
    after = [(p - 0.01 * p.grad).detach() for p in params]
    kwargs = dict(keep=0.999, keep_projected=0.9999, delta=0.1, eps=1e-8, channel_dim=0, foreach=foreach)
    eager, compiled = [t.clone() for t in after], [t.clone() for t in after]
    project_step_(eager, before, [p.grad for p in params], **kwargs)
    torch._dynamo.reset()
    torch.compile(project_step_, fullgraph=True, backend="eager")(compiled, before, [p.grad for p in params], **kwargs)
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-16)
    assert not torch.equal(eager[0], after[0])  # conv.weight was projected


def test_cpr_over_projection_equals_cpr_over_adamp():
    """Pairwise: with_cpr(with_projection(AdamW)) is with_cpr(AdamP) up to the projection's rounding."""
    models = ScaleInvariantNet(), ScaleInvariantNet()
    cpr = dict(kappa_init_method="dependent", kappa_init_param=0.9, verbose=False)
    opts = (ro.with_cpr(ro.AdamP)(models[0], lr=0.01, weight_decay=0.0, **cpr),
            ro.with_cpr(ro.with_projection(ro.AdamW))(models[1], lr=0.01, weight_decay=0.0, **cpr))
    train(models, opts, 20)
    assert_params(models, **PROJECTION_TOL)
    lagmuls = [opts[1].state[p]["lagmul"] for p in models[1].parameters() if "lagmul" in opts[1].state[p]]
    assert lagmuls and max(lagmuls) > 0  # the bounds were active


@pytest.mark.parametrize(
    "make",
    [lambda ps: ro.AdamCPR(ps, lr=0.01, kappa_init_method="dependent", kappa_init_param=0.9, verbose=False),
     lambda ps: ro.AdamP(ps, lr=0.01, weight_decay=0.1),
     lambda ps: ro.with_cpr(ro.SGD)(ps, lr=0.1, momentum=0.9, kappa_init_method="dependent", kappa_init_param=0.9,
                                    verbose=False)],
    ids=["adamcpr", "adamp", "sgd_cpr"],
)
@pytest.mark.parametrize("wrapper", ["sam_rho_0", "gnp_alpha_0"])
def test_sam_and_gnp_with_no_penalty_are_the_base_bit_for_bit(make, wrapper):
    models = ScaleInvariantNet(), ScaleInvariantNet()
    base = make(models[0].parameters())
    extra = {"rho": 0.0} if wrapper == "sam_rho_0" else {"alpha": 0.0, "r": 0.1}
    two_pass = (SAM if wrapper == "sam_rho_0" else GNP)(models[1].parameters(), make, **extra)
    train(models, (base, two_pass), 6)
    assert_params(models)


@pytest.mark.parametrize("wrapper", ["sam", "gnp"])
@pytest.mark.parametrize("base", ["adamcpr", "adamp"])
def test_sam_over_a_composed_base_equals_sam_over_the_hand_made_one(base, wrapper):
    """Pairwise: SAM/GNP over with_cpr(Adam) is SAM/GNP over AdamCPR bit for bit; over with_projection(AdamW) ~ AdamP."""
    hand, composed = {
        "adamcpr": (ro.AdamCPR, ro.with_cpr(ro.Adam)),
        "adamp": (ro.AdamP, ro.with_projection(ro.AdamW)),
    }[base]
    kwargs = {"adamcpr": dict(kappa_init_method="dependent", kappa_init_param=0.9, verbose=False),
              "adamp": dict(weight_decay=0.1)}[base]
    models = ScaleInvariantNet(), ScaleInvariantNet()
    two_pass = partial(SAM, rho=0.05) if wrapper == "sam" else partial(GNP, alpha=0.8, r=0.05)
    opts = [two_pass(m.parameters(), make, lr=0.01, model=m, **kwargs) for m, make in zip(models, (hand, composed), strict=True)]
    train(models, opts, 10)
    assert_params(models, **({} if base == "adamcpr" else PROJECTION_TOL))


def test_wrappers_run_step_hooks_once_even_after_the_base_class_was_hooked():
    ro.SGD([nn.Parameter(torch.ones(2))])  # torch wraps SGD.step with the hook runner on a first instance
    model = TinyNet()
    opt = ro.with_cpr(ro.with_projection(ro.SGD))(model, lr=0.1, kappa_init_method="uniform", kappa_init_param=1.0)
    calls = []
    opt.register_step_pre_hook(lambda *a: calls.append("pre"))
    opt.register_step_post_hook(lambda *a: calls.append("post"))
    train([model], [opt], 2)
    assert calls == ["pre", "post"] * 2


def test_constraint_scalars_and_counters_survive_a_bfloat16_checkpoint():
    model = TinyNet(torch.bfloat16)
    opt = ro.with_cpr(ro.SGD)(model, lr=0.1, kappa_init_method="uniform", kappa_init_param=1e6)
    train([model], [opt], 3)
    loaded = ro.with_cpr(ro.SGD)(model, lr=0.1, kappa_init_method="uniform", kappa_init_param=1e6)
    loaded.load_state_dict(copy.deepcopy(opt.state_dict()))
    state = loaded.state[model.hidden.weight]
    assert state["kappa"].dtype == torch.float32 and state["kappa"].item() == 1e6  # bfloat16 would round it
    assert state["constraint_step"].device.type == "cpu" and state["constraint_step"].item() == 3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ro.with_cpr(ro.SGD([nn.Parameter(torch.ones(2))])), "with_cpr takes an optimizer class"),
        (lambda: ro.with_projection("SGD"), "with_projection takes an optimizer class such as regkit.optim.Adam"),
        (lambda: ro.with_cpr(ro.SGD)(TinyNet(), kappa_update=0.0), "kappa_update must be > 0"),
        (lambda: ro.with_projection(ro.SGD)(TinyNet().parameters(), projection_eps=0.0), "projection_eps must be > 0"),
        (lambda: ro.with_projection(ro.SGD)(TinyNet().parameters(), lr=-1.0), "lr must be in [0.0, inf], got -1.0"),
    ],
)
def test_clear_errors(call, message):
    with pytest.raises((TypeError, ValueError)) as error:
        call()
    assert message in str(error.value)


def test_a_group_added_later_must_say_whether_it_is_regularized():
    model = TinyNet()
    opt = ro.with_cpr(ro.SGD)(model.hidden.parameters(), lr=0.1, verbose=False)  # weight, bias: two groups
    with pytest.raises(ValueError, match="each param group must say regularize=True or regularize=False"):
        opt.add_param_group({"params": list(model.out.parameters())})
    assert len(opt.param_groups) == 2
    opt.add_param_group({"params": list(model.out.parameters()), "regularize": True, "kappa_update": 0.5})
    assert opt.param_groups[-1]["kappa_init_method"] == "inflection_point" and opt.param_groups[-1]["kappa_update"] == 0.5


def test_constraint_recorder_follows_a_with_cpr_optimizer():
    """R, kappa and lambda of with_cpr(SGD), at the wrapper's own step count (SGD keeps no 'step')."""
    model = TinyNet()
    opt = ro.with_cpr(ro.SGD)(model, lr=0.1, kappa_init_method="dependent", kappa_init_param=0.9, verbose=False)
    recorder = ro.ConstraintRecorder(opt)
    train([model], [opt], 3)
    frame = recorder.frame()
    assert list(frame["step"].unique()) == [1, 2, 3] and set(frame["name"]) == {"hidden.weight", "out.weight"}
    last = frame[frame["step"] == 3].set_index("name")
    for name in ("hidden.weight", "out.weight"):
        state = opt.state[dict(model.named_parameters())[name]]
        assert last.loc[name, "lambda"] == state["lagmul"].item() and last.loc[name, "kappa"] == state["kappa"].item()
        assert last.loc[name, "R"] == pytest.approx(dict(model.named_parameters())[name].detach().square().sum().item())
    with pytest.raises(TypeError, match="optimizer must be a regkit.optim.AdamCPR or a regkit.optim.with_cpr"):
        ro.ConstraintRecorder(ro.SGD(model.parameters(), lr=0.1))
