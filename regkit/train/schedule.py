"""The course's learning-rate schedule: linear warmup, then cosine decay to a floor."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from regkit._validate import check_int


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  final_fraction: float = 0.1) -> LambdaLR:
    """Linear warmup then cosine decay to a floor, as a ``LambdaLR`` stepped once per optimizer step.

    With ``W = warmup_steps``, ``T = total_steps``, ``f = final_fraction``, the multiplier of
    each group's initial lr after ``s`` scheduler steps is::

        (s + 1) / W                                      for s < W   (lr/W at the first step)
        f + (1 - f) * (1 + cos(pi * (s - W) / (T - W))) / 2   for W <= s < T
        f                                                for s >= T
    """
    check_int("total_steps", total_steps)
    check_int("warmup_steps", warmup_steps, 0, total_steps, note=f"at most total_steps={total_steps}")
    if not 0.0 <= final_fraction <= 1.0:
        raise ValueError(f"final_fraction must be in [0, 1], got {final_fraction!r}")

    def multiplier(s: int) -> float:
        if s < warmup_steps:
            return (s + 1) / warmup_steps
        if s >= total_steps:
            return final_fraction
        progress = (s - warmup_steps) / (total_steps - warmup_steps)
        return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, multiplier)
