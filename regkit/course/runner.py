"""Run the course's notebooks with papermill: ``run_course(profile, only, params, resume)``.

For each selected notebook ``NN_topic.ipynb`` (in order) the runner injects ``profile`` and the
user's parameters, executes it with the ``python3`` kernel in the repository root, and writes to
``out_dir`` (default ``runs/<profile>/``):

- ``NN_topic.ipynb``: the executed notebook (kept, partial, when a cell fails), readable offline: its
  progress bars (tqdm on stderr, widget views) are dropped and the cell papermill injects with the
  run's parameters is labelled (``regkit.course.book.clean``),
- ``NN_topic.results.json``: what the notebook ``record``-ed,
- ``manifest.json``: per notebook its parameters, content hash, status, failing cell and error,
  duration, regkit git commit, torch version and device (``resume`` reads it),
- ``summary.md`` / ``summary.html``: status and results next to the published reference numbers.

Every file is written atomically: a notebook's executed copy and results are written as hidden
``.NAME.partial.EXT`` files while it runs and moved into place when it ends, so an interrupted run
leaves no half-written results. A failing notebook does not stop the others; it is reported as
``FAILED NN_topic.ipynb: cell 12 (In [9]) raised ValueError: ...`` (``cell`` indexes the source
notebook's cells from 0, ``In [n]`` is the execution count shown in the executed copy).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from regkit.course.folder_lock import lock_folder
from regkit.course.notebook import CourseError, CourseNotebook, check_profile, discover, select
from regkit.course.recording import RESULTS_FILE_ENV, read_results, write_json_atomically
from regkit.course.report import write_summary
from regkit.headless import HEADLESS_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
RUNS_DIR = REPO_ROOT / "runs"
KERNEL_NAME = "python3"
# Per-cell time limit: quick notebooks take minutes in total, so a stuck cell fails CI fast.
DEFAULT_CELL_TIMEOUT_S = {"quick": 900, "full": 12 * 3600, "cpu": 1800}


@dataclass
class Outcome:
    """What happened to one notebook in this run."""

    notebook: str
    status: str  # "ok", "failed" or "skipped" (ok before, unchanged)
    message: str


@dataclass
class CourseRun:
    """The result of ``run_course``: one outcome per selected notebook, and the report's paths."""

    out_dir: Path
    outcomes: list[Outcome] = field(default_factory=list)
    summary: tuple[Path, Path] | None = None

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def resolve_parameters(
    notebooks: list[CourseNotebook], profile: str, params: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Per notebook stem, the parameters to inject: ``profile`` plus each user value its cell declares.

    A user parameter applies to every selected notebook that declares it; CourseError if none does,
    if a value does not fit the declared type, or if a notebook has no ``profile`` parameter.
    """
    params = dict(params or {})
    if "profile" in params:
        raise CourseError("set the profile with --profile (profile=...), not as a parameter")
    declared = {nb.stem: nb.parameters() for nb in notebooks}
    for nb in notebooks:
        if "profile" not in declared[nb.stem]:
            raise CourseError(f"{nb.name}: its parameters cell must define profile = \"quick\"")
    for name in params:
        if not any(name in d for d in declared.values()):
            listing = "; ".join(
                f"{stem}: {', '.join(n for n in d if n != 'profile') or '(none)'}" for stem, d in declared.items()
            )
            raise CourseError(f"unknown parameter {name!r}; the selected notebooks' parameters are: {listing}")
    return {
        nb.stem: {"profile": profile}
        | {name: declared[nb.stem][name].coerce(value, nb.name) for name, value in params.items()
           if name in declared[nb.stem]}
        for nb in notebooks
    }


def environment(root: Path = REPO_ROOT) -> dict[str, str]:
    """Provenance of a run: regkit's git commit (``+dirty`` with uncommitted changes), torch, device.

    The device is what torch in the runner's process sees (the kernels inherit its environment).
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        if git("status", "--porcelain", "--untracked-files=no").strip():
            commit += "+dirty"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown (not a git checkout)"
    try:
        torch_version = importlib.metadata.version("torch")
        import torch

        if torch.cuda.is_available():
            device = f"cuda ({torch.cuda.get_device_name(0)})"
        elif torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    except (importlib.metadata.PackageNotFoundError, ImportError):
        torch_version, device = "not installed", "unknown"
    return {"git_commit": commit, "torch": torch_version, "device": device}


@contextlib.contextmanager
def kernel_environment(results_file: Path, root: Path, env: Mapping[str, str] | None = None) -> Iterator[None]:
    """Set the variables the kernel inherits (results file, headless mode, PYTHONPATH with the repo root,
    ``env``); the profile reaches the notebook as its ``profile`` parameter."""
    env = dict(env or {})
    saved = {k: os.environ.get(k) for k in (RESULTS_FILE_ENV, HEADLESS_ENV, "PYTHONPATH", *env)}
    os.environ[RESULTS_FILE_ENV] = str(results_file)
    os.environ[HEADLESS_ENV] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), saved["PYTHONPATH"]) if p)
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_manifest(out_dir: str | Path) -> dict[str, Any]:
    """A run directory's ``manifest.json`` (``{"notebooks": {stem: entry}}``; empty if there is none).

    CourseError naming the file if it is not a manifest (e.g. truncated or edited by hand).
    """
    path = Path(out_dir) / "manifest.json"
    if not path.exists():
        return {"notebooks": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        problem = f"is not valid JSON ({error})"
    else:
        if isinstance(manifest, dict) and isinstance(manifest.get("notebooks"), dict):
            return manifest
        problem = 'is not a manifest ({"notebooks": {...}})'
    raise CourseError(f"{path} {problem}; it records the notebooks run into {out_dir}: delete it (the next run "
                      "records them afresh; --resume then reruns every notebook) or choose another --out")


def cell_timeout_s(value: float | None, profile: str) -> int | None:
    """The per-cell limit for nbclient: ``value`` seconds rounded up (None: the profile's default; 0: no limit).

    CourseError unless ``value`` is a finite number >= 0.
    """
    if value is None:
        value = DEFAULT_CELL_TIMEOUT_S[profile]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
        raise CourseError(f"--cell-timeout must be a number of seconds >= 0 (0: no limit), got {value!r}")
    return math.ceil(value) or None


def already_done(entry: dict[str, Any], nb: CourseNotebook, parameters: dict[str, Any], out_dir: Path) -> bool:
    """Whether a manifest entry is a success of this notebook's content with these parameters (for resume)."""
    return (
        entry.get("status") == "ok" and entry.get("parameters") == parameters
        and entry.get("notebook_hash") == nb.content_hash() and (out_dir / nb.name).exists()
    )


def describe_failure(
    error: BaseException, nb: CourseNotebook, cell_timeout: float | None
) -> tuple[int | None, str, str]:
    """(failing cell's index in the source notebook or None, one-line description, traceback text)."""
    from papermill.exceptions import PapermillExecutionError, strip_color

    if not isinstance(error, PapermillExecutionError):
        return None, f"{type(error).__name__}: {error}".strip(), ""
    # papermill's index counts the injected-parameters cell it inserted after the parameters cell
    index = error.cell_index - (error.cell_index > nb.parameters_cell_index())
    what = f"{error.ename}: {error.evalue}" if error.evalue else error.ename
    if error.ename == "KeyboardInterrupt" and cell_timeout:
        what += f" (interrupted: the cell ran longer than the {cell_timeout:g} s per-cell timeout)"
    return index, f"cell {index} (In [{error.exec_count}]) raised {what}", strip_color("\n".join(error.traceback))


KERNEL_START_ATTEMPTS = 3
"""How often a notebook's kernel is started before its start failure is reported (no cell ran yet)."""


def kernel_failed_to_start(error: BaseException) -> bool:
    """Whether ``error`` is jupyter_client's report that a kernel died or hung before its first reply.

    Kernels started at the same moment (parallel sweep workers) can pick the same free TCP port,
    and one dies with "Address already in use"; no cell has run then, so starting again is safe.
    """
    return isinstance(error, RuntimeError) and str(error).startswith(
        ("Kernel died before replying to kernel_info", "Kernel didn't respond in"))


def partial_path(path: Path) -> Path:
    """Where ``path`` is written while its notebook runs: ``.NAME.partial.EXT`` beside it."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def tidy_executed(path: Path) -> None:
    """Clean an executed notebook in place for offline reading (`regkit.course.book.clean`)."""
    import nbformat

    from regkit.course.book import clean

    nb = nbformat.read(path, as_version=4)
    nbformat.write(clean(nb), path)


def execute(
    nb: CourseNotebook, parameters: dict[str, Any], out_dir: Path, *, root: Path, cell_timeout: float | None,
    log_output: bool, progress_bar: bool, results_name: str | None = None, env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Execute one notebook; return its manifest entry (status ok or failed).

    Writes ``out_dir/NN_topic.ipynb`` (the executed notebook) and ``out_dir/<results_name>``
    (default ``NN_topic.results.json``: what the notebook recorded). While the notebook runs,
    papermill and ``record`` write hidden ``.NAME.partial.EXT`` files, moved into place once the
    notebook finished or failed: an interrupted execution (Ctrl-C, a killed process) leaves no
    results file, and the previous run's files are removed first. ``env``: extra variables
    for the kernel (e.g. ``OMP_NUM_THREADS``).
    """
    import papermill

    executed = out_dir / nb.name
    results_file = out_dir / (results_name or f"{nb.stem}.results.json")
    writing = {path: partial_path(path) for path in (executed, results_file)}
    for path in [*writing, *writing.values()]:
        path.unlink(missing_ok=True)  # never report a previous run's numbers
    entry: dict[str, Any] = {
        "notebook": nb.name, "parameters": parameters, "notebook_hash": nb.content_hash(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    start = time.perf_counter()
    try:
        with kernel_environment(writing[results_file], root, env):
            for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
                try:
                    papermill.execute_notebook(
                        str(nb.path), str(writing[executed]), parameters=parameters, kernel_name=KERNEL_NAME,
                        cwd=str(root), progress_bar=progress_bar, log_output=log_output,
                        execution_timeout=cell_timeout, interrupt_on_timeout=True,
                    )
                    break
                except RuntimeError as error:
                    if not kernel_failed_to_start(error) or attempt == KERNEL_START_ATTEMPTS:
                        raise
                    print(f"{nb.name}: the kernel did not start ({error}); starting another "
                          f"(attempt {attempt + 1} of {KERNEL_START_ATTEMPTS})", flush=True)
        entry.update(status="ok", failed_cell=None, error=None, traceback=None)
    except Exception as error:  # any failure of one notebook is reported; the others still run
        cell, message, traceback = describe_failure(error, nb, cell_timeout)
        entry.update(status="failed", failed_cell=cell, error=message, traceback=traceback)
    if writing[executed].exists():
        tidy_executed(writing[executed])
    for path, partial in writing.items():
        if partial.exists():
            os.replace(partial, path)
    entry["duration_s"] = round(time.perf_counter() - start, 2)
    entry["executed"] = executed.name if executed.exists() else None
    entry["results"] = results_file.name if results_file.exists() else None
    return entry


def run_course(
    profile: str = "quick",
    only: list[str] | None = None,
    params: dict[str, Any] | None = None,
    *,
    resume: bool = False,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    out_dir: str | Path | None = None,
    cell_timeout: float | None = None,
    log_output: bool = False,
    progress_bar: bool | None = None,
    root: str | Path = REPO_ROOT,
) -> CourseRun:
    """Execute the selected notebooks in order; see the module docstring for what is written where.

    ``params`` values may be text (as from ``-p name value``: parsed for the declared type) or
    Python values (type-checked). ``cell_timeout`` (seconds, rounded up) defaults to
    ``DEFAULT_CELL_TIMEOUT_S[profile]``; 0: no limit. ``progress_bar`` defaults to on in a terminal
    outside CI. Bad input raises CourseError before anything runs, and so does an ``out_dir`` that
    another run is writing to (see :mod:`regkit.course.folder_lock`).
    """
    check_profile(profile)
    cell_timeout = cell_timeout_s(cell_timeout, profile)
    available = discover(notebooks_dir)
    selected = select(available, only)
    parameters = resolve_parameters(selected, profile, params)
    out_dir = Path(out_dir) if out_dir is not None else RUNS_DIR / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    if progress_bar is None:
        progress_bar = sys.stderr.isatty() and not os.environ.get("CI")
    if not selected:
        print(f"no notebooks NN_topic.ipynb in {notebooks_dir}", flush=True)
    with lock_folder(out_dir):
        manifest = load_manifest(out_dir)
        return execute_all(selected, parameters, manifest, out_dir, resume=resume, root=Path(root),
                           cell_timeout=cell_timeout, log_output=log_output, progress_bar=progress_bar)


def execute_all(
    selected: list[CourseNotebook], parameters: dict[str, dict[str, Any]], manifest: dict[str, Any], out_dir: Path,
    *, resume: bool, root: Path, cell_timeout: int | None, log_output: bool, progress_bar: bool,
) -> CourseRun:
    """Execute (or, resuming, skip) each notebook in order, updating the manifest; then write the summary."""
    provenance = environment(root)
    run = CourseRun(out_dir)
    for nb in selected:
        if resume and already_done(manifest["notebooks"].get(nb.stem, {}), nb, parameters[nb.stem], out_dir):
            run.outcomes.append(Outcome(nb.name, "skipped", f"skip {nb.name}: ok before with the same parameters"))
            print(run.outcomes[-1].message, flush=True)
            continue
        shown = ", ".join(f"{k}={v!r}" for k, v in parameters[nb.stem].items())
        print(f"run  {nb.name} ({shown})", flush=True)
        if manifest["notebooks"].pop(nb.stem, None) is not None:  # its files are about to be replaced
            write_json_atomically(out_dir / "manifest.json", manifest)
        entry = execute(
            nb, parameters[nb.stem], out_dir, root=root, cell_timeout=cell_timeout,
            log_output=log_output, progress_bar=progress_bar,
        ) | provenance
        manifest["notebooks"][nb.stem] = entry
        write_json_atomically(out_dir / "manifest.json", manifest)
        if entry["status"] == "ok":
            recorded = len(read_results(out_dir / entry["results"])) if entry["results"] else 0
            outcome = Outcome(nb.name, "ok", f"ok   {nb.name} in {entry['duration_s']:.1f} s, {recorded} results")
            print(outcome.message, flush=True)
        else:
            outcome = Outcome(nb.name, "failed", f"FAILED {nb.name}: {entry['error']}")
            print(f"{outcome.message}\n       executed notebook: {out_dir / nb.name}", file=sys.stderr, flush=True)
        run.outcomes.append(outcome)
    run.summary = write_summary(out_dir, manifest)
    return run
