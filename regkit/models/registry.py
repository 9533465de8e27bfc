"""``build_model(name, ...)``: every course model by name, with checked keyword arguments."""
import inspect

from regkit._validate import check_int

from .grok_transformer import GrokTransformer
from .mlp import MLP, OneHotMLP
from .resnet import ResNet18
from .small_cnn import SmallCNN
from .vgg import VGG
from .vit import ViT

# name -> (class, the constructor arguments build_model derives from its own arguments).
# Token models read ``num_classes`` as the modulus p and ignore in_channels / image_size.
MODELS = {
    "mlp": (MLP, lambda n, c, s: {"in_features": c * s * s, "num_classes": n}),
    "onehot_mlp": (OneHotMLP, lambda n, c, s: {"p": n}),
    "grok_transformer": (GrokTransformer, lambda n, c, s: {"p": n}),
    "resnet18": (ResNet18, lambda n, c, s: {"num_classes": n, "in_channels": c}),
    "vgg11": (VGG, lambda n, c, s: {"config": "vgg11", "batch_norm": False, "num_classes": n, "in_channels": c}),
    "vgg16_bn": (VGG, lambda n, c, s: {"config": "vgg16", "batch_norm": True, "num_classes": n, "in_channels": c}),
    "vit": (ViT, lambda n, c, s: {"num_classes": n, "in_channels": c, "image_size": s}),
    "small_cnn": (SmallCNN, lambda n, c, s: {"num_classes": n, "in_channels": c}),
}


def model_options(name):
    """The keyword arguments ``build_model(name, ...)`` accepts beyond its own, with defaults."""
    cls, derived = _lookup(name)
    fixed = derived(1, 1, 1)
    return {
        arg: param.default
        for arg, param in inspect.signature(cls).parameters.items()
        if arg not in fixed
    }


def build_model(name, num_classes, in_channels=3, image_size=32, **kw):
    """Build the course model ``name`` (see ``MODELS``) for ``num_classes`` outputs.

    Image models take (N, in_channels, image_size, image_size) float input; ``onehot_mlp`` and
    ``grok_transformer`` take (N, 3) int64 tokens ``[x, y, =]`` with ``num_classes = p``.
    ``**kw`` go to the class (e.g. ``width`` for ``resnet18``); ``model_options(name)`` lists them.

    >>> build_model("resnet18", 100, width=16)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 100])
    """
    cls, derived = _lookup(name)
    check_int("num_classes", num_classes)
    check_int("in_channels", in_channels)
    check_int("image_size", image_size)
    options = model_options(name)
    unknown = sorted(set(kw) - set(options))
    if unknown:
        raise TypeError(
            f"build_model({name!r}) got unexpected keyword argument(s) {unknown}; "
            f"valid: {sorted(options)}"
        )
    return cls(**derived(num_classes, in_channels, image_size), **kw)


def _lookup(name):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid choices: {sorted(MODELS)}")
    return MODELS[name]
