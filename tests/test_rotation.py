"""regkit.diagnostics.rotation: angles and norms per neuron, the predicted equilibria against the random-walk model, the hook."""

import math

import numpy as np
import pytest
import torch

from regkit.diagnostics.rotation import (
    RotationMonitor,
    adamw_equilibrium,
    angular_updates,
    neuron_norms,
    sgd_equilibrium,
)
from regkit.optim import SGD
from regkit.train import train
from regkit.widgets.dynamics import dynamics_widget, random_walk


def test_angular_updates_and_norms_per_row():
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    angle = 0.3
    b = torch.tensor([[math.cos(angle), math.sin(angle), 0.0], [0.0, 5.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(angular_updates(a, b), torch.tensor([angle, 0.0], dtype=torch.float64))
    torch.testing.assert_close(neuron_norms(b), torch.tensor([1.0, 5.0], dtype=torch.float64))
    tiny = torch.tensor([[1.0, 1e-9]], dtype=torch.float64)  # acos(cos) would give 0 or 1.5e-8 here
    assert angular_updates(torch.tensor([[1.0, 0.0]], dtype=torch.float64), tiny).item() == pytest.approx(1e-9)
    conv = torch.randn(4, 3, 2, 2)
    assert neuron_norms(conv).shape == (4,)
    with pytest.raises(ValueError, match=r"same shape, got \(4, 3, 2, 2\) and \(4, 12\)"):
        angular_updates(conv, conv.reshape(4, 12))


def test_predicted_equilibria_formulas():
    eq = adamw_equilibrium(0.01, 0.1, 64, beta1=0.9)
    assert eq.norm == pytest.approx(math.sqrt(0.01 * 64 / 0.2))
    assert eq.angle == pytest.approx(math.sqrt(2 * 0.001 * 0.1 / 1.9))
    assert eq.relaxation_steps == pytest.approx(500)
    sgdw = sgd_equilibrium(0.1, 0.05, 63.0, momentum=0.9)
    assert sgdw.norm**4 == pytest.approx(0.1 * 63 / (2 * 0.05 * 0.01))
    assert sgdw.angle == pytest.approx(math.sqrt(2 * 0.005 * 0.1 / 1.9))
    l2 = sgd_equilibrium(0.1, 0.05, 63.0, momentum=0.9, decoupled=False)  # Kosson et al.'s SGDM
    assert l2.norm**4 == pytest.approx(0.1 * 63 / (2 * 0.05 * 0.1))
    assert l2.angle == pytest.approx(math.sqrt(2 * 0.005 / 1.9))
    with pytest.raises(ValueError, match="weight_decay must be > 0 for an equilibrium to exist, got 0"):
        adamw_equilibrium(0.01, 0.0, 64)
    with pytest.raises(ValueError, match=r"momentum must be in \[0.0, 1.0\), got 1.0"):
        sgd_equilibrium(0.1, 0.1, 1.0, momentum=1.0)


@pytest.mark.parametrize("optimizer, kwargs", [
    ("adamw", {"lr": 0.02, "weight_decay": 0.2}),
    ("sgdw", {"lr": 0.1, "weight_decay": 0.05, "beta1": 0.9}),
    ("sgdw", {"lr": 0.05, "weight_decay": 0.1, "beta1": 0.0}),
])
def test_random_walk_reaches_the_predicted_equilibrium_within_10_percent(optimizer, kwargs):
    r = random_walk(optimizer, steps=3000, **kwargs)
    late = slice(2000, 3000)
    assert r["norm"][late].mean() / r["norm_eq"][-1] == pytest.approx(1, abs=0.1)
    assert np.sqrt(np.mean(r["angle"][late] ** 2)) / r["angle_eq"][-1] == pytest.approx(1, abs=0.1)


def test_corrected_decay_removes_the_late_gradient_norm_rise():
    plain = random_walk("adamw", lr=0.02, weight_decay=0.2, schedule="cosine", steps=1500)
    fixed = random_walk("adamw", lr=0.02, weight_decay=0.2, schedule="cosine, corrected", steps=1500)
    middle, end = slice(400, 500), slice(1400, 1500)
    assert plain["grad_norm"][end].mean() > 1.15 * plain["grad_norm"][middle].mean()
    assert fixed["grad_norm"][end].mean() < 1.03 * fixed["grad_norm"][middle].mean()


def test_rotation_monitor_measures_every_step_as_a_train_hook():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4, bias=False), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 3))
    opt = SGD(model.parameters(), lr=0.1)
    monitor = RotationMonitor(model, opt)
    assert list(monitor.params) == ["0.weight", "2.weight"]
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    weights, angles = [], []
    step_hook = opt.register_step_post_hook(lambda *a: weights.append(model[0].weight.detach().clone()))
    start = model[0].weight.detach().clone()
    history = train(model, opt, [(x, y)], steps=4, hooks=[monitor], eval_every=2, progress=False)
    step_hook.remove()
    for before, after in zip([start, *weights[:-1]], weights, strict=True):
        angles.append(angular_updates(before, after))
    window = torch.stack(angles[2:]).square().mean(0).sqrt()  # steps 3 and 4, the second window
    torch.testing.assert_close(monitor.last_angles["0.weight"], window.double(), rtol=1e-6, atol=0)
    last = history.df.dropna(subset=["angle/0.weight"]).iloc[-1]
    assert last["angle/0.weight"] == pytest.approx(window.square().mean().sqrt().item(), rel=1e-6)
    assert last["norm/0.weight"] == pytest.approx(neuron_norms(model[0].weight).square().mean().sqrt().item(), rel=1e-6)
    monitor.remove()
    with pytest.raises(ValueError, match="no parameter chosen"):
        RotationMonitor(model, opt, names=lambda n, p: False)


def test_dynamics_widget_redraws_and_refuses_values_out_of_range():
    box = dynamics_widget(steps=200)
    first = bytes(box.children[-1].value)
    box.controls["schedule"].value = "cosine"
    assert bytes(box.children[-1].value) != first
    assert box.drawn["lr"][-1] < 1e-3 * box.drawn["lr"][0]
    with pytest.raises(ValueError, match=r"weight_decay=100.0 is outside the widget's range \[0.001, 10\]"):
        dynamics_widget(weight_decay=100.0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        random_walk(schedule="linear")
