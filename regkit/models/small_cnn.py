"""A small BatchNorm conv net for quick experiments on scale-invariant weights."""
from torch import nn

from regkit._validate import check_int


class SmallCNN(nn.Module):
    """Three stages ``conv3x3 (no bias) -> BN -> ReLU -> 2x2 max-pool`` with ``width * (1, 2, 4)``
    channels, global average pool, linear head.

    Each conv feeds a BatchNorm, so its weight is scale-invariant in training mode
    (``f(c w) = f(w)`` for c > 0): the setting of AdamP/SGDP (Heo et al., ICLR 2021). Only the
    head is not. About 95k parameters at ``width=32``; any input size >= 8 works.
    """

    def __init__(self, num_classes=10, in_channels=3, width=32):
        super().__init__()
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        check_int("width", width)
        layers, channels = [], in_channels
        for multiple in (1, 2, 4):
            out = multiple * width
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(),
                       nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(self.features(x))
