"""The course's notebooks: discovery (``NN_topic.ipynb``), selection, parameters and their types.

A notebook's parameters are the literal assignments of its ``parameters``-tagged cell, as
``papermill.inspect_notebook`` reads them. A parameter's type is its annotation
(``steps: int = None``) or else the type of its default; a ``None`` default without an annotation
means "the profile's value" and accepts any literal (``settings`` checks it in the notebook).
A course notebook's parameters are also checked against its catalog (``regkit/course/catalog``):
their type, and their allowed values and range, before any kernel starts.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from regkit.course.profiles import PROFILES, check_value

NOTEBOOK_NAME = re.compile(r"^(\d\d)_\w+\.ipynb$")
_TYPES = {t.__name__: t for t in (int, float, str, bool, list, tuple, dict)}


class CourseError(ValueError):
    """Bad input to the course runner (profile, notebook selection, parameters)."""


@dataclass(frozen=True)
class Parameter:
    """One entry of a notebook's parameters cell."""

    name: str
    default: Any  # the literal's value
    annotation: str  # e.g. "int", "Optional[float]", "" if none
    help: str
    knob: Any = None  # the catalog's Knob of a course notebook's parameter

    @property
    def kind(self) -> type | None:
        """The declared type: the catalog's, else the annotation's, else the default's; None when unknown."""
        if self.knob is not None:
            return self.knob.kind
        match = re.fullmatch(r"(?:Optional\[)?\s*(\w+)\s*\]?", self.annotation)
        if match and match.group(1) in _TYPES:
            return _TYPES[match.group(1)]
        return None if self.default is None else type(self.default)

    def coerce(self, value: Any, notebook: str) -> Any:
        """``value`` converted to this parameter's type; text (from ``-p``) is parsed like papermill."""
        kind = self.kind
        where = f"parameter {self.name!r} of {notebook} (default {self.default!r})"
        if value is None or value == "None" and kind is not str:
            if self.default is not None:
                raise CourseError(f"{where} cannot be None")
            return None  # None: the profile's value
        if isinstance(value, str) and kind is not str:
            value = parse_text(value, kind, where)
        if not is_finite(value):
            raise CourseError(f"{where} must be finite, got {value!r}: nan and inf have no JSON form for the "
                              "manifest and result files; give a finite number")
        if kind is None:
            return value
        try:
            if self.knob is not None:
                return self.knob.check(value, where)
            return check_value(self.name, value, kind(), where)  # kind(): a sample of the type
        except (TypeError, ValueError) as err:
            raise CourseError(str(err)) from None


def is_finite(value: Any) -> bool:
    """False if ``value`` is or holds (in lists, tuples, dict values) a float nan or inf."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(map(is_finite, value))
    if isinstance(value, dict):
        return all(map(is_finite, value.values()))
    return True


def parse_text(text: str, kind: type | None, where: str) -> Any:
    """Parse a command-line value: for its declared type, else like papermill (bool, int, float, str)."""
    if kind is None:
        if text in ("True", "False"):
            return text == "True"
        for convert in (int, float):
            try:
                return convert(text)
            except ValueError:
                pass
        return text
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false"):
                raise ValueError
            return lowered == "true"
        if kind in (list, tuple, dict):
            value = ast.literal_eval(text)
            if not isinstance(value, (list, tuple) if kind is not dict else dict):
                raise ValueError
            return value
        if kind in (int, float):
            return kind(text)
    except (ValueError, SyntaxError):
        raise CourseError(f"{where} expects {kind.__name__}, got {text!r}") from None
    return text


@dataclass(frozen=True)
class CourseNotebook:
    """A notebook file ``NN_topic.ipynb`` of the course."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def number(self) -> str:
        return self.name[:2]

    def read(self) -> nbformat.NotebookNode:
        """The notebook (CourseError naming the file if it is not a readable notebook)."""
        try:
            return nbformat.read(self.path, as_version=4)
        except Exception as error:  # nbformat raises NotJSONError, ValueError, KeyError, ... for broken files
            raise CourseError(
                f"{self.path} is not a readable notebook ({type(error).__name__}: {error}); restore it "
                f"(e.g. git checkout -- {self.name}) or move it out of the notebook folder"
            ) from None

    def parameters(self) -> dict[str, Parameter]:
        """The parameters cell's entries, in order (CourseError if a default is not a literal)."""
        import papermill  # imported here: slow, and only the runner needs it

        from regkit.course.catalog import for_stem

        self.read()  # a clear error for a broken file, before papermill reads it
        catalog = for_stem(self.stem)
        knobs = catalog.knobs if catalog is not None else {}
        found = {}
        for name, p in papermill.inspect_notebook(str(self.path)).items():
            try:
                default = ast.literal_eval(p["default"])
            except (ValueError, SyntaxError):
                raise CourseError(
                    f"{self.name}: parameter {name} = {p['default']} is not a literal; the parameters "
                    "cell may hold only literals (derive values in the next cell)"
                ) from None
            annotation = "" if p["inferred_type_name"] == "None" else p["inferred_type_name"]
            found[name] = Parameter(name, default, annotation, p["help"], knobs.get(name))
        return found

    def parameters_cell_index(self) -> int:
        """Index of the first cell tagged ``parameters`` (-1 if there is none)."""
        cells = self.read().cells
        return next((i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])), -1)

    def content_hash(self) -> str:
        """sha256 of what executes: the cells' types and sources (outputs, ids and metadata excluded)."""
        cells = [[cell.cell_type, cell.source] for cell in self.read().cells]
        return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def discover(directory: str | Path) -> list[CourseNotebook]:
    """The notebooks ``NN_topic.ipynb`` in ``directory``, in order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CourseError(f"notebook directory {str(directory)!r} does not exist")
    return [CourseNotebook(p) for p in sorted(directory.glob("*.ipynb")) if NOTEBOOK_NAME.match(p.name)]


def select(notebooks: list[CourseNotebook], only: list[str] | None, what: str = "--only") -> list[CourseNotebook]:
    """The notebooks named by ``only`` (numbers "3"/"03", stems or file names; items may be comma lists).

    ``what`` names the argument in the error raised for an item that names no notebook.
    """
    if not only:
        return list(notebooks)
    wanted = [item.strip() for entry in only for item in entry.split(",") if item.strip()]
    if not wanted:
        raise CourseError(f"{what} {', '.join(map(repr, only))} names no notebook; give numbers or names, "
                          "e.g. 03 or 03_constrained (leave it out for all)")
    chosen = set()
    for item in wanted:
        matches = [
            nb for nb in notebooks
            if item in (nb.name, nb.stem) or (item.isdigit() and int(item) == int(nb.number))
        ]
        if not matches:
            choices = ", ".join(nb.stem for nb in notebooks) or "(none found)"
            raise CourseError(f"{what} {item!r} names no notebook; the notebooks are: {choices}")
        chosen.update(matches)
    return [nb for nb in notebooks if nb in chosen]


def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise CourseError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
