"""Small deterministic models and objectives shared by the optimizer tests; each has ``loss(step)``."""

import torch
from torch import nn


class TinyNet(nn.Module):
    """Linear -> LayerNorm -> tanh -> Linear (no bias); ``unused`` never gets a gradient."""

    def __init__(self, dtype=torch.float64):
        super().__init__()
        torch.manual_seed(0)
        self.hidden = nn.Linear(4, 6, dtype=dtype)
        self.norm = nn.LayerNorm(6, dtype=dtype)
        self.out = nn.Linear(6, 2, bias=False, dtype=dtype)
        self.unused = nn.Parameter(torch.ones(3, dtype=dtype))

    def forward(self, x):
        return self.out(torch.tanh(self.norm(self.hidden(x))))

    def loss(self, step: int):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(16, 4, generator=g, dtype=torch.float64).to(self.out.weight)
        y = torch.randn(16, 2, generator=g, dtype=torch.float64).to(self.out.weight)
        return (self(x) - y).square().mean()


class MixedDtypeNet(nn.Module):
    """Parameters of two dtypes in one group: the foreach path must bucket them."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.a = nn.Parameter(torch.randn(3, 4, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(4))
        self.c = nn.Parameter(torch.randn(2, 3))
        self.d = nn.Parameter(torch.randn(5, dtype=torch.float64))

    def loss(self, step: int):
        target = 0.1 * step
        return (
            sum(
                ((p.double() - target).square() * torch.arange(1, p.numel() + 1).view(p.shape)).sum()
                for p in self.parameters()
            )
            / 50
        )


class Quadratic(nn.Module):
    """``f(W) = 0.5 ||M (W - W*)||_F^2`` with ``M`` well conditioned (eigenvalues of M^T M in [0.25, 1])."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(2)
        q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
        self.register_buffer(
            "m", q @ torch.diag(torch.tensor([1.0, 0.8, 0.65, 0.5], dtype=torch.float64)) @ q.T
        )
        self.register_buffer("w_star", torch.randn(4, 3, generator=g, dtype=torch.float64))
        self.w = nn.Parameter(torch.zeros(4, 3, dtype=torch.float64))

    def loss(self, step: int = 0):
        return 0.5 * (self.m @ (self.w - self.w_star)).square().sum()


class Rosenbrock(nn.Module):
    """``f(x, y) = (1 - x)^2 + 100 (y - x^2)^2`` from the classic start (-1.2, 1); minimum 0 at (1, 1)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([-1.2, 1.0], dtype=torch.float64))

    def loss(self, step: int = 0):
        x, y = self.w
        return (1 - x) ** 2 + 100 * (y - x**2) ** 2
