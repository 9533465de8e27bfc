"""The GPU check on the CPU: its dry run end to end, the budgets, the reports, the CLI and the cuda marker."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import regkit.bench.__main__ as bench_cli
from regkit.bench import gpu
from regkit.bench._budget import run_with_budget
from regkit.bench._gpu_report import markdown, write_reports
from regkit.bench._grokking import ORDER

ROOT = Path(__file__).resolve().parents[1]
# Not on the GPU machine's image (KINDS.md of the device tool): the check must not need them.
NOT_ON_GPU_IMAGE = ("papermill", "nbformat", "nbclient", "ipykernel", "IPython", "ipywidgets", "jupyter_client")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """``python -m regkit.bench gpu --dry-run`` in a subprocess (and its parts) where the notebook packages
    cannot be imported, as on the GPU machine."""
    blocker = tmp_path_factory.mktemp("site")
    (blocker / "sitecustomize.py").write_text(f"import sys\nsys.modules.update(dict.fromkeys({NOT_ON_GPU_IMAGE!r}))\n")
    out = tmp_path_factory.mktemp("gpu")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(ROOT)]))
    done = subprocess.run([sys.executable, "-m", "regkit.bench", "gpu", "--dry-run", "--out", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    return done, out


def test_dry_run_runs_every_part_on_the_cpu_and_writes_both_reports(dry_run):
    done, out = dry_run
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["format"] == "regkit.bench.gpu/1" and report["mode"] == "dry-run"
    assert [p["name"] for p in report["parts"]] == ["tests", "optim", "loader", "train", "penalties", "grokking"]
    assert [p["status"] for p in report["parts"]] == ["ok"] * 6 and report["failed"] == []
    assert report["environment"]["packages"]["papermill"] is False  # blocked, and the check ran all the same
    assert report["environment"]["cuda"] is None and report["seconds"] < report["budget_s"]
    for part in report["parts"]:
        assert (out / part["log"]).read_text().startswith(f"$ {sys.executable} {' '.join(part['command'])}\n")
    md = (out / "report.md").read_text()
    assert md.startswith("# GPU check (dry-run): 6 of 6 parts ok\n")
    assert all(f"\n## {name}: ok\n" in md for name in ("tests", "optim", "loader", "train", "penalties", "grokking"))
    assert "| grokking | ok |" in done.stdout  # the summary table is printed last


def test_dry_run_collects_every_cuda_test_and_skips_it_on_the_cpu(dry_run):
    _, out = dry_run
    tests = json.loads((out / "report.json").read_text())["parts"][0]["details"]
    marked = sum(len(re.findall(r"^@pytest\.mark\.cuda\b", p.read_text(), re.MULTILINE)) for p in gpu.cuda_test_files())
    assert marked >= 4 and tests["tests"] >= 54  # 54 when the marker came: parametrized, more tests than marks
    assert tests["skipped"] == tests["tests"] and tests["passed"] == tests["failed"] == tests["errors"] == 0
    assert f"{tests['tests']} tests: 0 passed, 0 failed, 0 errors, {tests['tests']} skipped." in (out / "report.md").read_text()


def test_dry_run_grokking_runs_every_method_of_the_full_profile_in_order(dry_run):
    _, out = dry_run
    result = json.loads((out / "grokking.json").read_text())
    assert [r["run"] for r in result["runs"]] == [f"{m}/seed0" for m in ORDER]
    assert result["settings"]["model"] == "grok_transformer" and result["settings"]["stop_at"] == 0.99
    assert all(r["last step"] == 3 and r["target"] == "not met" for r in result["runs"])
    assert (out / "grokking.histories.json").exists()


def test_every_cuda_only_test_uses_the_marker():
    pattern = re.compile(r"skipif\(\s*not\s+torch\.cuda\.is_available\(\)")
    offenders = [p.name for p in (ROOT / "tests").glob("test_*.py") if pattern.search(p.read_text())]
    assert offenders == [], f"mark CUDA-only tests with @pytest.mark.cuda (conftest skips them): {offenders}"
    assert {p.name for p in gpu.cuda_test_files()} >= {"test_adamp.py", "test_cpr.py", "test_data_loader.py",
                                                        "test_optim_contract.py"}  # fmt: skip


def test_budget_stops_the_command_and_the_processes_it_started(tmp_path):
    child = "import subprocess, sys, time; p = subprocess.Popen(['sleep', '60']); print(p.pid, flush=True); time.sleep(60)"
    start = time.perf_counter()
    outcome = run_with_budget([sys.executable, "-c", child], 1.5, tmp_path / "slow.log")
    assert outcome.status == "timeout" and outcome.returncode is None
    assert 1.5 <= outcome.seconds < 1.5 + 6 and time.perf_counter() - start < 8
    grandchild = int(outcome.tail.splitlines()[-1])
    time.sleep(0.2)
    assert not running(grandchild)


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is no zombie (killed, but not reaped by its new parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_failed_and_ok_commands_are_told_apart_with_their_output(tmp_path):
    failed = run_with_budget([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], 30, tmp_path / "f.log")
    assert (failed.status, failed.returncode) == ("failed", 3) and failed.tail.endswith("boom\n")
    ok = run_with_budget([sys.executable, "-c", "print('fine')"], 30, tmp_path / "logs" / "ok.log")
    assert (ok.status, ok.returncode) == ("ok", 0) and (tmp_path / "logs" / "ok.log").read_text().endswith("fine\n")
    with pytest.raises(ValueError, match="budget_s must be > 0 seconds, got 0"):
        run_with_budget([sys.executable, "-c", "pass"], 0, tmp_path / "x.log")


def test_the_check_goes_on_after_a_failure_and_a_timeout_and_skips_what_has_no_time_left(tmp_path):
    def part(name, code):
        return gpu.Part(name, f"about {name}", 60, [], ["-c", code])

    selected = [part("fails", "raise SystemExit(3)"), part("hangs", "import time; time.sleep(60)"),
                part("starved", "print('never')")]  # fmt: skip
    budgets = {"fails": 60, "hangs": 3.5, "starved": 60}
    report = gpu.run_check(selected, budgets, tmp_path, dry_run=True, total_s=8)
    assert [(p["name"], p["status"]) for p in report["parts"]] == [("fails", "failed"), ("hangs", "timeout"),
                                                                   ("starved", "skipped")]  # fmt: skip
    assert report["failed"] == ["fails", "hangs", "starved"] and report["parts"][0]["returncode"] == 3
    assert report["parts"][2]["output_tail"] == "no time left in the total budget"
    assert json.loads((tmp_path / "report.json").read_text())["failed"] == report["failed"]


def test_part_budget_is_its_own_capped_by_what_is_left():
    assert gpu.allotted(60, 400) == 60 and gpu.allotted(60, 30) == 30 and gpu.allotted(60, gpu.MIN_PART_S) == 5
    assert gpu.allotted(60, gpu.MIN_PART_S - 0.1) is None
    defaults = {p.name: p.budget_s for p in gpu.parts(Path("out"))}
    assert sum(defaults.values()) <= gpu.TOTAL_BUDGET_S <= 8 * 60 - 10  # the 8 minutes, with margin
    assert gpu.part_budgets(["tests", "grokking"], defaults, {"grokking": 200}) == {"tests": 60, "grokking": 200}
    with pytest.raises(ValueError, match=r"no part named \['grok'\]; parts: tests, optim, loader"):
        gpu.part_budgets(["tests"], defaults, {"grok": 200})


@pytest.mark.parametrize("argv, message", [
    (["--parts", "tests,nope"], "--parts: unknown ['nope']; parts: tests, optim, loader, train, penalties, grokking"),
    (["--budget", "0"], "--budget must be > 0 seconds, got 0.0"),
    (["--part-budget", "grokking"], "--part-budget takes NAME=SECONDS, got 'grokking'"),
    (["--part-budget", "grokking=-1"], "--part-budget 'grokking=-1': seconds must be > 0"),
    (["--part-budget", "grok=10"], "--part-budget: no part named ['grok']"),
])  # fmt: skip
def test_bad_arguments_name_the_value(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        gpu.parse_args(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_list_prints_each_part_budget_and_command_and_runs_nothing(tmp_path, capsys):
    assert gpu.main(["--list", "--out", str(tmp_path), "--part-budget", "grokking=200"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["tests", "60", "s"] and lines[-2].split()[:3] == ["grokking", "200", "s"]
    assert lines[3].strip() == "python -m regkit.bench optim --devices cuda"
    assert list(tmp_path.iterdir()) == []


def test_without_cuda_the_check_refuses_and_names_the_dry_run(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"python -m regkit.bench gpu: torch {torch.__version__} sees no CUDA device. "
                                       "Run it on a GPU machine, or pass --dry-run to run every part at a tiny size "
                                       "on the CPU.\n")  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_bench_all_leaves_the_gpu_check_out(monkeypatch):
    ran = []
    monkeypatch.setattr(bench_cli.importlib, "import_module", lambda name: ran.append(name) or type("M", (), {
        "main": staticmethod(lambda argv: None)}))  # fmt: skip
    assert bench_cli.main(["all"]) == 0
    assert "regkit.bench.gpu" not in ran and ran == [f"regkit.bench.{n}" for n in bench_cli.available() if n != "gpu"]


def test_junit_counts_and_the_tests_that_did_not_pass(tmp_path):
    (tmp_path / "t.xml").write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="1" skipped="1">'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_b" name="test_err"><error message="y"/></testcase>'
        '<testcase classname="tests.test_b" name="test_skip"><skipped/></testcase></testsuite></testsuites>')
    assert gpu.junit_counts(tmp_path / "t.xml") == {"tests": 4, "passed": 1, "failed": 1, "errors": 1, "skipped": 1,
                                                    "not passed": ["tests.test_a::test_bad", "tests.test_b::test_err"]}


def test_markdown_report_flags_parts_not_ok_and_tables_the_grokking_runs(tmp_path):
    env = {"device": "NVIDIA H100", "torch": "2.11.0", "cuda": "13.0", "python": "3.12.3", "commit": "abc1234",
           "cpus": 16, "packages": {"adamp": True, "papermill": False}, "started": "2026-01-01T00:00:00+00:00"}
    run = {"run": "cpr_l2/seed0", "steps to 99% val": 2100, "seconds to 99% val": 31.5, "target": "met",
           "last step": 2100, "final val acc": 0.995}
    parts = [{"name": "grokking", "about": "g", "status": "ok", "seconds": 40.0, "budget_s": 150, "command": ["-m", "x"],
              "output_tail": "log\n", "details": {"target_s": 120.0, "runs": [run]}},
             {"name": "train", "about": "t", "status": "timeout", "seconds": 75.2, "budget_s": 75, "command": ["-m", "y"],
              "output_tail": "", "details": {}}]  # fmt: skip
    report = {"mode": "gpu", "budget_s": 470, "seconds": 120.0, "environment": env, "parts": parts, "failed": ["train"]}
    json_path, md_path = write_reports(report, tmp_path)
    assert json.loads(json_path.read_text()) == {"format": "regkit.bench.gpu/1", **report}
    md = md_path.read_text()
    assert md == markdown(report) and md.startswith("# GPU check (gpu): 1 of 2 parts ok\n\nNVIDIA H100; torch 2.11.0 (CUDA 13.0)")
    assert "Packages: adamp yes, papermill no." in md and "Not ok: train (see each part's log)." in md
    assert "| train | **timeout** | 75.2 | 75 | t |" in md
    assert "| cpr_l2/seed0 | 2100 | 31.5 | met | 2100 | 0.995 |" in md
