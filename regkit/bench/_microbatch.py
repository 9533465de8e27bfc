"""Micro-batch penalties: vectorized (vmap) vs serial accumulation, ms per large-batch gradient.

``accumulate_microbatches`` splits a batch of ``B`` into ``k = B / b`` micro-batches and adds the
mean of their (penalized) gradients to ``.grad``, either in one ``torch.func.vmap`` (vectorized)
or in a Python loop (serial). Each row times both paths on the same model and batch, without a
penalty and with the gradient-norm penalty ``gn`` (double backprop), interleaved (serial,
vectorized, serial, ...) after a warm-up call of each, CUDA synchronized, median of the
repetitions; ``serial/vectorized`` > 1 means vmap is faster. ``auto`` is the path that
``vectorized=None`` picks for that shape.

CUDA: the paper's setting, CIFAR ResNet-18 (width 64) on a batch of 5120 with micro-batch 128.
CPU: that is hours per row, so the CPU table uses a narrow ResNet-18 (width 8) on a batch of 128
at micro-batch 4 and 32 (either side of the CPU rule of ``accumulate_microbatches``);
``--quick`` shrinks everything to seconds.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from regkit.device import resolve_device, synchronize
from regkit.models import build_model
from regkit.penalties import accumulate_microbatches


@dataclass(frozen=True)
class Shape:
    """One benchmarked setting: model width, image size, batch and micro-batch sizes."""

    width: int
    image_size: int
    batch: int
    micro: int
    reps: int


# device type -> profile -> rows; CIFAR-shaped (3 channels, 10 classes) random data.
SHAPES = {
    "cuda": {
        "full": [Shape(64, 32, 5120, 128, 5)],
        "quick": [Shape(16, 32, 512, 64, 3)],
    },
    "cpu": {
        "full": [Shape(8, 32, 128, 4, 3), Shape(8, 32, 128, 32, 3)],
        "quick": [Shape(4, 16, 16, 2, 3), Shape(4, 16, 16, 8, 3)],
    },
}
PENALTY_LAM = {None: 0.0, "gn": 0.01}


def time_paths(model, x, y, micro: int, penalty: str | None, reps: int) -> dict[bool, float]:
    """Median ms per ``accumulate_microbatches`` call for the serial (False) and vectorized (True)
    paths, interleaved after one warm-up call of each."""
    device = x.device
    times: dict[bool, list[float]] = {False: [], True: []}
    for rep in range(reps + 1):
        for vectorized in (False, True):
            model.zero_grad(set_to_none=True)
            synchronize(device)
            start = time.perf_counter()
            accumulate_microbatches(model, F.cross_entropy, x, y, micro, penalty, PENALTY_LAM[penalty], vectorized)
            synchronize(device)
            if rep > 0:  # rep 0 warms up (kernel selection, allocator, vmap tracing caches)
                times[vectorized].append(1000 * (time.perf_counter() - start))
    return {path: statistics.median(values) for path, values in times.items()}


def auto_path(model, x, y, micro: int, penalty: str | None) -> str:
    """The path ``vectorized=None`` takes for this call: ``vectorized`` or ``serial``."""
    model.zero_grad(set_to_none=True)
    stats = accumulate_microbatches(model, F.cross_entropy, x, y, micro, penalty, PENALTY_LAM[penalty])
    return "vectorized" if stats.vectorized else "serial"


def run(quick: bool = False, device: str | None = None, threads: int = 1) -> None:
    """Print the table for ``device`` (default: the CPU, and CUDA when available). CPU rows run on
    ``threads`` threads (1 by default: on a shared machine, threads that wait for a busy core make
    the timings erratic)."""
    devices = [resolve_device(device)] if device else [torch.device("cpu")] + (
        [torch.device("cuda")] if torch.cuda.is_available() else []
    )
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _table(devices, quick, threads)
    finally:
        torch.set_num_threads(saved_threads)


def _table(devices: list[torch.device], quick: bool, threads: int) -> None:
    print(f"micro-batch penalties: ms per large-batch gradient (accumulate_microbatches), torch {torch.__version__}, "
          f"{threads} CPU thread(s); median of interleaved repetitions after a warm-up")  # fmt: skip
    print(f"{'device':<7}{'model':<22}{'batch':>6}{'micro':>6}{'penalty':>8}{'serial ms':>11}"
          f"{'vmap ms':>10}{'serial/vmap':>13}  auto")  # fmt: skip
    for dev in devices:
        shapes = SHAPES[dev.type]["quick" if quick else "full"]
        if dev.type == "cpu" and not quick:
            print("        (CPU: narrow ResNet-18 and batch 128; the paper's 5120 x ResNet-18 is a GPU setting)")
        for shape in shapes:
            torch.manual_seed(0)
            model = build_model("resnet18", 10, 3, shape.image_size, width=shape.width).to(dev)
            gen = torch.Generator(device=dev).manual_seed(0)
            x = torch.randn(shape.batch, 3, shape.image_size, shape.image_size, device=dev, generator=gen)
            y = torch.randint(0, 10, (shape.batch,), device=dev, generator=gen)
            label = f"resnet18 w{shape.width} {shape.image_size}x{shape.image_size}"
            for penalty in (None, "gn"):
                ms = time_paths(model, x, y, shape.micro, penalty, shape.reps)
                print(f"{dev.type:<7}{label:<22}{shape.batch:>6}{shape.micro:>6}{penalty or '-':>8}"
                      f"{ms[False]:>11.1f}{ms[True]:>10.1f}{ms[False] / ms[True]:>12.2f}x  "
                      f"{auto_path(model, x, y, shape.micro, penalty)}", flush=True)  # fmt: skip
