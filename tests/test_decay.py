"""The CPR paper's baselines: AdamAWD, AdamAdaDecay and joint-norm rescaling, each by its defining property."""

import pytest
import torch
from torch import nn

import regkit.optim as ro
from regkit.optim.decay import AWD_MEMORY
from regkit.train import train


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def grads_at(model: nn.Module, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 6, generator=g, dtype=torch.float64)
    model.zero_grad()
    (model(x) - (2 * x[:, :3]).sin()).square().mean().backward()


def joint(tensors) -> float:
    return torch.sqrt(sum(t.detach().square().sum() for t in tensors)).item()


@pytest.mark.parametrize("foreach", [False, True])
def test_awd_coefficient_follows_its_recursion_and_holds_the_decay_to_gradient_ratio(foreach):
    model = mlp()
    params = list(model.parameters())
    opt = ro.AdamAWD(params, lr=1e-2, weight_decay=0.05, foreach=foreach)
    expected = 0.0
    for seed in range(60):
        grads_at(model, seed)
        ratio = joint([p.grad for p in params]) / joint(params)
        expected = AWD_MEMORY * expected + (1 - AWD_MEMORY) * 0.05 * ratio
        opt.step()
        lambdas = {opt.state[p]["awd_lambda"].item() for p in params}
        assert len(lambdas) == 1, "one coefficient per param group"
        assert lambdas.pop() == pytest.approx(expected, rel=1e-6)
        if seed >= 10:  # the decay term's norm is wd times the gradient's (up to the 10% memory)
            assert expected * joint(params) / joint([p.grad for p in params]) == pytest.approx(0.05, rel=0.1)


def test_awd_step_is_adamw_with_the_coefficient_of_the_step():
    model, reference = mlp(), mlp()
    opt = ro.AdamAWD(model.parameters(), lr=1e-2, weight_decay=0.05)
    ref = ro.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.0)
    for seed in range(5):
        grads_at(model, seed)
        grads_at(reference, seed)
        lam = AWD_MEMORY * opt.state[model[0].weight].get("awd_lambda", torch.tensor(0.0)).item() + (
            1 - AWD_MEMORY
        ) * 0.05 * joint([p.grad for p in model.parameters()]) / joint(model.parameters())
        ref.param_groups[0]["weight_decay"] = lam  # AdamW's decoupled decay with this step's coefficient
        opt.step()
        ref.step()
        for p, q in zip(model.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-9)  # the coefficient is float32


def test_awd_without_weights_adds_no_decay():
    w = nn.Parameter(torch.zeros(3, 3))
    w.grad = torch.ones(3, 3)
    opt = ro.AdamAWD([w], lr=0.1, weight_decay=0.1)
    opt.step()
    assert opt.state[w]["awd_lambda"].item() == 0.0 and torch.isfinite(w).all()


@pytest.mark.parametrize("foreach", [False, True])
def test_adadecay_decays_coordinates_with_larger_standardized_gradients_more(foreach):
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, 8, dtype=torch.float64))
    plain = nn.Parameter(w.detach().clone())
    grad = torch.randn(5, 8, dtype=torch.float64)
    w.grad, plain.grad = grad.clone(), grad.clone()
    wd, alpha, lr = 0.1, 4.0, 0.01
    ro.AdamAdaDecay([w], lr=lr, weight_decay=wd, alpha=alpha, foreach=foreach).step()
    ro.Adam([plain], lr=lr, foreach=foreach).step()
    before = plain.detach() + lr * grad / (grad.abs() + 1e-8)  # undo Adam's first step: the initial weights
    rates = (plain.detach() - w.detach()) / (lr * before)  # decay rate per coordinate
    a = grad.abs()
    z = (a - a.mean()) / a.std(correction=0)
    torch.testing.assert_close(rates, wd * 2 * torch.sigmoid(alpha * z), rtol=1e-6, atol=1e-9)
    order = a.flatten().argsort()
    assert (rates.flatten()[order].diff() >= 0).all(), "a larger |gradient| never gets a smaller decay rate"
    assert rates.max() > 1.5 * wd and rates.min() < 0.5 * wd


def test_adadecay_of_a_constant_gradient_is_plain_decoupled_decay():
    w, ref = nn.Parameter(torch.ones(4, dtype=torch.float64)), nn.Parameter(torch.ones(4, dtype=torch.float64))
    w.grad, ref.grad = torch.full((4,), 0.3, dtype=torch.float64), torch.full((4,), 0.3, dtype=torch.float64)
    ro.AdamAdaDecay([w], lr=0.1, weight_decay=0.2).step()  # std |g| = 0: z = 0, rate = wd
    ro.AdamW([ref], lr=0.1, weight_decay=0.2).step()
    torch.testing.assert_close(w, ref, rtol=1e-15, atol=0)


# --- joint-norm rescaling --------------------------------------------------------------------------

def test_rescaler_shrinks_once_then_holds_the_joint_norm_after_every_step():
    model = mlp()
    matrices = [model[0].weight, model[2].weight]
    initial = joint(matrices)
    biases = [model[0].bias.detach().clone(), model[2].bias.detach().clone()]
    rescaler = ro.JointNormRescaler(model, alpha=0.8)
    assert joint(matrices) == pytest.approx(0.8 * initial, rel=1e-12)
    assert torch.equal(model[0].bias, biases[0]), "biases keep their scale"
    opt = ro.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
    rescaler.attach(opt)
    shares = []
    for seed in range(20):
        grads_at(model, seed)
        opt.step()
        assert joint(matrices) == pytest.approx(0.8 * initial, rel=1e-12)
        shares.append(model[0].weight.detach().norm().item() / joint(matrices))
    assert max(shares) - min(shares) > 1e-3, "the tensors' shares of the norm move freely"


def test_rescaler_works_inside_the_training_loop():
    model = mlp()
    x = torch.randn(64, 6, dtype=torch.float64)
    loader = [(x[i : i + 16], (2 * x[i : i + 16, :3]).sin()) for i in range(0, 64, 16)]
    rescaler = ro.JointNormRescaler([model[0].weight], alpha=0.5)
    target = rescaler.norm().item()
    opt = ro.Adam(model.parameters(), lr=0.05)
    rescaler.attach(opt)
    train(model, opt, loader, steps=8, loss_fn=nn.functional.mse_loss, progress=False)
    assert model[0].weight.norm().item() == pytest.approx(target, rel=1e-12)
    assert rescaler.state_dict()["target"].item() == pytest.approx(target)


def test_rescaler_rejects_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        ro.JointNormRescaler(mlp(), alpha=0.0)
    with pytest.raises(ValueError, match="no tensor"):
        ro.JointNormRescaler(nn.LayerNorm(3))
