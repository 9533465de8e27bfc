"""Datasets and the device-resident loader of the course.

- ``modular_arithmetic``: grokking tables ``x op y mod p``.
- ``DeviceLoader``: whole split on the device, batched augmentation, resumable randomness.
"""

from regkit.data.augment import random_crop_flip
from regkit.data.image_dataset import ImageDataset, channel_stats
from regkit.data.loader import DeviceLoader
from regkit.data.modular import OPERATIONS, ModularArithmetic, modular_arithmetic

__all__ = [
    "OPERATIONS",
    "DeviceLoader",
    "ImageDataset",
    "ModularArithmetic",
    "channel_stats",
    "modular_arithmetic",
    "random_crop_flip",
]
