"""Multi-head self-attention on (N, T, dim) through ``F.scaled_dot_product_attention``."""
import torch.nn.functional as F
from torch import nn

from regkit._validate import check_int


class SelfAttention(nn.Module):
    """``softmax(q k^T / sqrt(dim/heads) [+ causal mask]) v`` per head, then an output projection.

    ``qkv``: one ``Linear(dim, 3 dim)``; ``proj``: ``Linear(dim, dim)``; ``bias`` applies to
    both. ``causal=True`` lets position t attend to positions <= t only. ``dropout`` acts on
    the attention weights in training mode.
    """

    def __init__(self, dim, heads, bias=True, causal=False, dropout=0.0):
        super().__init__()
        check_int("dim", dim)
        check_int("heads", heads)
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.heads, self.causal, self.dropout = heads, causal, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x):
        n, t, dim = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=self.causal, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(out.transpose(1, 2).reshape(n, t, dim))
