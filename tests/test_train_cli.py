"""``python -m regkit.train_cli``: one process, and 2 CPU processes under torchrun, reach the same weights."""

import argparse
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from regkit.course.runner import REPO_ROOT
from regkit.data import load_images
from regkit.models import build_model
from regkit.train import load_checkpoint, seed_everything
from regkit.train_cli import OPTIMIZERS, key_value, main

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


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_listed_optimizer_trains_from_the_shell(name, tmp_path):
    head = ARGS[:ARGS.index("--optimizer")]
    assert main([*head, "--optimizer", name, "--lr", "0.01", "--batch-size", "32", "--steps", "4", "--eval-every", "2",
                 "--device", "cpu", "--no-progress", "--seed", "3", "--out", str(tmp_path / "run.json"),
                 "--checkpoint", str(tmp_path / "run.pt")]) == 0
    data = load_images("synthetic", train_size=256, verbose=False)
    seed_everything(3)
    initial = build_model("mlp", data.num_classes, data.in_channels, data.image_size, hidden=(32,)).state_dict()
    trained = load_checkpoint(tmp_path / "run.pt")["model"]
    assert all(torch.isfinite(v).all() for v in trained.values())
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)  # the optimizer stepped
    rows = json.loads((tmp_path / "run.json").read_text())["rows"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(math.isfinite(r["train_loss"]) for r in rows)


def error_line(args, capsys) -> str:
    """Run the CLI with ``args``, expecting argparse's exit status 2; return its one-line message."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m regkit.train_cli: error: ") and err.count("\n") == 1, err
    return err[len("python -m regkit.train_cli: error: "):].rstrip("\n")


@pytest.mark.parametrize("bad, message", [
    (["--lr", "-1"], r"lr must be in [0.0, inf], got -1.0"),
    (["--steps", "0"], "steps must be a positive int, got 0"),
    (["--opt-arg", "foo=1"], "--opt-arg: SGD.__init__() got an unexpected keyword argument 'foo'"),
    (["--model-arg", "depth=3"], "--model-arg: build_model('mlp') got unexpected keyword argument(s) ['depth']; "
                                 "valid: ['activation', 'bias', 'hidden']"),
    (["--resume"], "--resume needs --checkpoint PATH (the file to continue from)"),
    (["--optimizer", "AdamCPR", "--weight-decay", "0.1"],
     "AdamCPR has no weight decay: set its bounds with --opt-arg kappa_init_method=... --opt-arg kappa_init_param=..."),
])  # fmt: skip
def test_a_bad_option_prints_one_line_and_exits_2(bad, message, capsys):
    assert error_line([*ARGS, *bad], capsys) == message


@pytest.mark.parametrize("option", ["--out", "--checkpoint"])
def test_an_output_path_that_cannot_be_written_is_refused_before_loading_data(option, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert error_line([*ARGS, option, str(tmp_path)], capsys) == (
        f"{option} {str(tmp_path)!r} is a directory; give the path of a file (inside it, for example)")
    under_a_file = tmp_path / "notes.txt" / "run.json"
    assert error_line([*ARGS, option, str(under_a_file)], capsys) == (
        f"{option} {str(under_a_file)!r} cannot be written: {str(tmp_path / 'notes.txt')!r} is a file, not a folder; "
        "choose another path")
    assert capsys.readouterr().out == ""  # no dataset was loaded


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_before_loading_data(tmp_path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    try:
        message = error_line([*ARGS, "--out", str(folder / "run.json")], capsys)
    finally:
        folder.chmod(0o700)
    assert message.endswith(f"the folder {str(folder)!r} does not accept new files (Permission denied); "
                            "choose another path")


def test_resuming_a_corrupt_checkpoint_prints_one_line_and_exits_2(tmp_path, capsys):
    path = tmp_path / "run.pt"
    path.write_bytes(b"")
    assert error_line([*ARGS, "--checkpoint", str(path), "--resume"], capsys) == (
        f"{path} is not a valid regkit checkpoint (the file is empty); delete it to start afresh, "
        "or pass another checkpoint path")
