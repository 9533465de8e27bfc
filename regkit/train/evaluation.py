"""``evaluate``: loss and accuracy over a whole loader (also across torch.distributed ranks), and the
batch/device helpers the training loop shares with it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regkit.device import resolve_device
from regkit.distributed import all_reduce_sum, is_distributed


def correct_predictions(out: Tensor | None, y: Tensor) -> Tensor | None:
    """Number of correct argmax predictions, or None when ``out``/``y`` are not (..., C) logits/labels."""
    if out is None or y.is_floating_point() or out.shape[:-1] != y.shape:
        return None
    return (out.argmax(-1) == y).sum()


def batch_to(batch: Any, device: torch.device, channels_last: bool, what: str) -> tuple[Tensor, Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise ValueError(f"{what} must yield (x, y) pairs, got {type(batch).__name__}")
    x, y = (t.to(device, non_blocking=True) for t in batch)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    tensor = next(iter(model.buffers()), None) if tensor is None else tensor
    return tensor.device if tensor is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, loss_fn: Callable = F.cross_entropy, *,
             device: str | torch.device | None = None, autocast_dtype: torch.dtype | None = None,
             channels_last: bool = False, across_ranks: bool | None = None) -> dict[str, float]:
    """``{"loss": ..., "acc": ...}`` over a whole loader, in ``model.eval()`` mode (restored after).

    ``loss_fn(out, y)`` returns the batch mean; the result is the mean over samples. ``acc`` is
    the argmax accuracy, present when ``out`` has shape ``y.shape + (C,)`` and ``y`` holds class
    indices. ``device`` defaults to the model's. ``across_ranks`` (default: when torch.distributed
    is initialized; every rank must then call ``evaluate``) sums loss, hits and counts over the
    ranks: the mean over the union of the ranks' samples (with a sharded loader, the whole split;
    with the same unsharded loader on every rank, the same numbers as one rank). Empty batches
    (a rank's slice of a short last batch) are skipped.
    """
    device = _model_device(model) if device is None else resolve_device(device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    samples = labels = 0
    try:
        for batch in loader:
            x, y = batch_to(batch, device, channels_last, "loader")
            if y.shape[0] == 0:
                continue
            with autocast(device, autocast_dtype):
                out = model(x)
                loss = loss_fn(out, y)
            loss_sum += loss.float() * y.shape[0]
            samples += y.shape[0]
            hits = correct_predictions(out, y)
            if hits is not None:
                correct += hits
                labels += y.numel()
    finally:
        model.train(was_training)
    totals = torch.stack([loss_sum.double(), correct.double(), loss_sum.new_tensor(samples, dtype=torch.float64),
                          loss_sum.new_tensor(labels, dtype=torch.float64)])
    if is_distributed() if across_ranks is None else across_ranks:
        all_reduce_sum(totals)
    loss_total, correct_total, samples, labels = totals.tolist()
    if samples == 0:
        raise ValueError("loader yielded no batches")
    result = {"loss": loss_total / samples}
    if labels:
        result["acc"] = correct_total / labels
    return result
