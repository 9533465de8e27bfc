"""The course runner, settings() and record(): real papermill runs of two small fixture notebooks.

tests/notebooks/01_fails.ipynb records one result, sleeps ``sleep_s``, then raises ValueError in its
cell 4 unless ``fail=False``; 02_records.ipynb records ``steps * scale`` under a reference key
(steps: 3 in the quick profile) plus the kernel's working directory and profile.
"""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

import regkit.course.recording as recording
from regkit.course import record, results, settings
from regkit.course.__main__ import main
from regkit.course.notebook import CourseError, CourseNotebook, discover
from regkit.course.references import REFERENCES
from regkit.course.runner import REPO_ROOT, already_done, run_course

FIXTURES = Path(__file__).parent / "notebooks"
KEY = "cpr.cifar100.resnet18.adamw.acc"


@pytest.fixture(scope="module")
def course_run(tmp_path_factory):
    """One CLI run of both fixtures (01 fails, 02 succeeds with -p scale 7), captured in-process."""
    base = tmp_path_factory.mktemp("course")
    notebooks, out = base / "notebooks", base / "run"
    shutil.copytree(FIXTURES, notebooks)
    with pytest.MonkeyPatch.context() as mp:
        lines = []
        mp.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
        code = main(["run", "--notebooks", str(notebooks), "--out", str(out), "-p", "scale", "7"])
    return {"code": code, "output": "\n".join(lines), "notebooks": notebooks, "out": out,
            "manifest": json.loads((out / "manifest.json").read_text())}


def read_json(path):
    return json.loads(Path(path).read_text())


# --- runner ---------------------------------------------------------------------------------

def test_the_saved_executed_copy_labels_the_injected_parameters_once(course_run):
    nb = nbformat.read(course_run["out"] / "02_records.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and injected[0].source.startswith("# Parameters of this run, injected by papermill")
    assert injected[0].source.count("injected by papermill") == 1


def test_injected_parameter_reaches_the_recorded_result(course_run):
    recorded = read_json(course_run["out"] / "02_records.results.json")
    assert recorded[KEY]["value"] == 3 * 7  # quick profile's steps (3) times the injected scale
    assert recorded[KEY]["meta"] == {"dataset": "synthetic", "label": "fixture"}
    # the kernel ran in the repository root and got the profile as its parameter
    assert recorded["fixture.kernel"]["value"] == {"cwd": str(REPO_ROOT), "profile": "quick"}


def test_failing_notebook_is_reported_and_the_others_still_run(course_run):
    out = course_run["out"]
    assert course_run["code"] == 1
    assert "FAILED 01_fails.ipynb: cell 4 (In [" in course_run["output"]
    assert "raised ValueError: fixture failure" in course_run["output"]
    entry = course_run["manifest"]["notebooks"]["01_fails"]
    assert entry["status"] == "failed" and entry["failed_cell"] == 4
    assert "ValueError: fixture failure" in entry["traceback"] and "\x1b[" not in entry["traceback"]
    source = nbformat.read(course_run["notebooks"] / "01_fails.ipynb", as_version=4)
    assert 'raise ValueError("fixture failure")' in source.cells[entry["failed_cell"]].source
    # the partial notebook is kept with the error in it, and what was recorded before the failure
    executed = (out / "01_fails.ipynb").read_text()
    assert "fixture failure" in executed
    assert read_json(out / "01_fails.results.json") == {"fixture.before_failure": {"value": 1, "meta": {}}}
    # the notebook after the failing one ran and its output is kept
    assert course_run["manifest"]["notebooks"]["02_records"]["status"] == "ok"
    assert (out / "02_records.ipynb").exists()


def test_manifest_records_parameters_hash_and_provenance(course_run):
    entry = course_run["manifest"]["notebooks"]["02_records"]
    assert entry["parameters"] == {"profile": "quick", "scale": 7}
    assert entry["notebook_hash"] == CourseNotebook(course_run["notebooks"] / "02_records.ipynb").content_hash()
    assert entry["torch"] == importlib.metadata.version("torch")
    assert entry["device"].split()[0] in ("cpu", "cuda", "mps")
    assert entry["duration_s"] > 0 and entry["git_commit"]


def test_summary_shows_results_next_to_the_reference(course_run):
    ref = REFERENCES[KEY]
    for name in ("summary.md", "summary.html"):
        text = (course_run["out"] / name).read_text()
        assert f"{ref.value:.4g}" in text and "21" in text
        assert f"{21 - ref.value:+.3g}" in text  # the difference, ours - published
        assert "Franke et al." in text and "dataset=synthetic" in text
        assert "sanity check, not a reproduction" in text  # a quick number is never a reproduction
        assert "FAILED" in text and "fixture failure" in text
    assert "<table>" in (course_run["out"] / "summary.html").read_text()


def test_resume_skips_a_success_and_reruns_it_once_changed(course_run, tmp_path):
    notebooks, out = tmp_path / "notebooks", tmp_path / "run"
    shutil.copytree(course_run["notebooks"], notebooks)
    shutil.copytree(course_run["out"], out)
    run = run_course(notebooks_dir=notebooks, out_dir=out, only=["02"], params={"scale": 7}, resume=True)
    assert [(o.notebook, o.status) for o in run.outcomes] == [("02_records.ipynb", "skipped")]

    nb = nbformat.read(notebooks / "02_records.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell('regkit.course.record("fixture.added", 5)'))
    nbformat.write(nb, notebooks / "02_records.ipynb")
    run = run_course(notebooks_dir=notebooks, out_dir=out, only=["2"], params={"scale": 7}, resume=True)
    assert [(o.notebook, o.status) for o in run.outcomes] == [("02_records.ipynb", "ok")]
    assert read_json(out / "02_records.results.json")["fixture.added"]["value"] == 5
    manifest = read_json(out / "manifest.json")["notebooks"]
    assert manifest["01_fails"] == course_run["manifest"]["notebooks"]["01_fails"]  # other entries kept


def test_already_done_requires_same_parameters_and_content(course_run):
    out, nb = course_run["out"], CourseNotebook(course_run["notebooks"] / "02_records.ipynb")
    entry = course_run["manifest"]["notebooks"]["02_records"]
    assert already_done(entry, nb, {"profile": "quick", "scale": 7}, out)
    assert not already_done(entry, nb, {"profile": "quick", "scale": 8}, out)
    assert not already_done(entry, nb, {"profile": "full", "scale": 7}, out)
    assert not already_done(entry | {"notebook_hash": "0" * 64}, nb, entry["parameters"], out)
    failed = course_run["manifest"]["notebooks"]["01_fails"]
    assert not already_done(failed, CourseNotebook(course_run["notebooks"] / "01_fails.ipynb"), failed["parameters"], out)


def test_cell_timeout_interrupts_and_names_the_cell(tmp_path):
    run = run_course(notebooks_dir=FIXTURES, out_dir=tmp_path, only=["01"], params={"sleep_s": "60", "fail": "False"},
                     cell_timeout=1.5)  # seconds may be fractional: rounded up to 2
    (outcome,) = run.failed
    assert "cell 3 (In [" in outcome.message and "the 2 s per-cell timeout" in outcome.message
    assert read_json(tmp_path / "manifest.json")["notebooks"]["01_fails"]["duration_s"] < 30


def test_a_kernel_that_dies_at_start_is_started_again(tmp_path, monkeypatch, capsys):
    import papermill

    real, calls = papermill.execute_notebook, []

    def dies_once(*args, **kwargs):  # the port race of parallel workers: the first kernel dies at start
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real(*args, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", dies_once)
    run = run_course(notebooks_dir=FIXTURES, out_dir=tmp_path, only=["02"])
    assert not run.failed and len(calls) == 2
    assert read_json(tmp_path / "02_records.results.json")[KEY]["value"] == 6
    assert "02_records.ipynb: the kernel did not start (Kernel died before replying" in capsys.readouterr().out


@pytest.mark.parametrize("error", ["Kernel didn't respond in 60 seconds", "a cell's own RuntimeError"])
def test_a_kernel_that_never_starts_or_a_cell_error_is_reported(tmp_path, monkeypatch, error):
    import papermill

    calls = []

    def fails(*args, **kwargs):
        calls.append(args)
        raise RuntimeError(error)

    monkeypatch.setattr(papermill, "execute_notebook", fails)
    run = run_course(notebooks_dir=FIXTURES, out_dir=tmp_path, only=["02"])
    (outcome,) = run.failed
    assert f"RuntimeError: {error}" in outcome.message
    assert len(calls) == (3 if error.startswith("Kernel") else 1)  # only a start failure is retried


# --- bad input: clear errors before anything runs ---------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": "fast"}, "unknown profile 'fast'; choose one of: quick, full"),
        ({"only": ["07"]}, "--only '07' names no notebook; the notebooks are: 01_fails, 02_records"),
        ({"params": {"scael": 7}}, "unknown parameter 'scael'; the selected notebooks' parameters are: "
                                   "01_fails: fail, sleep_s; 02_records: scale, steps, label"),
        ({"params": {"scale": "seven"}}, "parameter 'scale' of 02_records.ipynb (default 2) expects int, got 'seven'"),
        ({"params": {"scale": 2.5}}, "scale=2.5 has type float; parameter 'scale' of 02_records.ipynb (default 2) expects int"),
        ({"params": {"steps": "many"}}, "parameter 'steps' of 02_records.ipynb (default None) expects int, got 'many'"),
        ({"params": {"fail": "yes"}}, "parameter 'fail' of 01_fails.ipynb (default True) expects bool, got 'yes'"),
        ({"params": {"scale": None}}, "parameter 'scale' of 02_records.ipynb (default 2) cannot be None"),
        ({"params": {"profile": "full"}}, "set the profile with --profile"),
        ({"params": {"sleep_s": "nan"}}, "parameter 'sleep_s' of 01_fails.ipynb (default 0.0) must be finite, got nan: "
                                         "nan and inf have no JSON form"),
        ({"params": {"steps": float("inf")}}, "parameter 'steps' of 02_records.ipynb (default None) must be finite"),
        ({"only": [""]}, "--only '' names no notebook; give numbers or names, e.g. 03 or 03_constrained"),
        ({"only": [" , "]}, "--only ' , ' names no notebook"),
        ({"cell_timeout": -1}, "--cell-timeout must be a number of seconds >= 0 (0: no limit), got -1"),
        ({"cell_timeout": float("nan")}, "--cell-timeout must be a number of seconds >= 0 (0: no limit), got nan"),
        ({"cell_timeout": float("inf")}, "--cell-timeout must be a number of seconds >= 0"),
    ],
)
def test_bad_input_raises_a_clear_error(tmp_path, kwargs, message):
    with pytest.raises(CourseError) as err:
        run_course(notebooks_dir=FIXTURES, out_dir=tmp_path, **kwargs)
    assert message in str(err.value)
    assert not list(tmp_path.iterdir())  # nothing ran


def test_cell_timeout_is_whole_seconds_rounded_up():
    from regkit.course.runner import DEFAULT_CELL_TIMEOUT_S, cell_timeout_s

    assert cell_timeout_s(2.5, "quick") == 3 and cell_timeout_s(2, "quick") == 2
    assert cell_timeout_s(0, "full") is None and cell_timeout_s(0.0, "quick") is None
    assert cell_timeout_s(None, "full") == DEFAULT_CELL_TIMEOUT_S["full"]


@pytest.mark.parametrize("resume", [False, True])
@pytest.mark.parametrize(("text", "problem"), [
    ('{"notebooks": {"01_fails": ', "is not valid JSON (Expecting"),
    ("[]", 'is not a manifest ({"notebooks": {...}})'),
])
def test_a_corrupt_manifest_is_a_clear_error(tmp_path, resume, text, problem):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(CourseError) as err:
        run_course(notebooks_dir=FIXTURES, out_dir=tmp_path, resume=resume)
    assert f"{tmp_path / 'manifest.json'} {problem}" in str(err.value)
    assert "delete it (the next run records them afresh; --resume then reruns every notebook)" in str(err.value)


def test_a_corrupt_notebook_is_a_clear_error(tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(FIXTURES, notebooks)
    (notebooks / "02_records.ipynb").write_text('{"cells": [')
    with pytest.raises(CourseError) as err:
        run_course(notebooks_dir=notebooks, out_dir=tmp_path / "run")
    assert f"{notebooks / '02_records.ipynb'} is not a readable notebook (NotJSONError: " in str(err.value)
    assert "restore it (e.g. git checkout -- 02_records.ipynb) or move it out of the notebook folder" in str(err.value)
    assert not (tmp_path / "run").exists()


def test_a_locked_output_folder_names_its_holder(tmp_path, capsys):
    from regkit.course.folder_lock import lock_folder

    with lock_folder(tmp_path):  # as another `run --out` into the same folder would
        code = main(["run", "--notebooks", str(FIXTURES), "--out", str(tmp_path), "--only", "02"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: output folder '{tmp_path}' is in use by another run: pid {os.getpid()} on host " in err
    assert "wait for it to finish, or give this run another --out" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # nothing written


def test_concurrent_runs_into_one_folder_never_both_write(tmp_path):
    """A second CLI run into a --out that a running one holds stops at once with exit 2, naming the holder."""
    command = [sys.executable, "-m", "regkit.course", "run", "--notebooks", str(FIXTURES), "--out", str(tmp_path),
               "--only", "01", "-p", "fail", "False", "-p", "sleep_s", "6"]
    first = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock, deadline = tmp_path / ".lock", time.monotonic() + 60
    while not (lock.exists() and '"pid"' in lock.read_text()):  # the holder has written its details
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    second = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, (second.stdout, second.stderr)
    assert f"error: output folder '{tmp_path}' is in use by another run: pid {first.pid} " in second.stderr
    assert first.wait(timeout=120) == 0, first.communicate()
    assert read_json(tmp_path / "manifest.json")["notebooks"]["01_fails"]["status"] == "ok"


def test_cli_refuses_a_repeated_parameter(capsys):
    assert main(["run", "--notebooks", str(FIXTURES), "-p", "scale", "1", "-p", "scale", "2"]) == 2
    assert "error: -p scale is given twice ('1' and '2'); give each parameter once" in capsys.readouterr().err


def test_text_values_are_parsed_for_the_declared_type(monkeypatch):
    from regkit.course.runner import resolve_parameters

    nbs = discover(FIXTURES)
    params = resolve_parameters(nbs, "quick", {"scale": "4", "steps": "None", "label": "123", "sleep_s": "1"})
    assert params["02_records"] == {"profile": "quick", "scale": 4, "steps": None, "label": "123"}
    assert params["01_fails"] == {"profile": "quick", "sleep_s": 1.0}
    assert isinstance(params["01_fails"]["sleep_s"], float)


def test_cli_bad_input_exits_2_with_the_choices():
    out = subprocess.run(
        [sys.executable, "-m", "regkit.course", "run", "--profile", "fast", "--notebooks", str(FIXTURES)],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )
    assert out.returncode == 2
    assert "error: unknown profile 'fast'; choose one of: quick, full" in out.stderr


def test_list_shows_parameters_and_defaults(capsys):
    assert main(["list", "--notebooks", str(FIXTURES), "--only", "02_records"]) == 0
    shown = capsys.readouterr().out
    assert shown.splitlines()[0] == "02_records.ipynb"
    assert "scale = 2  (int)  # multiplies the recorded result" in shown
    assert "steps = None  (int)" in shown and "01_fails" not in shown


# --- settings() -------------------------------------------------------------------------------

TABLE = {"quick": {"steps": 10, "lr": 0.1, "data": "synthetic"}, "full": {"steps": 1000, "lr": 0.05, "data": "cifar100"}}


def test_settings_pick_the_profile_and_apply_non_none_overrides(capsys):
    cfg = settings("full", TABLE, steps=None, lr=1)
    assert dict(cfg) == {"steps": 1000, "lr": 1.0, "data": "cifar100"}
    assert isinstance(cfg.lr, float) and cfg.steps == 1000 and cfg.profile == "full"
    printed = capsys.readouterr().out
    assert "lr = 1.0  (overridden)" in printed and "steps = 1000\n" in printed


@pytest.mark.parametrize(
    ("profile", "overrides", "error", "message"),
    [
        ("medium", {}, ValueError, "profile='medium' is not one of: 'quick', 'full'"),
        ("quick", {"stpes": 5}, ValueError, "unknown setting 'stpes'; valid names are: steps, lr, data"),
        ("quick", {"steps": 2.5}, TypeError, "steps=2.5 has type float; the 'quick' profile (default 10) expects int"),
        ("quick", {"steps": True}, TypeError, "steps=True has type bool"),
        ("quick", {"data": 3}, TypeError, "data=3 has type int; the 'quick' profile (default 'synthetic') expects str"),
    ],
)
def test_settings_reject_bad_input(profile, overrides, error, message):
    with pytest.raises(error) as err:
        settings(profile, TABLE, **overrides)
    assert message in str(err.value)


def test_settings_table_rows_must_define_the_same_names():
    with pytest.raises(ValueError, match=r"define different names: \['lr'\]"):
        settings("quick", {"quick": {"steps": 1, "lr": 0.1}, "full": {"steps": 2}})


def test_settings_are_read_only():
    cfg = settings("quick", TABLE)
    with pytest.raises(AttributeError, match="read-only"):
        cfg.steps = 3
    with pytest.raises(AttributeError, match="no setting 'step'; the settings are: steps, lr, data"):
        _ = cfg.step


# --- record() ---------------------------------------------------------------------------------

def test_record_merges_into_the_results_file(tmp_path, monkeypatch):
    path = tmp_path / "nb.results.json"
    path.write_text(json.dumps({"earlier": {"value": 1, "meta": {}}}))
    monkeypatch.setenv("REGKIT_RESULTS_FILE", str(path))
    assert record("acc", torch.tensor(0.5), dataset="synthetic") == 0.5
    record("norms", torch.tensor([1.0, 2.0]))
    record("count", np.int64(3))
    record("acc", np.float32(0.75), dataset="fashion_mnist")  # same name: replaced
    assert read_json(path) == {
        "earlier": {"value": 1, "meta": {}},
        "acc": {"value": 0.75, "meta": {"dataset": "fashion_mnist"}},
        "norms": {"value": [1.0, 2.0], "meta": {}},
        "count": {"value": 3, "meta": {}},
    }
    assert results() == {"earlier": 1, "acc": 0.75, "norms": [1.0, 2.0], "count": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["nb.results.json"]  # no temporary files left


def test_record_leaves_the_file_intact_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "nb.results.json"
    monkeypatch.setenv("REGKIT_RESULTS_FILE", str(path))
    record("first", 1)
    before = path.read_text()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(recording.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        record("second", 2)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["nb.results.json"]


def test_record_rejects_values_that_are_not_json(tmp_path, monkeypatch):
    monkeypatch.setenv("REGKIT_RESULTS_FILE", str(tmp_path / "r.json"))
    with pytest.raises(TypeError, match=r"model=<object object at .*> of type object is not JSON-safe"):
        record("model", object())
    with pytest.raises(TypeError, match=r"cfg\['lr'\]=.* is not JSON-safe"):
        record("cfg", {"lr": {1, 2}})
    assert not (tmp_path / "r.json").exists()


def test_record_outside_the_runner_keeps_values_in_memory(monkeypatch, capsys):
    monkeypatch.delenv("REGKIT_RESULTS_FILE", raising=False)
    monkeypatch.setattr(recording, "_interactive", {})
    record("loss", 0.123456789, steps=10)
    assert results() == {"loss": 0.123456789}
    assert capsys.readouterr().out == ""  # recorded() shows the table at the end of a notebook
