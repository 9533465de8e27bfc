"""Interleaved step timing and per-step peak memory: the measuring code of the benchmarks.

``measure_steps({"name": step, ...}, device)`` runs every candidate once per round, in an order that
rotates each round, after warm-up rounds, and reports the median and quartiles of its wall time
(on CUDA the clock is read between ``torch.cuda.synchronize()`` calls, so a step's queued kernels
count). Interleaving spreads slow drifts of a shared machine (other processes, clocks, caches) over
all candidates, so ratios measured in one run stay comparable even when absolute times wander. On
the CPU the process's CPU time per step is reported too: on a machine shared with other jobs it is
far steadier than the wall time (it does not count the time the process waited for a core), and
with one thread it is the work the step did.

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

from regkit._validate import check_int
from regkit.device import synchronize

MIB = 2**20
_MEASURED = "regkit.bench.measured_step"


@dataclass(frozen=True)
class StepCost:
    """One candidate's cost over ``repeats`` steps: wall-time median and quartiles (ms), the median CPU
    time of the process per step (ms; CPU only, else None) and ``peak_mib`` (None: not measured)."""

    name: str
    median_ms: float
    q1_ms: float
    q3_ms: float
    repeats: int
    cpu_median_ms: float | None
    peak_mib: float | None


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
    untimed rounds come first; then ``repeats`` timed rounds (a multiple of the number of candidates
    puts every candidate equally often in every position). With ``memory``, one more step of each
    candidate runs alone for :func:`peak_step_memory`. Returns one :class:`StepCost` per candidate.
    """
    if not steps:
        raise ValueError("measure_steps needs at least one step function")
    check_int("repeats", repeats, note="timed rounds")
    check_int("warmup", warmup, 0, note="untimed rounds")
    device = torch.device(device)
    names = list(steps)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            steps[name]()
            synchronize(device)
            if round_ >= warmup:
                wall[name].append(1e3 * (time.perf_counter() - start))
                cpu[name].append(1e3 * (time.process_time() - cpu_start))
    costs = []
    for name in names:
        t = sorted(wall[name])
        q1, _, q3 = statistics.quantiles(t, n=4, method="inclusive") if len(t) > 1 else (t[0], t[0], t[0])
        cpu_median = statistics.median(cpu[name]) if device.type == "cpu" else None
        peak = peak_step_memory(steps[name], device) if memory else None
        costs.append(StepCost(name, statistics.median(t), q1, q3, len(t), cpu_median,
                              None if peak is None else peak / MIB))
    return costs


def ratios(costs: list[StepCost], reference: str) -> dict[str, dict[str, float | None]]:
    """``{name: {"time": wall ratio, "cpu_time": CPU-time ratio or None, "memory": ratio or None}}``."""
    base = next((c for c in costs if c.name == reference), None)
    if base is None:
        raise ValueError(f"reference={reference!r} is not one of {[c.name for c in costs]}")

    def ratio(value, ref):
        return value / ref if value is not None and ref else None

    return {c.name: {"time": c.median_ms / base.median_ms, "cpu_time": ratio(c.cpu_median_ms, base.cpu_median_ms),
                     "memory": ratio(c.peak_mib, base.peak_mib)} for c in costs}


def cost_table(costs: list[StepCost], reference: str | None = None) -> str:
    """A text table: wall ms/step (IQR) and its ratio to ``reference`` (default the first candidate), CPU
    ms/step and its ratio (CPU device), peak MiB and its ratio; "n/a" where not measured."""
    reference = reference or costs[0].name
    rel = ratios(costs, reference)
    x = f"x {reference}"
    w, r = max(len(c.name) for c in costs) + 2, len(x) + 2
    lines = [f"{'method':<{w}}{'ms/step':>10}{'IQR ms':>18}{x:>{r}}{'CPU ms/step':>13}{x:>{r}}{'peak MiB':>10}{x:>{r}}"]
    for c in costs:
        iqr = f"{c.q1_ms:.1f}-{c.q3_ms:.1f}"
        cpu = f"{c.cpu_median_ms:.1f}" if c.cpu_median_ms is not None else "n/a"
        mem = f"{c.peak_mib:.1f}" if c.peak_mib is not None else "n/a"
        cpu_ratio, mem_ratio = (f"{v:.2f}" if v is not None else "n/a" for v in (rel[c.name]["cpu_time"],
                                                                                   rel[c.name]["memory"]))
        lines.append(f"{c.name:<{w}}{c.median_ms:>10.1f}{iqr:>18}{rel[c.name]['time']:>{r}.2f}{cpu:>13}{cpu_ratio:>{r}}"
                     f"{mem:>10}{mem_ratio:>{r}}")
    return "\n".join(lines)
