"""Output files: check up front that a file can be written where it is asked for, and write it atomically."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path


def check_writable_file(name: str, path: str | os.PathLike) -> Path:
    """Raise ValueError naming ``name`` and ``path`` unless a file can be written at ``path``.

    ``path`` must not be a directory, and its nearest existing folder (missing folders are
    created on writing) must accept a new file: probed by creating and removing a temporary
    file, which also catches read-only file systems (permission bits do not stop root).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a directory; give the path of a file (inside it, for example)")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{name} {str(path)!r} cannot be written: {str(folder)!r} is a file, not a folder; "
                         "choose another path")
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".regkit-write-check.")
    except OSError as err:
        raise ValueError(f"{name} {str(path)!r} cannot be written: the folder {str(folder)!r} does not accept new "
                         f"files ({err.strerror}); choose another path") from None
    os.close(handle)
    os.unlink(probe)
    return path


def write_atomically(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    Readers see the old file or the whole new one, never a half-written one (also when the
    process is killed mid-write: only a hidden ``.NAME.*.tmp`` may be left behind).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if isinstance(data, str):
            with open(tmp, "x", encoding="utf-8") as f:
                f.write(data)
        else:
            with open(tmp, "xb") as f:
                f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
