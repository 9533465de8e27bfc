"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017, arXiv:1708.07747): 70,000 28x28 grey
images of 10 clothing classes, stored as gzip'd IDX files.

Looked up in ``<root>/fashion-mnist/``, then in the Debian package's folder
``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``), then
downloaded (MD5-checked) into ``<root>/fashion-mnist/``. An IDX file is a big-endian
header ``0, 0, type, ndim, dim_1 ... dim_ndim`` (type 0x08 = unsigned byte) followed by
the raw array; the parser checks it and runs no code, so local files need no checksum
(the Debian package recompresses them, so their gzip MD5 differs from the published one).
"""

import gzip
import math
import struct
import zlib
from pathlib import Path

import torch

from regkit.data.download import DatasetUnavailable, fetch
from regkit.data.sources import SOURCES

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
SUBFOLDER = "fashion-mnist"

OFFLINE_HINT = (
    "Fashion-MNIST also comes as a Debian/Ubuntu package: apt-get install dataset-fashion-mnist "
    f"(files in {DEBIAN_DIR})."
)


class CorruptDataFile(ValueError):
    """A dataset file that cannot be read as what it claims to be."""


def read_idx(path: Path) -> torch.Tensor:
    """The unsigned-byte array stored in the gzip'd IDX file ``path`` (CorruptDataFile if it is not one)."""
    fix = "delete it and restore the file (reinstall the package, download it again or `git checkout` it)"
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; truncation raises EOFError
        raise CorruptDataFile(f"{path} is not a readable gzip file ({type(e).__name__}: {e}): {fix}") from e
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise CorruptDataFile(f"{path} is not an unsigned-byte IDX file (header {raw[:4].hex()}): {fix}")
    ndim = raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise CorruptDataFile(f"{path}: the IDX header is cut short ({len(raw)} bytes): {fix}")
    shape = struct.unpack(f">{ndim}I", raw[4:offset])
    if len(raw) - offset != math.prod(shape):
        raise CorruptDataFile(f"{path}: header says shape {shape} but holds {len(raw) - offset} bytes of data: {fix}")
    if math.prod(shape) == 0:
        raise CorruptDataFile(f"{path} holds no data (shape {shape}): {fix}")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=offset).reshape(shape)


def _read_split(folder: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").to(torch.int64)
    if images.dim() != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(
            f"{folder}: {prefix} images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match"
        )
    return images.unsqueeze(1), labels


def load_fashion_mnist(
    root: Path, download: bool = True, system: bool = True
) -> tuple[tuple[torch.Tensor, ...], Path]:
    """(x_train, y_train, x_test, y_test) as uint8 ``(N, 1, 28, 28)`` / int64, and the folder used.

    ``system=False`` ignores the Debian package's folder (isolated mode).
    """
    remotes = SOURCES["fashion_mnist"]
    local = Path(root) / SUBFOLDER
    searched = (local, DEBIAN_DIR) if system else (local,)
    for folder in searched:
        if all((folder / r.filename).exists() for r in remotes):
            break
    else:
        folder = local
        where = " nor ".join(map(str, searched))
        for remote in remotes:
            try:
                fetch(remote, local, download=download, verify_local=False, hint=OFFLINE_HINT)
            except DatasetUnavailable as e:
                raise type(e)(f"Fashion-MNIST not found in {where}. {e}") from e
    return (*_read_split(folder, "train"), *_read_split(folder, "t10k")), folder
