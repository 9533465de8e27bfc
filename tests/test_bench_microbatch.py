"""``python -m regkit.bench penalties --part microbatch --quick``: the table, its ratios and the auto column."""

import re
import subprocess
import sys

import torch

from regkit.bench import _microbatch as bench

ROW = re.compile(
    r"^cpu\s+resnet18 w\d+ \d+x\d+\s+(?P<batch>\d+)\s+(?P<micro>\d+)\s+(?P<penalty>-|gn)\s+"
    r"(?P<serial>[\d.]+)\s+(?P<vmap>[\d.]+)\s+(?P<ratio>[\d.]+)x\s+(?P<auto>vectorized|serial)$",
    re.MULTILINE,
)


def test_quick_run_prints_both_paths_and_their_ratio():
    out = subprocess.run(
        [sys.executable, "-m", "regkit.bench", "penalties", "--part", "microbatch", "--quick", "--device", "cpu"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = [m.groupdict() for m in ROW.finditer(out)]
    shapes = bench.SHAPES["cpu"]["quick"]
    assert [(int(r["batch"]), int(r["micro"]), r["penalty"]) for r in rows] == [
        (s.batch, s.micro, p) for s in shapes for p in ("-", "gn")
    ], out
    for r in rows:
        serial, vmap, ratio = float(r["serial"]), float(r["vmap"]), float(r["ratio"])
        assert serial > 0 and vmap > 0
        assert abs(ratio - serial / vmap) <= 0.01 + 0.01 * ratio  # the printed ratio is serial / vmap


def test_time_paths_times_both_paths_and_auto_names_the_chosen_one():
    """Both paths run (median per path), and the auto column is the path accumulate_microbatches takes."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y = torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,))
    times = bench.time_paths(model, x, y, 2, "gn", reps=2)
    assert set(times) == {False, True} and all(t > 0 for t in times.values())
    assert bench.auto_path(model, x, y, 2, "gn") == "vectorized"  # tiny activations: vmap on CPU too
