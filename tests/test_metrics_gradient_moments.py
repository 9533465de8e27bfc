"""minibatch_gradient_moments: per-coordinate mean and variance of minibatch gradients."""

import pytest
import torch
from torch import nn

from regkit.diagnostics.metrics import minibatch_gradient_moments


def mse(out, y):
    return ((out - y) ** 2).mean()


def test_moments_of_a_linear_least_squares_model_match_the_closed_form():
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False).double()
    batches = [(torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)) for _ in range(6)]
    model.weight.grad = sentinel = torch.full((1, 3), 7.0, dtype=torch.float64)
    moments = minibatch_gradient_moments(model, batches, loss_fn=mse)
    w = model.weight.detach()
    grads = torch.stack([2 * ((x @ w.T - y).T @ x) / len(x) for x, y in batches])  # d/dw mean (xw - y)^2
    mean, var = moments["weight"]
    torch.testing.assert_close(mean, grads.mean(0), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(var, grads.var(0, unbiased=True), rtol=1e-10, atol=1e-14)
    assert model.weight.grad is sentinel and torch.equal(sentinel, torch.full((1, 3), 7.0, dtype=torch.float64))


def test_float32_models_get_float64_moments_and_frozen_parameters_are_skipped():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    model[0].bias.requires_grad_(False)
    batches = [(torch.randn(6, 4), torch.randint(3, (6,))) for _ in range(3)]
    moments = minibatch_gradient_moments(model, batches)
    assert list(moments) == ["0.weight", "2.weight", "2.bias"]
    assert all(m.dtype == v.dtype == torch.float64 and (v >= 0).all() for m, v in moments.values())
    assert moments["0.weight"][1].sum() > 0  # different batches, different gradients


def test_fewer_than_two_batches_is_an_error():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="at least 2 batches to estimate a variance, got 1"):
        minibatch_gradient_moments(model, [(torch.randn(3, 2), torch.randint(2, (3,)))])
