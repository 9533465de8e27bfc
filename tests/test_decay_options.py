"""Schedule-corrected (AdamC) and cautious decoupled weight decay, and the EMA timescale, against their formulas."""

import math

import pytest
import torch

from regkit.optim import SGD, SGDW, Adam, AdamAWD, AdamW, decay_timescale, weight_decay_for_timescale
from regkit.train import warmup_cosine


def zero_grad_run(opt_class, lrs, **kwargs):
    """Norm after each step of zero-gradient steps at the given lrs (set by hand, no scheduler)."""
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = opt_class([w], lr=lrs[0], **kwargs)
    norms = []
    for lr in lrs:
        opt.param_groups[0]["lr"] = lr
        w.grad = torch.zeros_like(w)
        opt.step()
        norms.append(w.detach().norm().item())
    return norms, opt


@pytest.mark.parametrize("opt_class", [SGDW, AdamW])
def test_corrected_decay_per_step_factor_is_one_minus_lr_squared_wd_over_lr_max(opt_class):
    lrs, wd = [0.1, 0.05, 0.02, 0.2], 0.5
    norms, opt = zero_grad_run(opt_class, lrs, weight_decay=wd, corrected=True)
    expected, n = [], math.sqrt(3)
    for lr in lrs:  # lr_max = the first step's lr, remembered as the group's initial_lr
        n *= 1 - lr * wd * lr / lrs[0]
        expected.append(n)
    assert norms == pytest.approx(expected, rel=1e-14)
    assert opt.param_groups[0]["initial_lr"] == 0.1
    plain, _ = zero_grad_run(opt_class, lrs, weight_decay=wd)
    assert plain[0] == pytest.approx(math.sqrt(3) * (1 - 0.1 * wd), rel=1e-14)  # same first step
    assert plain[1] < norms[1]  # later, smaller lrs decay less when corrected


def test_corrected_decay_reads_the_schedulers_peak_lr():
    w = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    opt = AdamW([w], lr=0.1, weight_decay=0.3, corrected=True)
    scheduler = warmup_cosine(opt, warmup_steps=2, total_steps=6)  # sets initial_lr = 0.1, lr = 0.05
    n = 2.0
    for _ in range(6):
        lr = opt.param_groups[0]["lr"]
        w.grad = torch.zeros_like(w)
        opt.step()
        scheduler.step()
        n *= 1 - lr * 0.3 * lr / 0.1
        assert w.detach().norm().item() == pytest.approx(n, rel=1e-14)


def test_corrected_decay_prefers_max_lr_and_refuses_a_zero_peak():
    w = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
    opt = SGDW([{"params": [w], "max_lr": 0.4}], lr=0.1, weight_decay=1.0, corrected=True)
    w.grad = torch.zeros_like(w)
    opt.step()
    assert w.item() == pytest.approx(1 - 0.1 * 1.0 * 0.1 / 0.4, rel=1e-15)
    opt = SGDW([w], lr=0.0, weight_decay=1.0, corrected=True)
    with pytest.raises(ValueError, match=r"corrected=True divides the decay by the peak lr, which is 0.0"):
        opt.step()


def cautious_expected(w, u, lr, wd):
    """Chen et al.'s rule: w - lr * (u + wd * 1[u * w >= 0] * w)."""
    return w - lr * (u + wd * (u * w >= 0).to(w.dtype) * w)


@pytest.mark.parametrize("foreach", [False, True])
def test_cautious_sgdw_matches_the_formula(foreach):
    w0 = torch.tensor([1.0, -2.0, 3.0, -0.5, 0.7, -1.5], dtype=torch.float64)
    g = torch.tensor([0.3, 0.4, -0.2, -0.1, 0.0, 0.0], dtype=torch.float64)  # signs: same, opposite, ..., zeros
    w = torch.nn.Parameter(w0.clone())
    opt = SGDW([w], lr=0.1, weight_decay=0.5, cautious=True, foreach=foreach)
    w.grad = g.clone()
    opt.step()
    torch.testing.assert_close(w.detach(), cautious_expected(w0, g, 0.1, 0.5), rtol=1e-15, atol=1e-16)
    assert not torch.allclose(w.detach(), w0 * (1 - 0.05) - 0.1 * g)  # differs from plain SGDW


@pytest.mark.parametrize("foreach", [False, True])
def test_cautious_adamw_matches_the_formula_over_steps(foreach):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 4, dtype=torch.float64))
    ref = w.detach().clone()
    m, v = torch.zeros_like(ref), torch.zeros_like(ref)
    opt = AdamW([w], lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.3, cautious=True, foreach=foreach)
    for t in range(1, 6):
        g = torch.randn_like(ref)
        w.grad = g.clone()
        opt.step()
        m, v = 0.9 * m + 0.1 * g, 0.99 * v + 0.01 * g * g
        u = (m / (1 - 0.9**t)) / ((v / (1 - 0.99**t)).sqrt() + 1e-8)
        ref = cautious_expected(ref, u, 0.01, 0.3)
        torch.testing.assert_close(w.detach(), ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("make", [lambda p, **k: SGD(p, lr=0.1, weight_decay=0.1, **k),
                                  lambda p, **k: Adam(p, weight_decay=0.1, **k)])
@pytest.mark.parametrize("flag", ["corrected", "cautious"])
def test_options_are_refused_with_coupled_l2(make, flag):
    w = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match=rf"{flag}=True changes the decoupled weight decay, but decoupled_weight_decay "
                                         r"is False \(coupled L2\): use decoupled_weight_decay=True"):
        make([w], **{flag: True})


def test_decay_timescale_and_its_inverse():
    assert decay_timescale(1e-3, 0.1, 100) == pytest.approx(100.0)
    assert decay_timescale(0.01, 0.5) == pytest.approx(200.0)  # tau_iter in steps
    wd = weight_decay_for_timescale(1e-3, 2.5, 40)
    assert wd == pytest.approx(10.0) and decay_timescale(1e-3, wd, 40) == pytest.approx(2.5)
    # 4x the data at the same batch size: 4x the steps per epoch, a quarter of the decay
    assert weight_decay_for_timescale(1e-3, 2.5, 160) == pytest.approx(wd / 4)
    # the init's weight after tau_iter zero-gradient steps is about 1/e
    lr, wd = 0.01, 0.5
    tau = round(decay_timescale(lr, wd))
    assert (1 - lr * wd) ** tau == pytest.approx(math.exp(-1), rel=3e-3)


@pytest.mark.parametrize("call, message", [
    (lambda: decay_timescale(0.0, 0.1, 10), "lr must be > 0, got 0.0"),
    (lambda: decay_timescale(1e-3, -0.1, 10), r"weight_decay must be in \[0.0, inf\], got -0.1"),
    (lambda: weight_decay_for_timescale(1e-3, 1.0, 0), "steps_per_epoch must be > 0, got 0"),
    (lambda: weight_decay_for_timescale(1e-3, "2", 10), "tau_epoch must be a real number"),
])
def test_timescale_errors_name_the_bad_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_adamawd_refuses_the_decay_options_in_a_group():
    w = torch.nn.Parameter(torch.ones(3, 3))
    opt = AdamAWD([w])
    for flag in ("corrected", "cautious"):
        with pytest.raises(ValueError, match=rf"AdamAWD always has {flag}=False, got True"):
            opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], flag: True})
