"""adam_decay_rates: Adam's per-coordinate L2 decay rate lr*wd/(sqrt(v_hat)+eps) vs AdamW's lr*wd."""

import pytest
import torch
from torch import nn

import regkit.optim as ro
from regkit.diagnostics.effective_decay import adam_decay_rates


def uneven_grads(params):
    """Random gradients whose scale spans four decades across coordinates."""
    for p in params:
        p.grad = torch.randn_like(p) * torch.logspace(-3, 1, p.numel(), dtype=p.dtype).reshape(p.shape)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)).double()


@pytest.mark.parametrize("amsgrad", [False, True])
def test_coupled_rates_match_torch_adams_state(amsgrad):
    """The rates written out by hand from torch.optim.Adam's state, run side by side on the same gradients."""
    lr, wd, eps, betas = 3e-3, 0.1, 1e-8, (0.9, 0.99)
    model, twin = tiny_model(), tiny_model()
    opt = ro.Adam(model.parameters(), lr=lr, betas=betas, eps=eps, weight_decay=wd, amsgrad=amsgrad)
    ref = torch.optim.Adam(twin.parameters(), lr=lr, betas=betas, eps=eps, weight_decay=wd, amsgrad=amsgrad,
                           foreach=False)
    for step in range(5):
        torch.manual_seed(step)
        uneven_grads(model.parameters())
        torch.manual_seed(step)
        uneven_grads(twin.parameters())
        opt.step()
        ref.step()
    rates = adam_decay_rates(opt, model)
    assert list(rates) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        state = ref.state[q]
        v = state["max_exp_avg_sq"] if amsgrad else state["exp_avg_sq"]
        v_hat = v / (1 - betas[1] ** state["step"].item())
        torch.testing.assert_close(rates[name], lr * wd / (v_hat.sqrt() + eps), rtol=1e-14, atol=0)
        assert rates[name].shape == p.shape
    flat = torch.cat([r.flatten() for r in rates.values()])
    assert flat.max() / flat.min() > 100  # uneven gradients: very uneven decay


def test_decoupled_rates_are_lr_times_wd_and_describe_the_step_exactly():
    lr, wd = 0.25, 0.5
    model = tiny_model()
    opt = ro.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    uneven_grads(model.parameters())
    opt.step()
    rates = adam_decay_rates(opt, model)
    assert all(torch.equal(r, torch.full_like(r, lr * wd)) for r in rates.values())
    fresh = nn.Linear(3, 2).double()
    fresh_opt = ro.AdamW(fresh.parameters(), lr=lr, weight_decay=wd)
    before = {n: p.detach().clone() for n, p in fresh.named_parameters()}
    for p in fresh.parameters():
        p.grad = torch.zeros_like(p)  # zero loss gradient: zero moments, the step is the decay alone
    fresh_opt.step()
    for name, rate in adam_decay_rates(fresh_opt, fresh).items():
        assert torch.equal(dict(fresh.named_parameters())[name], before[name] * (1 - rate))


def test_each_group_uses_its_own_hyperparameters():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)).double()
    groups = [{"params": model[0].parameters(), "weight_decay": 0.0}, {"params": model[1].parameters(), "lr": 0.5}]
    opt = ro.AdamW(groups, lr=0.1, weight_decay=0.2)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    rates = adam_decay_rates(opt, model)
    assert torch.equal(rates["0.weight"], torch.zeros(3, 4, dtype=torch.float64))
    assert torch.equal(rates["1.bias"], torch.full((2,), 0.5 * 0.2, dtype=torch.float64))


def test_bad_inputs_are_rejected_with_the_reason():
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="must be a regkit.optim.Adam or AdamW, got SGD"):
        adam_decay_rates(ro.SGD(model.parameters(), lr=0.1), model)
    opt = ro.Adam([model.weight], weight_decay=0.1)
    with pytest.raises(ValueError, match="'bias' is in none of the optimizer's param groups"):
        adam_decay_rates(opt, [("bias", model.bias)])
    with pytest.raises(ValueError, match="'weight' has no optimizer state yet: take a step first"):
        adam_decay_rates(opt, [("weight", model.weight)])
