"""Scale-invariant toy objectives (Heo et al., ICLR 2021) and optimizer trajectories on them.

Both toys satisfy ``f(c w) = f(w)`` for ``c > 0``, like a weight followed by a normalisation
layer, so their gradients are orthogonal to ``w`` and any norm growth comes from the optimizer:

- `cosine_objective`: ``f(w) = -cos(w, w*)`` in 2-D with ``w* = (1, 0)`` (the paper's 2-D toy);
- `scale_invariant_rosenbrock`: ``h(x, y, z) = R(x/z, y/z)`` with Rosenbrock's
  ``R(a, b) = (1 - a)^2 + 100 (b - a^2)^2`` (the paper's 3-D toy; minimum on the ray through (1, 1, 1)).

`trajectory` runs any ``torch.optim`` optimizer on them in float64. The weight is stored as a
``(1, d)`` tensor, one row: AdamP/SGDP only test tensors with ``ndim > 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from regkit._validate import check_int

W_STAR = (1.0, 0.0)
ROSENBROCK_START = (-2 / 3, 2 / 3, 1 / 3)  # (-2, 2, 1) / 3: unit norm, (x/z, y/z) = (-2, 2)


def cosine_objective(w: Tensor) -> Tensor:
    """``-cos(w, w*)`` over the last axis (length 2), ``w* = (1, 0)``."""
    return -w[..., 0] / torch.linalg.vector_norm(w, dim=-1)


def scale_invariant_rosenbrock(w: Tensor) -> Tensor:
    """``R(x/z, y/z)`` over the last axis ``(x, y, z)``, ``R(a, b) = (1 - a)^2 + 100 (b - a^2)^2``."""
    a, b = w[..., 0] / w[..., 2], w[..., 1] / w[..., 2]
    return (1 - a) ** 2 + 100 * (b - a * a) ** 2


def unit_vector(angle_degrees: float) -> tuple[float, float]:
    """The 2-D unit vector at ``angle_degrees`` from ``w* = (1, 0)``."""
    angle = math.radians(angle_degrees)
    return math.cos(angle), math.sin(angle)


@dataclass(frozen=True)
class Trajectory:
    """Weights ``(steps + 1, d)`` and objective values ``(steps + 1,)`` of one run, ``lr`` its learning rate."""

    weights: np.ndarray
    losses: np.ndarray
    lr: float

    @property
    def norms(self) -> np.ndarray:
        """``||w_t||`` for t = 0..steps."""
        return np.linalg.norm(self.weights, axis=1)

    @property
    def effective_steps(self) -> np.ndarray:
        """``lr / ||w_t||^2``: the step size seen by the direction ``w / ||w||``."""
        return self.lr / self.norms**2

    @property
    def updates(self) -> np.ndarray:
        """``(w_t - w_{t+1}) / lr`` for t = 0..steps-1: the direction the optimizer stepped along."""
        return (self.weights[:-1] - self.weights[1:]) / self.lr


def trajectory(
    objective: Callable[[Tensor], Tensor],
    w0: tuple[float, ...] | Tensor,
    make_optimizer: Callable[[list[Tensor]], torch.optim.Optimizer],
    steps: int,
) -> Trajectory:
    """Run ``make_optimizer([w])`` for ``steps`` steps on ``objective`` from ``w0`` (float64, ``w`` of shape ``(1, d)``).

    The learning rate of the optimizer's first param group is recorded as ``Trajectory.lr``.
    """
    check_int("steps", steps)
    w = torch.nn.Parameter(torch.as_tensor(w0, dtype=torch.float64).reshape(1, -1).clone())
    optimizer = make_optimizer([w])
    weights, losses = [w.detach().clone()], []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = objective(w).sum()
        loss.backward()
        losses.append(loss.detach())
        optimizer.step()
        weights.append(w.detach().clone())
    with torch.no_grad():
        losses.append(objective(w).sum())
    return Trajectory(
        weights=torch.cat(weights).numpy(), losses=torch.stack(losses).numpy(), lr=float(optimizer.param_groups[0]["lr"])
    )
