"""Record a notebook's key results: ``record(name, value, **meta)``, ``results()`` and ``recorded()``.

``record`` prints nothing (a notebook records many numbers); ``recorded()`` shows them once, as a
table, at the end of the notebook.

Under the course runner the environment variable ``REGKIT_RESULTS_FILE`` names a JSON file beside
the executed notebook; each ``record`` merges one entry into it atomically (read, update, write a
temporary file in the same folder, ``os.replace``), so the file is always complete, valid JSON.
Outside the runner (variable unset) values are kept in memory for this Python process.

File format: ``{name: {"value": value, "meta": {...}}}``; ``meta`` says what the number is
(``dataset="fashion_mnist"``, ``unit="%"``, ...) and is shown beside it in the course summary.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from regkit._files import write_atomically

RESULTS_FILE_ENV = "REGKIT_RESULTS_FILE"

_interactive: dict[str, dict[str, Any]] = {}


def to_json_value(value: Any, name: str = "value") -> Any:
    """Convert ``value`` to plain JSON types: tensors and numpy values via ``.item()``/``.tolist()``.

    Accepts bool, int, float, str, None, and lists/tuples/dicts (str keys) of those, plus
    anything with ``tolist()`` (torch tensors, numpy arrays and scalars). ``name`` is used in errors.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist") and callable(value.tolist):  # torch / numpy; 0-d gives a scalar
        return to_json_value(value.tolist(), name)
    if isinstance(value, (list, tuple)):
        return [to_json_value(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{name}: dict keys must be str, got {bad[0]!r}")
        return {k: to_json_value(v, f"{name}[{k!r}]") for k, v in value.items()}
    raise TypeError(
        f"{name}={value!r} of type {type(value).__name__} is not JSON-safe; record numbers, strings, "
        "bools, lists or dicts of those, tensors or numpy values"
    )


def read_results(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The entries of a results file, ``{name: {"value": ..., "meta": {...}}}``; {} if it is missing."""
    path = Path(path)
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json_atomically(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` with :func:`write_atomically` (never half-written)."""
    # insertion order: results appear in the order recorded
    write_atomically(path, json.dumps(data, indent=2) + "\n")


def _format(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    return value if isinstance(value, str) else repr(value)


def _entries() -> dict[str, dict[str, Any]]:
    target = os.environ.get(RESULTS_FILE_ENV)
    return read_results(target) if target else _interactive


def record(name: str, value: Any, **meta: Any) -> Any:
    """Record the result ``name = value`` (with optional ``meta``) for the course summary.

    Use the key of a published number in ``regkit.course.references.REFERENCES`` when the experiment
    corresponds to it (the summary then shows both), and say what was actually run in ``meta``::

        record("cpr.cifar100.resnet18.adamw.acc", 100 * acc, dataset=data.name, steps=cfg.steps)

    Returns the stored (JSON-converted) value; prints nothing (``recorded()`` shows the table).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"record: name must be a non-empty str, got {name!r}")
    entry = {"value": to_json_value(value, name), "meta": to_json_value(meta, f"{name} meta")}
    target = os.environ.get(RESULTS_FILE_ENV)
    if target:
        path = Path(target)
        data = read_results(path)
        data[name] = entry
        write_json_atomically(path, data)
    else:
        _interactive[name] = entry
    return entry["value"]


def results() -> dict[str, Any]:
    """The values recorded so far, ``{name: value}``: from the runner's results file, else from memory."""
    return {name: entry["value"] for name, entry in _entries().items()}


def recorded():
    """The results recorded so far as a table (a pandas DataFrame, one row per result): ``result``,
    ``value`` (6 significant digits), ``unit`` and the other ``meta`` as ``details``. A notebook's last
    cell shows it; it is empty (no rows) before anything was recorded."""
    import pandas as pd

    rows = []
    for name, entry in _entries().items():
        meta = dict(entry["meta"])
        unit = meta.pop("unit", "")
        rows.append({"result": name, "value": _format(entry["value"]), "unit": unit,
                     "details": ", ".join(f"{k}={_format(v)}" for k, v in meta.items())})
    return pd.DataFrame(rows, columns=["result", "value", "unit", "details"])
