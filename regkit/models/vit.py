"""A small Vision Transformer (Dosovitskiy et al., ICLR 2021) for 28x28 / 32x32 images."""
from torch import nn

from regkit._validate import check_int

from .attention import SelfAttention


class EncoderBlock(nn.Module):
    """Pre-norm block: ``x + drop(attn(ln1(x)))``, then ``x + drop(W2 drop(gelu(W1 ln2(x))))``."""

    def __init__(self, dim, heads, mlp_ratio, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, bias=True, dropout=dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_ratio * dim, dim),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class ViT(nn.Module):
    """Patch embedding (a ``patch x patch`` conv with stride ``patch``) + learned position
    embedding -> ``depth`` pre-norm encoder blocks -> LayerNorm -> mean over tokens -> linear head.

    Mean pooling instead of a class token: one parameter fewer to special-case, and it trains
    at least as well on small images (Beyer et al., "Better plain ViT baselines for
    ImageNet-1k", 2022). The position embedding is an ``nn.Embedding`` (one row per patch)
    so parameter grouping treats it as an embedding. Init: linear weights and the position
    embedding truncated N(0, 0.02^2), biases zero, LayerNorm (1, 0), patch conv torch default.
    Defaults: ViT-Tiny's width (dim 192, 3 heads) at half its depth (6) and MLP ratio (2),
    patch 4: 64 tokens for 32x32 input, 49 for 28x28. ``image_size`` must be divisible by ``patch``.
    """

    def __init__(self, num_classes, in_channels=3, image_size=32, patch=4, dim=192, depth=6, heads=3,
                 mlp_ratio=2, dropout=0.0):
        super().__init__()
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        check_int("image_size", image_size)
        check_int("patch", patch)
        check_int("dim", dim)
        check_int("depth", depth)
        check_int("heads", heads)
        check_int("mlp_ratio", mlp_ratio)
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if image_size % patch:
            raise ValueError(f"image_size ({image_size}) must be divisible by patch ({patch})")
        self.patch_embedding = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.position_embedding = nn.Embedding((image_size // patch) ** 2, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(EncoderBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x):
        tokens = self.patch_embedding(x).flatten(2).transpose(1, 2)  # (N, patches, dim)
        tokens = self.drop(tokens + self.position_embedding.weight)
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))
