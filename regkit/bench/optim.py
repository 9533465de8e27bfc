"""``python -m regkit.bench optim``: optimizer step time, regkit vs references, on the CIFAR ResNet-18's parameters.

One row per method; its candidates (implementations) step copies of the same parameters and gradients,
interleaved in one run (the order rotates every repetition), after a warm-up. Reported:
median and interquartile range of the step time, and the median's ratio to the row's first
candidate (the reference: torch.optim foreach; for AdamP and SGDP the regkit AdamW/SGD they
extend, so the ratio is the cost of the projection, with the official ``adamp`` package beside
them when it is installed). A second ratio, ``x torch fused``, divides by the row's torch fused
candidate (torch's fused CPU/CUDA kernel of the base optimizer): the targets of regkit's
``fused=True`` (torch's kernel for the base step plus the method's additions on the foreach path; for
AdamCPR, AdamAWD and AdamAdaDecay on the CPU regkit's own kernels, `regkit.optim.cpu_kernels`, whose one-time
build or load cost is printed first) are measured against it. Each candidate keeps its own optimizer state. On CUDA the clock is read between ``torch.cuda.synchronize()`` calls.

Later methods add their rows (and external references such as ``adamp`` or ``pytorch_cpr``)
to ``CANDIDATES``: a ``Candidate(row, label, make)`` with ``make(params) -> Optimizer``.

AdamCPR rows (one per measure, ``dependent`` bounds at 0.9 of the initial ``R(w)``, so that every
regularized tensor takes the constraint step from the first step: the package default, inflection-point
bounds, leaves ``lambda = 0`` for hundreds of steps, which regkit's kernels skip) regularize the
tensors with ``ndim >= 2`` and time regkit next to torch's AdamW (foreach, fused) and
``pytorch_cpr.AdamCPR`` 0.3.1 on both of its paths (when it is installed). AdamAWD and
AdamAdaDecay rows are referenced to torch's AdamW.
"""

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

import regkit.optim as ro
from regkit.models import build_model
from regkit.optim import cpu_kernels
from regkit.optim.measures import MEASURES

try:  # the official AdamP/SGDP, a test-only dependency
    import adamp
except ImportError:
    adamp = None
try:  # AdamCPR's reference package, a test-only dependency
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it calls torch APIs deprecated since
        import pytorch_cpr
except ImportError:
    pytorch_cpr = None


@dataclass(frozen=True)
class Candidate:
    row: str  # the method, e.g. "Adam"; the row's first candidate is its reference
    label: str  # the implementation, e.g. "regkit foreach"
    make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


SGD_KW = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)
ADAM_KW = dict(lr=1e-3, weight_decay=1e-4)
ADAMW_KW = dict(lr=1e-3, weight_decay=0.05)
ADAMP_KW = dict(lr=1e-3, weight_decay=0.05)  # delta 0.1, wd_ratio 0.1: the defaults of both packages
SGDP_KW = dict(lr=0.1, momentum=0.9, weight_decay=1e-5, nesterov=True)
# the SGD that SGDP extends: decoupled decay, divided by 1 - momentum as SGDP does
SGD_OF_SGDP_KW = SGDP_KW | dict(weight_decay=1e-5 / (1 - 0.9), decoupled_weight_decay=True)

CANDIDATES = [
    Candidate("SGD momentum", "torch foreach", lambda ps: torch.optim.SGD(ps, **SGD_KW, foreach=True)),
    Candidate("SGD momentum", "torch fused", lambda ps: torch.optim.SGD(ps, **SGD_KW, fused=True)),
    Candidate("SGD momentum", "regkit foreach", lambda ps: ro.SGD(ps, **SGD_KW, foreach=True)),
    Candidate("SGD momentum", "regkit fused", lambda ps: ro.SGD(ps, **SGD_KW, fused=True)),
    Candidate("SGD momentum", "torch for-loop", lambda ps: torch.optim.SGD(ps, **SGD_KW, foreach=False)),
    Candidate("SGD momentum", "regkit for-loop", lambda ps: ro.SGD(ps, **SGD_KW, foreach=False)),
    Candidate("Adam", "torch foreach", lambda ps: torch.optim.Adam(ps, **ADAM_KW, foreach=True)),
    Candidate("Adam", "torch fused", lambda ps: torch.optim.Adam(ps, **ADAM_KW, fused=True)),
    Candidate("Adam", "regkit foreach", lambda ps: ro.Adam(ps, **ADAM_KW, foreach=True)),
    Candidate("Adam", "regkit fused", lambda ps: ro.Adam(ps, **ADAM_KW, fused=True)),
    Candidate("Adam", "torch for-loop", lambda ps: torch.optim.Adam(ps, **ADAM_KW, foreach=False)),
    Candidate("Adam", "regkit for-loop", lambda ps: ro.Adam(ps, **ADAM_KW, foreach=False)),
    Candidate("AdamW", "torch foreach", lambda ps: torch.optim.AdamW(ps, **ADAMW_KW, foreach=True)),
    Candidate("AdamW", "torch fused", lambda ps: torch.optim.AdamW(ps, **ADAMW_KW, fused=True)),
    Candidate("AdamW", "regkit foreach", lambda ps: ro.AdamW(ps, **ADAMW_KW, foreach=True)),
    Candidate("AdamW", "regkit fused", lambda ps: ro.AdamW(ps, **ADAMW_KW, fused=True)),
    Candidate("AdamW", "torch for-loop", lambda ps: torch.optim.AdamW(ps, **ADAMW_KW, foreach=False)),
    Candidate("AdamW", "regkit for-loop", lambda ps: ro.AdamW(ps, **ADAMW_KW, foreach=False)),
    # AdamP/SGDP: the reference is the regkit optimizer they extend (the cost of the projection)
    Candidate("AdamP", "regkit AdamW foreach", lambda ps: ro.AdamW(ps, **ADAMP_KW, foreach=True)),
    Candidate("AdamP", "regkit foreach", lambda ps: ro.AdamP(ps, **ADAMP_KW, foreach=True)),
    Candidate("AdamP", "torch AdamW fused", lambda ps: torch.optim.AdamW(ps, **ADAMP_KW, fused=True)),
    Candidate("AdamP", "regkit fused", lambda ps: ro.AdamP(ps, **ADAMP_KW, fused=True)),
    Candidate("AdamP", "regkit for-loop", lambda ps: ro.AdamP(ps, **ADAMP_KW, foreach=False)),
    *([Candidate("AdamP", "adamp 0.3.0", lambda ps: adamp.AdamP(ps, **ADAMP_KW))] if adamp else []),
    Candidate("SGDP", "regkit SGD foreach", lambda ps: ro.SGD(ps, **SGD_OF_SGDP_KW, foreach=True)),
    Candidate("SGDP", "regkit foreach", lambda ps: ro.SGDP(ps, **SGDP_KW, foreach=True)),
    Candidate("SGDP", "torch SGD fused", lambda ps: torch.optim.SGD(ps, **SGDP_KW, fused=True)),
    Candidate("SGDP", "regkit fused", lambda ps: ro.SGDP(ps, **SGDP_KW, fused=True)),
    Candidate("SGDP", "regkit for-loop", lambda ps: ro.SGDP(ps, **SGDP_KW, foreach=False)),
    *([Candidate("SGDP", "adamp 0.3.0", lambda ps: adamp.SGDP(ps, **SGDP_KW))] if adamp else []),
]


def cpr_groups(params: list[torch.nn.Parameter]) -> list[dict]:
    """Matrices and conv kernels regularized, the rest not: the split AdamCPR makes of a model."""
    return [
        {"params": [p for p in params if p.ndim >= 2], "regularize": True},
        {"params": [p for p in params if p.ndim < 2], "regularize": False},
    ]


def _cpr_candidates(measure: str) -> list[Candidate]:
    # an active bound from the first step (kappa = 0.9 R(w_0)): every regularized tensor takes the constraint step
    row, kw = f"AdamCPR {measure}", dict(lr=1e-3, reg_function=measure, kappa_init_method="dependent",
                                         kappa_init_param=0.9)  # fmt: skip
    return [
        Candidate(row, "torch AdamW foreach", lambda ps: torch.optim.AdamW(ps, **ADAMW_KW, foreach=True)),
        Candidate(row, "torch AdamW fused", lambda ps: torch.optim.AdamW(ps, **ADAMW_KW, fused=True)),
        Candidate(row, "regkit foreach", lambda ps: ro.AdamCPR(cpr_groups(ps), **kw, foreach=True)),
        Candidate(row, "regkit fused", lambda ps: ro.AdamCPR(cpr_groups(ps), **kw, fused=True)),
        Candidate(row, "regkit for-loop", lambda ps: ro.AdamCPR(cpr_groups(ps), **kw, foreach=False)),
        *[
            Candidate(row, f"pytorch_cpr {path}", lambda ps, f=f: pytorch_cpr.AdamCPR(cpr_groups(ps), **kw, foreach=f))
            for path, f in (("foreach", True), ("for-loop", False))
            if pytorch_cpr
        ],
    ]


CANDIDATES += [c for measure in MEASURES for c in _cpr_candidates(measure)] + [
    Candidate(row, label, make)
    for row, cls, kw in (("AdamAWD", ro.AdamAWD, dict(lr=1e-3, weight_decay=0.02)),
                         ("AdamAdaDecay", ro.AdamAdaDecay, dict(lr=1e-3, weight_decay=0.05)))
    for label, make in (
        ("torch AdamW foreach", lambda ps: torch.optim.AdamW(ps, **ADAMW_KW, foreach=True)),
        ("torch AdamW fused", lambda ps: torch.optim.AdamW(ps, **ADAMW_KW, fused=True)),
        ("regkit foreach", lambda ps, cls=cls, kw=kw: cls(ps, **kw, foreach=True)),
        ("regkit fused", lambda ps, cls=cls, kw=kw: cls(ps, **kw, fused=True)),
        ("regkit for-loop", lambda ps, cls=cls, kw=kw: cls(ps, **kw, foreach=False)),
    )
]  # fmt: skip


def parameters_with_grads(model: str, device: torch.device, seed: int = 0) -> list[torch.nn.Parameter]:
    """The trainable parameters of ``build_model(model, 10)`` on ``device``, each with a fixed random ``.grad``."""
    torch.manual_seed(seed)
    params = [p for p in build_model(model, num_classes=10).to(device).parameters() if p.requires_grad]
    for p in params:
        p.grad = 1e-2 * torch.randn_like(p)
    return params


def own_copy(params: list[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """A candidate's own parameters: the same values and gradients, so that no candidate steps weights another
    one has moved (a CPR bound measured on weights others shrank would release, and its step would be skipped)."""
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for copy, p in zip(copies, params, strict=True):
        copy.grad = p.grad.clone()
    return copies


def time_row(candidates: list[Candidate], params, *, reps: int, warmup: int) -> list[dict]:
    """Median and IQR step time (seconds) of each candidate, interleaved; ``None`` times if it cannot run here."""
    cuda = params[0].is_cuda
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    optimizers, errors = {}, {}
    for c in candidates:
        try:
            optimizers[c.label] = c.make(own_copy(params))
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


def fused_reference(results: list[dict], row: str) -> float | None:
    """The median of ``row``'s torch fused candidate (label ``torch ... fused``); None if it has none."""
    medians = [r["median"] for r in results if r["row"] == row and r["label"].startswith("torch")
               and r["label"].endswith("fused")]  # fmt: skip
    return medians[0] if medians else None


def format_table(results: list[dict]) -> str:
    rw = max([len("method")] + [len(r["row"]) for r in results])
    lw = max([len("implementation")] + [len(r["label"]) for r in results])
    header = f"{'method':<{rw}} {'implementation':<{lw}} {'median ms':>10} {'IQR ms':>8} {'x reference':>12}"
    lines = [f"{header} {'x torch fused':>14}"]
    reference = None
    for r in results:
        first = reference is None or r["row"] != reference["row"]
        if first:
            reference = r
        row = r["row"] if first else ""
        if r["median"] is None:
            lines.append(f"{row:<{rw}} {r['label']:<{lw}} {'n/a':>10} {'':>8} {'':>12}  ({r['error']})")
            continue
        ratio = f"{r['median'] / reference['median']:.2f}" if reference["median"] else "n/a"
        fused = fused_reference(results, r["row"])
        to_fused = f"{r['median'] / fused:.2f}" if fused else ""
        iqr = f"{r['iqr'] * 1e3:.2f}" if r["iqr"] is not None else "n/a"  # None: a single timed step
        lines.append(f"{row:<{rw}} {r['label']:<{lw}} {r['median'] * 1e3:>10.2f} {iqr:>8} {ratio:>12} {to_fused:>14}")
    return "\n".join(lines)


def kernel_cost() -> str:
    """One line: how long loading regkit's CPU kernels took (a first run on a machine builds them)."""
    if cpu_kernels.disabled() or cpu_kernels.load() is None:
        return "regkit's CPU kernels: not available (see the warning); regkit fused rows use torch's kernels"
    return (f"regkit's CPU kernels (fused=True on the CPU): one-time cost {cpu_kernels.build_seconds:.2f} s in this "
            "process (a build takes ~30 s once per machine, a cached build loads in well under a second)")


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

    if "cpu" in devices and any(c.label == "regkit fused" for c in CANDIDATES if c.row in rows):
        print(kernel_cost(), flush=True)
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
        with warnings.catch_warnings():  # pytorch_cpr 0.3.1 calls deprecated torch APIs every step
            warnings.filterwarnings("ignore", module="pytorch_cpr")
            for row in rows:
                candidates = [c for c in CANDIDATES if c.row == row]
                device_results += time_row(candidates, params, reps=args.reps, warmup=args.warmup)
        print(format_table(device_results), flush=True)
        results += [dict(r, device=device) for r in device_results]
    return results
