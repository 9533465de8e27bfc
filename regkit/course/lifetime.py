"""How long course processes live: a run stops cleanly on a signal, and pool workers die with their driver.

- :func:`stop_on_signals` (the ``run`` and ``sweep`` commands): SIGINT (Ctrl-C) and SIGTERM raise
  KeyboardInterrupt in the main thread, so the partial files are dropped and the finished
  results kept. This also holds when the process started with SIGINT ignored, as a shell script
  starts its background jobs (``cmd &``): Python then leaves SIGINT ignored, and ``kill -INT``
  would not stop the run.
- :func:`worker_init` (each local pool worker): SIGINT is left to the driver, which stops the
  workers with SIGTERM; on SIGTERM, and when the driver dies (even by SIGKILL), the worker kills
  its notebook kernels (each in its own session, with their children) and exits at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_INTERVAL_S = 0.5  # how often a worker outside Linux checks that its driver is alive


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside the block, SIGINT and SIGTERM raise KeyboardInterrupt (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, _interrupt)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def kill_kernels() -> None:
    """SIGKILL this process's children with their process groups (a kernel leads its own session)."""
    import psutil  # a dependency of ipykernel, so present wherever notebooks run

    for child in psutil.Process().children():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(child.pid) == child.pid:
                os.killpg(child.pid, signal.SIGKILL)
            else:
                os.kill(child.pid, signal.SIGKILL)


def _stop_worker(signum: int = signal.SIGTERM, frame: object = None) -> None:
    kill_kernels()
    os._exit(128 + signum)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_INTERVAL_S)
    os.kill(os.getpid(), signal.SIGTERM)


def worker_init(parent: int) -> None:
    """Pool-worker initializer: ignore SIGINT, stop (kernels included) on SIGTERM or when ``parent`` dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the driver died before prctl took effect
            _stop_worker()
    else:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="parent-watch").start()
