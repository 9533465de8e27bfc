"""The course's models, one family per module, all built by name through ``build_model``.

All work with ``channels_last`` input, under bf16 autocast and with ``torch.compile``
(no data-dependent Python control flow in ``forward``).
"""
from .grok_transformer import GrokTransformer
from .mlp import MLP, OneHotMLP
from .registry import MODELS, build_model, model_options
from .resnet import ResNet18
from .small_cnn import SmallCNN
from .vgg import VGG
from .vit import ViT

__all__ = [
    "MLP", "MODELS", "VGG", "GrokTransformer", "OneHotMLP", "ResNet18", "SmallCNN", "ViT",
    "build_model", "model_options",
]
