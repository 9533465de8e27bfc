"""Checkpoints of a training run: written atomically, read with ``weights_only=True``, checked on resume.

A checkpoint holds the model, the optimizer (and its class name), the scheduler, the loaders'
``state_dict()``, every RNG state, the step, the running training metrics and the history, so a resumed
run repeats the uninterrupted one bitwise when the loaders' batches depend only on their state.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regkit._files import write_atomically

CHECKPOINT_VERSION = 1
CHECKPOINT_KEYS = ("version", "step", "model", "optimizer", "scheduler", "train_loader", "eval_loaders", "running",
                   "rng", "history")


class CheckpointError(ValueError):
    """A file given as a checkpoint is not one ``train`` can resume from; the message names it and what to do."""


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, train_loader: Iterable,
                    eval_loaders: Mapping[str, Iterable]) -> dict[str, Any]:
    """The ``state_dict()`` of every stateful object of a run (None where it has none)."""
    return {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "train_loader": train_loader.state_dict() if hasattr(train_loader, "state_dict") else None,
        "eval_loaders": {n: ld.state_dict() for n, ld in eval_loaders.items() if hasattr(ld, "state_dict")},
    }


def restore(state: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             train_loader: Iterable, eval_loaders: Mapping[str, Iterable]) -> None:
    """Load what :func:`training_state` saved back into the run's objects."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if state["train_loader"] is not None and hasattr(train_loader, "load_state_dict"):
        train_loader.load_state_dict(state["train_loader"])
    else:
        warnings.warn("train_loader has no state_dict()/load_state_dict(): the resumed run restarts its "
                      "data stream, so it will not repeat the uninterrupted trajectory", stacklevel=3)
    for name, loader_state in state["eval_loaders"].items():
        if hasattr(eval_loaders.get(name), "load_state_dict"):
            eval_loaders[name].load_state_dict(loader_state)


def save_atomically(state: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` to a uniquely named temporary file beside ``path``, then ``os.replace``.

    Never a half-written file, also with several processes saving to one path at once (each
    writes its own temporary file; the last replace wins); the temporary file is removed on failure.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomically(path, buffer.getvalue())


def _not_a_checkpoint(path: str | os.PathLike, reason: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a valid regkit checkpoint ({reason}); delete it to start afresh, "
                           "or pass another checkpoint path")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train` (``weights_only=True``: plain containers and tensors).

    A missing file raises FileNotFoundError; a file that is not a complete checkpoint of this
    version (empty, truncated, another format, another content) raises :class:`CheckpointError`.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError):
        raise
    except Exception as err:  # any failure to read; torch's messages would advise weights_only=False: never shown
        empty = Path(path).is_file() and Path(path).stat().st_size == 0
        reason = "the file is empty" if empty else f"not a readable torch file, {type(err).__name__}"
        raise _not_a_checkpoint(path, reason) from None
    if not isinstance(state, dict):
        raise _not_a_checkpoint(path, f"it holds a {type(state).__name__}, not a dict")
    if state.get("version") != CHECKPOINT_VERSION:
        raise _not_a_checkpoint(path, f"version {state.get('version')!r}, expected {CHECKPOINT_VERSION}")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise _not_a_checkpoint(path, f"it lacks {', '.join(missing)}")
    return state


def check_optimizer_class(state: Mapping[str, Any], optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Refuse a checkpoint saved by another optimizer class (its param groups and state would be loaded
    silently). Checkpoints written before the class was recorded pass with a warning."""
    saved, used = state.get("optimizer_class"), type(optimizer).__name__
    if saved is None:
        warnings.warn(f"{path} does not record its optimizer class (an older checkpoint): make sure it was "
                      f"saved by {used}", stacklevel=3)
    elif saved != used:
        raise CheckpointError(f"{path} was saved by optimizer {saved}, but this run uses {used}: resume with "
                              f"{saved}, or pass another checkpoint path (or delete it) to start afresh")
