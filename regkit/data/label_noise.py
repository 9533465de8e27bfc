"""Symmetric label noise on a training split, and a validation split carved from the training images.

Label noise (e.g. Foret et al., SAM, ICLR 2021, section 3.3): a seeded choice of
``round(fraction * n)`` training examples gets a label drawn uniformly from the *other* classes, so
exactly that fraction of the training labels is wrong. The test split is never touched: accuracy is
measured on clean labels, and a method that memorizes the noise shows it there.
"""

from __future__ import annotations

import dataclasses

import torch

from regkit._validate import check_int, check_number
from regkit.data.image_dataset import ImageDataset


def symmetric_label_noise(labels: torch.Tensor, fraction: float, num_classes: int,
                          seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(noisy, mask)``: a copy of the int64 ``labels`` where the ``round(fraction * n)`` examples of
    ``mask`` (chosen by ``seed``) hold a uniformly drawn different class; ``labels`` is unchanged.

    >>> noisy, mask = symmetric_label_noise(torch.arange(10) % 3, 0.4, 3, seed=0)
    >>> int(mask.sum()), bool((noisy != torch.arange(10) % 3).eq(mask).all())
    (4, True)
    """
    check_number("fraction", fraction, 0.0, 1.0)
    check_int("num_classes", num_classes, 2, note="noise needs another class")
    if labels.dtype != torch.int64 or labels.dim() != 1:
        raise ValueError(f"labels must be a 1-D int64 tensor, got {labels.dtype} of shape {tuple(labels.shape)}")
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    generator = torch.Generator().manual_seed(seed)
    n = len(labels)
    chosen = torch.randperm(n, generator=generator)[: round(fraction * n)]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[chosen] = True
    shift = torch.randint(1, num_classes, (len(chosen),), generator=generator)  # never 0: always another class
    noisy = labels.clone()
    noisy[chosen] = (labels[chosen].cpu() + shift).remainder(num_classes).to(labels.device)
    return noisy, mask.to(labels.device)


def with_label_noise(data: ImageDataset, fraction: float, seed: int) -> tuple[ImageDataset, torch.Tensor]:
    """``data`` with ``symmetric_label_noise`` on its training labels (test labels untouched), and the mask."""
    noisy, mask = symmetric_label_noise(data.y_train, fraction, data.num_classes, seed)
    name = f"{data.name} ({fraction:.0%} label noise, seed {seed})"
    return dataclasses.replace(data, name=name, y_train=noisy), mask


def validation_split(data: ImageDataset, val_size: int, train_size: int | None = None) -> ImageDataset:
    """A dataset whose *test* split is the last ``val_size`` training images of ``data`` and whose
    training split is the first ``train_size`` (default: all the others) of the rest: the split on which
    settings are chosen, so that the real test images are never looked at while choosing.
    """
    n = len(data.x_train)
    check_int("val_size", val_size, 1, n - 1, note=f"{data.name} has {n} training images")
    rest = n - val_size
    train_size = rest if train_size is None else train_size
    check_int("train_size", train_size, 1, rest, note=f"training images left beside val_size={val_size}")
    return ImageDataset(f"{data.name} (validation split)", data.x_train[:train_size], data.y_train[:train_size],
                        data.x_train[rest:], data.y_train[rest:], num_classes=data.num_classes,
                        source=f"{data.source}: training images {rest}..{n - 1} as the test split")
