"""``python -m regkit.bench gpu [--dry-run]``: the whole GPU check in one go (``make gpu-check``).

For a GPU machine lent briefly: every part runs as its own command under its own time budget
(`regkit.bench._budget`); a part that fails or runs out of time is recorded and the check goes on.
The parts (`parts`): the CUDA-only tests (``pytest -m cuda``), the CUDA rows of the ``optim``,
``loader``, ``train`` and ``penalties`` benchmarks, and the grokking paper setting of notebook 06
(`regkit.bench._grokking`). The sum of the default budgets stays under ``TOTAL_BUDGET_S`` (8 minutes
on one GPU, all parts); ``--budget`` caps the total, and a part gets at most what is left of it.

Reports: ``OUT/report.json`` and ``OUT/report.md`` (`regkit.bench._gpu_report`), one log per part
in ``OUT/logs/``, the tests' JUnit XML and the grokking summary and histories. ``--dry-run`` runs
every part at a tiny size on the CPU (CUDA hidden from the parts; the CUDA tests are collected and
skipped) and writes the same reports: CI runs it as a test. ``--list`` prints the commands only.
Exit status: 0 when every part was ok, 1 otherwise, 2 for a usage error or no CUDA device.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from regkit.bench._budget import run_with_budget
from regkit.bench._gpu_report import summary_table, write_reports
from regkit.device import processor_name

ROOT = Path(__file__).resolve().parents[2]
TOTAL_BUDGET_S = 470.0  # under 8 minutes with the start of Python and the reports
MIN_PART_S = 5.0  # a part with less time left than this is skipped
REFERENCES = ("adamp", "pytorch_cpr", "papermill")
CUDA_MARK = re.compile(r"^\s*@pytest\.mark\.cuda\b", re.MULTILINE)


@dataclass(frozen=True)
class Part:
    """One part: ``gpu`` and ``dry`` are the arguments after ``python`` on a GPU and in a dry run;
    ``result``: the file it writes under the output folder besides its log, if any."""

    name: str
    about: str
    budget_s: float
    gpu: list[str]
    dry: list[str]
    result: str | None = None


def cuda_test_files(tests: Path = ROOT / "tests") -> list[Path]:
    """The test files with a ``@pytest.mark.cuda`` test (collecting only them spares the GPU machine the
    imports of the others: it has no papermill, no ipywidgets)."""
    return sorted(path for path in tests.glob("test_*.py") if CUDA_MARK.search(path.read_text()))


def parts(out: Path) -> list[Part]:
    """The check's parts, in order, writing their files under ``out``."""
    files = [str(path.relative_to(ROOT)) for path in cuda_test_files()]
    tests = ["-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors",
             f"--junitxml={out / 'tests.xml'}", *files]  # fmt: skip
    bench = ["-m", "regkit.bench"]
    grok = ["-m", "regkit.bench._grokking", "--out", str(out / "grokking.json")]
    return [
        Part("tests", "the CUDA-only tests (pytest -m cuda)", 60, tests, tests, "tests.xml"),
        Part("optim", "optimizer step vs torch foreach/fused and adamp/pytorch_cpr, ResNet-18 parameters", 60,
             [*bench, "optim", "--devices", "cuda"],
             [*bench, "optim", "--devices", "cpu", "--model", "mlp", "--reps", "1", "--warmup", "0"]),
        Part("loader", "DeviceLoader vs DataLoader images/s", 40,
             [*bench, "loader"], [*bench, "loader", "--quick", "--batch-sizes", "32", "--workers", "0"]),
        Part("train", "training loop images/s, ResNet-18, regkit.train vs a plain DataLoader loop", 75,
             [*bench, "train", "--device", "cuda", "--images", "16384"],
             [*bench, "train", "--device", "cpu", "--quick", "--workers", "0"]),
        Part("penalties", "gradient-norm penalty cost; vectorized micro-batch penalties (5120 x ResNet-18)", 60,
             [*bench, "penalties", "--device", "cuda"], [*bench, "penalties", "--device", "cpu", "--quick"]),
        Part("grokking", "notebook 06 full profile, seed 0: seconds to 99% validation (target < 120 s)", 150,
             [*grok, "--device", "cuda"], [*grok, "--device", "cpu", "--steps", "3", "--p", "13"], "grokking.json"),
    ]  # fmt: skip


def part_budgets(names: list[str], defaults: dict[str, float], overrides: dict[str, float]) -> dict[str, float]:
    """Each part's own budget: its default unless ``overrides`` names it."""
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(f"no part named {unknown}; parts: {', '.join(defaults)}")
    return {name: overrides.get(name, defaults[name]) for name in names}


def allotted(budget_s: float, remaining_s: float) -> float | None:
    """The seconds a part gets: its budget, at most what is left of the total; None (skip it) when
    under ``MIN_PART_S`` is left."""
    if remaining_s < MIN_PART_S:
        return None
    return min(budget_s, remaining_s)


def junit_counts(path: Path) -> dict:
    """Counts of a pytest JUnit XML file (``tests``, ``passed``, ``failed``, ``errors``, ``skipped``) and
    the ids of the tests that failed or errored."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    bad = ["::".join(filter(None, (case.get("classname"), case.get("name")))) for case in root.iter("testcase")
           if case.find("failure") is not None or case.find("error") is not None]  # fmt: skip
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {"tests": counts["tests"], "passed": passed, "failed": counts["failures"], "errors": counts["errors"],
            "skipped": counts["skipped"], "not passed": bad}  # fmt: skip


def environment(dry_run: bool) -> dict:
    """What the numbers were measured on: device, versions, commit, and which reference packages exist."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = None
    cuda = torch.cuda.is_available() and not dry_run
    return {"device": torch.cuda.get_device_name() if cuda else f"cpu ({processor_name()})",
            "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "python": platform.python_version(), "commit": commit, "cpus": os.cpu_count(),
            "packages": {name: importlib.util.find_spec(name) is not None for name in REFERENCES},
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip


def details(part: Part, out: Path) -> dict:
    """What a part left beside its log: the tests' counts (JUnit XML), the grokking runs (JSON)."""
    path = out / part.result if part.result else None
    if path is None or not path.exists():
        return {}
    return junit_counts(path) if path.suffix == ".xml" else json.loads(path.read_text())


def child_env(dry_run: bool) -> dict[str, str]:
    """The parts' environment: this checkout first on the path, unbuffered output; no CUDA in a dry run, nor
    regkit's CPU kernels (tested on their own; a first build, ~30 s, would eat the optim part's budget)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["REGKIT_CPU_KERNELS"] = "0"
    return env


def run_part(part: Part, seconds: float | None, out: Path, dry_run: bool) -> dict:
    """Run one part for at most ``seconds`` (None: skipped, no time left) and return its report entry."""
    argv = [sys.executable, *(part.dry if dry_run else part.gpu)]
    entry = {"name": part.name, "about": part.about, "budget_s": part.budget_s, "command": argv[1:]}
    if seconds is None:
        return entry | {"status": "skipped", "seconds": 0.0, "returncode": None, "log": None,
                        "output_tail": "no time left in the total budget", "details": {}}  # fmt: skip
    if part.result:
        (out / part.result).unlink(missing_ok=True)  # a file left by an earlier check is not this one's result
    outcome = run_with_budget(argv, seconds, out / "logs" / f"{part.name}.log", cwd=ROOT, env=child_env(dry_run))
    return entry | {"status": outcome.status, "seconds": round(outcome.seconds, 1), "returncode": outcome.returncode,
                    "log": str(outcome.log.relative_to(out)), "output_tail": outcome.tail,
                    "details": details(part, out)}  # fmt: skip


def run_check(selected: list[Part], budgets: dict[str, float], out: Path, *, dry_run: bool, total_s: float) -> dict:
    """Run the parts in order, each under its budget and what is left of ``total_s``; write and return the report."""
    out.mkdir(parents=True, exist_ok=True)
    report = {"mode": "dry-run" if dry_run else "gpu", "budget_s": total_s, "environment": environment(dry_run),
              "parts": []}  # fmt: skip
    start = time.perf_counter()
    for part in selected:
        part = replace(part, budget_s=budgets[part.name])
        seconds = allotted(part.budget_s, total_s - (time.perf_counter() - start))
        print(f"[gpu-check] {part.name}: {part.about} (budget {part.budget_s:.0f} s)", flush=True)
        entry = run_part(part, seconds, out, dry_run)
        print(f"[gpu-check] {part.name}: {entry['status']} in {entry['seconds']:.1f} s", flush=True)
        report["parts"].append(entry)
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["failed"] = [p["name"] for p in report["parts"] if p["status"] != "ok"]
    write_reports(report, out)
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m regkit.bench gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="every part at a tiny size on the CPU")
    parser.add_argument("--list", action="store_true", help="print the parts, budgets and commands; run nothing")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu", help="report folder (default runs/gpu)")
    parser.add_argument("--parts", default=None, help="comma-separated part names (default: all, in order)")
    parser.add_argument("--budget", type=float, default=TOTAL_BUDGET_S,
                        help=f"total seconds for all parts (default {TOTAL_BUDGET_S:.0f})")
    parser.add_argument("--part-budget", action="append", default=[], metavar="NAME=SECONDS",
                        help="another budget for one part, e.g. grokking=200 (repeatable)")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()  # the parts run in the checkout's root
    defaults = {p.name: p.budget_s for p in parts(args.out)}
    names = list(defaults)
    args.parts = args.parts.split(",") if args.parts else names
    unknown = [n for n in args.parts if n not in names]
    if unknown:
        parser.error(f"--parts: unknown {unknown}; parts: {', '.join(names)}")
    if not args.budget > 0:
        parser.error(f"--budget must be > 0 seconds, got {args.budget}")
    overrides = {}
    for item in args.part_budget:
        name, _, value = item.partition("=")
        try:
            overrides[name] = float(value)
        except ValueError:
            parser.error(f"--part-budget takes NAME=SECONDS, got {item!r}")
        if not overrides[name] > 0:
            parser.error(f"--part-budget {item!r}: seconds must be > 0")
    try:
        args.budgets = part_budgets(args.parts, defaults, overrides)
    except ValueError as error:
        parser.error(f"--part-budget: {error}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = [p for p in parts(args.out) if p.name in args.parts]
    if args.list:
        for part in selected:
            command = " ".join(["python", *(part.dry if args.dry_run else part.gpu)])
            print(f"{part.name:<10} {args.budgets[part.name]:>5.0f} s  {part.about}\n           {command}")
        return 0
    if not args.dry_run and not torch.cuda.is_available():
        print(f"python -m regkit.bench gpu: torch {torch.__version__} sees no CUDA device. Run it on a GPU machine, "
              "or pass --dry-run to run every part at a tiny size on the CPU.", file=sys.stderr)  # fmt: skip
        return 2
    report = run_check(selected, args.budgets, args.out, dry_run=args.dry_run, total_s=args.budget)
    print(f"\n{summary_table(report)}\n\n[gpu-check] reports: {args.out / 'report.md'} and report.json", flush=True)
    return 1 if report["failed"] else 0
