"""``python -m regkit.bench optim``: optimizer step time, regkit vs references, on the CIFAR ResNet-18's parameters.

One row per method; its candidates (implementations) step the same parameters and gradients,
interleaved in one run (the order rotates every repetition), after a warm-up. Reported:
median and interquartile range of the step time, and the median's ratio to the row's first
candidate (the reference, torch.optim foreach). Each candidate keeps its own optimizer
state. On CUDA the clock is read between ``torch.cuda.synchronize()`` calls.

Later methods add their rows (and external references such as ``adamp`` or ``pytorch_cpr``)
to ``CANDIDATES``: a ``Candidate(row, label, make)`` with ``make(params) -> Optimizer``.
"""

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

import regkit.optim as ro
from regkit.models import build_model


@dataclass(frozen=True)
class Candidate:
    row: str  # the method, e.g. "Adam"; the row's first candidate is its reference
    label: str  # the implementation, e.g. "regkit foreach"
    make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


SGD_KW = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)
ADAM_KW = dict(lr=1e-3, weight_decay=1e-4)
ADAMW_KW = dict(lr=1e-3, weight_decay=0.05)

CANDIDATES = [
    Candidate("SGD momentum", "torch foreach", lambda ps: torch.optim.SGD(ps, **SGD_KW, foreach=True)),
    Candidate("SGD momentum", "torch fused", lambda ps: torch.optim.SGD(ps, **SGD_KW, fused=True)),
    Candidate("SGD momentum", "regkit foreach", lambda ps: ro.SGD(ps, **SGD_KW, foreach=True)),
    Candidate("SGD momentum", "torch for-loop", lambda ps: torch.optim.SGD(ps, **SGD_KW, foreach=False)),
    Candidate("SGD momentum", "regkit for-loop", lambda ps: ro.SGD(ps, **SGD_KW, foreach=False)),
    Candidate("Adam", "torch foreach", lambda ps: torch.optim.Adam(ps, **ADAM_KW, foreach=True)),
    Candidate("Adam", "torch fused", lambda ps: torch.optim.Adam(ps, **ADAM_KW, fused=True)),
    Candidate("Adam", "regkit foreach", lambda ps: ro.Adam(ps, **ADAM_KW, foreach=True)),
    Candidate("Adam", "torch for-loop", lambda ps: torch.optim.Adam(ps, **ADAM_KW, foreach=False)),
    Candidate("Adam", "regkit for-loop", lambda ps: ro.Adam(ps, **ADAM_KW, foreach=False)),
    Candidate("AdamW", "torch foreach", lambda ps: torch.optim.AdamW(ps, **ADAMW_KW, foreach=True)),
    Candidate("AdamW", "torch fused", lambda ps: torch.optim.AdamW(ps, **ADAMW_KW, fused=True)),
    Candidate("AdamW", "regkit foreach", lambda ps: ro.AdamW(ps, **ADAMW_KW, foreach=True)),
    Candidate("AdamW", "torch for-loop", lambda ps: torch.optim.AdamW(ps, **ADAMW_KW, foreach=False)),
    Candidate("AdamW", "regkit for-loop", lambda ps: ro.AdamW(ps, **ADAMW_KW, foreach=False)),
]


def parameters_with_grads(model: str, device: torch.device, seed: int = 0) -> list[torch.nn.Parameter]:
    """The trainable parameters of ``build_model(model, 10)`` on ``device``, each with a fixed random ``.grad``."""
    torch.manual_seed(seed)
    params = [p for p in build_model(model, num_classes=10).to(device).parameters() if p.requires_grad]
    for p in params:
        p.grad = 1e-2 * torch.randn_like(p)
    return params


def time_row(candidates: list[Candidate], params, *, reps: int, warmup: int) -> list[dict]:
    """Median and IQR step time (seconds) of each candidate, interleaved; ``None`` times if it cannot run here."""
    cuda = params[0].is_cuda
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    optimizers, errors = {}, {}
    for c in candidates:
        try:
            optimizers[c.label] = c.make(params)
        except (RuntimeError, ValueError) as error:  # e.g. a fused kernel missing for this device
            errors[c.label] = str(error).splitlines()[0]
    times = {label: [] for label in optimizers}
    labels = list(optimizers)
    for rep in range(warmup + reps):
        shift = rep % len(labels)
        for label in labels[shift:] + labels[:shift]:
            sync()
            start = time.perf_counter()
            optimizers[label].step()
            sync()
            if rep >= warmup:
                times[label].append(time.perf_counter() - start)
    results = []
    for c in candidates:
        t = times.get(c.label)
        q = statistics.quantiles(t, n=4) if t and len(t) > 1 else None
        results.append(
            {
                "row": c.row,
                "label": c.label,
                "median": statistics.median(t) if t else None,
                "iqr": q[2] - q[0] if q else None,
                "error": errors.get(c.label),
            }
        )
    return results


def format_table(results: list[dict]) -> str:
    lines = [f"{'method':<14} {'implementation':<18} {'median ms':>10} {'IQR ms':>8} {'x reference':>12}"]
    reference = None
    for r in results:
        first = reference is None or r["row"] != reference["row"]
        if first:
            reference = r
        row = r["row"] if first else ""
        if r["median"] is None:
            lines.append(f"{row:<14} {r['label']:<18} {'n/a':>10} {'':>8} {'':>12}  ({r['error']})")
            continue
        ratio = f"{r['median'] / reference['median']:.2f}" if reference["median"] else "n/a"
        lines.append(
            f"{row:<14} {r['label']:<18} {r['median'] * 1e3:>10.2f} {r['iqr'] * 1e3:>8.2f} {ratio:>12}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m regkit.bench optim", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run: 2 warm-up steps, 7 timed")
    parser.add_argument("--reps", type=int, default=30, help="timed steps per candidate (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per candidate first (default 5)")
    parser.add_argument(
        "--devices", default=None, help="comma-separated, default: cpu and cuda when available"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's setting)"
    )
    parser.add_argument("--rows", default=None, help="comma-separated method names to run (default: all)")
    parser.add_argument("--model", default="resnet18", help="build_model name whose parameters are stepped")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.warmup = 7, 2
    if args.reps < 1 or args.warmup < 0:
        parser.error(f"--reps must be >= 1 and --warmup >= 0, got {args.reps} and {args.warmup}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = (
        args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    rows = list(dict.fromkeys(c.row for c in CANDIDATES))
    if args.rows:
        unknown = sorted(set(args.rows.split(",")) - set(rows))
        if unknown:
            parser.error(f"unknown rows {unknown}; choose from {rows}")
        rows = [r for r in rows if r in args.rows.split(",")]

    results = []
    for device in devices:
        params = parameters_with_grads(args.model, torch.device(device))
        where = (
            f"{device} ({torch.get_num_threads()} threads)"
            if device == "cpu"
            else torch.cuda.get_device_name()
        )
        print(
            f"\n{args.model} parameters: {len(params)} tensors, {sum(p.numel() for p in params):,} values; "
            f"{where}; torch {torch.__version__}; median of {args.reps} steps after {args.warmup} warm-up, interleaved",
            flush=True,
        )
        device_results = []
        for row in rows:
            candidates = [c for c in CANDIDATES if c.row == row]
            device_results += time_row(candidates, params, reps=args.reps, warmup=args.warmup)
        print(format_table(device_results), flush=True)
        results += [dict(r, device=device) for r in device_results]
    return results
