"""The gradient-norm penalty benchmark: the measuring code (memory against known allocations) and a quick run."""

import re
import time

import pytest
import torch

from regkit.bench import _grad_norm, _timing

torch.set_num_threads(1)
CPU = torch.device("cpu")


def test_cpu_peak_memory_counts_the_step_allocations_above_the_start_level():
    kept = torch.ones(1 << 16)  # allocated before: not counted
    n = 1 << 18  # float32: exactly 1 MiB

    def step():
        a = torch.ones(n)
        b = a * 2  # two live MiB at the peak
        del a
        return b.sum() + kept.sum()

    peak = _timing.peak_step_memory(step, CPU)
    assert 2 * _timing.MIB <= peak < 2 * _timing.MIB + 4096


def test_measure_steps_interleaves_and_validates():
    calls = []
    costs = _timing.measure_steps({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, CPU,
                                  repeats=3, warmup=1, memory=False)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]  # the order rotates every round
    assert [c.name for c in costs] == ["a", "b"] and all(c.repeats == 3 and c.peak_mib is None for c in costs)
    assert all(c.q1_ms <= c.median_ms <= c.q3_ms and c.cpu_median_ms is not None for c in costs)
    rel = _timing.ratios(costs, "a")
    assert rel["a"] == {"time": 1.0, "cpu_time": 1.0, "memory": None}
    with pytest.raises(ValueError, match=r"repeats must be a positive int \(timed rounds\), got 0"):
        _timing.measure_steps({"a": lambda: None}, CPU, repeats=0)
    with pytest.raises(ValueError, match="reference='c' is not one of"):
        _timing.cost_table(costs, reference="c")


def test_cpu_time_counts_work_not_waiting():
    costs = _timing.measure_steps({"sleep": lambda: time.sleep(0.02), "work": lambda: torch.ones(1 << 20).sum()},
                                  CPU, repeats=3, warmup=0, memory=False)
    sleep, work = costs
    assert sleep.median_ms >= 20 and sleep.cpu_median_ms < 5  # waiting takes wall time, not CPU time
    assert work.cpu_median_ms > 0


def test_penalty_steps_train_their_own_copies_with_the_right_number_of_passes():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    before = [p.detach().clone() for p in model.parameters()]
    passes = []
    model.register_forward_hook(lambda *_: passes.append(1))  # deep copies keep the hook
    steps = _grad_norm.penalty_steps(model, x, y)
    counts = {}
    for name, step in steps.items():
        passes.clear()
        step()
        counts[name] = len(passes)
    assert counts == {"plain": 1, "GNP forward": 2, "SAM": 2, "exact (double backprop)": 1}
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_quick_run_prints_ratios_and_memory(capsys):
    costs = _grad_norm.run(quick=True, device="cpu")
    out = capsys.readouterr().out
    number = r"\s+[\d.]+"
    for name in ("plain", "GNP forward", "SAM", r"exact \(double backprop\)"):
        assert re.search(rf"^{name}{number}\s+[\d.]+-[\d.]+{number * 5}$", out, re.M), name
    assert re.search(r"target GNP forward <= 2.1x plain \(CPU time\): (met|NOT met) \(\d+\.\d\dx", out)
    peak = {c.name: c.peak_mib for c in costs}
    # double backprop keeps the backward graph; the finite difference only a copy of weights and g0
    assert peak["exact (double backprop)"] > peak["GNP forward"] > peak["plain"]
