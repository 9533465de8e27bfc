"""CIFAR-10 and CIFAR-100 from the official python archives (Krizhevsky, 2009,
"Learning Multiple Layers of Features from Tiny Images"; https://www.cs.toronto.edu/~kriz/cifar.html).

The archive's MD5 is checked before anything is unpickled (pickle can run code); the
batches are then read straight from the tar (no extraction to disk) with an unpickler
that only accepts the numpy array types a CIFAR batch contains. Each batch is a dict with
``b"data"`` (``N x 3072`` uint8, rows = R, G, B planes of a 32x32 image) and the labels
(``b"labels"`` for CIFAR-10, ``b"fine_labels"`` for CIFAR-100).
"""

import codecs
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from regkit.data.download import fetch
from regkit.data.sources import SOURCES


@dataclass(frozen=True)
class CifarLayout:
    train_members: tuple[str, ...]
    test_members: tuple[str, ...]
    label_key: bytes
    num_classes: int


LAYOUTS = {
    "cifar10": CifarLayout(
        tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
        ("cifar-10-batches-py/test_batch",),
        b"labels",
        10,
    ),
    "cifar100": CifarLayout(("cifar-100-python/train",), ("cifar-100-python/test",), b"fine_labels", 100),
}

OFFLINE_HINT = (
    "Without network access use load_images('fashion_mnist'): it works offline from the Debian "
    "package (apt-get install dataset-fashion-mnist)."
)


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: codecs.encode,  # how Python 3 pickles bytes at protocol 2
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; refuses every other global."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        return _ALLOWED_GLOBALS[module, name]()


def unpickle_batch(blob: bytes) -> dict:
    return _ArrayUnpickler(io.BytesIO(blob), encoding="bytes").load()


def read_archive(path: Path, layout: CifarLayout) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test) from a VERIFIED archive at ``path``."""
    wanted = set(layout.train_members + layout.test_members)
    blobs = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:  # one sequential pass over the gzip stream
            if member.name in wanted and member.isfile():
                blobs[member.name] = tar.extractfile(member).read()
    if missing := sorted(wanted - blobs.keys()):
        raise ValueError(f"{path} lacks the members {missing} of a CIFAR python archive")

    def split(members: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        batches = [unpickle_batch(blobs[m]) for m in members]
        data = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
        labels = np.concatenate([np.asarray(b[layout.label_key], dtype=np.int64) for b in batches])
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
            raise ValueError(f"{path}: unexpected batch shapes data {data.shape}, labels {labels.shape}")
        if len(labels) and not (labels.min() >= 0 and labels.max() < layout.num_classes):
            raise ValueError(f"{path}: labels outside [0, {layout.num_classes})")
        return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)

    return (*split(layout.train_members), *split(layout.test_members))


def load_cifar(name: str, root: Path, download: bool = True) -> tuple[tuple[torch.Tensor, ...], Path]:
    """The four tensors of ``name`` ("cifar10" or "cifar100") and the verified archive they came from."""
    (remote,) = SOURCES[name]
    path = fetch(remote, root, download=download, hint=OFFLINE_HINT)
    return read_archive(path, LAYOUTS[name]), path
