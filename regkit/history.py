"""History: what a training run logged, one row per logged step, plus run metadata."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from regkit._files import write_atomically


class History:
    """Rows of ``{"step": s, metric: value, ...}`` with strictly increasing steps, and a ``meta`` dict.

    ``log(step, **values)`` merges into the last row when it has the same step, so training
    and evaluation metrics of one step share a row. ``df`` is a pandas DataFrame (one row per
    logged step, NaN where a metric was not logged), ``last(name)`` the latest logged value.
    ``to_dict()``/``from_dict()`` and ``save()``/``load()`` (JSON) round-trip exactly.
    """

    def __init__(self, rows: list[dict[str, Any]] | None = None, meta: Mapping[str, Any] | None = None):
        self.rows: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = dict(meta or {})
        for row in rows or []:
            row = dict(row)
            self.log(row.pop("step"), **row)

    def log(self, step: int, **values: float) -> None:
        """Record ``values`` at ``step`` (merged into the last row if it is the same step)."""
        if self.rows and step == self.rows[-1]["step"]:
            self.rows[-1].update(values)
        elif self.rows and step < self.rows[-1]["step"]:
            raise ValueError(f"step {step} is before the last logged step {self.rows[-1]['step']}")
        else:
            self.rows.append({"step": int(step), **values})

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.columns)

    @property
    def columns(self) -> list[str]:
        """``step`` then every metric in the order it was first logged."""
        names = {"step": None}
        for row in self.rows:
            names.update(dict.fromkeys(row))
        return list(names)

    def last(self, name: str) -> float:
        """The most recently logged value of ``name`` (KeyError if it was never logged)."""
        for row in reversed(self.rows):
            if name in row:
                return row[name]
        raise KeyError(f"{name!r} was never logged; logged: {', '.join(self.columns)}")

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [dict(row) for row in self.rows], "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        return cls(data["rows"], data.get("meta"))

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically (NaN/inf as JSON's non-standard literals, which ``json`` reads back)."""
        path = Path(path)
        write_atomically(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        last = self.rows[-1] if self.rows else {}
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items())
        return f"History({len(self)} rows; last: {shown})"

