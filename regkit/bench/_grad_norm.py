"""Gradient-norm penalty part of ``python -m regkit.bench penalties``: step cost as ratios to a plain step.

On one batch of a CIFAR ResNet-18 (full width, batch 128 of 32x32 images; ``--quick``: width 4, batch 8 of 16x16, seconds), one training step of
each method, interleaved (see ``regkit.bench._timing``): plain SGD (1 forward + 1 backward), GNP
by finite differences (alpha 0.8, r 0.1: 2 forward + 2 backward, the physical floor), SAM (rho
0.05, the same two passes) and the exact penalty by double backprop (GNP ``difference="exact"``).
Each method trains its own copy of the model with SGD (lr 0.01, momentum 0.9). Target: the finite
difference step costs at most 2.1x the plain one (judged on CPU time on the CPU, where the wall time
of a machine shared with other jobs is too noisy, and on wall time on CUDA).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regkit.bench._timing import cost_table, measure_steps, ratios
from regkit.device import resolve_device
from regkit.models import build_model
from regkit.penalties import GNP, SAM

FD_TARGET = 2.1  # finite-difference step / plain step; the floor is 2 (two forward+backward passes)
SGD_KW = dict(lr=0.01, momentum=0.9)


def penalty_steps(model: nn.Module, x: Tensor, y: Tensor, *, alpha: float = 0.8, r: float = 0.1,
                  rho: float = 0.05) -> dict[str, Callable[[], Tensor]]:
    """One training step on ``(x, y)`` per method, each on its own copy of ``model`` with SGD.

    Keys: ``plain``, ``GNP forward`` (``alpha``, ``r``), ``SAM`` (``rho``), ``exact (double backprop)``
    (``alpha``, ``r``). Each value takes one ``optimizer.step(closure)`` and returns the loss.
    """
    def closure_for(net: nn.Module, backward: bool) -> Callable[[], Tensor]:
        def closure() -> Tensor:
            net.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x), y)
            if backward:
                loss.backward()
            return loss
        return closure

    def make(build: Callable[[nn.Module], torch.optim.Optimizer], backward: bool = True) -> Callable[[], Tensor]:
        net = copy.deepcopy(model)
        optimizer, closure = build(net), closure_for(net, backward)
        return lambda: optimizer.step(closure)

    return {
        "plain": make(lambda net: torch.optim.SGD(net.parameters(), **SGD_KW)),
        "GNP forward": make(lambda net: GNP(net.parameters(), torch.optim.SGD, alpha=alpha, r=r, model=net,
                                            **SGD_KW)),
        "SAM": make(lambda net: SAM(net.parameters(), torch.optim.SGD, rho=rho, model=net, **SGD_KW)),
        "exact (double backprop)": make(lambda net: GNP(net.parameters(), torch.optim.SGD, alpha=alpha, r=r,
                                                        difference="exact", model=net, **SGD_KW),
                                        backward=False),
    }


def run(quick: bool = False, device: str | None = None) -> list:
    """Print the table for one device (default: CUDA, else MPS, else CPU); return the costs."""
    device = resolve_device(device)
    width, batch, size = (4, 8, 16) if quick else (64, 128, 32)
    # a multiple of the 4 candidates: every candidate runs equally often in every position of a round
    repeats, warmup = (4, 1) if quick else ((32, 4) if device.type == "cuda" else (8, 1))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=generator).to(device)
    y = torch.randint(0, 10, (batch,), generator=generator).to(device)
    torch.manual_seed(0)
    model = build_model("resnet18", 10, image_size=size, width=width).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"gradient-norm penalty: CIFAR ResNet-18 (width {width}, {n_params / 1e6:.2f}M params), batch {batch} "
          f"of 3x{size}x{size}, {where}, torch {torch.__version__}\nmedian of {repeats} interleaved steps after {warmup} "
          "warm-up round(s); CPU ms = the process's CPU time; peak MiB = tensor memory allocated during one step "
          "above that before it", flush=True)
    costs = measure_steps(penalty_steps(model, x, y), device, repeats=repeats, warmup=warmup)
    print(cost_table(costs, reference="plain"))
    fd = ratios(costs, "plain")["GNP forward"]
    clock, ratio = ("CPU time", fd["cpu_time"]) if fd["cpu_time"] is not None else ("wall time", fd["time"])
    verdict = "met" if ratio <= FD_TARGET else "NOT met"
    print(f"target GNP forward <= {FD_TARGET}x plain ({clock}): {verdict} ({ratio:.2f}x; the floor is 2 passes)",
          flush=True)
    return costs
