"""``load_images``: one entry point for the course's image datasets, and the data root.

Data root: the ``root`` argument, else ``$REGKIT_DATA_DIR``, else ``<repo>/data`` (the
folder beside the ``regkit`` package). ``name="auto"`` uses CIFAR-10 when its archive is
already in the data root (it never downloads it), else full Fashion-MNIST, else the embedded subset
(``data/fashion-mnist-subset``, see ``regkit.data.embedded``).
"""

import dataclasses
import os
from pathlib import Path

from regkit._validate import check_int
from regkit.data.cifar import load_cifar
from regkit.data.download import DatasetUnavailable
from regkit.data.embedded import NAME as EMBEDDED
from regkit.data.embedded import load_embedded
from regkit.data.fashion_mnist import DEBIAN_DIR, load_fashion_mnist
from regkit.data.image_dataset import ImageDataset
from regkit.data.sources import SOURCES
from regkit.data.synthetic import synthetic_images

IMAGE_DATASETS = ("auto", "cifar10", "cifar100", "fashion_mnist", EMBEDDED, "synthetic")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "fashion_mnist": 10, EMBEDDED: 10}
ISOLATED_ENV = "REGKIT_DATA_ISOLATED"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$REGKIT_DATA_DIR``, else ``<repo root>/data``."""
    if root is not None:
        return Path(root).expanduser()
    if env := os.environ.get("REGKIT_DATA_DIR"):
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "data"


def isolated_mode(isolated: bool | None = None) -> bool:
    """``isolated`` if given, else ``$REGKIT_DATA_ISOLATED`` (1/true/yes or 0/false/no; unset: False).

    Isolated, ``regkit.data`` reads only the data root and the embedded subset: no system-wide folder
    (the Debian package) and no download.
    """
    if isolated is not None:
        return bool(isolated)
    value = os.environ.get(ISOLATED_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"{ISOLATED_ENV}={value!r}: set it to 1 (use only the data root and the embedded subset) or 0")


def _load(name: str, folder: Path, download: bool, isolated: bool) -> tuple[tuple, Path]:
    if name == EMBEDDED:
        return load_embedded()
    try:
        if name == "fashion_mnist":
            return load_fashion_mnist(folder, download and not isolated, system=not isolated)
        return load_cifar(name, folder, download and not isolated)
    except DatasetUnavailable as e:
        if not isolated:
            raise
        raise DatasetUnavailable(f"{ISOLATED_ENV}=1: system-wide folders and downloads are ignored. {e}") from e


def _auto(folder: Path, download: bool, isolated: bool) -> tuple[str, tuple, Path, str]:
    """CIFAR-10 if its archive is in the data root, else full Fashion-MNIST, else the embedded subset."""
    cifar = folder / SOURCES["cifar10"][0].filename
    if cifar.exists():
        return "cifar10", *load_cifar("cifar10", folder, False), f"auto chose CIFAR-10: its archive is {cifar}."
    missing = f"there is no {cifar}"
    try:
        return "fashion_mnist", *_load("fashion_mnist", folder, download, isolated), \
            f"auto chose full Fashion-MNIST: {missing}, and auto never downloads CIFAR-10."
    except DatasetUnavailable:
        local = folder / "fashion-mnist"
        why = (f"is not in {local}, the only place {ISOLATED_ENV}=1 lets it look" if isolated
               else f"is neither in {local} nor in {DEBIAN_DIR}, and could not be downloaded")
        return EMBEDDED, *load_embedded(), (f"auto chose the embedded subset: {missing}, auto never downloads "
                                            f"CIFAR-10, and full Fashion-MNIST {why}.")


def load_images(
    name: str = "auto",
    root: str | os.PathLike | None = None,
    download: bool = True,
    train_size: int | None = None,
    verbose: bool = True,
    isolated: bool | None = None,
) -> ImageDataset:
    """Load an image classification dataset as uint8 tensors (see ``ImageDataset``).

    ``name``: "auto", "cifar10", "cifar100", "fashion_mnist", "fashion_mnist_subset" (the embedded
    10,000 + 5,000 images, always offline) or "synthetic". "auto" takes CIFAR-10 if its archive is in
    the data root, else full Fashion-MNIST (data root, Debian package, download), else the embedded subset.
    ``train_size``: keep the first ``train_size`` training images (mean/std are computed on them).
    ``verbose``: print which dataset was used, from where, and why ("auto").
    ``isolated``: ignore system-wide data and the network (default: ``$REGKIT_DATA_ISOLATED``).
    """
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown image dataset name={name!r}; choose one of: {', '.join(IMAGE_DATASETS)}")
    folder, isolated = data_root(root), isolated_mode(isolated)
    reason = ""
    if name == "auto":
        name, tensors, path, reason = _auto(folder, download, isolated)
    elif name != "synthetic":
        tensors, path = _load(name, folder, download, isolated)
    if name == "synthetic":
        dataset = synthetic_images()
    else:
        dataset = ImageDataset(name, *tensors, num_classes=NUM_CLASSES[name], source=str(path))

    if train_size is not None:
        n = len(dataset.x_train)
        check_int("train_size", train_size, 1, n, note=f"training images of {name}")
        dataset = dataclasses.replace(
            dataset, x_train=dataset.x_train[:train_size], y_train=dataset.y_train[:train_size]
        )
    if verbose:
        print(f"regkit.data: using {dataset}." + (f" {reason}" if reason else ""), flush=True)
    return dataset
