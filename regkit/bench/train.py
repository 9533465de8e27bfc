"""``python -m regkit.bench train [--quick]``: training images/s of a CIFAR ResNet-18 (3x32x32 inputs),
``regkit.train.train`` over a ``DeviceLoader`` (on-device crop+flip) vs a plain loop over a
``torch.utils.data.DataLoader`` of the per-sample crop+flip ``Dataset`` of ``regkit.bench.loader``.

Every row trains the same model from the same initial weights with the same optimizer
(``torch.optim.SGD``, momentum 0.9, Nesterov, weight decay 5e-4, lr 0.1) on the same uint8 data for the
same number of steps, after warm-up steps (worker start-up, cuDNN autotuning, compilation). The plain
loop is the usual one: for each batch, ``.to(device)``, zero_grad, forward, cross-entropy, backward,
step, in float32 and NCHW, and no ``.item()`` per step. The regkit rows run ``train(...)`` (no host
synchronisation between logs), in float32 and, with ``--fast`` (the default on CUDA), under bf16
autocast with channels_last tensors; ``--compile`` adds a row with the model compiled
(``torch.compile``, inductor). Rows are interleaved and repeated (``--repeats``); the table shows the
median images/s and each row's ratio to the fastest plain-loop row. The target on CUDA is a ratio
>= 2 for the fastest regkit row.

CUDA: full width (64) at batch 128 and 512. CPU: training dominates, so the loader hardly matters; a
narrow ResNet-18 (``--width``, default 8) at batch 128 keeps the table to about a minute on one thread;
``--quick`` takes seconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from regkit.bench.loader import MEAN, STD, PerSampleCropFlip
from regkit.data import DeviceLoader
from regkit.device import resolve_device, synchronize
from regkit.models import build_model
from regkit.train import train

SGD_KW = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)


@dataclass(frozen=True)
class Row:
    """One way to train: ``make()`` returns ``run(model, optimizer, steps)``, which trains ``steps`` steps;
    ``plain``: a baseline row; ``compiled``: the model is compiled first."""

    label: str
    plain: bool
    make: Callable[[], Callable[[torch.nn.Module, torch.optim.Optimizer, int], None]]
    compiled: bool = False


def plain_loop(x: torch.Tensor, y: torch.Tensor, batch: int, workers: int, device: torch.device):
    """The usual loop: a ``DataLoader`` over per-sample crop+flip, one step per batch (float32, NCHW)."""
    loader = DataLoader(PerSampleCropFlip(x, y), batch, shuffle=True, drop_last=True, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    batches = iter(())

    def run(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
        nonlocal batches
        model.train()
        for _ in range(steps):
            try:
                xb, yb = next(batches)
            except StopIteration:
                batches = iter(loader)
                xb, yb = next(batches)
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
        synchronize(device)

    return run


def regkit_loop(x: torch.Tensor, y: torch.Tensor, batch: int, device: torch.device, fast: bool):
    """``regkit.train.train`` over a ``DeviceLoader`` with augmentation (bf16 + channels_last if ``fast``)."""
    loader = DeviceLoader(x, y, batch, augment=True, device=device, mean=MEAN, std=STD, channels_last=fast)
    options = dict(autocast_dtype=torch.bfloat16, channels_last=True) if fast else {}

    def run(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
        train(model, optimizer, loader, steps=steps, device=device, progress=False, log_every=steps, **options)

    return run


def candidates(x: torch.Tensor, y: torch.Tensor, batch: int, device: torch.device, workers: list[int], fast: bool,
               compiled: bool) -> list[Row]:
    """The table's rows for one batch size: a plain loop per ``workers`` value, then the regkit loops."""
    rows = [Row(f"plain loop + DataLoader (workers={w}), fp32", True, lambda w=w: plain_loop(x, y, batch, w, device))
            for w in workers]
    rows.append(Row("regkit.train + DeviceLoader, fp32", False, lambda: regkit_loop(x, y, batch, device, False)))
    if fast:
        rows.append(Row("regkit.train + DeviceLoader, bf16 + channels_last", False,
                        lambda: regkit_loop(x, y, batch, device, True)))
    if compiled:
        rows.append(Row(f"regkit.train + DeviceLoader, {'bf16 + channels_last, ' if fast else ''}compile", False,
                        lambda: regkit_loop(x, y, batch, device, fast), compiled=True))
    return rows


def measure(rows: list[Row], model_fn: Callable[[], torch.nn.Module], device: torch.device, batch: int, *,
            steps: int, warmup: int, repeats: int) -> dict[str, float]:
    """Median images/s of each row over ``repeats`` interleaved timings of ``steps`` steps (after ``warmup``)."""
    states = {}
    for row in rows:
        torch.manual_seed(0)
        model = model_fn().to(device)
        if row.compiled:
            model.compile()
        optimizer = torch.optim.SGD(model.parameters(), **SGD_KW)
        run = row.make()
        run(model, optimizer, warmup)
        states[row.label] = (model, optimizer, run)
    rates: dict[str, list[float]] = {row.label: [] for row in rows}
    for _ in range(repeats):
        for row in rows:
            model, optimizer, run = states[row.label]
            synchronize(device)
            start = time.perf_counter()
            run(model, optimizer, steps)
            rates[row.label].append(steps * batch / (time.perf_counter() - start))
    return {label: statistics.median(values) for label, values in rates.items()}


def main(argv: list[str] | None = None) -> dict[tuple[str, int], dict[str, float]]:
    parser = argparse.ArgumentParser(prog="python -m regkit.bench train", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds: width 4, batch 32, 2 timed steps")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default: 128 512 on CUDA, 128 on CPU (quick: 32)")
    parser.add_argument("--width", type=int, default=None, help="ResNet-18 width (default: 64 on CUDA, 8 on CPU)")
    parser.add_argument("--images", type=int, default=None,
                        help="images per timing (default: 65536 on CUDA, 1024 on CPU; quick: 2 steps)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved timings per row (default 3; quick 1)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers of the plain rows")
    parser.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                        help="add a regkit row with bf16 autocast + channels_last (default: on CUDA)")
    parser.add_argument("--compile", action="store_true", help="add a regkit row with torch.compile (inductor)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    batches = args.batch_sizes or ([32] if args.quick else [128, 512] if cuda else [128])
    width = args.width or (4 if args.quick else 64 if cuda else 8)
    repeats = args.repeats or (1 if args.quick else 3)
    fast = cuda if args.fast is None else args.fast
    for name, value in (("batch sizes", min(batches)), ("width", width), ("repeats", repeats),
                        ("threads", args.threads)):
        if value < 1:
            parser.error(f"{name} must be >= 1, got {value}")
    saved = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _table(args, device, batches, width, repeats, fast)
    finally:
        torch.set_num_threads(saved)


def _table(args, device, batches, width, repeats, fast) -> dict[tuple[str, int], dict[str, float]]:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} thread(s)"
    print(f"training images/s, CIFAR ResNet-18 width {width} on 3x32x32, torch {torch.__version__}, {where}; "
          f"median of {repeats} interleaved timing(s) per row after warm-up")
    print(f"{'device':<7}{'batch':>6}  {'loop':<46}{'images/s':>11}{'x best plain':>14}")
    results = {}
    for batch in batches:
        if args.quick:
            steps, warmup = 2, 1
        else:
            images = args.images or (65536 if device.type == "cuda" else 1024)
            steps, warmup = max(2, images // batch), 3 if device.type == "cuda" else 1
        n_data = max(4 * batch, 1024)
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (n_data, 3, 32, 32), dtype=torch.uint8, generator=gen)
        y = torch.randint(0, 10, (n_data,), generator=gen)
        rows = candidates(x, y, batch, device, args.workers, fast, args.compile)
        rates = measure(rows, lambda: build_model("resnet18", 10, width=width), device, batch, steps=steps,
                        warmup=warmup, repeats=repeats)
        best_plain = max(rates[row.label] for row in rows if row.plain)
        for row in rows:
            print(f"{device.type:<7}{batch:>6}  {row.label:<46}{rates[row.label]:>11,.0f}"
                  f"{rates[row.label] / best_plain:>13.2f}x", flush=True)
        results[device.type, batch] = rates
    return results
