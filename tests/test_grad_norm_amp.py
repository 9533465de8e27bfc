"""SAM/GNP with mixed precision (issue 24.2): bfloat16 autocast on the CPU and a torch.amp.GradScaler.

A scale is a power of two, so scaled passes carry exactly ``S`` times the unscaled gradients: with the
scaler the step is bit for bit the one without it; an overflow (inf) in any pass skips the step.
"""

import pytest
import torch
from torch import nn

import regkit.optim as ro
from regkit.penalties import GNP, SAM


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def batch(step):
    g = torch.Generator().manual_seed(step)
    return torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)


def closure_for(model, opt, step, scaler=None, backward=True, overflow_in_call=None):
    x, y = batch(step)
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x), y)
        if backward:
            (scaler.scale(loss) if scaler is not None else loss).backward()
            if len(calls) == overflow_in_call:
                model[0].weight.grad[0, 0] = float("inf")  # an overflow in this pass
        return loss

    return closure


WRAPPERS = {
    "sam_adamw": lambda m, **kw: SAM(m.parameters(), ro.AdamW, rho=0.05, lr=1e-2, model=m, **kw),
    "gnp_central_sgd": lambda m, **kw: GNP(m.parameters(), ro.SGD, alpha=0.8, r=0.05, difference="central", lr=0.1,
                                           momentum=0.9, model=m, **kw),
    "gnp_exact_adamcpr": lambda m, **kw: GNP(m.parameters(), ro.AdamCPR, alpha=0.8, r=0.05, difference="exact",
                                             lr=1e-2, kappa_init_method="dependent", kappa_init_param=0.9,
                                             verbose=False, model=m, **kw),
}


@pytest.mark.parametrize("name", list(WRAPPERS))
def test_grad_scaler_under_bf16_autocast_gives_the_unscaled_steps_bit_for_bit(name):
    plain, scaled = make_model(), make_model()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    opt_plain, opt_scaled = WRAPPERS[name](plain), WRAPPERS[name](scaled, grad_scaler=scaler)
    backward = "exact" not in name  # exact: the closure returns the loss, the wrapper differentiates it
    for step in range(4):
        loss_plain = opt_plain.step(closure_for(plain, opt_plain, step, backward=backward))
        loss_scaled = opt_scaled.step(closure_for(scaled, opt_scaled, step, scaler, backward=backward))
        scaler.update()
        assert torch.equal(loss_plain, loss_scaled)  # the unscaled loss is returned
    for p, q in zip(plain.state_dict().values(), scaled.state_dict().values(), strict=True):
        assert torch.equal(p, q)  # weights and BatchNorm statistics
    assert scaler.get_scale() == 2.0**12  # no overflow: the scale did not shrink (growth after 2000 steps)


@pytest.mark.parametrize("overflow_in_call", [1, 2], ids=["first_pass", "perturbed_pass"])
def test_an_overflow_in_any_pass_skips_the_step_and_halves_the_scale(overflow_in_call):
    model = make_model()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    opt = SAM(model.parameters(), ro.SGD, rho=0.05, lr=0.1, momentum=0.9, model=model, grad_scaler=scaler)
    opt.step(closure_for(model, opt, 0, scaler))
    scaler.update()
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    buffers = {p: opt.state[p]["momentum_buffer"].clone() for p in model.parameters()}
    opt.step(closure_for(model, opt, 1, scaler, overflow_in_call=overflow_in_call))
    scaler.update()
    for name, p in model.named_parameters():  # (BatchNorm statistics keep pass 1's update, as in a plain AMP step)
        assert torch.equal(p, weights[name]), name  # restored to theta_0, and no base step
    for p in model.parameters():
        assert torch.equal(opt.state[p]["momentum_buffer"], buffers[p])
    assert scaler.get_scale() == 2.0**11


def test_grad_scaler_must_be_a_torch_amp_grad_scaler():
    with pytest.raises(TypeError, match="grad_scaler must be a torch.amp.GradScaler or None, got float"):
        SAM(make_model().parameters(), ro.SGD, lr=0.1, grad_scaler=1.0)
