"""``load_images``: one entry point for the course's image datasets, and the data root.

Data root: the ``root`` argument, else ``$REGKIT_DATA_DIR``, else ``<repo>/data`` (the
folder beside the ``regkit`` package). ``name="auto"`` uses CIFAR-10 when its archive is
already in the data root (it never downloads it) and Fashion-MNIST otherwise.
"""

import dataclasses
import os
from pathlib import Path

from regkit.data.cifar import load_cifar
from regkit.data.fashion_mnist import load_fashion_mnist
from regkit.data.image_dataset import ImageDataset
from regkit.data.sources import SOURCES
from regkit.data.synthetic import synthetic_images

IMAGE_DATASETS = ("auto", "cifar10", "cifar100", "fashion_mnist", "synthetic")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "fashion_mnist": 10}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$REGKIT_DATA_DIR``, else ``<repo root>/data``."""
    if root is not None:
        return Path(root).expanduser()
    if env := os.environ.get("REGKIT_DATA_DIR"):
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "data"


def load_images(
    name: str = "auto",
    root: str | os.PathLike | None = None,
    download: bool = True,
    train_size: int | None = None,
    verbose: bool = True,
) -> ImageDataset:
    """Load an image classification dataset as uint8 tensors (see ``ImageDataset``).

    ``name``: "auto", "cifar10", "cifar100", "fashion_mnist" or "synthetic".
    ``train_size``: keep the first ``train_size`` training images (mean/std are computed on them).
    ``verbose``: print which dataset was used, from where, and why ("auto").
    """
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown image dataset name={name!r}; choose one of: {', '.join(IMAGE_DATASETS)}")
    folder = data_root(root)
    reason = ""
    if name == "auto":
        cifar = folder / SOURCES["cifar10"][0].filename
        if cifar.exists():
            name, reason = "cifar10", f"auto: found {cifar}"
        else:
            name = "fashion_mnist"
            reason = f"auto: no {cifar} (auto never downloads CIFAR-10; put the archive there to use it)"

    if name == "synthetic":
        dataset = synthetic_images()
    else:
        load = load_fashion_mnist if name == "fashion_mnist" else lambda r, d: load_cifar(name, r, d)
        (x_train, y_train, x_test, y_test), path = load(folder, download)
        dataset = ImageDataset(
            name=name,
            x_train=x_train,
            y_train=y_train,
            x_test=x_test,
            y_test=y_test,
            num_classes=NUM_CLASSES[name],
            source=str(path),
        )

    if train_size is not None:
        n = len(dataset.x_train)
        if isinstance(train_size, bool) or not isinstance(train_size, int) or not 1 <= train_size <= n:
            raise ValueError(
                f"train_size must be an integer in [1, {n}] for {name}, got train_size={train_size!r}"
            )
        dataset = dataclasses.replace(
            dataset, x_train=dataset.x_train[:train_size], y_train=dataset.y_train[:train_size]
        )
    if verbose:
        print(f"regkit.data: using {dataset}" + (f" ({reason})" if reason else ""), flush=True)
    return dataset
