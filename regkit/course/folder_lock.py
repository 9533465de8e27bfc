"""One run at a time per output folder: ``with lock_folder(out_dir): ...``.

Two runs into the same folder would overwrite each other's files and manifest entries. The lock is
an exclusive ``flock`` on ``out_dir/.lock``; the kernel releases it when its holder exits, however
it exits (also on SIGKILL), so a lock is never stale. The holder writes its pid, host and command
line into the file, for the error the second run gets.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from regkit.course.notebook import CourseError

LOCK_FILE = ".lock"


def _holder(lock: Path) -> str:
    try:
        info = json.loads(lock.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on host {info['host']} since {info['started']} ({info['command']})"
    except (OSError, ValueError, KeyError, TypeError):  # the holder has not written its details yet
        return "another process"


@contextlib.contextmanager
def lock_folder(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir``'s lock for the block; CourseError naming the holder if another run holds it."""
    lock = Path(out_dir) / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CourseError(
                f"output folder {str(out_dir)!r} is in use by another run: {_holder(lock)}; wait for it to "
                "finish, or give this run another --out"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
