"""The scale-invariant toys: f(c w) = f(w), tangent gradients scaling as 1/c, and the trajectory recorder."""

import numpy as np
import pytest
import torch

from regkit.diagnostics.scale_invariance import (
    ROSENBROCK_START,
    cosine_objective,
    scale_invariant_rosenbrock,
    trajectory,
    unit_vector,
)
from regkit.optim import SGD


@pytest.mark.parametrize("objective,w", [
    (cosine_objective, torch.tensor([-0.3, 0.8], dtype=torch.float64)),
    (scale_invariant_rosenbrock, torch.tensor(ROSENBROCK_START, dtype=torch.float64)),
])  # fmt: skip
def test_toys_are_scale_invariant_with_tangent_gradients(objective, w):
    def grad(x):
        x = x.clone().requires_grad_()
        objective(x).backward()
        return x.grad

    g = grad(w)
    assert abs(objective(3.7 * w) - objective(w)) < 1e-12 * abs(objective(w)).clamp_min(1)
    assert abs(torch.dot(g, w)) < 1e-12 * g.norm() * w.norm()
    torch.testing.assert_close(grad(3.7 * w), g / 3.7, rtol=1e-12, atol=0)


def test_known_values():
    assert cosine_objective(torch.tensor(unit_vector(0.0))) == -1
    assert scale_invariant_rosenbrock(torch.tensor([2.0, 2.0, 2.0])) == 0  # (x/z, y/z) = (1, 1)
    assert np.isclose(np.linalg.norm(ROSENBROCK_START), 1.0)


def test_trajectory_records_weights_losses_and_the_lr():
    run = trajectory(cosine_objective, unit_vector(135.0), lambda ps: SGD(ps, lr=0.1), 5)
    assert run.weights.shape == (6, 2) and run.losses.shape == (6,) and run.lr == 0.1
    assert run.losses[-1] < run.losses[0]
    w0 = torch.tensor(unit_vector(135.0), dtype=torch.float64, requires_grad=True)
    cosine_objective(w0).backward()
    np.testing.assert_allclose(run.updates[0], w0.grad.numpy(), rtol=1e-12)  # GD: the update is the gradient
    np.testing.assert_allclose(run.effective_steps, 0.1 / run.norms**2)
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        trajectory(cosine_objective, (1.0, 0.0), lambda ps: SGD(ps, lr=0.1), 0)
