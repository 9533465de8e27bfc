"""Multilayer perceptrons: ``MLP`` on flattened images, ``OneHotMLP`` on grokking tokens."""
from itertools import pairwise

import torch
from torch import nn

from regkit._validate import check_choice, check_int

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def _perceptron(widths, activation, bias):
    """``Linear -> act -> ... -> Linear`` through ``widths`` (no activation after the last)."""
    layers = []
    for fan_in, fan_out in pairwise(widths[:-1]):
        layers += [nn.Linear(fan_in, fan_out, bias=bias), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(widths[-2], widths[-1], bias=bias))
    return nn.Sequential(*layers)


class MLP(nn.Module):
    """Fully connected classifier on flattened input: ``x.flatten(1) -> hidden... -> num_classes``.

    ``hidden`` is a tuple of hidden widths (empty: a linear model); ``activation`` one of
    ``relu``, ``gelu``, ``tanh``. Images (N, C, H, W) in any memory format are flattened in
    logical (C, H, W) order, so ``in_features = C * H * W``. Default torch init.
    """

    def __init__(self, in_features, num_classes, hidden=(256, 256), activation="relu", bias=True):
        super().__init__()
        check_int("in_features", in_features)
        check_int("num_classes", num_classes)
        if not isinstance(hidden, (tuple, list)):
            raise ValueError(f"hidden must be a tuple of positive ints (one per hidden layer), got {hidden!r}")
        for i, h in enumerate(hidden):
            check_int(f"hidden[{i}]", h)
        check_choice("activation", activation, ACTIVATIONS)
        self.in_features = in_features
        self.net = _perceptron((in_features, *hidden, num_classes), activation, bias)

    def forward(self, x):
        return self.net(x.flatten(1))


class OneHotMLP(nn.Module):
    """Grokking MLP on token rows ``[x, y, =]``: ``concat(one_hot(x, p), one_hot(y, p))`` ->
    ``depth`` hidden ReLU layers of width ``hidden`` -> ``p`` logits. Bias-free by default.

    Input: int64 tokens of shape (N, 2) or (N, 3) (the ``=`` column is ignored). With
    p = 113, train fraction 0.4, full-batch AdamW (lr 5e-3, wd 1.0, betas (0.9, 0.99)) it
    reaches 99% validation accuracy after about 1,000 steps, about a minute of one CPU core
    (with wd 0 it does not generalize): the course's quick grokking model.
    """

    def __init__(self, p, hidden=200, depth=2, bias=False):
        super().__init__()
        self.p = check_int("p", p)
        check_int("hidden", hidden)
        check_int("depth", depth)
        self.net = _perceptron((2 * p, *([hidden] * depth), p), "relu", bias)
        self.register_buffer("vocab", torch.arange(p), persistent=False)

    def one_hot(self, tokens):
        """(N, 2p) float: one-hot of the first two token columns, concatenated."""
        if tokens.ndim != 2 or tokens.shape[1] not in (2, 3):
            raise ValueError(f"tokens must have shape (N, 2) or (N, 3), got {tuple(tokens.shape)}")
        # A comparison instead of F.one_hot: no range check (a host sync on GPU); a token
        # outside [0, p) gives an all-zero row.
        return (tokens[:, :2, None] == self.vocab).flatten(1).to(self.net[0].weight.dtype)

    def forward(self, tokens):
        return self.net(self.one_hot(tokens))
