"""AdamCPR: the update rule in closed form, the constraint's behaviour, numerics edge cases and the API."""

import io

import pytest
import torch
from torch import nn

import regkit.optim as ro
from regkit.optim import measures
from regkit.optim.cpr import model_param_groups


def mlp(dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def step(model: nn.Module, opt, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    x = torch.randn(16, 4, generator=g).to(dtype)
    y = 4 * (3 * x[:, :3]).sin()
    opt.zero_grad()
    (model(x) - y).square().mean().backward()
    opt.step()


def regularized(opt) -> list[torch.Tensor]:
    return [p for g in opt.param_groups if g["regularize"] for p in g["params"]]


# --- the measures ------------------------------------------------------------------------------------

WEIGHTS = torch.tensor([[0.3, -1.7, 0.0], [2.5, -0.2, 0.9]], dtype=torch.float64)
CLOSED_FORM = {
    "l2": lambda w: w.square().sum(),
    "l1": lambda w: w.abs().sum(),
    "std": lambda w: w.std(),
    "huber": lambda w: torch.nn.functional.huber_loss(w, torch.zeros_like(w), reduction="sum", delta=1.0),
}


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("measure", measures.MEASURES)
def test_measures_and_their_steps_match_autograd(measure, foreach):
    w = WEIGHTS.clone().requires_grad_()
    value = CLOSED_FORM[measure](w)
    value.backward()
    values, aux = measures.evaluate(measure, [w.detach()], foreach=foreach)
    torch.testing.assert_close(values[0], value.detach(), rtol=1e-15, atol=0)
    moved = w.detach().clone()
    lam, c = torch.tensor(0.05, dtype=torch.float32), 0.5
    measures.descend_(measure, [moved], [lam], c, aux, foreach=foreach)
    expected = w.detach() - c * lam.double() * w.grad
    if measure == "l1":  # the proximal step stops at zero where |w| < c * lambda
        expected = torch.where(w.detach().abs() < c * lam.double(), 0.0, expected)
    torch.testing.assert_close(moved, expected, rtol=1e-15, atol=1e-16)


@pytest.mark.parametrize("weights", [torch.tensor([0.7]), torch.full((3, 4), 0.1)], ids=["one_element", "constant"])
def test_std_of_a_constant_or_one_element_tensor_is_zero_with_zero_gradient(weights):
    values, aux = measures.evaluate("std", [weights], foreach=False)
    assert values[0].item() == pytest.approx(0.0, abs=1e-7) and torch.isfinite(values[0])
    moved = weights.clone()
    measures.descend_("std", [moved], [torch.tensor(3.0)], 1.0, aux, foreach=False)
    assert torch.isfinite(moved).all() and torch.allclose(moved, weights, atol=1e-6)


def test_a_long_std_step_stops_at_the_mean_instead_of_flipping_the_tensor():
    w = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    moved = w.clone()
    _, aux = measures.evaluate("std", [moved], foreach=False)
    measures.descend_("std", [moved], [torch.tensor(100.0)], 1.0, aux, foreach=False)
    torch.testing.assert_close(moved, torch.full_like(w, w.mean().item()), rtol=1e-15, atol=1e-15)


def test_half_precision_measures_are_computed_in_float32():
    w = torch.full((256, 256), 0.5, dtype=torch.float16)
    (value,), _ = measures.evaluate("l2", [w], foreach=True)
    assert value.dtype == torch.float32 and value.item() == 0.25 * 256 * 256  # 16384 > what fp16 sums exactly


# --- the update rule ---------------------------------------------------------------------------------

def manual_cpr_step(w0, g, kappa, mu, lr, order):
    """One AdamCPR step from fresh state, in closed form: Adam's first step moves by lr * g / (|g| + eps)."""
    adam = lambda w: w - lr * g / (g.abs() + 1e-8)
    if order == "post_step":
        a = adam(w0)
        lam = (mu * (a.square().sum() - kappa)).clamp_min(0)
        return a - 2 * lam * a, lam
    lam = (mu * (w0.square().sum() - kappa)).clamp_min(0)
    return adam(w0 - 2 * lam * w0), lam


@pytest.mark.parametrize("order", ["post_step", "pre_step"])
def test_one_step_in_closed_form(order):
    w = nn.Parameter(torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64))
    w.grad = torch.tensor([[0.2, -0.1], [0.4, 0.3]], dtype=torch.float64)
    opt = ro.AdamCPR([{"params": [w], "regularize": True}], lr=0.1, kappa_init_method="uniform",
                     kappa_init_param=4.0, kappa_update=0.5, reg_order=order)  # fmt: skip
    expected, lam = manual_cpr_step(w.detach().clone(), w.grad, 4.0, 0.5 / 4, 0.1, order)
    opt.step()
    torch.testing.assert_close(w.detach(), expected, rtol=1e-7, atol=1e-9)  # lambda is float32
    torch.testing.assert_close(opt.state[w]["lagmul"].double(), lam, rtol=1e-7, atol=0)
    assert lam > 0


@pytest.mark.parametrize("foreach", [False, True])
def test_a_bound_above_the_natural_norm_is_plain_adam(foreach):
    cpr_model, adam_model = mlp(), mlp()
    opt = ro.AdamCPR(cpr_model, lr=1e-2, kappa_init_method="uniform", kappa_init_param=1e6, foreach=foreach)
    ref = ro.Adam(adam_model.parameters(), lr=1e-2, foreach=foreach)
    for seed in range(30):
        step(cpr_model, opt, seed)
        step(adam_model, ref, seed)
    for p, q in zip(cpr_model.parameters(), adam_model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert all(opt.state[p]["lagmul"].item() == 0 for p in regularized(opt))


@pytest.mark.parametrize("measure", ["l2", "std", "huber", "l1"])
def test_after_activation_the_measure_stays_at_the_bound(measure):
    """The multiplier integrates violations, so it reacts after R crossed kappa: single steps overshoot
    (here by up to ~20% on noisy batches), while R sits at or just below kappa on average."""
    model = mlp()
    opt = ro.AdamCPR(model, lr=1e-2, kappa_init_method="dependent", kappa_init_param=0.5, reg_function=measure)
    ratios = []
    for seed in range(300):
        step(model, opt, seed)
        if seed >= 100:  # lambda has caught up with the initial violation R(w_0) = 2 kappa
            ratios.append([measures.evaluate(measure, [p.detach()], foreach=False)[0][0] / opt.state[p]["kappa"]
                           for p in regularized(opt)])  # fmt: skip
    ratios = torch.tensor(ratios)
    assert (ratios.mean(0) <= 1.01).all() and (ratios.mean(0) >= 0.85).all(), ratios.mean(0)
    assert ratios.max() <= 1.25, ratios.max()
    assert any(opt.state[p]["lagmul"] > 0 for p in regularized(opt))


def test_lambda_is_zero_until_the_warm_start_sets_the_bound():
    model = mlp()
    opt = ro.AdamCPR(model, lr=1e-2, kappa_init_method="warm_start", kappa_init_param=20)
    for seed in range(20):
        step(model, opt, seed)
        assert all(opt.state[p]["lagmul"].item() == 0 for p in regularized(opt))
        assert all(torch.isinf(opt.state[p]["kappa"]) == (seed < 19) for p in regularized(opt))
    for p in regularized(opt):  # kappa = R(w) of the weights after step s
        torch.testing.assert_close(opt.state[p]["kappa"], p.detach().square().sum().float())


def test_dependent_bound_of_a_zero_initialised_tensor_is_left_unset():
    model = mlp()
    nn.init.zeros_(model[3].weight)
    opt = ro.AdamCPR(model, kappa_init_method="dependent", kappa_init_param=1.0, reg_function="std")
    step(model, opt)
    assert torch.isinf(opt.state[model[3].weight]["kappa"]) and torch.isfinite(opt.state[model[0].weight]["kappa"])


def test_adaptive_bounds_move_only_where_the_multiplier_falls_to_zero():
    model = mlp()
    opt = ro.AdamCPR(model, lr=1e-2, kappa_init_method="dependent", kappa_init_param=0.7, adaptive_bounds=True)
    step(model, opt)
    previous = {p: (opt.state[p]["kappa"].clone(), opt.state[p]["lagmul"].clone()) for p in regularized(opt)}
    releases = 0
    for seed in range(1, 300):
        step(model, opt, seed)
        for p in regularized(opt):
            state, (kappa, lagmul) = opt.state[p], previous[p]
            if lagmul > 0 and state["lagmul"] == 0:  # the release step: kappa <- R(w)
                releases += 1
                torch.testing.assert_close(state["kappa"], p.detach().square().sum().float())
            else:
                assert torch.equal(state["kappa"], kappa)
            assert torch.equal(state["lagmul_prev"], state["lagmul"])
            previous[p] = (state["kappa"].clone(), state["lagmul"].clone())
    assert releases > 0


def adacpr_reference(w0, targets, lr, kappa_factor, betas=(0.9, 0.999), eps=1e-8):
    """AdaCPR written from the paper (float64, one matrix, l2, loss 0.5 ||W - target_t||^2): Adam
    step, ``lambda <- max(0, lambda + (R - kappa)/numel)``, ``W <- W - 2 lambda W``, and ``kappa <- R``
    where lambda falls from > 0 to 0. Returns the bound after each step and the final weights."""
    w, m, v = w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
    kappa, lam, kappas = kappa_factor * w0.square().sum().item(), 0.0, []
    for t, target in enumerate(targets, 1):
        g = w - target
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        w = w - lr * (m / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + eps)
        r = w.square().sum().item()
        new_lam = max(0.0, lam + (r - kappa) / w.numel())
        w = w - 2 * new_lam * w
        if lam > 0 and new_lam == 0:
            kappa = r
        lam = new_lam
        kappas.append(kappa)
    return kappas, w


def probe_targets(steps=400):
    """The issue's probe: a 4x4 target, scaled x4 before step 60 and after step 200 (0-based steps)."""
    gen = torch.Generator().manual_seed(0)
    w0, target = torch.randn(4, 4, generator=gen, dtype=torch.float64), torch.randn(4, 4, generator=gen, dtype=torch.float64)
    w0 *= (35.0 / w0.square().sum()).sqrt()  # R(w_0) = 35, ||target||^2 = 5.24
    target *= (5.24 / target.square().sum()).sqrt()
    return w0, [4 * target if (t < 60 or t > 200) else target for t in range(steps)]


@pytest.mark.parametrize("foreach", [False, True])
def test_adaptive_bounds_match_the_papers_rule_on_the_probe(foreach):
    w0, targets = probe_targets()
    w = nn.Parameter(w0.clone())
    opt = ro.AdamCPR([{"params": [w], "regularize": True}], lr=0.05, kappa_init_method="dependent",
                     kappa_init_param=1.0, adaptive_bounds=True, foreach=foreach)  # fmt: skip
    kappas = []
    for target in targets:
        opt.zero_grad()
        (0.5 * (w - target).square().sum()).backward()
        opt.step()
        kappas.append(opt.state[w]["kappa"].item())
    expected, w_ref = adacpr_reference(w0, targets, lr=0.05, kappa_factor=1.0)
    torch.testing.assert_close(torch.tensor(kappas, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-5, atol=0)
    torch.testing.assert_close(w.detach(), w_ref, rtol=1e-4, atol=1e-5)
    # the bound stays where the constraint released (~34.5), not dragged down to the small target's 5.2
    assert kappas[59] == pytest.approx(35.0, rel=1e-6) and min(kappas[60:200]) > 34
    assert w.detach().square().sum() > 5.24


def test_the_multiplier_does_not_depend_on_the_matrix_size_at_equal_per_entry_statistics():
    """mu = kappa_update / numel compensates R being a sum: a 32x32 matrix made of 8x8 copies of a 4x4
    one (R 64x larger, mu 64x smaller) gets the same lambda at every step and stays the tiled copy."""
    gen = torch.Generator().manual_seed(0)
    w0, target = torch.randn(4, 4, generator=gen, dtype=torch.float64), torch.randn(4, 4, generator=gen, dtype=torch.float64)
    small, big = nn.Parameter(w0.clone()), nn.Parameter(w0.repeat(8, 8))
    opt = ro.AdamCPR([{"params": [small, big], "regularize": True}], lr=0.05, kappa_init_method="dependent",
                     kappa_init_param=0.5)  # fmt: skip
    for _ in range(200):
        opt.zero_grad()
        (0.5 * (small - 2 * target).square().sum() + 0.5 * (big - 2 * target.repeat(8, 8)).square().sum()).backward()
        opt.step()
        lam_small, lam_big = opt.state[small]["lagmul"], opt.state[big]["lagmul"]
        torch.testing.assert_close(lam_big, lam_small, rtol=1e-5, atol=1e-7)
    assert lam_small > 0
    torch.testing.assert_close(big.detach(), small.detach().repeat(8, 8), rtol=1e-6, atol=1e-8)


def test_reg_by_lr_scales_the_constraint_step_by_the_learning_rate():
    w = nn.Parameter(torch.ones(3, 3, dtype=torch.float64))
    opt = ro.AdamCPR([{"params": [w], "regularize": True}], lr=0.0, kappa_init_method="uniform",
                     kappa_init_param=1.0, reg_by_lr=True)  # fmt: skip
    w.grad = torch.ones_like(w)
    opt.step()
    assert opt.state[w]["lagmul"] > 0 and torch.equal(w.detach(), torch.ones(3, 3, dtype=torch.float64))


# --- dtypes, checkpoints, paths ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])  # float16 params are refused (Adam's statistics)
def test_bounds_and_multipliers_stay_float32_through_a_checkpoint(dtype):
    model, ip_model = mlp(dtype), mlp(dtype)  # eps 1e-4: Adam's default 1e-8 is 0 in float16
    opt = ro.AdamCPR(model, lr=1e-2, eps=1e-4, kappa_init_method="uniform", kappa_init_param=1e5, adaptive_bounds=True)
    ip_opt = ro.AdamCPR(ip_model, lr=1e-2, eps=1e-4, reg_step_size=1)
    for seed in range(5):
        step(model, opt, seed)
        step(ip_model, ip_opt, seed)
    for optimizer, make in ((opt, lambda m: ro.AdamCPR(m, kappa_init_method="uniform", kappa_init_param=1.0)),
                            (ip_opt, lambda m: ro.AdamCPR(m))):  # fmt: skip
        buffer = io.BytesIO()
        torch.save(optimizer.state_dict(), buffer)
        buffer.seek(0)
        fresh = make(mlp(dtype))
        fresh.load_state_dict(torch.load(buffer))
        for p, q in zip(regularized(optimizer), regularized(fresh), strict=True):
            for key in optimizer.float32_state:
                if key in optimizer.state[p]:
                    value = fresh.state[q][key]
                    assert value.dtype == torch.float32 and torch.equal(value, optimizer.state[p][key]), key
            assert fresh.state[q]["exp_avg"].dtype == dtype
        assert fresh.param_groups[0]["kappa_init_method"] == optimizer.param_groups[0]["kappa_init_method"]
    assert all(opt.state[p]["kappa"].item() == 1e5 for p in regularized(opt))  # 99840 in bfloat16


@pytest.mark.parametrize("measure", measures.MEASURES)
def test_half_precision_runs_stay_finite(measure):
    model = mlp(torch.bfloat16)
    opt = ro.AdamCPR(model, lr=1e-2, kappa_init_method="dependent", kappa_init_param=0.5, reg_function=measure)
    for seed in range(20):
        step(model, opt, seed)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(opt.state[p]["lagmul"].dtype == torch.float32 for p in regularized(opt))


@pytest.mark.cuda
@pytest.mark.parametrize("method", ["uniform", "inflection_point", "warm_start"])
def test_cuda_matches_cpu(method):
    cpu, gpu = mlp(), mlp().cuda()
    kwargs = dict(lr=3e-2, kappa_init_method=method, kappa_init_param=10 if method == "warm_start" else 2.0,
                  reg_step_size=5)  # fmt: skip
    opt_cpu, opt_gpu = ro.AdamCPR(cpu, **kwargs), ro.AdamCPR(gpu, **kwargs)
    for seed in range(100):
        step(cpu, opt_cpu, seed)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(16, 4, generator=g).double()
        opt_gpu.zero_grad()
        (gpu(x.cuda()) - 4 * (3 * x[:, :3]).sin().cuda()).square().mean().backward()
        opt_gpu.step()
    for p, q in zip(cpu.parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(p, q.cpu(), rtol=1e-9, atol=1e-10)
    for p, q in zip(regularized(opt_cpu), regularized(opt_gpu), strict=True):
        torch.testing.assert_close(opt_cpu.state[p]["kappa"], opt_gpu.state[q]["kappa"].cpu())


# --- which tensors are regularized -------------------------------------------------------------------

class WithEmbeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.tokens = nn.Embedding(10, 4)
        self.pos_embedding = nn.Parameter(torch.zeros(3, 4))
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2, bias=False)


def test_a_model_is_grouped_without_biases_norms_and_embeddings():
    groups = model_param_groups(WithEmbeddings())
    names = {g["regularize"]: g["names"] for g in groups}
    assert names[True] == ["proj.weight", "head.weight"]
    assert set(names[False]) == {"tokens.weight", "pos_embedding", "proj.bias", "norm.weight", "norm.bias"}
    with_embeddings = {g["regularize"]: g["names"] for g in model_param_groups(WithEmbeddings(), reg_embedding=True)}
    assert set(with_embeddings[True]) == {"tokens.weight", "pos_embedding", "proj.weight", "head.weight"}


def test_a_plain_parameter_iterable_regularizes_the_matrices_and_says_so(capsys):
    model = WithEmbeddings()
    opt = ro.AdamCPR(model.parameters())
    shapes = [tuple(p.shape) for p in regularized(opt)]
    assert shapes == [(3, 4), (10, 4), (4, 4), (2, 4)]  # parameters() order: own parameters first
    out = capsys.readouterr().out
    assert "regularized 4 tensors" in out and "not regularized 3 tensors" in out and "regularize=True" in out
    ro.AdamCPR(model.parameters(), verbose=False)
    assert capsys.readouterr().out == ""


def test_param_groups_must_say_whether_to_regularize():
    model = WithEmbeddings()
    with pytest.raises(ValueError, match="regularize=True or regularize=False"):
        ro.AdamCPR([{"params": model.proj.parameters()}])
    opt = ro.AdamCPR([{"params": [model.head.weight], "regularize": True}])
    with pytest.raises(ValueError, match="regularize"):
        opt.add_param_group({"params": [model.proj.weight], "regularize": "yes"})


def test_regularizing_nothing_warns():
    with pytest.warns(UserWarning, match="regularizes no tensor"):
        ro.AdamCPR([nn.Parameter(torch.ones(3))], verbose=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kappa_init_method": "warm_start", "kappa_init_param": 10.5}, "whole number"),
        ({"kappa_init_method": "warm_start", "kappa_init_param": 0}, "kappa_init_param"),
        ({"kappa_init_method": "uniform", "kappa_init_param": -1.0}, "kappa_init_param"),
        ({"kappa_update": 0.0}, "kappa_update must be > 0"),
        ({"reg_step_size": 2.5}, "reg_step_size"),
    ],
)
def test_invalid_bound_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ro.AdamCPR(mlp(), **kwargs)


def test_recorder_logs_each_regularized_tensor_per_step():
    model = mlp()
    opt = ro.AdamCPR(model, lr=3e-2, reg_step_size=5)
    recorder = ro.ConstraintRecorder(opt, every=2)
    for seed in range(40):
        step(model, opt, seed)
    frame = recorder.frame()
    assert set(frame["name"]) == {"0.weight", "3.weight"} and frame["step"].tolist()[:4] == [2, 2, 4, 4]
    last = frame[frame["step"] == 40].set_index("name")
    for name, p in (("0.weight", model[0].weight), ("3.weight", model[3].weight)):
        assert last.loc[name, "R"] == pytest.approx(p.detach().square().sum().item(), rel=1e-6)
        assert last.loc[name, "lambda"] == opt.state[p]["lagmul"].item()
        assert last.loc[name, "norm_ema"] == opt.state[p]["norm_ema"].item()
    recorder.remove()
    step(model, opt, 99)
    assert recorder.frame()["step"].max() == 40
