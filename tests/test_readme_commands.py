"""Every shell command in README.md and data/README.md runs here, so that the READMEs cannot drift.

Each command is either run (as written, or in a cheap form: a tiny step budget, ``make -n`` for a
target that installs and trains for minutes, ``regkit.course`` commands in-process with the notebook
execution stubbed, so that parsing and every parameter check run for real) or listed in ``SKIPPED``
with the reason. A README command in neither list fails ``test_every_readme_command_is_covered``.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import regkit.course.runner as runner_module
import regkit.course.sweep as sweep_module
from regkit.course.__main__ import main as course_main
from regkit.course.runner import NOTEBOOKS_DIR

ROOT = Path(__file__).resolve().parents[1]
READMES = ("README.md", "data/README.md")

SKIPPED = {  # command: why it does not run here
    ".venv/bin/torchrun --standalone --nproc-per-node 4 -m regkit.train_cli --data cifar100 --model resnet18 "
    "--optimizer AdamP --lr 1e-3 --weight-decay 0.05 --batch-size 512 --steps 20000 --augment":
        "4 GPUs; the same code path runs on 2 CPU processes in the torchrun command above",
    "timeout 560 make gpu-check PY=python3; tar czf $OUT/gpu.tgz runs/gpu; cp runs/gpu/report.md "
    "runs/gpu/report.json $OUT/": "needs a GPU machine ($OUT is its output folder); tests/test_bench_gpu.py covers the check",
    "apt-get install dataset-fashion-mnist": "needs root and the network",
    "python -m regkit.data.embedded build --source /usr/share/datasets/fashion-mnist":
        "rewrites the committed files; tests/test_data_embedded.py rebuilds them bit for bit into a temporary folder",
}


def readme_commands() -> list[str]:
    """The commands of the READMEs' ```bash blocks: continuations joined, comments dropped."""
    commands = []
    for name in READMES:
        for block in re.findall(r"```bash\n(.*?)```", (ROOT / name).read_text(encoding="utf-8"), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                command = re.sub(r"\s+#.*$", "", line) if not line.lstrip().startswith("#") else ""
                command = " ".join(command.split())
                if command:
                    commands.append(command)
    return commands


def course_command(command: str) -> list[str] | None:
    """The argv of a ``.venv/bin/python -m regkit.course`` command, None for any other command."""
    words = shlex.split(command)
    return words[3:] if words[:3] == [".venv/bin/python", "-m", "regkit.course"] else None


COMMANDS = readme_commands()
COURSE = [c for c in COMMANDS if course_command(c) is not None]
MAKE = [c for c in COMMANDS if c.startswith("make ")]
OTHER = [c for c in COMMANDS if c not in SKIPPED and c not in COURSE and c not in MAKE]


def test_every_readme_command_is_covered():
    assert len(COMMANDS) >= 15
    assert not set(SKIPPED) - set(COMMANDS), "SKIPPED lists commands no README has any more"
    assert set(OTHER) <= set(CHEAP), f"add these README commands to CHEAP or SKIPPED: {set(OTHER) - set(CHEAP)}"


# --- regkit.course: in-process, notebooks not executed --------------------------------------------

def fake_execute(nb, parameters, out_dir, *, results_name=None, **_):
    """Stands in for papermill: what the notebook would record, without running it."""
    results = Path(out_dir) / (results_name or f"{nb.stem}.results.json")
    results.write_text(json.dumps({"fake.steps": {"value": parameters.get("steps", 1), "meta": {}}}))
    return {"notebook": nb.name, "status": "ok", "parameters": parameters, "notebook_hash": nb.content_hash(),
            "duration_s": 0.0, "executed": None, "results": results.name, "failed_cell": None, "error": None}


@pytest.fixture
def stubbed(monkeypatch):
    import contextlib

    serial = lambda fn, tasks, *args: ((task, fn(task)) for task in tasks)  # noqa: E731
    monkeypatch.setattr(runner_module, "execute", fake_execute)
    monkeypatch.setattr(sweep_module, "execute", fake_execute)
    monkeypatch.setattr(sweep_module, "map_local", serial)
    monkeypatch.setattr(sweep_module, "map_ray", serial)
    monkeypatch.setattr(sweep_module, "ray_session", lambda address: contextlib.nullcontext())


@pytest.mark.parametrize("command", COURSE)
def test_course_command_parses_validates_and_runs_stubbed(command, stubbed, tmp_path, capsys):
    argv = course_command(command)
    if argv[0] in ("run", "sweep"):
        argv += ["--out", str(tmp_path)]
    if argv[0] == "build":  # teacher copies go to the test's folder, not into the repository
        argv[argv.index("--solutions") + 1] = str(tmp_path / "teacher")
    if argv[0] == "book":  # a run folder to read: a committed notebook stands in for an executed one
        (tmp_path / "run").mkdir()
        shutil.copy(NOTEBOOKS_DIR / "00_course_overview.ipynb", tmp_path / "run")
        argv[argv.index("--run") + 1], argv[argv.index("--out") + 1] = str(tmp_path / "run"), str(tmp_path / "book")
    assert course_main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    if argv[0] == "list":
        assert "03_constrained_parameter_regularization.ipynb" in out and "kappa_init_method = None  (str)" in out
    if argv[0] == "sweep":
        summary = (tmp_path / "summary.csv").read_text()
        grid = dict(item.split("=") for item in argv[argv.index("--grid") + 1:] if "=" in item and "," in item)
        rows = 1
        for values in grid.values():
            rows *= len(values.split(","))
        assert len(summary.splitlines()) == 1 + rows  # one row per grid point and recorded number


# --- make: a dry run shows what the target runs -------------------------------------------------------

MAKE_EXPECTS = {"make course": "regkit.course run --profile quick", "make course PROFILE=full":
                "regkit.course run --profile full", "make test": "-m pytest", "make lab": "jupyter lab notebooks/",
                "make book": "regkit.course book --run runs/quick"}


@pytest.mark.parametrize("command", MAKE)
def test_make_target_exists_and_runs_the_documented_command(command):
    done = subprocess.run(["make", "-n", *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert MAKE_EXPECTS[command] in done.stdout


# --- the rest: run for real, with a tiny budget ---------------------------------------------------------

def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


# README command: (argv with {tmp} for a temporary folder) run as a subprocess. The cheap forms train on the
# embedded subset: the full Fashion-MNIST the README commands name is an OS package a fresh machine lacks.
CHEAP = {
    ".venv/bin/python -m regkit.train_cli --data fashion_mnist --model small_cnn --optimizer AdamCPR --lr 1e-3 "
    "--steps 300 --out runs/train/cpr.json":
        _python("-m", "regkit.train_cli", "--data", "fashion_mnist_subset", "--model", "small_cnn", "--optimizer",
                "AdamCPR",
                "--lr", "1e-3", "--steps", "3", "--train-size", "512", "--out", "{tmp}/cpr.json"),
    ".venv/bin/torchrun --standalone --nproc-per-node 2 -m regkit.train_cli --data fashion_mnist --model small_cnn "
    "--optimizer AdamP --lr 1e-3 --weight-decay 0.05 --batch-size 256 --steps 100 --device cpu "
    "--out runs/train/adamp_ddp.json":
        _python("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "regkit.train_cli",
                "--data", "fashion_mnist_subset", "--model", "small_cnn", "--optimizer", "AdamP", "--lr", "1e-3",
                "--weight-decay", "0.05", "--batch-size", "256", "--steps", "2", "--train-size", "1024",
                "--device", "cpu", "--out", "{tmp}/adamp_ddp.json"),
    "python -m regkit.data.embedded verify": _python("-m", "regkit.data.embedded", "verify"),
}


@pytest.mark.parametrize("command", OTHER)
def test_other_command_runs_in_its_cheap_form(command, tmp_path):
    if command not in CHEAP:
        pytest.fail(f"README command without a cheap form or a skip reason: {command}")
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in CHEAP[command]]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
