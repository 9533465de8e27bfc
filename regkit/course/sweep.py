"""Sweeps: one notebook over a parameter grid and seeds, run in parallel, aggregated over seeds.

``run_sweep("03", {"lr": [1e-3, 3e-3], "weight_decay": [0, 0.1]}, seeds=3)`` (or
``python -m regkit.course sweep 03 --grid lr=1e-3,3e-3 weight_decay=0,0.1 --seeds 3``) executes
every combination of the grid for ``seeds = [0] .. [seeds-1]`` (``seed = 0 ..`` for a notebook with a
``seed`` parameter) with papermill (the runner's
:func:`~regkit.course.runner.execute`), each into its own folder, and writes to ``out_dir``
(default ``runs/sweeps/<notebook stem>/``):

- ``<run-id>/`` per combination and seed, e.g. ``lr=0.001,weight_decay=0.1,seed=2``: the
  executed notebook, ``params.json`` (what was injected), ``results.json`` (what it recorded) and
  ``status.json`` (status, failing cell, error, duration, provenance), written last;
- ``sweep.json``: the plan (notebook and its hash, profile, fixed parameters, grid, seeds) and
  each run's status; ``summary.csv`` / ``summary.md``: per combination and recorded number its
  mean, standard deviation (ddof=1) and count over the seeds that succeeded;
- ``plots/<result>.png``: a heatmap of the mean when the grid has two numeric axes, else lines
  (mean ± std against the first axis, one line per value of the others).

Grid values are parsed and checked against the notebook's parameter types like ``-p`` values.
Runs go to a process pool (``backend="local"``, ``workers`` processes, each kernel limited to
``threads`` BLAS/OpenMP threads) or to Ray tasks (``backend="ray"``: the cluster at ``address`` /
``RAY_ADDRESS``, else a local instance; every node must see the repository and ``out_dir`` at the
same paths, e.g. on a shared file system). A failing run never stops the others. Every file is
written atomically (the executed notebook and results while running as hidden ``.partial`` files),
so an interrupted sweep leaves no half-written results; ``resume=True`` reruns only the runs
without a successful ``status.json`` for the same parameters and notebook content.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import math
import multiprocessing
import os
import re
import socket
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from regkit._validate import check_int
from regkit.course.folder_lock import lock_folder
from regkit.course.lifetime import worker_init
from regkit.course.notebook import CourseError, CourseNotebook, Parameter, check_profile, discover, select
from regkit.course.recording import read_results, write_atomically, write_json_atomically
from regkit.course.runner import (
    NOTEBOOKS_DIR,
    REPO_ROOT,
    RUNS_DIR,
    already_done,
    cell_timeout_s,
    environment,
    execute,
    resolve_parameters,
)

SWEEPS_DIR = RUNS_DIR / "sweeps"
BACKENDS = ("local", "ray")
STATUS_FILE, PARAMS_FILE, RESULTS_FILE = "status.json", "params.json", "results.json"
SEED, SEEDS = "seed", "seeds"
_GRID_ITEM = re.compile(r"(?P<name>[A-Za-z_]\w*)=(?P<values>.*)")


# --- the plan: grid x seeds ---------------------------------------------------------------------

@dataclass(frozen=True)
class SweepRun:
    """One execution: its folder name, the swept values (grid and seed) and every injected parameter."""

    run_id: str
    swept: dict[str, Any]
    parameters: dict[str, Any]


@dataclass(frozen=True)
class SweepPlan:
    notebook: CourseNotebook
    profile: str
    fixed: dict[str, Any]  # the -p parameters, the same in every run
    grid: dict[str, list[Any]]  # typed values
    seeds: int | None
    runs: list[SweepRun]

    @property
    def axes(self) -> list[str]:
        """The grid's names (the seed is averaged over, not an axis)."""
        return list(self.grid)


def parse_grid(items: Iterable[str]) -> dict[str, list[str]]:
    """``["lr=1e-3,3e-3", "weight_decay=0,0.1"]`` -> ``{"lr": ["1e-3", "3e-3"], ...}`` (text, typed later)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        match = _GRID_ITEM.fullmatch(item.strip())
        if not match:
            raise CourseError(f"--grid {item!r} is not NAME=VALUE[,VALUE...] (e.g. lr=1e-3,3e-3)")
        name, values = match["name"], split_values(match["values"], item)
        if not all(values):
            raise CourseError(f"--grid {item!r} has an empty value; write NAME=VALUE[,VALUE...] without empty items")
        if name in grid:
            raise CourseError(f"--grid names {name!r} twice; give all its values in one item: {name}=V1,V2")
        grid[name] = values
    return grid


def split_values(text: str, item: str) -> list[str]:
    """Split a grid item's values at the commas outside brackets and quotes: ``[1,2],[3,4]`` -> 2 values."""
    values, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    if depth or quote:
        raise CourseError(f"--grid {item!r} has an unclosed bracket or quote; write each list value in brackets, "
                          "e.g. fail_at=[1,2],[3,4]")
    return [*values, text[start:].strip()]


def _typed_values(parameter: Parameter, values: list[Any], notebook: str) -> list[Any]:
    """Grid values parsed / checked for the parameter's type, with a hint on how to write list values."""
    try:
        return [parameter.coerce(v, notebook) for v in values]
    except CourseError as error:
        if parameter.kind not in (list, tuple, dict):
            raise
        raise CourseError(f"{error}; grid values are split at the commas outside brackets: write each value "
                          f"whole, e.g. --grid {parameter.name}=[1,2],[3,4]") from None


def _id_value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else value if isinstance(value, str) else json.dumps(value)


def run_id(swept: Mapping[str, Any]) -> str:
    """The folder of a run: ``name=value`` pairs joined by commas (a hash suffix if shortened or escaped)."""
    text = ",".join(f"{name}={_id_value(value)}" for name, value in swept.items())
    safe = re.sub(r"[^\w.+=,-]", "_", text)
    if safe != text or len(safe) > 120:
        digest = hashlib.sha256(json.dumps(swept, sort_keys=True, default=str).encode()).hexdigest()[:8]
        safe = f"{safe[:100]}-{digest}"
    return safe


def find_notebook(notebook: str | os.PathLike, notebooks_dir: str | Path = NOTEBOOKS_DIR) -> CourseNotebook:
    """A notebook file, or the course notebook named by number or name ("1", "01", "01_weight_decay")."""
    path = Path(notebook)
    if path.suffix == ".ipynb" and path.is_file():
        return CourseNotebook(path.resolve())
    matches = select(discover(notebooks_dir), [str(notebook)], what="notebook")
    if len(matches) != 1:
        raise CourseError(f"notebook {str(notebook)!r} names {len(matches)} notebooks "
                          f"({', '.join(nb.stem for nb in matches)}); name one")
    return matches[0]


def plan_sweep(
    notebook: str | os.PathLike | CourseNotebook,
    grid: Mapping[str, Iterable[Any] | str] | Iterable[str] | None = None,
    seeds: int | None = None,
    *,
    profile: str = "quick",
    params: Mapping[str, Any] | None = None,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
) -> SweepPlan:
    """Check everything and expand the grid x seeds into runs (CourseError on bad input, before anything runs).

    ``grid``: ``{name: values}`` (Python values, text, or one comma-separated text), or the CLI's
    ``["name=v1,v2", ...]``. ``seeds=N`` sets the notebook's ``seeds`` to ``[0] .. [N-1]`` (or ``seed`` to ``0 .. N-1``).
    ``params``: fixed parameters of every run (as ``-p``).
    """
    check_profile(profile)
    nb = notebook if isinstance(notebook, CourseNotebook) else find_notebook(notebook, notebooks_dir)
    if grid is None:
        grid = {}
    elif not isinstance(grid, Mapping):
        grid = parse_grid(grid)
    grid = {name: split_values(values, f"{name}={values}") if isinstance(values, str) else list(values)
            for name, values in grid.items()}
    fixed = dict(params or {})
    declared = nb.parameters()
    # the course's notebooks take a list, seeds=[s]; other notebooks may take one seed, seed=s
    seed_name = SEEDS if SEEDS in declared else SEED
    if seeds is not None:
        check_int("--seeds", seeds, note="the number of seeds 0..N-1", error=CourseError)
        if seed_name not in declared:
            raise CourseError(f"--seeds needs a {SEED!r} parameter, and {nb.name} has none; its parameters are: "
                              f"{', '.join(n for n in declared if n != 'profile')}")
        if seed_name in grid or seed_name in fixed:
            raise CourseError(f"give the seeds either with --seeds or as a parameter {seed_name!r}, not both")
    both = sorted(set(grid) & set(fixed))
    if both:
        raise CourseError(f"parameter {both[0]!r} is both swept (--grid) and fixed (-p)")
    empty = [name for name, values in grid.items() if not values]
    if empty:
        raise CourseError(f"--grid {empty[0]!r} has no values")
    if not grid and seeds is None:
        raise CourseError("nothing to sweep: give --grid NAME=V1,V2 ... and/or --seeds N")
    # each grid value of a declared parameter is parsed / checked for its type like -p values ...
    typed = {name: _typed_values(declared[name], values, nb.name) for name, values in grid.items() if name in declared}
    # ... and resolve_parameters checks the names (profile, unknown ones) and the fixed values' types
    first = {name: typed[name][0] if name in typed else values[0] for name, values in grid.items()}
    base = resolve_parameters([nb], profile, fixed | first)[nb.stem]
    base = {name: value for name, value in base.items() if name not in grid}
    for name, values in typed.items():
        repeated = [v for i, v in enumerate(values) if v in values[:i]]
        if repeated:
            raise CourseError(f"--grid {name} lists the value {repeated[0]!r} twice")
    axes = list(typed)
    seed_values = [[s] for s in range(seeds)] if seeds is not None else [[]]
    runs = []
    for combination in itertools.product(*typed.values()):
        for seed in seed_values:
            point = dict(zip(axes, combination, strict=True))
            swept = point | ({SEED: seed[0]} if seed else {})
            injected = {seed_name: seed if seed_name == SEEDS else seed[0]} if seed else {}
            runs.append(SweepRun(run_id(swept), swept, base | point | injected))
    ids = [run.run_id for run in runs]
    if len(set(ids)) != len(ids):
        raise CourseError("two grid values give the same run folder name; use values that differ in their text")
    return SweepPlan(nb, profile, {k: v for k, v in base.items() if k != "profile"}, typed, seeds, runs)


# --- one run (in a worker process) ---------------------------------------------------------------

@dataclass(frozen=True)
class RunTask:
    """What a worker needs to execute one run (plain data: it travels to another process or node)."""

    notebook: str
    parameters: dict[str, Any]
    run_dir: str
    root: str
    cell_timeout: int | None
    threads: int
    provenance: dict[str, str]


def thread_env(threads: int) -> dict[str, str]:
    """Variables that limit the kernel's BLAS/OpenMP threads (torch reads ``OMP_NUM_THREADS`` at import)."""
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def run_one(task: RunTask) -> dict[str, Any]:
    """Execute one run into its folder: ``params.json``, the notebook, ``results.json``, then ``status.json``."""
    run_dir = Path(task.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / STATUS_FILE).unlink(missing_ok=True)  # a status always describes the files beside it
    write_json_atomically(run_dir / PARAMS_FILE, task.parameters)
    entry = execute(
        CourseNotebook(Path(task.notebook)), task.parameters, run_dir, root=Path(task.root),
        cell_timeout=task.cell_timeout, log_output=False, progress_bar=False, results_name=RESULTS_FILE,
        env=thread_env(task.threads),
    )
    entry |= task.provenance | {"host": socket.gethostname(), "worker_pid": os.getpid(), "threads": task.threads}
    write_json_atomically(run_dir / STATUS_FILE, entry)
    return entry


# --- backends: map run_one over the tasks ---------------------------------------------------------

def map_local(fn: Callable[[RunTask], dict], tasks: list[RunTask], workers: int) -> Iterator[tuple[RunTask, Any]]:
    """``(task, fn(task) or the exception)`` in completion order, from a pool of ``workers`` processes.

    When the consumer is interrupted (Ctrl-C) or stops early, the workers are terminated at once:
    their running notebooks stop uncommitted (each worker kills its kernel) and no queued run
    starts. Workers also exit, killing their kernels, when this process dies (see
    :func:`~regkit.course.lifetime.worker_init`).
    """
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=worker_init, initargs=(os.getpid(),))
    try:
        futures = {pool.submit(fn, task): task for task in tasks}
        for future in as_completed(futures):
            error = future.exception()
            yield futures[future], error if error is not None else future.result()
    except BaseException:
        if hasattr(pool, "terminate_workers"):  # Python >= 3.14
            pool.terminate_workers()
        else:  # the same through the executor's process table (stable since Python 3.2, private)
            for process in list((pool._processes or {}).values()):
                process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Use this process's Ray connection if there is one, else ``ray.init(address)`` until the block ends.

    ``address=None``: ``RAY_ADDRESS`` or a new local instance. Workers get this checkout first on
    ``PYTHONPATH``, so they import the same regkit as the driver. CourseError if Ray cannot start.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    python_path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    target = address or os.environ.get("RAY_ADDRESS") or "a new local Ray instance"
    # A new local instance (no dashboard) can fail to start on a busy machine: its raylet waits a fixed ~15 s
    # for the node agent (a Python process) to report its ports, then aborts. A second try finds the agent's
    # imports cached. (Connecting to a running cluster is tried once.)
    attempts = 2 if address is None and not os.environ.get("RAY_ADDRESS") else 1
    for attempt in range(attempts):
        try:
            ray.init(address=address, runtime_env={"env_vars": {"PYTHONPATH": python_path}}, log_to_driver=False,
                     include_dashboard=False)
            break
        except Exception as error:  # Ray raises plain Exception / ConnectionError / RuntimeError here
            ray.shutdown()
            if attempt + 1 == attempts:
                raise CourseError(f"--backend ray: could not start or connect to {target}: {error}") from error
    try:
        yield
    finally:
        ray.shutdown()


def map_ray(fn: Callable[[RunTask], dict], tasks: list[RunTask], workers: int | None, threads: int,
            gpus: float) -> Iterator[tuple[RunTask, Any]]:
    """Like :func:`map_local` with Ray tasks of ``threads`` CPUs and ``gpus`` GPUs each, at most
    ``workers`` at once (None: as the cluster's resources allow), inside a :func:`ray_session`."""
    import ray

    remote = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0)(fn)
    queue, pending = list(tasks), {}
    try:
        while queue or pending:
            while queue and (workers is None or len(pending) < workers):
                task = queue.pop(0)
                pending[remote.remote(task)] = task
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready)
            try:
                entry = ray.get(ready)
            except Exception as error:  # the task's exception, or the worker died
                entry = error
            yield task, entry
    finally:  # interrupted or stopped early: stop the running tasks (their kernels exit with them)
        for ref in pending:
            ray.cancel(ref, force=True)


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """Half the CPUs (at least 1); with ``threads = CPUs // workers`` each notebook gets two threads and
    the workers together never oversubscribe the cores (on 2 cores: one notebook at a time)."""
    return max(1, available_cpus() // 2)


# --- aggregation --------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _key(value: Any) -> Any:
    """A grid value as a table key: lists and dicts as JSON text, None (the profile's value) as "None"."""
    return json.dumps(value) if isinstance(value, (list, dict)) else "None" if value is None else value


def collect(plan: SweepPlan, out_dir: Path):
    """One row per recorded number of every successful run: grid values, seed, run_id, result, value."""
    import pandas as pd

    rows = []
    for run in plan.runs:
        run_dir = out_dir / run.run_id
        status = _read_json(run_dir / STATUS_FILE)
        if status.get("status") != "ok":
            continue
        swept = {name: _key(value) for name, value in run.swept.items()}
        for name, entry in read_results(run_dir / RESULTS_FILE).items():
            if _is_number(entry["value"]):
                rows.append(swept | {"run_id": run.run_id, "result": name, "value": float(entry["value"])})
    columns = [*plan.axes, *([SEED] if plan.seeds else []), "run_id", "result", "value"]
    return pd.DataFrame(rows, columns=columns)


def aggregate(values, axes: list[str]):
    """Per grid point and result: ``mean``, ``std`` (ddof=1; NaN for one seed) and ``n`` over seeds.

    NaN values (a diverged run) propagate into the mean instead of being skipped.
    """
    import numpy as np

    def std(s):
        return float(np.std(s.to_numpy(), ddof=1)) if len(s) > 1 else math.nan

    grouped = values.groupby([*axes, "result"], sort=False, dropna=False)["value"]  # every grid point keeps its row
    return grouped.agg(mean=lambda s: float(np.mean(s.to_numpy())), std=std, n="size").reset_index()


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _markdown(plan: SweepPlan, summary, outcomes: list[SweepOutcome], out_dir: Path) -> str:
    from regkit.course.report import _md_table

    counts = {s: sum(o.status == s for o in outcomes) for s in ("ok", "failed", "skipped")}
    seeds = f"seeds 0..{plan.seeds - 1} (mean, std with ddof=1, n = runs that succeeded)" if plan.seeds else "no seeds"
    lines = [
        f"# Sweep of {plan.notebook.name}", "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} in `{out_dir}`.", "",
        f"- profile: {plan.profile}; fixed parameters: "
        + (", ".join(f"{k}={v!r}" for k, v in plan.fixed.items()) or "none"),
        "- grid: " + ("; ".join(f"{k} = {', '.join(map(repr, v))}" for k, v in plan.grid.items()) or "none"),
        f"- {seeds}",
        f"- runs: {len(outcomes)}: {counts['ok']} ok, {counts['failed']} failed, "
        f"{counts['skipped']} skipped (ok before, resumed)", "",
    ]
    for result, table in summary.groupby("result", sort=False):
        rows = [[_format(r[a]) for a in plan.axes] + [_format(r["mean"]), _format(r["std"]), str(r["n"])]
                for _, r in table.iterrows()]
        lines += [f"## {result}", "", _md_table([*plan.axes, "mean", "std", "n"], rows), ""]
    failed = [o for o in outcomes if o.status == "failed"]
    lines += ["## Failed runs", "", _md_table(["run", "error"], [[f"`{o.run_id}`", o.error] for o in failed]), ""]
    return "\n".join(lines)


def _plots(plan: SweepPlan, summary, out_dir: Path) -> list[Path]:
    """One PNG per result: heatmap for two numeric axes, else lines against the first axis."""
    import matplotlib as mpl
    from matplotlib.figure import Figure

    from regkit.plots import heatmap, mean_lines, use_theme

    axes = [a for a in plan.axes if len(plan.grid[a]) > 1]
    if not axes:
        return []
    numeric = [a for a in axes if all(_is_number(v) for v in plan.grid[a])]
    written = []
    with mpl.rc_context():
        use_theme()
        for result, table in summary.groupby("result", sort=False):
            fig = Figure(figsize=(6.0, 4.2), layout="constrained")
            ax = fig.subplots()
            if len(axes) == 2 and len(numeric) == 2:
                heatmap(table.rename(columns={"mean": f"{result} (mean)"}), axes[0], axes[1], f"{result} (mean)",
                        best=None, fmt=".3g", ax=ax)
            else:
                x = (numeric or axes)[0]
                others = [a for a in axes if a != x]
                if x not in numeric:  # text, lists or None (the profile's value): categories on the x axis
                    table = table.assign(**{x: table[x].astype(str)})
                table = table.assign(group=table[others].astype(str).agg(", ".join, axis=1)) if others else table
                mean_lines(table, x, "mean", std="std", hue="group" if others else None, ax=ax)
                ax.set_ylabel(f"{result} (mean ± std)" if plan.seeds else result)
                if others:
                    ax.legend(title=", ".join(others))
            ax.set_title(f"{result}: mean over seeds" if plan.seeds else result)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=110)
            path = out_dir / "plots" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', result)}.png"
            write_atomically(path, buffer.getvalue())
            written.append(path)
    return written


# --- the sweep ------------------------------------------------------------------------------------

@dataclass
class SweepOutcome:
    run_id: str
    status: str  # "ok", "failed" or "skipped" (ok before, resume)
    message: str
    error: str = ""


@dataclass
class SweepResult:
    """What ``run_sweep`` did: one outcome per run, the aggregate table and the files written."""

    out_dir: Path
    plan: SweepPlan
    outcomes: list[SweepOutcome] = field(default_factory=list)
    summary: Any = None  # pandas DataFrame: grid values, result, mean, std, n
    files: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> list[SweepOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def _outcome(run: SweepRun, entry: dict[str, Any] | BaseException) -> SweepOutcome:
    if isinstance(entry, BaseException):
        error = f"the worker failed: {type(entry).__name__}: {entry}".strip()
        return SweepOutcome(run.run_id, "failed", f"FAILED {run.run_id}: {error}", error)
    if entry["status"] == "ok":
        return SweepOutcome(run.run_id, "ok", f"ok   {run.run_id} in {entry['duration_s']:.1f} s")
    return SweepOutcome(run.run_id, "failed", f"FAILED {run.run_id}: {entry['error']}", entry["error"])


def run_sweep(
    notebook: str | os.PathLike | CourseNotebook,
    grid: Mapping[str, Iterable[Any] | str] | Iterable[str] | None = None,
    seeds: int | None = None,
    *,
    profile: str = "quick",
    params: Mapping[str, Any] | None = None,
    workers: int | None = None,
    threads: int | None = None,
    backend: str = "local",
    address: str | None = None,
    gpus_per_run: float = 0.0,
    resume: bool = False,
    out_dir: str | Path | None = None,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    cell_timeout: float | None = None,
    root: str | Path = REPO_ROOT,
) -> SweepResult:
    """Run the sweep, then aggregate it; see the module docstring for what is written where.

    ``workers``: parallel runs (local default: half the CPUs; Ray default: as many as the
    cluster's CPUs allow). ``threads``: BLAS/OpenMP threads of each run (default: the CPUs
    divided by ``workers``; for Ray also the CPUs each task reserves, default 1).
    ``gpus_per_run``: GPUs each Ray task reserves (Ray sets ``CUDA_VISIBLE_DEVICES``).
    ``cell_timeout``: seconds per cell, rounded up (default the profile's; 0: no limit). Bad input
    raises CourseError before anything runs, and so does an ``out_dir`` that another run is writing
    to (see :mod:`regkit.course.folder_lock`).
    """
    plan = plan_sweep(notebook, grid, seeds, profile=profile, params=params, notebooks_dir=notebooks_dir)
    if backend not in BACKENDS:
        raise CourseError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    for name, value in (("workers", workers), ("threads", threads)):
        if value is not None:
            check_int(f"--{name}", value, error=CourseError)
    if not (_is_number(gpus_per_run) and gpus_per_run >= 0):
        raise CourseError(f"--gpus-per-run must be a number >= 0, got {gpus_per_run!r}")
    if gpus_per_run and backend != "ray":
        raise CourseError("--gpus-per-run needs --backend ray (the local backend shares this machine's devices)")
    if backend == "local":
        workers = workers or default_workers()
        threads = threads or max(1, available_cpus() // workers)
    else:
        threads = threads or 1
    cell_timeout = cell_timeout_s(cell_timeout, profile)
    out_dir = Path(out_dir) if out_dir is not None else SWEEPS_DIR / plan.notebook.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    # Ray first: if it cannot start, nothing is written
    with ray_session(address) if backend == "ray" else contextlib.nullcontext(), lock_folder(out_dir):
        return execute_sweep(plan, out_dir, resume=resume, backend=backend, workers=workers, threads=threads,
                             gpus_per_run=gpus_per_run, cell_timeout=cell_timeout, root=Path(root))


def execute_sweep(
    plan: SweepPlan, out_dir: Path, *, resume: bool, backend: str, workers: int | None,
    threads: int, gpus_per_run: float, cell_timeout: int | None, root: Path,
) -> SweepResult:
    """Run what ``resume`` leaves to do on the backend (Ray already connected), then aggregate; see
    :func:`run_sweep`."""
    result = SweepResult(out_dir, plan)
    todo, statuses = [], {}
    for run in plan.runs:
        if resume and already_done(_read_json(out_dir / run.run_id / STATUS_FILE), plan.notebook, run.parameters,
                                   out_dir / run.run_id):
            result.outcomes.append(SweepOutcome(run.run_id, "skipped", f"skip {run.run_id}: ok before"))
            print(result.outcomes[-1].message, flush=True)
            statuses[run.run_id] = "skipped"
        else:
            todo.append(run)
            statuses[run.run_id] = "pending"
    sweep_file = out_dir / "sweep.json"
    record = {
        "notebook": plan.notebook.name, "notebook_path": str(plan.notebook.path),
        "notebook_hash": plan.notebook.content_hash(), "profile": plan.profile, "fixed": plan.fixed,
        "grid": plan.grid, "seeds": plan.seeds, "backend": backend, "workers": workers, "threads": threads,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": [{"run_id": r.run_id, "swept": r.swept, "status": statuses[r.run_id]} for r in plan.runs],
    }
    write_json_atomically(sweep_file, record)

    provenance = environment(root)
    tasks = [RunTask(str(plan.notebook.path), run.parameters, str(out_dir / run.run_id), str(root),
                     cell_timeout, threads, provenance) for run in todo]
    by_dir = {task.run_dir: run for task, run in zip(tasks, todo, strict=True)}
    where = f"{workers} local worker{'s' * (workers != 1)}" if backend == "local" else "Ray tasks"
    print(f"sweep {plan.notebook.name}: {len(todo)} runs to execute on {where} ({threads} thread{'s' * (threads != 1)} each), "
          f"{len(plan.runs) - len(todo)} done before", flush=True)
    mapped = map_local(run_one, tasks, workers) if backend == "local" else map_ray(
        run_one, tasks, workers, threads, gpus_per_run)
    for task, entry in mapped:
        run = by_dir[task.run_dir]
        outcome = _outcome(run, entry)
        if isinstance(entry, BaseException):  # the worker died: record it, so that resume reruns it
            write_json_atomically(Path(task.run_dir) / STATUS_FILE, {
                "status": "failed", "parameters": run.parameters, "error": outcome.error} | provenance)
        result.outcomes.append(outcome)
        statuses[run.run_id] = outcome.status
        print(outcome.message, file=sys.stderr if outcome.status == "failed" else sys.stdout, flush=True)

    order = {run.run_id: i for i, run in enumerate(plan.runs)}
    result.outcomes.sort(key=lambda o: order[o.run_id])
    record["runs"] = [{"run_id": r.run_id, "swept": r.swept, "status": statuses[r.run_id]} for r in plan.runs]
    record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    values = collect(plan, out_dir)
    result.summary = aggregate(values, plan.axes)
    csv_file, md_file = out_dir / "summary.csv", out_dir / "summary.md"
    write_atomically(csv_file, result.summary.to_csv(index=False))
    write_atomically(md_file, _markdown(plan, result.summary, result.outcomes, out_dir))
    result.files = [sweep_file, csv_file, md_file, *_plots(plan, result.summary, out_dir)]
    write_json_atomically(sweep_file, record)
    return result
