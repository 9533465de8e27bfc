"""The GPU check's reports: ``report.json`` (everything) and ``report.md`` (for people), one folder.

The report (`regkit.bench.gpu.run_check`) is a dict: ``mode`` (``gpu`` or ``dry-run``), ``budget_s``,
``seconds``, ``environment``, ``parts`` (each: ``name``, ``about``, ``status``, ``seconds``,
``budget_s``, ``command``, ``returncode``, ``log``, ``output_tail``, ``details``) and ``failed``
(the names of the parts whose status is not ``ok``).
"""

from __future__ import annotations

import json
from pathlib import Path

FORMAT = "regkit.bench.gpu/1"
GROKKING_COLUMNS = ("run", "steps to 99% val", "seconds to 99% val", "target", "last step", "final val acc")


def write_reports(report: dict, out: Path) -> tuple[Path, Path]:
    """Write ``out/report.json`` and ``out/report.md``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "report.json", out / "report.md"
    paths[0].write_text(json.dumps({"format": FORMAT, **report}, indent=1))
    paths[1].write_text(markdown(report))
    return paths


def summary_table(report: dict) -> str:
    """A markdown table: one row per part with its status, seconds and budget."""
    lines = ["| part | status | seconds | budget s | what |", "|---|---|---|---|---|"]
    for part in report["parts"]:
        status = part["status"] if part["status"] == "ok" else f"**{part['status']}**"
        lines.append(f"| {part['name']} | {status} | {part['seconds']:.1f} | {part['budget_s']:.0f} | {part['about']} |")
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """The whole report for people: environment, the summary table, then each part's result."""
    env, parts = report["environment"], report["parts"]
    ok = len(parts) - len(report["failed"])
    packages = ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in env["packages"].items())
    lines = [f"# GPU check ({report['mode']}): {ok} of {len(parts)} parts ok", "",
             f"{env['device']}; torch {env['torch']} (CUDA {env['cuda'] or 'none'}); Python {env['python']}; "
             f"{env['cpus']} CPUs; commit {env['commit'] or 'unknown'}; started {env['started']}; "
             f"{report['seconds']:.0f} s of a {report['budget_s']:.0f} s budget.", "",
             f"Packages: {packages}.", "", summary_table(report), ""]  # fmt: skip
    if report["failed"]:
        lines += [f"Not ok: {', '.join(report['failed'])} (see each part's log).", ""]
    for part in parts:
        lines += [f"## {part['name']}: {part['status']}", "", f"`python {' '.join(part['command'])}`", ""]
        lines += _details(part) + ["```text", part["output_tail"].rstrip(), "```", ""]
    return "\n".join(lines)


def _details(part: dict) -> list[str]:
    """Markdown lines for a part's details: the tests' counts, the grokking runs' table."""
    d = part["details"]
    if "passed" in d:
        lines = [f"{d['tests']} tests: {d['passed']} passed, {d['failed']} failed, {d['errors']} errors, "
                 f"{d['skipped']} skipped.", ""]  # fmt: skip
        return lines + ([f"- not passed: `{name}`" for name in d["not passed"]] + [""] if d["not passed"] else [])
    if "runs" in d:
        header = [f"Target: 99% validation in under {d['target_s']:.0f} s.", "",
                  "| " + " | ".join(GROKKING_COLUMNS) + " |", "|" + "---|" * len(GROKKING_COLUMNS)]  # fmt: skip
        return header + ["| " + " | ".join(str(run.get(c)) for c in GROKKING_COLUMNS) + " |" for run in d["runs"]] + [""]
    return []
