"""Output paths: check before any work is done that a file can be written where it is asked for."""

from __future__ import annotations

import os
import tempfile
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
