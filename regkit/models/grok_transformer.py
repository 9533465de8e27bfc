"""The 1-layer decoder transformer of the CPR grokking example (Franke et al., NeurIPS 2024)."""
import math

import torch
from torch import nn

from regkit._validate import check_int

from .attention import SelfAttention


class GrokTransformer(nn.Module):
    """One decoder layer without LayerNorm on token rows ``[x, y, =]`` (``=`` is token ``p``).

    ``h = tok(tokens) + pos(0..T-1)``; ``h = h + attn(h)`` (causal, no biases, ``heads``
    heads); ``h = h + W2 relu(W1 h)`` (width ``mlp``); ``logits = U h[:, -1]`` (``p`` outputs,
    no bias). Token (vocab ``p + 1``) and position embeddings are ``nn.Embedding`` modules, so
    parameter grouping can tell them from the other matrices.

    Init: every matrix ~ N(0, std^2) with ``std = 1/sqrt(width)``. This is how the CPR
    repository's grokking example (``examples/train_grokking_task.py``, ``init_type='sqrt_dim'``,
    ``nn.init.normal_(param, 0, 1/sqrt(model_dim))``) reads "N(0, 1/sqrt(128))": the second
    argument is the standard deviation. Its special case for matrices with a dimension equal
    to ``p`` never fires there (vocab and head have ``p + 1`` rows), so all matrices get
    ``1/sqrt(width)``.

    Differences from that example, both deliberate: the MLP has no biases by default (the
    example keeps zero-initialized MLP biases; ``mlp_bias=True`` restores them), and the
    unembedding has ``p`` outputs rather than ``p + 1`` (the ``=`` logit is never a target).
    """

    def __init__(self, p, width=128, heads=4, mlp=512, seq_len=3, mlp_bias=False):
        super().__init__()
        self.p = check_int("p", p)
        check_int("width", width)
        check_int("heads", heads)
        check_int("mlp", mlp)
        if width % heads:
            raise ValueError(f"width ({width}) must be divisible by heads ({heads})")
        self.seq_len = check_int("seq_len", seq_len)
        self.token_embedding = nn.Embedding(p + 1, width)
        self.position_embedding = nn.Embedding(seq_len, width)
        self.attn = SelfAttention(width, heads, bias=False, causal=True)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp, bias=mlp_bias), nn.ReLU(), nn.Linear(mlp, width, bias=mlp_bias)
        )
        self.unembed = nn.Linear(width, p, bias=False)
        self.register_buffer("positions", torch.arange(seq_len), persistent=False)
        std = 1.0 / math.sqrt(width)
        for param in self.parameters():
            if param.ndim > 1:
                nn.init.normal_(param, 0.0, std)
            else:
                nn.init.zeros_(param)

    def hidden_states(self, tokens):
        """Residual stream after the layer, shape (N, T, width), for every position."""
        if tokens.ndim != 2 or not 1 <= tokens.shape[1] <= self.seq_len:
            raise ValueError(
                f"tokens must have shape (N, T) with 1 <= T <= seq_len={self.seq_len}, got {tuple(tokens.shape)}"
            )
        h = self.token_embedding(tokens) + self.position_embedding(self.positions[: tokens.shape[1]])
        h = h + self.attn(h)
        return h + self.mlp(h)

    def forward(self, tokens):
        """Logits (N, p) of the last position."""
        return self.unembed(self.hidden_states(tokens)[:, -1])
