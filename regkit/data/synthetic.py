"""A small synthetic, learnable image classification set for fast unit tests.

Each class ``k`` has a smooth random template ``T_k = c_k + up(G_k)``: a Gaussian colour
``c_k`` (one value per channel) plus a ``4 x 4`` Gaussian pattern ``G_k`` per channel,
bilinearly upsampled to the image size. An image of class ``k`` is
``clip(round(128 + 48 T_k + 32 eps), 0, 255)`` with i.i.d. pixel noise ``eps ~ N(0, 1)``,
so a small CNN separates the classes within a few dozen steps.
"""

import torch
import torch.nn.functional as F

from regkit._validate import check_int
from regkit.data.image_dataset import ImageDataset


def synthetic_images(
    n_train: int = 512,
    n_test: int = 256,
    channels: int = 3,
    size: int = 32,
    num_classes: int = 10,
    seed: int = 0,
) -> ImageDataset:
    """Balanced, shuffled labels; train and test share the templates and differ in noise."""
    for name, value, low in (
        ("n_train", n_train, 1), ("n_test", n_test, 1), ("channels", channels, 1),
        ("size", size, 8), ("num_classes", num_classes, 2),
    ):  # fmt: skip
        check_int(name, value, low)
    generator = torch.Generator().manual_seed(seed)
    colour = torch.randn(num_classes, channels, 1, 1, generator=generator)
    coarse = torch.randn(num_classes, channels, 4, 4, generator=generator)
    templates = colour + F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=generator)]
        noise = torch.randn(n, channels, size, size, generator=generator)
        images = 128 + 48 * templates[labels] + 32 * noise
        return images.round().clamp(0, 255).to(torch.uint8), labels

    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    return ImageDataset(
        name="synthetic",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        source=f"regkit.data.synthetic_images(seed={seed})",
    )
