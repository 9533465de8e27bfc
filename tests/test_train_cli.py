"""``python -m regkit.train_cli``: one process, and 2 CPU processes under torchrun, reach the same weights."""

import argparse
import json
import subprocess
import sys

import pytest
import torch

from regkit.course.runner import REPO_ROOT
from regkit.train import load_checkpoint
from regkit.train_cli import key_value, main

ARGS = ["--data", "synthetic", "--train-size", "256", "--model", "mlp", "--model-arg", "hidden=(32,)",
        "--optimizer", "SGD", "--opt-arg", "momentum=0.9", "--lr", "0.05", "--weight-decay", "1e-3",
        "--batch-size", "32", "--steps", "6", "--eval-every", "3", "--augment", "--device", "cpu", "--no-progress"]


def test_torchrun_with_two_processes_follows_the_single_process_run(tmp_path, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "one.json"), "--checkpoint", str(tmp_path / "one.pt")]) == 0
    assert "data-parallel" not in capsys.readouterr().out
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
         "regkit.train_cli", *ARGS, "--out", str(tmp_path / "two.json"), "--checkpoint", str(tmp_path / "two.pt")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("data-parallel: 2 processes (gloo) x 16 samples = global batch 32") == 1  # rank 0 only
    one, two = load_checkpoint(tmp_path / "one.pt"), load_checkpoint(tmp_path / "two.pt")
    for key, value in one["model"].items():
        assert not torch.equal(value, torch.zeros_like(value))
        # float32; the gradient mean is summed in another order (two halves, then the all-reduce)
        torch.testing.assert_close(two["model"][key], value, rtol=1e-5, atol=1e-6)
    rows = [json.loads((tmp_path / f"{n}.json").read_text())["rows"] for n in ("one", "two")]
    assert [r["step"] for r in rows[0]] == [r["step"] for r in rows[1]] == list(range(1, 7))
    for a, b in zip(*rows, strict=True):
        assert a.keys() == b.keys() and all(b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6) for k in a)


def test_key_value_arguments_are_python_literals():
    assert key_value("hidden=(32, 16)") == ("hidden", (32, 16))
    assert key_value("momentum=0.9") == ("momentum", 0.9)
    assert key_value("activation=gelu") == ("activation", "gelu")
    with pytest.raises(argparse.ArgumentTypeError, match="'0.9' is not NAME=VALUE"):
        key_value("0.9")


def test_unknown_optimizer_lists_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["--optimizer", "Adagrad"])
    assert "invalid choice: 'Adagrad' (choose from" in capsys.readouterr().err
