"""Sweeps: real papermill runs of tests/notebooks/sweep/01_grid.ipynb on the local and the Ray backend.

The fixture records ``fixture.score = 1000 lr + 10 weight_decay + seed`` and ``fixture.seed_squared
= seed**2``, raises at the ``(lr, weight_decay)`` given by ``fail_at``, waits at ``hold_at`` while the
file ``hold`` exists, and appends ``lr,weight_decay,seed,pid`` to the file ``trace`` per execution.
"""

import contextlib
import io
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import regkit.course.sweep as sweep_module
from regkit.course.__main__ import main
from regkit.course.notebook import CourseError
from regkit.course.runner import REPO_ROOT
from regkit.course.sweep import aggregate, plan_sweep, run_id, run_sweep

FIXTURES = Path(__file__).parent / "notebooks" / "sweep"
NB = FIXTURES / "01_grid.ipynb"
LRS, WDS, SEEDS = (0.001, 0.002), (0.0, 0.1), 2
FAIL = (0.002, 0.1)


def score(lr, wd, seed):
    return 1000 * lr + 10 * wd + seed


def read_json(path):
    return json.loads(Path(path).read_text())


def trace_lines(path):
    return Path(path).read_text().splitlines() if Path(path).exists() else []


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """One CLI sweep: 2 lr x 2 weight decays x 2 seeds on 2 local workers; (0.002, 0.1) fails."""
    base = tmp_path_factory.mktemp("sweep")
    out, trace = base / "out", base / "trace.txt"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([
            "sweep", str(NB), "--grid", "lr=1e-3,2e-3", "weight_decay=0,0.1", "--seeds", str(SEEDS),
            "--workers", "2", "-p", "fail_at", str(list(FAIL)), "-p", "trace", str(trace), "--out", str(out),
        ])
    return {"code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(), "out": out, "trace": trace}


# --- the plan ---------------------------------------------------------------------------------

def test_grid_expands_to_every_combination_and_seed():
    plan = plan_sweep(NB, ["lr=1e-3,3e-3", "weight_decay=0,0.1"], seeds=3, params={"trace": "t.txt"})
    expected = list(itertools.product([0.001, 0.003], [0.0, 0.1], range(3)))
    assert [(r.swept["lr"], r.swept["weight_decay"], r.swept["seed"]) for r in plan.runs] == expected
    run = plan.runs[0]
    assert run.run_id == "lr=0.001,weight_decay=0.0,seed=0"
    assert run.parameters == {"profile": "quick", "trace": "t.txt", "lr": 0.001, "weight_decay": 0.0, "seed": 0}
    assert all(type(r.swept["weight_decay"]) is float and type(r.swept["seed"]) is int for r in plan.runs)
    assert len({r.run_id for r in plan.runs}) == 12
    assert plan.axes == ["lr", "weight_decay"] and plan.fixed == {"trace": "t.txt"}


def test_grid_takes_python_values_and_seeds_alone():
    plan = plan_sweep(NB, {"fail_at": [[1, 2], [3, 4]]}, profile="full")
    assert [r.swept for r in plan.runs] == [{"fail_at": [1, 2]}, {"fail_at": [3, 4]}]
    assert plan.runs[0].parameters["profile"] == "full"
    plan = plan_sweep(NB, seeds=2)
    assert [r.run_id for r in plan.runs] == ["seed=0", "seed=1"] and plan.axes == []
    plan = plan_sweep(NB, ['fail_at=[1,2], [3, 4]', 'hold="a,b",c'])  # commas inside brackets and quotes
    assert [r.swept for r in plan.runs] == [{"fail_at": f, "hold": h} for f in ([1, 2], [3, 4]) for h in ('"a,b"', "c")]


def test_run_id_is_readable_and_escapes_unsafe_values():
    assert run_id({"lr": 0.001, "seed": 1}) == "lr=0.001,seed=1"
    unsafe = run_id({"hold": "a/b"})
    assert "/" not in unsafe and unsafe.startswith("hold=a_b-") and unsafe != run_id({"hold": "a_b"})


# --- bad input: clear errors before anything runs ---------------------------------------------

@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("07", ["lr=1"]), {}, "notebook '07' names no notebook; the notebooks are: 01_grid"),
        ((NB, ["lr"]), {}, "--grid 'lr' is not NAME=VALUE[,VALUE...] (e.g. lr=1e-3,3e-3)"),
        ((NB, ["=1"]), {}, "--grid '=1' is not NAME=VALUE"),
        ((NB, ["lr=1,,2"]), {}, "--grid 'lr=1,,2' has an empty value"),
        ((NB, ["lr="]), {}, "--grid 'lr=' has an empty value"),
        ((NB, ["lr=1", "lr=2"]), {}, "--grid names 'lr' twice; give all its values in one item: lr=V1,V2"),
        ((NB, ["learning_rate=1,2"]), {}, "unknown parameter 'learning_rate'; the selected notebooks' parameters "
                                          "are: 01_grid: lr, weight_decay, seed, fail_at, hold_at, hold, trace"),
        ((NB, ["lr=1e-3,fast"]), {}, "parameter 'lr' of 01_grid.ipynb (default 0.001) expects float, got 'fast'"),
        ((NB, ["lr=1e-3,0.001"]), {}, "--grid lr lists the value 0.001 twice"),
        ((NB, ["profile=full"]), {}, "set the profile with --profile"),
        ((NB, ["lr=1,2"]), {"params": {"lr": "3"}}, "parameter 'lr' is both swept (--grid) and fixed (-p)"),
        ((NB, []), {}, "nothing to sweep: give --grid NAME=V1,V2 ... and/or --seeds N"),
        ((NB, ["lr=1"], 0), {}, "--seeds must be a positive int (the number of seeds 0..N-1), got 0"),
        ((NB, ["lr=1"], -2), {}, "--seeds must be a positive int"),
        ((NB, ["lr=1"], 2.0), {}, "--seeds must be a positive int (the number of seeds 0..N-1), got 2.0"),
        ((NB, ["seed=1,2"], 2), {}, "give the seeds either with --seeds or as a parameter 'seed', not both"),
        ((FIXTURES.parent / "02_records.ipynb", ["scale=1,2"], 3), {},
         "--seeds needs a 'seed' parameter, and 02_records.ipynb has none; its parameters are: scale, steps, label"),
        ((NB, ["lr=1"]), {"profile": "fast"}, "unknown profile 'fast'; choose one of: quick, full"),
        ((NB, ["lr=1"]), {"backend": "slurm"}, "unknown backend 'slurm'; choose one of: local, ray"),
        ((NB, ["lr=1"]), {"workers": 0}, "--workers must be a positive int, got 0"),
        ((NB, ["lr=1"]), {"gpus_per_run": 1}, "--gpus-per-run needs --backend ray"),
        ((NB, ["lr=1e-3,nan"]), {}, "parameter 'lr' of 01_grid.ipynb (default 0.001) must be finite, got nan"),
        ((NB, ["lr=1"]), {"params": {"weight_decay": "-inf"}}, "parameter 'weight_decay' of 01_grid.ipynb "
                                                                "(default 0.0) must be finite, got -inf"),
        ((NB, {"fail_at": [[1.0, float("nan")]]}), {}, "must be finite, got [1.0, nan]"),
        ((NB, ["fail_at=1,2"]), {}, "expects list, got '1'; grid values are split at the commas outside brackets: "
                                    "write each value whole, e.g. --grid fail_at=[1,2],[3,4]"),
        ((NB, ["fail_at=[1,2],[3"]), {}, "--grid 'fail_at=[1,2],[3' has an unclosed bracket or quote; write each "
                                         "list value in brackets, e.g. fail_at=[1,2],[3,4]"),
        ((NB, ["lr=1"]), {"cell_timeout": -1}, "--cell-timeout must be a number of seconds >= 0 (0: no limit), got -1"),
    ],
)
def test_bad_input_raises_a_clear_error(tmp_path, args, kwargs, message):
    with pytest.raises(CourseError) as err:
        run_sweep(*args, notebooks_dir=FIXTURES, out_dir=tmp_path / "out", **kwargs)
    assert message in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing ran


def test_a_locked_output_folder_is_refused(tmp_path):
    from regkit.course.folder_lock import lock_folder

    with lock_folder(tmp_path), pytest.raises(CourseError) as err:
        run_sweep(NB, ["lr=1e-3"], out_dir=tmp_path)
    assert f"output folder '{tmp_path}' is in use by another run: pid {os.getpid()} on host " in str(err.value)
    assert "wait for it to finish, or give this run another --out" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_cli_repeated_parameter_exits_2(capsys):
    assert main(["sweep", str(NB), "--grid", "lr=1,2", "-p", "seed", "1", "-p", "seed", "2"]) == 2
    assert "error: -p seed is given twice ('1' and '2'); give each parameter once" in capsys.readouterr().err


def test_cli_bad_input_exits_2(capsys):
    assert main(["sweep", "01", "--notebooks", str(FIXTURES), "--grid", "lr:1,2"]) == 2
    assert "error: --grid 'lr:1,2' is not NAME=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "01", "--notebooks", str(FIXTURES), "--seeds", "three"])
    assert exit_.value.code == 2 and "argument --seeds: invalid int value: 'three'" in capsys.readouterr().err


# --- a local sweep ----------------------------------------------------------------------------

def test_results_aggregate_to_mean_and_std_over_seeds(local_sweep):
    summary = pd.read_csv(local_sweep["out"] / "summary.csv")
    assert list(summary.columns) == ["lr", "weight_decay", "result", "mean", "std", "n"]
    ok = [(lr, wd) for lr, wd in itertools.product(LRS, WDS) if (lr, wd) != FAIL]
    scores = summary[summary.result == "fixture.score"]
    assert list(zip(scores.lr, scores.weight_decay, strict=True)) == ok  # the failed point has no row
    for (lr, wd), (_, row) in zip(ok, scores.iterrows(), strict=True):
        values = [score(lr, wd, seed) for seed in range(SEEDS)]
        assert row["mean"] == pytest.approx(statistics.mean(values))
        assert row["std"] == pytest.approx(statistics.stdev(values))
        assert row["n"] == SEEDS
    squares = summary[summary.result == "fixture.seed_squared"]
    assert squares["mean"].tolist() == pytest.approx([statistics.mean([0, 1])] * 3)
    assert "fixture.kernel" not in set(summary.result)  # a dict is not a number: not aggregated
    md = (local_sweep["out"] / "summary.md").read_text()
    assert "## fixture.score" in md and "| 0.001 | 0.1 | 2.5 | 0.7071 | 2 |" in md


def test_failing_combination_is_reported_and_the_others_kept(local_sweep):
    out = local_sweep["out"]
    assert local_sweep["code"] == 1
    assert "6 ok, 2 failed, 0 skipped" in local_sweep["stdout"]
    for seed in range(SEEDS):
        rid = f"lr=0.002,weight_decay=0.1,seed={seed}"
        assert f"FAILED {rid}: cell 4 (In [" in local_sweep["stderr"]
        status = read_json(out / rid / "status.json")
        assert status["status"] == "failed" and status["failed_cell"] == 4
        assert "ValueError: fixture failure at lr=0.002, weight_decay=0.1" in status["error"]
        assert "fixture failure" in (out / rid / "01_grid.ipynb").read_text()  # the executed notebook is kept
        assert f"`{rid}`" in (out / "summary.md").read_text()
    statuses = {r["run_id"]: r["status"] for r in read_json(out / "sweep.json")["runs"]}
    assert sorted(statuses.values()) == ["failed"] * 2 + ["ok"] * 6


def test_each_run_folder_holds_params_results_and_status(local_sweep):
    out = local_sweep["out"]
    sweep = read_json(out / "sweep.json")
    assert sweep["grid"] == {"lr": list(LRS), "weight_decay": list(WDS)} and sweep["seeds"] == SEEDS
    assert sweep["workers"] == 2 and sweep["threads"] >= 1
    pids = set()
    for lr, wd, seed in itertools.product(LRS, WDS, range(SEEDS)):
        folder = out / f"lr={lr!r},weight_decay={wd!r},seed={seed}"
        assert read_json(folder / "params.json") == {
            "profile": "quick", "fail_at": list(FAIL), "trace": str(local_sweep["trace"]),
            "lr": lr, "weight_decay": wd, "seed": seed}
        status = read_json(folder / "status.json")
        results = read_json(folder / "results.json")
        assert results["fixture.score"]["value"] == pytest.approx(score(lr, wd, seed))
        assert results["fixture.kernel"]["value"] == {"omp_threads": str(sweep["threads"])}  # threads per worker
        assert status["parameters"] == read_json(folder / "params.json") and status["git_commit"]
        assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no partial files left
        pids.add(status["worker_pid"])
    assert len(pids) == 2  # both workers ran notebooks
    assert len(trace_lines(local_sweep["trace"])) == 8


def test_two_numeric_axes_give_a_heatmap_and_one_axis_gives_lines(local_sweep, tmp_path, monkeypatch):
    assert (local_sweep["out"] / "plots" / "fixture.score.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import regkit.plots

    calls = []
    for name in ("heatmap", "mean_lines"):
        real = getattr(regkit.plots, name)
        monkeypatch.setattr(regkit.plots, name, lambda *a, _real=real, _name=name, **k: (
            calls.append((_name, a[1:3])), _real(*a, **k))[1])
    table = pd.read_csv(local_sweep["out"] / "summary.csv")
    plan = plan_sweep(NB, ["lr=1e-3,2e-3", "weight_decay=0,0.1"], seeds=2)
    files = sweep_module._plots(plan, table[table.result == "fixture.score"], tmp_path)
    assert calls == [("heatmap", ("lr", "weight_decay"))] and [f.name for f in files] == ["fixture.score.png"]
    calls.clear()
    one_axis = plan_sweep(NB, ["lr=1e-3,2e-3", "weight_decay=0"], seeds=2)
    sweep_module._plots(one_axis, table[(table.result == "fixture.score") & (table.weight_decay == 0)], tmp_path)
    assert calls == [("mean_lines", ("lr", "mean"))]


def test_resume_reruns_only_missing_and_failed_runs(local_sweep, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(local_sweep["out"], out)
    shutil.rmtree(out / "lr=0.001,weight_decay=0.1,seed=1")  # a run that never happened
    before = trace_lines(local_sweep["trace"])
    result = run_sweep(NB, ["lr=1e-3,2e-3", "weight_decay=0,0.1"], seeds=SEEDS, workers=2, resume=True, out_dir=out,
                       params={"fail_at": str(list(FAIL)), "trace": str(local_sweep["trace"])})
    executed = trace_lines(local_sweep["trace"])[len(before):]
    assert sorted(line.rsplit(",", 1)[0] for line in executed) == ["0.001,0.1,1", "0.002,0.1,0", "0.002,0.1,1"]
    assert sorted(o.status for o in result.outcomes) == ["failed"] * 2 + ["ok"] + ["skipped"] * 5
    assert read_json(out / "lr=0.001,weight_decay=0.1,seed=1" / "status.json")["status"] == "ok"
    assert result.summary[result.summary.result == "fixture.score"]["n"].tolist() == [2, 2, 2]


def test_a_crashed_worker_is_recorded_as_a_failed_run(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "run_one", crash)
    result = run_sweep(NB, ["lr=1e-3,2e-3"], workers=1, out_dir=tmp_path)
    assert [o.status for o in result.outcomes] == ["failed", "failed"]
    status = read_json(tmp_path / "lr=0.001" / "status.json")
    assert status["status"] == "failed" and status["error"] == "the worker failed: RuntimeError: worker lost"
    assert result.summary.empty


def crash(task):
    raise RuntimeError("worker lost")


HELD_GRID = "lr=1e-3,2e-3,3e-3"


def ignore_sigint():
    """Start like a background job of a shell script (``cmd &``), which inherits SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def held_sweep(tmp_path):
    """A CLI sweep (own session, SIGINT ignored at start) whose first run is done and whose second waits on ``hold``.

    Yields the driver's Popen and every process of its session (driver, pool worker, resource tracker, kernel).
    """
    import psutil

    out, hold, trace = tmp_path / "out", tmp_path / "hold", tmp_path / "trace.txt"
    hold.touch()
    params = {"hold_at": "[0.002, 0.0]", "hold": str(hold), "trace": str(trace)}
    command = [sys.executable, "-m", "regkit.course", "sweep", str(NB), "--grid", HELD_GRID, "--workers", "1",
               "--out", str(out), *itertools.chain.from_iterable(("-p", k, v) for k, v in params.items())]
    done = out / "lr=0.001" / "status.json"
    held = out / "lr=0.002" / ".results.partial.json"  # the second run recorded a result, then waits
    with open(tmp_path / "log.txt", "w") as log:
        sweep = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, preexec_fn=ignore_sigint)
    processes = []
    try:
        deadline = time.monotonic() + 120
        while not (held.exists() and done.exists()) and sweep.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert held.exists() and done.exists(), (tmp_path / "log.txt").read_text()
        processes = [psutil.Process(sweep.pid), *psutil.Process(sweep.pid).children(recursive=True)]
        kernel = int(next(line for line in trace_lines(trace) if line.startswith("0.002")).rsplit(",", 1)[1])
        assert kernel in [p.pid for p in processes]
        yield sweep, processes, params
    finally:
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        sweep.wait()


def alive_after(processes, seconds):
    import psutil

    return [p.pid for p in psutil.wait_procs(processes, timeout=seconds)[1]]


def test_interrupted_sweep_leaves_no_partial_results_and_resume_completes_it(tmp_path):
    out, trace = tmp_path / "out", tmp_path / "trace.txt"
    with held_sweep(tmp_path) as (sweep, processes, params):
        os.killpg(sweep.pid, signal.SIGINT)  # Ctrl-C in a terminal signals the whole process group
        assert sweep.wait(timeout=10) == 130
        assert alive_after(processes, 5) == []  # the worker killed the held run's kernel (its own session)
    assert "interrupted: finished runs are kept" in (tmp_path / "log.txt").read_text()

    assert [line.split(",")[0] for line in trace_lines(trace)] == ["0.001", "0.002"]  # the queued run never started
    assert read_json(out / "lr=0.001" / "status.json")["status"] == "ok"
    interrupted = out / "lr=0.002"
    assert sorted(p.name for p in interrupted.iterdir() if not p.name.startswith(".")) == ["params.json"]
    for path in out.rglob("*.json"):  # every visible JSON file is complete
        if not path.name.startswith("."):
            read_json(path)

    (tmp_path / "hold").unlink()
    result = run_sweep(NB, [HELD_GRID], workers=1, resume=True, out_dir=out, params=params)
    assert [(o.run_id, o.status) for o in result.outcomes] == [
        ("lr=0.001", "skipped"), ("lr=0.002", "ok"), ("lr=0.003", "ok")]
    assert [line.split(",")[0] for line in trace_lines(trace)] == ["0.001", "0.002", "0.002", "0.003"]
    assert read_json(interrupted / "results.json")["fixture.done"]["value"] == 1
    assert not [p.name for p in interrupted.iterdir() if p.name.startswith(".")]


def test_sigterm_stops_a_sweep_like_ctrl_c(tmp_path):
    with held_sweep(tmp_path) as (sweep, processes, _):
        sweep.terminate()  # the driver only, as a scheduler or `timeout` would
        assert sweep.wait(timeout=10) == 130
        assert alive_after(processes, 5) == []
    assert "interrupted: finished runs are kept" in (tmp_path / "log.txt").read_text()
    assert not (tmp_path / "out" / "lr=0.002" / "status.json").exists()


def test_workers_and_kernels_exit_when_the_driver_is_killed(tmp_path):
    with held_sweep(tmp_path) as (sweep, processes, _):
        sweep.kill()
        assert alive_after(processes, 5) == []  # worker, its kernel and the resource tracker: none orphaned
    assert not (tmp_path / "out" / "lr=0.002" / "status.json").exists()


def test_a_none_grid_value_keeps_its_rows_in_the_summaries(tmp_path):
    """None is "the profile's value" (02_records: steps 3 in the quick profile; it records steps * scale)."""
    result = run_sweep(FIXTURES.parent / "02_records.ipynb", ["steps=None,5"], workers=1, out_dir=tmp_path)
    assert [(o.run_id, o.status) for o in result.outcomes] == [("steps=null", "ok"), ("steps=5", "ok")]
    summary = pd.read_csv(tmp_path / "summary.csv", keep_default_na=False)
    rows = summary[summary.result == "cpr.cifar100.resnet18.adamw.acc"]
    assert rows.steps.tolist() == ["None", "5"] and rows["mean"].tolist() == [3 * 2, 5 * 2]
    md = (tmp_path / "summary.md").read_text()
    assert "| None | 6 | nan | 1 |" in md and "| 5 | 10 | nan | 1 |" in md


# --- aggregation ------------------------------------------------------------------------------

def test_aggregate_gives_mean_sample_std_and_count_and_propagates_nan():
    values = pd.DataFrame({
        "lr": [0.1, 0.1, 0.1, 0.2, 0.3, 0.3],
        "result": ["acc"] * 6,
        "value": [1.0, 2.0, 4.0, 5.0, 1.0, np.nan],
    })
    table = aggregate(values, ["lr"])
    assert table["lr"].tolist() == [0.1, 0.2, 0.3] and table["n"].tolist() == [3, 1, 2]
    assert table["mean"].iloc[0] == pytest.approx(statistics.mean([1, 2, 4]))
    assert table["std"].iloc[0] == pytest.approx(statistics.stdev([1, 2, 4]))
    assert table["mean"].iloc[1] == 5.0 and np.isnan(table["std"].iloc[1])  # one seed: no std
    assert np.isnan(table["mean"].iloc[2])  # a diverged run is not silently dropped


# --- the Ray backend --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance with 2 CPUs whose workers import this checkout's regkit."""
    import ray

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
        for attempt in range(2):  # on a busy machine the raylet may give up on its slow node agent: retry once
            try:
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
                break
            except Exception:
                ray.shutdown()
                if attempt:
                    raise
    yield ray
    ray.shutdown()


def test_ray_backend_runs_every_combination_and_reports_the_failure(ray_instance, tmp_path):
    result = run_sweep(NB, ["lr=1e-3,2e-3"], backend="ray", out_dir=tmp_path, params={"fail_at": "[0.002, 0.0]"})
    assert [(o.run_id, o.status) for o in result.outcomes] == [("lr=0.001", "ok"), ("lr=0.002", "failed")]
    assert "fixture failure at lr=0.002" in result.failed[0].error
    status = read_json(tmp_path / "lr=0.001" / "status.json")
    assert status["worker_pid"] != os.getpid() and status["threads"] == 1
    assert read_json(tmp_path / "sweep.json")["backend"] == "ray"
    row = result.summary[result.summary.result == "fixture.score"]
    assert row["mean"].tolist() == pytest.approx([score(0.001, 0.0, 0)]) and row["n"].tolist() == [1]



def test_ray_that_cannot_start_is_a_clear_error_before_anything_is_written(tmp_path, monkeypatch):
    import ray

    calls = []

    def refuse(**kwargs):
        calls.append(kwargs["address"])
        raise ConnectionError("no cluster there")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(CourseError, match="--backend ray: could not start or connect to 10.0.0.1:6379: no cluster there"):
        run_sweep(NB, ["lr=1e-3"], backend="ray", address="10.0.0.1:6379", out_dir=tmp_path)
    assert calls == ["10.0.0.1:6379"]  # a cluster address is tried once
    with pytest.raises(CourseError, match="could not start or connect to a new local Ray instance: no cluster"):
        run_sweep(NB, ["lr=1e-3"], backend="ray", out_dir=tmp_path)
    assert calls == ["10.0.0.1:6379", None, None]  # a new local instance is tried twice
    assert not list(tmp_path.iterdir())
