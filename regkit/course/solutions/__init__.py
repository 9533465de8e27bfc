"""Reference solutions of the course's exercises, one module per notebook (``nb01`` for notebook 01).

Each module holds ``exercise_K()`` functions, one per exercise with a computable answer (K its number in
the notebook), returning the answer that ``regkit.course.exercises.check`` expects, and ``DISCUSSIONS``:
Markdown for the open-ended exercises. Every solution function is self-contained (it imports what it needs
in its body), so its source runs as it is in a teacher's notebook (``python -m regkit.course build
--solutions``); `run_solutions` runs that source through the checks (``python -m regkit.course solutions``).
"""

from __future__ import annotations

import copy as copy_module
import importlib
import inspect
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import nbformat

from regkit.course.exercises import judge

NOTEBOOKS = tuple(f"{n:02d}" for n in range(11))


@dataclass(frozen=True)
class Outcome:
    exercise_id: str
    passed: bool
    seconds: float
    error: str = ""


def notebook_number(text: str) -> str:
    """``"1"``, ``"01"`` or ``"01_topic"`` -> ``"01"``; ValueError naming the known notebooks otherwise."""
    head = str(text).split("_")[0]
    number = f"{int(head):02d}" if head.isdigit() else head
    if number not in NOTEBOOKS:
        raise ValueError(f"no notebook {text!r} has exercises; known: {', '.join(NOTEBOOKS)}")
    return number


def module(notebook: str) -> ModuleType:
    """The solutions module of notebook ``"NN"`` (see `notebook_number`)."""
    return importlib.import_module(f"regkit.course.solutions.nb{notebook_number(notebook)}")


def solved(notebook: str) -> dict[str, str]:
    """``{"NN.K": function name}`` for the computable exercises of notebook ``"NN"``."""
    notebook = notebook_number(notebook)
    names = [name for name, _ in inspect.getmembers(module(notebook), inspect.isfunction)
             if name.startswith("exercise_")]  # fmt: skip
    return {f"{notebook}.{name.removeprefix('exercise_')}": name for name in names}


def _source(exercise_id: str) -> tuple[str, str]:
    """``(function name, dedented source)`` of the reference solution of ``exercise_id``."""
    notebook = exercise_id.split(".")[0]
    name = solved(notebook).get(exercise_id)
    if name is None:
        raise KeyError(f"no reference solution for exercise {exercise_id!r} in regkit.course.solutions.nb{notebook}")
    return name, textwrap.dedent(inspect.getsource(getattr(module(notebook), name)))


def teacher_code(exercise_id: str) -> str:
    """The code of the teacher's cell: the solution function, ``answer = ...`` and the check."""
    name, source = _source(exercise_id)
    return f'{source}\n\nanswer = {name}()\ncheck("{exercise_id}", answer)'


def discussion(exercise_id: str) -> str | None:
    """The Markdown discussion of an open-ended exercise, or None."""
    return getattr(module(exercise_id.split(".")[0]), "DISCUSSIONS", {}).get(exercise_id)


def run_solution(exercise_id: str) -> Outcome:
    """Run the teacher's code of ``exercise_id`` in a fresh namespace (as its notebook cell would) and judge it."""
    name, source = _source(exercise_id)
    start = time.perf_counter()
    namespace: dict = {}
    try:
        exec(compile(source, f"<solution {exercise_id}>", "exec"), namespace)
        passed, error = judge(exercise_id, namespace[name]()), ""
    except Exception as exc:  # a broken solution is a failed exercise, reported with its error
        passed, error = False, f"{type(exc).__name__}: {exc}"
    return Outcome(exercise_id, passed, time.perf_counter() - start, error)


def run_solutions(only: list[str] | None = None) -> list[Outcome]:
    """Every reference solution of the notebooks ``only`` (``"NN"``; default all), in order, judged."""
    notebooks = [notebook_number(nb) for nb in only] if only else NOTEBOOKS
    return [run_solution(exercise_id) for nb in notebooks for exercise_id in sorted(solved(nb))]


def teacher_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of the student notebook ``nb`` with the solutions filled in and the discussions added.

    Exercise cells carry ``metadata.exercise = "NN.K"``: a code cell's source is replaced by the reference
    solution (`teacher_code`), a Markdown cell of an open-ended exercise is followed by its discussion.
    """
    copy = nbformat.from_dict(copy_module.deepcopy(dict(nb)))
    cells = []
    for cell in copy.cells:
        exercise_id = cell.metadata.get("exercise")
        cells.append(cell)
        if exercise_id and cell.cell_type == "code":
            cell.source = teacher_code(exercise_id)
        elif exercise_id and discussion(exercise_id):
            cells.append(nbformat.v4.new_markdown_cell(f"**Discussion (teacher's copy).** {discussion(exercise_id)}",
                                                       metadata={"exercise_discussion": exercise_id}))
    copy.cells = cells
    return copy


def write_teacher_copies(notebooks_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write ``out_dir/NN_topic.ipynb`` for each course notebook in ``notebooks_dir``, solutions filled in."""
    sources = sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no notebooks NN_topic.ipynb in {notebooks_dir}: pass the course's notebooks folder")
    out = Path(out_dir)
    if out.resolve() == Path(notebooks_dir).resolve():
        raise ValueError(f"{out} is the notebooks folder: teacher copies must go elsewhere (the committed "
                         "notebooks stay without solutions)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        target = out / source.name
        nbformat.write(teacher_copy(nbformat.read(source, as_version=4)), target)
        written.append(target)
    return written
