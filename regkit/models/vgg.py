"""VGG-11 / VGG-16 for small images (Simonyan & Zisserman, ICLR 2015), CIFAR-style head."""
import math

from torch import nn

from regkit._validate import check_choice, check_int

# Conv output channels at width_multiplier 1; "M" is a 2x2 max-pool.
CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


class VGG(nn.Module):
    """3x3 conv (+ BN) + ReLU stacks with 5 max-pools, then a CIFAR-style head
    ``Linear(c, c) -> ReLU -> Linear(c, c) -> ReLU -> Linear(c, num_classes)``, c = 512 x multiplier.

    No dropout. The max-pools use ``ceil_mode=True`` so 28x28 input ends at 1x1 like 32x32
    (28 -> 14 -> 7 -> 4 -> 2 -> 1); an adaptive average pool then makes any input size give a
    c-dimensional feature, so the model takes no image size. Init as in Novack et al.'s code: conv weights
    ``N(0, 2 / (9 * out_channels))`` (He, fan-out), conv biases zero; linear layers torch default.
    Without BN the convs have biases; with BN they do not (and are scale-invariant).
    Novack et al. trained VGG-11 in exactly this form; their VGG-16-BN was torchvision's
    ImageNet model (7x7 pooled features, 4096-wide dropout head); ours keeps the CIFAR head.
    """

    def __init__(self, config="vgg11", batch_norm=False, num_classes=10, in_channels=3, width_multiplier=1.0):
        super().__init__()
        check_choice("config", config, CONFIGS)
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        if not width_multiplier > 0:
            raise ValueError(f"width_multiplier must be > 0, got {width_multiplier!r}")
        layers, channels = [], in_channels
        for v in CONFIGS[config]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                continue
            out = max(1, round(v * width_multiplier))
            conv = nn.Conv2d(channels, out, 3, padding=1, bias=not batch_norm)
            nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (9 * out)))
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            layers += [conv, nn.BatchNorm2d(out), nn.ReLU()] if batch_norm else [conv, nn.ReLU()]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, channels), nn.ReLU(),
            nn.Linear(channels, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
