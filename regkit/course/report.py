"""The course summary: ``summary.md`` and ``summary.html`` of a run directory.

Two tables: each notebook's status (duration, parameters, failure), and every recorded result
next to the published number of the same key in ``regkit.course.references.REFERENCES`` with the
difference, our setting (profile and the ``meta`` the notebook recorded, e.g. the dataset actually
used) and the paper's. Quick-profile rows are labelled as sanity checks, never as reproductions.
"""

from __future__ import annotations

import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from regkit.course.recording import read_results, write_atomically
from regkit.course.references import REFERENCES

QUICK_NOTE = (
    "Numbers from a profile other than `full` come from small settings (few steps, small or substitute "
    "datasets): they are sanity checks of the code, not reproductions of the published values."
)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."
    if isinstance(value, int) or not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def _comparison(profile: str) -> str:
    return "full profile" if profile == "full" else f"{profile} profile: sanity check, not a reproduction"


def summary_tables(out_dir: Path, manifest: dict[str, Any]) -> tuple[list, list, list]:
    """(notebook rows, rows with a reference, rows without) of a run directory's manifest and results."""
    notebooks, compared, others = [], [], []
    for stem, entry in sorted(manifest.get("notebooks", {}).items()):
        params = dict(entry.get("parameters", {}))
        profile = params.pop("profile", "?")
        failure = entry.get("error") or ""
        notebooks.append([
            entry["notebook"], entry["status"].upper() if entry["status"] != "ok" else "ok",
            f"{entry.get('duration_s', 0):.1f} s", profile,
            ", ".join(f"{k}={v!r}" for k, v in params.items()) or "defaults",
            entry.get("device", ""), entry.get("git_commit", "")[:12], failure,
        ])
        results = read_results(out_dir / entry["results"]) if entry.get("results") else {}
        for name, result in results.items():
            meta = ", ".join(f"{k}={v}" for k, v in result.get("meta", {}).items())
            setting = "; ".join(s for s in (_comparison(profile), meta) if s)
            if entry["status"] != "ok":
                setting += "; notebook failed"
            value, ref = result["value"], REFERENCES.get(name)
            if ref is None:
                others.append([stem, name, _number(value), setting])
                continue
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            difference = f"{value - ref.value:+.3g}" if numeric else "n/a"
            compared.append([
                stem, name, _number(value), _number(ref.value), difference, ref.unit, setting, ref.setting, ref.source,
            ])
    return notebooks, compared, others


NOTEBOOK_HEADERS = ["Notebook", "Status", "Duration", "Profile", "Parameters", "Device", "Commit", "Failure"]
COMPARED_HEADERS = [
    "Notebook", "Result", "Ours", "Published", "Ours - published", "Unit", "Our setting", "Published setting", "Source",
]
OTHER_HEADERS = ["Notebook", "Result", "Value", "Our setting"]


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) if rows else "(none)"


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>\n" for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def write_summary(out_dir: str | Path, manifest: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``summary.md`` and ``summary.html`` into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    notebooks, compared, others = summary_tables(out_dir, manifest)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"regkit course summary: {out_dir.name}"
    sections = [
        ("Notebooks", NOTEBOOK_HEADERS, notebooks),
        ("Results with a published reference", COMPARED_HEADERS, compared),
        ("Other recorded results", OTHER_HEADERS, others),
    ]
    md = [f"# {title}", "", f"Generated {stamp} from `{out_dir}`.", "", QUICK_NOTE, ""]
    for heading, headers, rows in sections:
        md += [f"## {heading}", "", _md_table(headers, rows), ""]
    md_path = out_dir / "summary.md"
    write_atomically(md_path, "\n".join(md))

    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f0f0f0}"
    )
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>Generated {stamp} from <code>{html.escape(str(out_dir))}</code>.</p>",
            f"<p>{html.escape(QUICK_NOTE).replace('`full`', '<code>full</code>')}</p>"]
    for heading, headers, rows in sections:
        body += [f"<h2>{html.escape(heading)}</h2>", _html_table(headers, rows)]
    page = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
    html_path = out_dir / "summary.html"
    write_atomically(html_path, page)
    return md_path, html_path
