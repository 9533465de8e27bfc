"""``python -m regkit.bench._grokking --out FILE``: the grokking part of the GPU check, timed.

The runs of notebook 06's ``full`` profile (the CPR paper's transformer setting,
``regkit.course.grokking.PROFILES["full"]``), seed 0, with ``stop_after_grokking`` on: each run ends at
its first evaluation with 99% train and validation accuracy. The same library calls as the
notebook, without papermill (the GPU image has none). The regularized methods run first, Adam
last (it may never generalize and run all its steps). After every run ``FILE`` (JSON) is
rewritten with one row per finished run (steps and seconds to 99% validation, and the target:
under ``TARGET_S`` seconds), and the histories are saved beside it, so a run stopped at its
budget keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from regkit.course.grokking import (
    METHODS,
    PROFILES,
    REGULARIZED,
    profile_run_kwargs,
    results_table,
    run,
    save_histories,
)

TARGET_S = 120.0
FORMAT = "regkit.bench.grokking/1"
ORDER = [*REGULARIZED, "adam"]


def summary(histories) -> list[dict]:
    """One JSON-ready row per run (`regkit.course.grokking.results_table`) plus ``target``: whether 99%
    validation accuracy came within ``TARGET_S`` seconds."""
    rows = json.loads(results_table(histories).reset_index().to_json(orient="records"))
    for row in rows:
        seconds = row["seconds to 99% val"]
        row["target"] = "met" if isinstance(seconds, (int, float)) and seconds < TARGET_S else "not met"
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m regkit.bench._grokking", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON summary (histories: <stem>.histories.json)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda, else mps, else cpu)")
    parser.add_argument("--methods", default=",".join(ORDER), help=f"comma-separated, in order (default {ORDER})")
    parser.add_argument("--steps", type=int, default=None, help="step budget of a run (default: the profile's)")
    parser.add_argument("--p", type=int, default=None, help="the modulus (default: the profile's; tiny for a dry run)")
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
    kw = profile_run_kwargs({**PROFILES["full"], "stop_after_grokking": True})
    kw.update({k: v for k, v in (("steps", args.steps), ("p", args.p)) if v is not None})
    print(f"grokking, notebook 06 full profile, seed 0, stop at 99%: {kw}", flush=True)
    histories, rows = {}, []
    for method in methods:
        histories[f"{method}/seed0"] = run(method, seed=0, device=args.device, **kw)
        rows = summary(histories)
        print(rows[-1], flush=True)
        save_histories(histories, args.out.with_name(f"{args.out.stem}.histories.json"), profile="full", stop_at=0.99)
        args.out.write_text(json.dumps({"format": FORMAT, "target_s": TARGET_S, "settings": kw, "runs": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
