"""Datasets and the device-resident loader of the course.

- ``modular_arithmetic``: grokking tables ``x op y mod p``.
- ``load_images``: CIFAR-10/100, Fashion-MNIST or a synthetic set as an ``ImageDataset``.
- ``DeviceLoader``: whole split on the device, batched augmentation, resumable randomness.
"""

from regkit.data.augment import random_crop_flip
from regkit.data.download import ChecksumError, DatasetUnavailable
from regkit.data.image_dataset import ImageDataset, channel_stats
from regkit.data.images import IMAGE_DATASETS, data_root, load_images
from regkit.data.loader import DeviceLoader
from regkit.data.modular import OPERATIONS, ModularArithmetic, modular_arithmetic
from regkit.data.sources import SOURCES, RemoteFile
from regkit.data.synthetic import synthetic_images

__all__ = [
    "IMAGE_DATASETS",
    "OPERATIONS",
    "SOURCES",
    "ChecksumError",
    "DatasetUnavailable",
    "DeviceLoader",
    "ImageDataset",
    "ModularArithmetic",
    "RemoteFile",
    "channel_stats",
    "data_root",
    "load_images",
    "modular_arithmetic",
    "random_crop_flip",
    "synthetic_images",
]
