"""``ImageDataset``: a labelled image classification split held as uint8 tensors, with its
per-channel statistics and a shortcut to device loaders."""

from dataclasses import dataclass, field

import torch

from regkit._validate import check_int
from regkit.data.loader import DeviceLoader


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 images ``x / 255``.

    Exact and cheap: from the 256-bin histogram ``h`` of each channel,
    ``mean = sum_v h_v v / n`` and ``var = sum_v h_v v^2 / n - mean^2`` (v in [0, 1]).
    """
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * values**2).sum() / n - mean**2
        means.append(float(mean))
        stds.append(float(var.clamp_min(0).sqrt()))
    return tuple(means), tuple(stds)


@dataclass(eq=False)  # tensors have no single truth value: compare fields explicitly
class ImageDataset:
    """Train/test images ``x_*`` (uint8, ``(N, C, H, W)``) and labels ``y_*`` (int64).

    ``mean``/``std`` (per channel, on ``x / 255`` of the training split) and the shape
    fields are computed from the tensors; ``source`` says where the data came from.
    """

    name: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    num_classes: int
    source: str
    in_channels: int = field(init=False)
    image_size: int = field(init=False)
    mean: tuple[float, ...] = field(init=False)
    std: tuple[float, ...] = field(init=False)

    def __post_init__(self):
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[2] != x.shape[3]:
                raise ValueError(
                    f"x_{split} must be uint8 square images (N, C, H, H), got {x.dtype} {tuple(x.shape)}"
                )
            if y.dtype != torch.int64 or y.shape != (len(x),):
                raise ValueError(
                    f"y_{split} must be int64 of shape ({len(x)},), got {y.dtype} {tuple(y.shape)}"
                )
            if len(y) and not (0 <= int(y.min()) and int(y.max()) < self.num_classes):
                raise ValueError(f"y_{split} has labels outside [0, {self.num_classes})")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"train and test images differ in shape: {tuple(self.x_train.shape[1:])} vs "
                f"{tuple(self.x_test.shape[1:])}"
            )
        self.in_channels = self.x_train.shape[1]
        self.image_size = self.x_train.shape[2]
        self.mean, self.std = channel_stats(self.x_train)

    def __str__(self) -> str:
        return (
            f"{self.name}: {len(self.x_train)} train / {len(self.x_test)} test images "
            f"{self.in_channels}x{self.image_size}x{self.image_size}, {self.num_classes} classes, from {self.source}"
        )

    def loaders(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        augment: bool = True,
        seed: int = 0,
        eval_batch_size: int = 1024,
    ) -> tuple[DeviceLoader, DeviceLoader]:
        """(train, test) ``DeviceLoader``s normalized with the training mean/std; the train
        loader shuffles (and augments if ``augment``), the test loader keeps order and every sample."""
        common = dict(device=device, mean=self.mean, std=self.std)
        train = DeviceLoader(
            self.x_train, self.y_train, batch_size, shuffle=True, augment=augment, seed=seed, **common
        )
        test = DeviceLoader(
            self.x_test, self.y_test, eval_batch_size, shuffle=False, drop_last=False, **common
        )
        return train, test


def downsample(data: ImageDataset, factor: int) -> ImageDataset:
    """``data`` with every image average-pooled by ``factor`` (e.g. Fashion-MNIST 28x28 -> 14x14 with 2),
    rounded back to uint8: a cheaper task on which small CPU experiments can run many seeds."""
    check_int("factor", factor, note=f"a divisor of the image size {data.image_size}")
    if data.image_size % factor:
        raise ValueError(f"factor must be a positive int dividing the image size {data.image_size}, got {factor!r}")

    def pool(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x.float(), factor).round().to(torch.uint8)

    return ImageDataset(f"{data.name} ({data.image_size // factor}x{data.image_size // factor})", pool(data.x_train),
                        data.y_train, pool(data.x_test), data.y_test, num_classes=data.num_classes, source=data.source)
