"""CIFAR ResNet-18 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016)."""
import torch.nn.functional as F
from torch import nn

from regkit._validate import check_int


def _conv_bn(in_channels, out_channels, kernel_size, stride):
    """Bias-free conv followed by BatchNorm: the conv weight is scale-invariant."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, 3x3 convs; the shortcut is a
    1x1 conv + BN when the stride or the channel count changes, else the identity."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = _conv_bn(in_channels, out_channels, 3, stride)
        self.conv2 = _conv_bn(out_channels, out_channels, 3, 1)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = _conv_bn(in_channels, out_channels, 1, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 3x3 stem conv (stride 1, no max-pool), BasicBlocks [2, 2, 2, 2] with
    ``width * (1, 2, 4, 8)`` channels and strides (1, 2, 2, 2), global average pool, linear head.

    ``width=64`` is the standard network (11.17M parameters for 10 classes); quick profiles use
    ``width=16``. Every conv feeds a BatchNorm, so all conv weights are scale-invariant.
    Default torch init. Input size free (global pooling); 32x32 and 28x28 both work.
    """

    stages = ((1, 1), (2, 2), (4, 2), (8, 2))  # (channel multiple of width, first-block stride)
    blocks_per_stage = 2

    def __init__(self, num_classes=10, in_channels=3, width=64):
        super().__init__()
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        check_int("width", width)
        self.stem = _conv_bn(in_channels, width, 3, 1)
        blocks, channels = [], width
        for multiple, stride in self.stages:
            for i in range(self.blocks_per_stage):
                blocks.append(BasicBlock(channels, multiple * width, stride if i == 0 else 1))
                channels = multiple * width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.stem(x)))
        return self.head(x.mean(dim=(2, 3)))
