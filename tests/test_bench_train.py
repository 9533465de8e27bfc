import re

import torch

from regkit.bench import train as bench
from regkit.models import build_model


def count_steps(make_run, steps):
    torch.manual_seed(0)
    model = build_model("small_cnn", 10, 3, 32, width=2)
    optimizer = torch.optim.SGD(model.parameters(), **bench.SGD_KW)
    calls = []
    optimizer.register_step_post_hook(lambda *args: calls.append(1))
    make_run()(model, optimizer, steps)
    make_run()(model, optimizer, steps)  # a second call continues (the images/s count assumes it)
    return len(calls)


def test_both_loops_take_exactly_the_timed_number_of_steps():
    x = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (48,))
    device = torch.device("cpu")
    assert count_steps(lambda: bench.plain_loop(x, y, 16, 0, device), 4) == 8  # wraps around the 3 batches
    assert count_steps(lambda: bench.regkit_loop(x, y, 16, device, fast=True), 4) == 8


def test_quick_run_prints_every_row_with_its_ratio(capsys):
    results = bench.main(["--quick", "--workers", "0", "--fast"])
    out = capsys.readouterr().out
    assert re.search(r"cpu\s+32\s+plain loop \+ DataLoader \(workers=0\), fp32\s+[\d,]+\s+1\.00x", out)
    assert re.search(r"cpu\s+32\s+regkit\.train \+ DeviceLoader, fp32\s+[\d,]+\s+\d+\.\d\dx", out)
    assert re.search(r"regkit\.train \+ DeviceLoader, bf16 \+ channels_last\s+[\d,]+\s+\d+\.\d\dx", out)
    assert all(rate > 0 for rate in results["cpu", 32].values()) and len(results["cpu", 32]) == 3
