"""Run one command under a time budget: in its own process group, its output in a log file.

At the budget the whole group (the command and any workers it started) gets SIGTERM, then
SIGKILL after a grace period, so one part that hangs cannot eat the time of the parts after it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TAIL_CHARS = 6000


@dataclass(frozen=True)
class Outcome:
    """``status``: ``ok`` (exit 0), ``failed`` (another exit status) or ``timeout`` (stopped at the
    budget; ``returncode`` None); ``tail``: the last characters of the log."""

    status: str
    returncode: int | None
    seconds: float
    log: Path
    tail: str


def run_with_budget(argv: Sequence[str], budget_s: float, log: str | os.PathLike, *, cwd: str | os.PathLike | None = None,
                    env: Mapping[str, str] | None = None, grace_s: float = 5.0) -> Outcome:  # fmt: skip
    """Run ``argv`` for at most ``budget_s`` seconds, stdout and stderr into ``log`` (after a ``$ command`` line)."""
    if not budget_s > 0:
        raise ValueError(f"budget_s must be > 0 seconds, got {budget_s!r}")
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        out.write(f"$ {shlex.join(argv)}\n")
        out.flush()
        process = subprocess.Popen(argv, cwd=cwd, env=None if env is None else dict(env), stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            returncode = process.wait(timeout=budget_s)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:  # also when this process is interrupted: leave nothing of the command running
            stop_group(process, grace_s)
    status = "timeout" if returncode is None else "ok" if returncode == 0 else "failed"
    return Outcome(status, returncode, time.perf_counter() - start, log, tail(log))


def stop_group(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the process group that ``process`` leads, SIGKILL to what is left after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)


def tail(path: Path, chars: int = TAIL_CHARS) -> str:
    """The last ``chars`` characters of the text file ``path``."""
    text = path.read_text(errors="replace")
    return text[-chars:]
