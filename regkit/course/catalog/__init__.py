"""One home per notebook for its parameters and profiles: ``regkit/course/catalog/nbNN.py``.

Each module defines ``STEM`` (the notebook's file stem), ``KNOBS`` (the parameters a user may set:
name, type, one-line doc, allowed values) and ``PROFILES`` ({"quick": {...}, "full": {...}}: every
setting of the notebook, knobs included). Everything reads it: the notebook (its ``parameters``
cell is :func:`parameters_source`, its settings cell calls :func:`regkit.course.notebook_settings`),
``python -m regkit.course list``, the runner and the sweep (``-p`` / ``--grid`` values are checked
against the knobs before any kernel starts).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from regkit.course.profiles import PROFILE_ROWS, check_value

NUMBERS = ("00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10")


@dataclass(frozen=True)
class Knob:
    """A notebook parameter: ``None`` in the notebook means the profile's value."""

    name: str
    kind: type  # int, float, str, bool, list or dict
    doc: str
    choices: tuple = ()  # allowed values (for a list: allowed items)
    minimum: float | None = None  # for numbers (for a list: its items)
    length: int | None = None  # a list's required length

    def __post_init__(self):
        if "=" in self.doc:  # papermill's parameter parser drops a line whose comment holds "="
            raise ValueError(f"the doc of parameter {self.name!r} must not contain '=': {self.doc!r}")

    def check(self, value: Any, where: str) -> Any:
        """``value`` converted for this knob (an int for a float), else TypeError / ValueError naming it."""
        if value is None:  # a profile may leave a knob unset (e.g. device: the best available)
            return None
        value = check_value(self.name, value, self.kind(), where)
        # what choices and minimum apply to: a list's items, a dict's keys and values, else the value
        named = list(value) if self.kind in (list, dict) else [value]
        numbers = list(value.values()) if self.kind is dict else named
        if self.length is not None and len(named) != self.length:
            raise ValueError(f"{self.name}={value!r} must have {self.length} item(s) ({where})")
        if self.kind is list and not named:
            raise ValueError(f"{self.name}={value!r} must not be empty ({where})")
        for item in named:
            if self.choices and item not in self.choices:
                raise ValueError(f"{self.name}={value!r}: {item!r} is not one of {', '.join(map(repr, self.choices))}")
        for number in numbers:
            if self.minimum is not None and not (
                isinstance(number, (int, float)) and not isinstance(number, bool) and number >= self.minimum
            ):
                raise ValueError(f"{self.name}={value!r} must be >= {self.minimum} ({where})")
        return value


@dataclass(frozen=True)
class Catalog:
    number: str
    stem: str
    knobs: dict[str, Knob]
    profiles: Mapping[str, Mapping[str, Any]]  # the rows PROFILE_ROWS names

    def row(self, profile: str) -> dict[str, Any]:
        """Every setting of ``profile``: the row it is based on (the "quick" row where this notebook has no such
        row, e.g. "cpu" for a notebook without evidence experiments), with its notebook-wide replacements."""
        if profile not in PROFILE_ROWS:
            raise ValueError(f"profile={profile!r} is not one of: {', '.join(map(repr, PROFILE_ROWS))}")
        base, replaced = PROFILE_ROWS[profile]
        row = dict(self.profiles.get(base, self.profiles["quick"]))
        return row | {name: value for name, value in replaced.items() if name in row}


def load(number: str) -> Catalog:
    """The catalog of notebook ``number`` ("03"); ValueError for a notebook without one."""
    if number not in NUMBERS:
        raise ValueError(f"no parameter catalog for notebook {number!r}; the catalogs are: {', '.join(NUMBERS)}")
    module = importlib.import_module(f"regkit.course.catalog.nb{number}")
    return Catalog(number, module.STEM, {k.name: k for k in module.KNOBS}, module.PROFILES)


def for_stem(stem: str) -> Catalog | None:
    """The catalog of the course notebook with this file stem, None for any other notebook."""
    if stem[:2] in NUMBERS:
        catalog = load(stem[:2])
        if catalog.stem == stem:
            return catalog
    return None


def parameters_source(number: str) -> str:
    """The text of notebook ``number``'s ``parameters`` cell: ``profile`` and every knob, None by default."""
    catalog = load(number)
    lines = ['profile = "quick"  # ' + ", ".join(PROFILE_ROWS) + "; None below: the profile's value"]
    lines += [f"{k.name}: {k.kind.__name__} = None  # {k.doc}" for k in catalog.knobs.values()]
    return "\n".join(lines)
