"""``python -m regkit.course {run,sweep,list,evidence,solutions,build,book}``: run the course's notebooks, sweep
one over a grid, list them, print the claim table of the packaged cpu-profile evidence; run the exercises'
reference solutions, write teacher copies, build the offline book."""

from __future__ import annotations

import argparse
import logging
import sys

from regkit.course.lifetime import stop_on_signals
from regkit.course.listing import list_notebooks
from regkit.course.notebook import CourseError
from regkit.course.profiles import PROFILES
from regkit.course.runner import DEFAULT_CELL_TIMEOUT_S, NOTEBOOKS_DIR, RUNS_DIR, run_course
from regkit.course.sweep import BACKENDS, SWEEPS_DIR, run_sweep


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m regkit.course", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="execute the notebooks with papermill, then write the summary")
    run.add_argument("--profile", default="quick", help=f"one of {', '.join(PROFILES)} (default quick)")
    run.add_argument("--only", action="append", metavar="NB",
                     help="notebook number or name, repeatable or comma-separated (default: all)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="set a notebook parameter (applies to every selected notebook that declares it)")
    run.add_argument("--resume", action="store_true",
                     help="skip notebooks that already succeeded with the same parameters and content")
    run.add_argument("--out", metavar="DIR", help=f"output directory (default {RUNS_DIR}/<profile>)")
    run.add_argument("--notebooks", default=str(NOTEBOOKS_DIR), metavar="DIR", help="notebook directory")
    run.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                     help="per-cell limit in seconds (rounded up), 0 for none (default: " + ", ".join(
                         f"{p} {t} s" for p, t in DEFAULT_CELL_TIMEOUT_S.items()) + ")")
    run.add_argument("--log-output", action="store_true", help="stream the notebooks' output to the log")

    sweep = commands.add_parser(
        "sweep", help="run one notebook over a parameter grid and seeds, in parallel; aggregate over seeds")
    sweep.add_argument("notebook", metavar="NOTEBOOK", help="notebook number or name, or a path to a .ipynb file")
    sweep.add_argument("--grid", nargs="+", action="extend", default=[], metavar="NAME=V1,V2",
                       help="swept parameters, e.g. --grid lr=1e-3,3e-3 weight_decay=0,0.1 (all combinations); "
                            "write list values in brackets: seeds=[0,1],[2,3]")
    sweep.add_argument("--seeds", type=int, metavar="N",
                       help="run every combination with seeds = [0] .. [N-1] (seed = 0 .. N-1 where a notebook has seed)")
    sweep.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                       help="a fixed parameter of every run")
    sweep.add_argument("--profile", default="quick", help=f"one of {', '.join(PROFILES)} (default quick)")
    sweep.add_argument("--backend", default="local", choices=BACKENDS,
                       help="local: a process pool on this machine; ray: Ray tasks (default local)")
    sweep.add_argument("--workers", type=int, metavar="N",
                       help="parallel runs (local default: half the CPUs; ray default: what the cluster's CPUs allow)")
    sweep.add_argument("--threads", type=int, metavar="N",
                       help="BLAS/OpenMP threads per run (local default: CPUs / workers; ray default 1, "
                            "also the CPUs each Ray task reserves)")
    sweep.add_argument("--address", metavar="ADDR",
                       help="Ray cluster address (default: $RAY_ADDRESS, else a new local Ray instance)")
    sweep.add_argument("--gpus-per-run", type=float, default=0.0, metavar="G", help="GPUs each Ray task reserves")
    sweep.add_argument("--resume", action="store_true",
                       help="run only what is missing or failed (same parameters and notebook content)")
    sweep.add_argument("--out", metavar="DIR", help=f"output directory (default {SWEEPS_DIR}/<notebook>)")
    sweep.add_argument("--notebooks", default=str(NOTEBOOKS_DIR), metavar="DIR", help="notebook directory")
    sweep.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                       help="per-cell limit in seconds (rounded up), 0 for none")

    solutions = commands.add_parser(
        "solutions", help="run every reference solution through its exercise's check (exit 1 on a failure)")
    solutions.add_argument("--only", action="append", metavar="NN", help="notebook number, repeatable")
    build = commands.add_parser("build", help="write teacher copies of the notebooks, solutions filled in")
    build.add_argument("--solutions", required=True, metavar="OUT", help="output folder for the teacher copies")
    build.add_argument("--notebooks", default=str(NOTEBOOKS_DIR), metavar="DIR", help="notebook directory")
    book = commands.add_parser("book", help="turn a run folder's executed notebooks into a static HTML site")
    book.add_argument("--run", default=str(RUNS_DIR / "quick"), metavar="DIR",
                      help=f"run folder of `run` (default {RUNS_DIR}/quick)")
    book.add_argument("--out", metavar="DIR", help="site folder (default: RUN/book)")

    listing = commands.add_parser("list", help="show the notebooks and their parameters")
    listing.add_argument("--only", action="append", metavar="NB")
    listing.add_argument("--notebooks", default=str(NOTEBOOKS_DIR), metavar="DIR")

    evidence = commands.add_parser(
        "evidence", help="print each claim's verdict from the packaged cpu-profile results; exit 1 if one is stale")
    evidence.add_argument("--markdown", action="store_true", help="a Markdown table (for the README)")
    evidence.add_argument("--dir", metavar="DIR", help="folder of the NN.json results (default evidence/)")
    return root


def parameter_dict(pairs: list[list[str]]) -> dict[str, str]:
    """The ``-p NAME VALUE`` pairs as a dict; CourseError if a name is given twice."""
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise CourseError(f"-p {name} is given twice ({params[name]!r} and {value!r}); give each parameter once")
        params[name] = value
    return params


def sweep_main(args: argparse.Namespace) -> int:
    try:
        result = run_sweep(
            args.notebook, args.grid, args.seeds, profile=args.profile, params=parameter_dict(args.parameter),
            workers=args.workers, threads=args.threads, backend=args.backend, address=args.address,
            gpus_per_run=args.gpus_per_run, resume=args.resume, out_dir=args.out, notebooks_dir=args.notebooks,
            cell_timeout=args.cell_timeout,
        )
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are kept; continue with the same command and --resume", file=sys.stderr)
        return 130
    counts = {s: sum(o.status == s for o in result.outcomes) for s in ("ok", "failed", "skipped")}
    print(f"\n{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped; summary: "
          + ", ".join(str(p) for p in result.files[1:]))
    return 1 if result.failed else 0


def self_paced_main(args: argparse.Namespace) -> int:
    """The ``solutions``, ``build`` and ``book`` commands (``regkit.course.solutions``, ``regkit.course.book``)."""
    try:
        return self_paced_command(args)
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def self_paced_command(args: argparse.Namespace) -> int:
    from regkit.course import solutions

    if args.command == "solutions":
        outcomes = solutions.run_solutions(args.only)
        for o in outcomes:
            print(f"{o.exercise_id}  {'passed' if o.passed else 'FAILED'}  {o.seconds:.1f} s  {o.error}".rstrip())
        print(f"{len(outcomes)} exercises, {sum(o.passed for o in outcomes)} passed")
        return 0 if outcomes and all(o.passed for o in outcomes) else 1
    if args.command == "build":
        written = solutions.write_teacher_copies(args.notebooks, args.solutions)
        print(f"{len(written)} teacher copies in {args.solutions}")
        return 0
    from regkit.course.book import build_book

    index = build_book(args.run, args.out)
    print(f"book: {index}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with stop_on_signals():
        return command(args)


def command(args: argparse.Namespace) -> int:
    try:
        if args.command == "list":
            list_notebooks(args.notebooks, args.only)
            return 0
        if args.command == "sweep":
            return sweep_main(args)
        if args.command == "evidence":
            from regkit.course.evidence import main as evidence_main

            return evidence_main(args.markdown, args.dir)
        if args.command in ("solutions", "build", "book"):
            return self_paced_main(args)
        if args.log_output:
            logging.basicConfig(level=logging.INFO, format="%(message)s")
        run = run_course(
            args.profile, args.only, parameter_dict(args.parameter), resume=args.resume, notebooks_dir=args.notebooks,
            out_dir=args.out, cell_timeout=args.cell_timeout, log_output=args.log_output,
        )
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished notebooks are kept; continue with the same command and --resume",
              file=sys.stderr)
        return 130
    counts = {s: sum(o.status == s for o in run.outcomes) for s in ("ok", "failed", "skipped")}
    print(f"\n{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped; "
          f"summary: {run.summary[0]} and {run.summary[1].name}")
    for outcome in run.failed:
        print(outcome.message, file=sys.stderr)
    return 1 if run.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
