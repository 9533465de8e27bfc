"""The embedded Fashion-MNIST subset, committed in ``data/fashion-mnist-subset/``: the course runs offline.

Content: the first 1,000 training images of each class and the first 500 test images of each class
of Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017; MIT licence), kept in the official files' order, so
any prefix is close to class-balanced: 10,000 training and 5,000 test images. They are stored as
gzip'd IDX files whose bytes depend only on the data (gzip header written here, mtime 0, deflate
level 9). ``checksums.json`` records the SHA-256 of every committed file, of its decompressed IDX
content, and of the decompressed official files it was cut from.

    python -m regkit.data.embedded verify             # committed files against checksums.json
    python -m regkit.data.embedded build [--source D]  # rebuild from the official files, bit for bit
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import struct
import sys
import zlib
from pathlib import Path

import torch

from regkit.data.fashion_mnist import DEBIAN_DIR, read_idx

NAME = "fashion_mnist_subset"
FOLDER = Path(__file__).resolve().parents[2] / "data" / "fashion-mnist-subset"
PER_CLASS = {"train": 1000, "t10k": 500}
NUM_CLASSES = 10
FILES = tuple(f"{split}-{kind}-idx{dims}-ubyte.gz" for split in PER_CLASS for kind, dims in (("images", 3), ("labels", 1)))
# The Debian package recompresses the official files, so sources are identified by their decompressed content.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # deflate, no name, mtime 0, max compression, OS unknown


class EmbeddedDataCorrupt(ValueError):
    """A committed file of the embedded subset differs from its recorded checksum."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def deterministic_gzip(data: bytes) -> bytes:
    """``data`` as a gzip member whose bytes depend only on ``data`` (and zlib's deflate at level 9)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(data) + deflate.flush()
    return GZIP_HEADER + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def idx_bytes(array: torch.Tensor) -> bytes:
    """The IDX encoding of a uint8 tensor: ``0, 0, 0x08, ndim``, big-endian dimensions, raw bytes."""
    header = bytes((0, 0, 8, array.dim())) + struct.pack(f">{array.dim()}I", *array.shape)
    return header + array.contiguous().numpy().tobytes()


def stratified_indices(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices of the first ``per_class`` examples of each class, in file order."""
    chosen = []
    for c in range(NUM_CLASSES):
        hits = torch.nonzero(labels == c).flatten()
        if len(hits) < per_class:
            raise ValueError(f"class {c} has {len(hits)} examples, fewer than the {per_class} the subset takes")
        chosen.append(hits[:per_class])
    return torch.cat(chosen).sort().values


def read_checksums(folder: Path = FOLDER) -> dict:
    path = folder / "checksums.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} is missing: the embedded Fashion-MNIST subset ships with the repository's data/ folder "
            "(a clone of the repository has it; `git checkout -- data/` restores it)"
        ) from None


def verify(folder: Path = FOLDER) -> dict:
    """Check every committed file against ``checksums.json``; returns the checksums (raises on a mismatch)."""
    checksums = read_checksums(folder)
    for name in FILES:
        path = folder / name
        if not path.exists():
            raise EmbeddedDataCorrupt(f"{path} is missing; restore it with `git checkout -- {path.parent}`")
        actual, expected = sha256(path.read_bytes()), checksums["files"][name]["sha256"]
        if actual != expected:
            raise EmbeddedDataCorrupt(
                f"{path} has sha256 {actual}, expected {expected}: restore it with `git checkout -- {path}` "
                "or rebuild it with `python -m regkit.data.embedded build`"
            )
    return checksums


def _read_checked(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(folder / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{split}-labels-idx1-ubyte.gz").to(torch.int64)
    n = PER_CLASS[split] * NUM_CLASSES
    if images.shape != (n, 28, 28) or labels.shape != (n,):
        raise EmbeddedDataCorrupt(f"{folder}: {split} holds {tuple(images.shape)} images and {tuple(labels.shape)} "
                                  f"labels, expected ({n}, 28, 28) and ({n},)")
    if not torch.equal(torch.bincount(labels, minlength=NUM_CLASSES), torch.full((NUM_CLASSES,), PER_CLASS[split])):
        raise EmbeddedDataCorrupt(f"{folder}: {split} labels are not {PER_CLASS[split]} per class")
    return images.unsqueeze(1), labels


def load_embedded(folder: Path = FOLDER) -> tuple[tuple[torch.Tensor, ...], Path]:
    """(x_train, y_train, x_test, y_test) of the subset after checking checksums and structure, and the folder."""
    verify(folder)
    return (*_read_checked(folder, "train"), *_read_checked(folder, "t10k")), folder


def build(source: Path, folder: Path = FOLDER) -> dict[str, bytes]:
    """Cut the subset from the official files in ``source`` into ``folder`` and check it against checksums.json.

    The decompressed sources must match the recorded SHA-256 (any copy of the official release does:
    the download or the Debian package). Returns the files written.
    """
    recorded = read_checksums(folder)
    files = {}
    for split, per_class in PER_CLASS.items():
        raws = {kind: gzip.open(source / f"{split}-{kind}-idx{d}-ubyte.gz").read() for kind, d in (("images", 3),
                                                                                                   ("labels", 1))}
        for kind, raw in raws.items():
            name = f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz"
            if sha256(raw) != recorded["sources"][name]:
                raise ValueError(f"{source / name} is not the official Fashion-MNIST file (content sha256 "
                                 f"{sha256(raw)}, expected {recorded['sources'][name]})")
        labels = torch.frombuffer(bytearray(raws["labels"]), dtype=torch.uint8, offset=8)
        images = torch.frombuffer(bytearray(raws["images"]), dtype=torch.uint8, offset=16).reshape(-1, 28, 28)
        keep = stratified_indices(labels, per_class)
        files[f"{split}-images-idx3-ubyte.gz"] = deterministic_gzip(idx_bytes(images[keep]))
        files[f"{split}-labels-idx1-ubyte.gz"] = deterministic_gzip(idx_bytes(labels[keep]))
    for name, data in files.items():
        expected = recorded["files"][name]
        if sha256(gzip.decompress(data)) != expected["content_sha256"]:
            raise ValueError(f"the rebuilt {name} holds other images than the recorded subset: the selection changed")
        if sha256(data) != expected["sha256"]:
            raise ValueError(f"the rebuilt {name} holds the recorded images but compresses to other bytes "
                             f"(sha256 {sha256(data)}): this zlib's deflate differs from the one that built it")
        (folder / name).write_bytes(data)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m regkit.data.embedded", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("verify", "build"))
    parser.add_argument("--source", type=Path, default=DEBIAN_DIR,
                        help=f"folder of the four official gzip'd IDX files (default {DEBIAN_DIR})")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build(args.source)
        verify()
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{FOLDER}: {len(FILES)} files match checksums.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
