"""Checksummed, atomic downloads with a progress bar, and the error raised when offline.

``download_file`` streams the URL into a temporary file in the destination folder while
hashing it, checks the length and the MD5, and only then ``os.replace``-s it into place: an
interrupted, truncated or corrupt download leaves nothing behind. ``fetch`` returns a local
copy (verified) or downloads one.
"""

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from regkit.data.sources import RemoteFile

CHUNK = 1 << 20


class DatasetUnavailable(RuntimeError):
    """A dataset is neither on disk nor downloadable; the message says how to get it."""


class ChecksumError(DatasetUnavailable):
    """A file's MD5 differs from the published one (corrupt, truncated or tampered)."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: Path, md5: str, *, timeout: float = 30.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` if its MD5 equals ``md5``; raises and leaves no file otherwise.

    Network errors raise ``DatasetUnavailable``, a wrong checksum ``ChecksumError``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        received = 0
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, OSError) as e:
                raise DatasetUnavailable(f"could not reach {url}: {getattr(e, 'reason', e)}") from e
            with response:
                length = response.headers.get("Content-Length")
                total = int(length) if length else None
                with tqdm(
                    total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
                ) as bar:
                    try:
                        while chunk := response.read(CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
                    except (OSError, http.client.HTTPException) as e:  # IncompleteRead, reset, timeout
                        raise DatasetUnavailable(
                            f"download of {url} was interrupted after {received} bytes: {e!r}"
                        ) from e
            if total is not None and received != total:
                raise DatasetUnavailable(
                    f"download of {url} was interrupted: got {received} of {total} bytes"
                )
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != md5:
            raise ChecksumError(
                f"checksum mismatch for {url}: md5 {digest.hexdigest()}, expected {md5}; "
                "the download was discarded"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def fetch(
    remote: RemoteFile, folder: Path, *, download: bool, verify_local: bool = True, hint: str = ""
) -> Path:
    """``folder/remote.filename``, verified against ``remote.md5``; downloaded there if missing.

    ``verify_local=False`` trusts an existing file (only for formats whose parser runs no
    code and validates the structure itself). ``hint`` is appended to errors (e.g. an
    offline alternative).
    """
    path = Path(folder) / remote.filename
    manual = (
        f"Download {remote.url} (md5 {remote.md5}) by hand and put it at {path} "
        "(or point REGKIT_DATA_DIR / root= at the folder holding it)."
    )
    if path.exists():
        if verify_local and (actual := md5_of(path)) != remote.md5:
            raise ChecksumError(
                f"{path} has md5 {actual}, expected {remote.md5} (corrupt or incomplete?). "
                f"Delete it and retry, or replace it: {manual} {hint}".rstrip()
            )
        return path
    if not download:
        raise DatasetUnavailable(f"{path} not found and download=False. {manual} {hint}".rstrip())
    try:
        return download_file(remote.url, path, remote.md5)
    except DatasetUnavailable as e:
        raise type(e)(f"{e}. {manual} {hint}".rstrip()) from e
