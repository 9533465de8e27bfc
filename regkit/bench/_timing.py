"""Interleaved step timing and per-step peak memory: the measuring code of the benchmarks.

``measure_steps({"name": step, ...}, device)`` runs every candidate once per round, in an order that
rotates each round, after warm-up rounds, and reports the median and quartiles of its wall time
(on CUDA the clock is read between ``torch.cuda.synchronize()`` calls, so a step's queued kernels
count). Interleaving spreads slow drifts of a shared machine (other processes, clocks, caches) over
all candidates, so ratios measured in one run stay comparable even when absolute times wander.

Memory is the working memory of one step: the peak of tensor memory allocated during it minus the
memory allocated just before it (weights, optimizer state and the batch, which exist before and
after, are not counted). CUDA: ``torch.cuda.max_memory_allocated``. CPU: the allocation and free
events of ``torch.profiler`` (``profile_memory=True``), replayed in time order; tensor memory only,
like CUDA's number (not the process's resident size).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

MIB = 2**20
_MEASURED = "regkit.bench.measured_step"


@dataclass(frozen=True)
class StepCost:
    """What one candidate's steps cost: times in ms over ``repeats`` steps, ``peak_mib`` (None: not measured)."""

    name: str
    median_ms: float
    q1_ms: float
    q3_ms: float
    repeats: int
    peak_mib: float | None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _stderr_to_devnull():
    """Point file descriptor 2 at /dev/null (C++ messages; Python exceptions still propagate)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_step_memory(step: Callable[[], object], device: torch.device) -> int | None:
    """Peak tensor bytes allocated during one ``step()`` above the bytes allocated before it.

    CUDA: allocator statistics. CPU: ``torch.profiler`` memory events over two steps, of which the
    second is measured: the first frees blocks allocated before the profiler started, whose sizes the
    profiler never saw (torch's C++ warning about that is sent to /dev/null). None on other devices.
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu":
        return None
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # silence the profiler's start/stop log lines
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        with _stderr_to_devnull():
            step()
        with torch.profiler.record_function(_MEASURED):
            step()
    events = list(prof.profiler.kineto_results.events())
    window = next(e for e in events if e.name() == _MEASURED)
    start, end = window.start_ns(), window.start_ns() + window.duration_ns()
    changes = sorted((e.start_ns(), e.nbytes()) for e in events
                     if e.name() == "[memory]" and e.device_type() == torch.profiler.DeviceType.CPU)
    before = sum(nbytes for t, nbytes in changes if t < start)
    during = itertools.accumulate((nbytes for t, nbytes in changes if start <= t <= end), initial=before)
    return max(during) - before


def measure_steps(steps: Mapping[str, Callable[[], object]], device: str | torch.device, *, repeats: int = 20,
                  warmup: int = 2, memory: bool = True) -> list[StepCost]:
    """Median and quartiles of each candidate's step time, interleaved, and its working memory.

    ``steps``: name -> a callable taking one step (e.g. ``lambda: opt.step(closure)``). ``warmup``
    untimed rounds come first; then ``repeats`` timed rounds. With ``memory``, one more step of each
    candidate runs alone for :func:`peak_step_memory`. Returns one :class:`StepCost` per candidate.
    """
    if not steps:
        raise ValueError("measure_steps needs at least one step function")
    for name, value in (("repeats", repeats), ("warmup", warmup)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "repeats" else 0):
            raise ValueError(f"{name} must be an int >= {1 if name == 'repeats' else 0}, got {value!r}")
    device = torch.device(device)
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = time.perf_counter()
            steps[name]()
            synchronize(device)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    costs = []
    for name in names:
        t = sorted(1e3 * s for s in times[name])
        q1, _, q3 = statistics.quantiles(t, n=4, method="inclusive") if len(t) > 1 else (t[0], t[0], t[0])
        peak = peak_step_memory(steps[name], device) if memory else None
        costs.append(StepCost(name, statistics.median(t), q1, q3, len(t), None if peak is None else peak / MIB))
    return costs


def cost_table(costs: list[StepCost], reference: str | None = None) -> str:
    """A text table: ms/step (IQR), ratio to ``reference`` (default the first), peak MiB and its ratio."""
    base = next((c for c in costs if c.name == (reference or costs[0].name)), None)
    if base is None:
        raise ValueError(f"reference={reference!r} is not one of {[c.name for c in costs]}")
    width = max(len(c.name) for c in costs) + 2
    lines = [f"{'method':<{width}}{'ms/step':>10}{'IQR ms':>16}{'x ' + base.name:>{len(base.name) + 8}}"
             f"{'peak MiB':>11}{'x ' + base.name:>{len(base.name) + 8}}"]
    for c in costs:
        iqr = f"{c.q1_ms:.1f}-{c.q3_ms:.1f}"
        mem = f"{c.peak_mib:.1f}" if c.peak_mib is not None else "n/a"
        mem_ratio = f"{c.peak_mib / base.peak_mib:.2f}" if c.peak_mib is not None and base.peak_mib else "n/a"
        lines.append(f"{c.name:<{width}}{c.median_ms:>10.1f}{iqr:>16}{c.median_ms / base.median_ms:>{len(base.name) + 8}.2f}"
                     f"{mem:>11}{mem_ratio:>{len(base.name) + 8}}")
    return "\n".join(lines)
