"""One seeded training loop for the whole course, with evaluation, metric hooks, progress and resume.

``train(model, optimizer, loader, steps=...)`` runs ``optimizer.step(closure)`` on an endless
stream of ``(x, y)`` batches and returns a :class:`~regkit.history.History`. The closure
zero-grads, computes the loss and its gradient and returns the loss, so two-pass optimizers
(SAM, finite-difference gradient-norm penalties) that call it twice work unchanged.

Example::

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    hist = train(model, opt, train_loader, steps=2000, eval_loaders={"val": test_loader},
                 scheduler=warmup_cosine(opt, 100, 2000), hooks=[weight_norm_hook(model)])
    hist.df.plot(x="step", y=["train_loss", "val_loss"])
"""

from __future__ import annotations

import io
import json
import math
import operator
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm
from tqdm.std import tqdm as text_tqdm

from regkit._files import check_writable_file, write_atomically
from regkit.device import default_device, resolve_device  # noqa: F401  (re-exported: part of regkit.train's API)
from regkit.distributed import (
    all_reduce_sum,
    average_gradients,
    broadcast_buffers,
    is_distributed,
    is_main_process,
    rank_device,
    world_size,
)
from regkit.headless import is_headless
from regkit.history import History
from regkit.metrics import grad_norm, weight_norms

Hook = Callable[[int, nn.Module, torch.optim.Optimizer], Mapping[str, float]]
GradFn = Callable[[nn.Module, Tensor, Tensor], "Tensor | tuple[Tensor, Tensor]"]
CHECKPOINT_VERSION = 1
CHECKPOINT_KEYS = ("version", "step", "model", "optimizer", "scheduler", "train_loader", "eval_loaders", "running",
                   "rng", "history")


class CheckpointError(ValueError):
    """A file given as a checkpoint is not one ``train`` can resume from; the message names it and what to do."""


# --- devices and seeding -------------------------------------------------------------------------------

def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA/MPS device).

    ``deterministic=True`` also makes torch use deterministic kernels (raising on ops that
    have none) and turns the cuDNN autotuner off; it never turns determinism back off.
    """
    try:
        seed = operator.index(seed)
    except TypeError:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}") from None
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


# --- learning-rate schedule ----------------------------------------------------------------------------

def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  final_fraction: float = 0.1) -> LambdaLR:
    """Linear warmup then cosine decay to a floor, as a ``LambdaLR`` stepped once per optimizer step.

    With ``W = warmup_steps``, ``T = total_steps``, ``f = final_fraction``, the multiplier of
    each group's initial lr after ``s`` scheduler steps is::

        (s + 1) / W                                      for s < W   (lr/W at the first step)
        f + (1 - f) * (1 + cos(pi * (s - W) / (T - W))) / 2   for W <= s < T
        f                                                for s >= T
    """
    for name, value in (("warmup_steps", warmup_steps), ("total_steps", total_steps)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
    if not 0.0 <= final_fraction <= 1.0:
        raise ValueError(f"final_fraction must be in [0, 1], got {final_fraction!r}")

    def multiplier(s: int) -> float:
        if s < warmup_steps:
            return (s + 1) / warmup_steps
        if s >= total_steps:
            return final_fraction
        progress = (s - warmup_steps) / (total_steps - warmup_steps)
        return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, multiplier)


# --- evaluation -----------------------------------------------------------------------------------------

def _correct(out: Tensor | None, y: Tensor) -> Tensor | None:
    """Number of correct argmax predictions, or None when ``out``/``y`` are not (..., C) logits/labels."""
    if out is None or y.is_floating_point() or out.shape[:-1] != y.shape:
        return None
    return (out.argmax(-1) == y).sum()


def _batch_to(batch: Any, device: torch.device, channels_last: bool, what: str) -> tuple[Tensor, Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise ValueError(f"{what} must yield (x, y) pairs, got {type(batch).__name__}")
    x, y = (t.to(device, non_blocking=True) for t in batch)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def _autocast(device: torch.device, dtype: torch.dtype | None):
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
            x, y = _batch_to(batch, device, channels_last, "loader")
            if y.shape[0] == 0:
                continue
            with _autocast(device, autocast_dtype):
                out = model(x)
                loss = loss_fn(out, y)
            loss_sum += loss.float() * y.shape[0]
            samples += y.shape[0]
            hits = _correct(out, y)
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


# --- metric hooks ---------------------------------------------------------------------------------------

def _select(model: nn.Module, names: Iterable[str] | Callable[[str, Tensor], bool] | None,
            default: Callable[[str, Tensor], bool] = lambda n, p: True) -> list[tuple[str, Tensor]]:
    """The named parameters chosen by a list of names or a predicate ``(name, param) -> bool``."""
    named = dict(model.named_parameters())
    if names is None or callable(names):
        keep = default if names is None else names
        return [(n, p) for n, p in named.items() if keep(n, p)]
    names = list(names)
    unknown = [n for n in names if n not in named]
    if unknown:
        raise ValueError(f"names {unknown} are not parameters of the model; valid: {', '.join(list(named)[:8])}"
                         f"{', ...' if len(named) > 8 else ''}")
    return [(n, named[n]) for n in names]


def weight_norm_hook(model: nn.Module, names: Iterable[str] | Callable | None = None,
                     per_tensor: bool = True) -> Hook:
    """Hook logging ``wnorm`` (L2 norm of all chosen weights together) and ``wnorm/<name>`` per tensor.

    ``names``: parameter names or a predicate ``(name, param) -> bool``; default all parameters.
    """
    params = _select(model, names)

    def hook(step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        norms = weight_norms(params)
        values = {f"wnorm/{n}": v for n, v in norms.items()} if per_tensor else {}
        values["wnorm"] = math.sqrt(sum(v * v for v in norms.values()))
        return values

    return hook


def grad_norm_hook(model: nn.Module, names: Iterable[str] | Callable | None = None,
                   per_tensor: bool = False) -> Hook:
    """Hook logging ``gnorm`` (L2 norm of the gradients left by the last step) and optionally ``gnorm/<name>``.

    With a two-pass optimizer the gradients are those of its last closure call.
    """
    params = _select(model, names)

    def hook(step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        with_grad = [(n, p) for n, p in params if p.grad is not None]
        norms = grad_norm(with_grad, per_tensor=True).tolist()
        values = {f"gnorm/{n}": v for (n, _), v in zip(with_grad, norms, strict=True)} if per_tensor else {}
        values["gnorm"] = math.sqrt(sum(v * v for v in norms))
        return values

    return hook


def effective_step_hook(model: nn.Module, names: Iterable[str] | Callable | None = None) -> Hook:
    """Hook logging ``eff_step/<name> = lr / ||w||^2`` (see :func:`regkit.metrics.effective_step_sizes`).

    Meant for scale-invariant tensors (weights followed by a normalisation layer); ``names``
    defaults to every parameter with ``ndim >= 2``. The lr is read from the optimizer group
    holding each tensor at call time (so schedules show); tensors in no group are skipped.
    """
    params = _select(model, names, default=lambda n, p: p.ndim >= 2)

    def hook(step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        lr_of = {id(p): float(group["lr"]) for group in optimizer.param_groups for p in group["params"]}
        chosen = [(n, p) for n, p in params if id(p) in lr_of]
        norms = weight_norms(chosen)
        return {f"eff_step/{n}": lr_of[id(p)] / norms[n] ** 2 for n, p in chosen}

    return hook


# --- the loop -------------------------------------------------------------------------------------------

class _RunningMetrics:
    """Training loss and correct predictions summed on the device since the last log (no host sync).

    ``across_ranks``: each rank sums its own slice's mean loss; ``flush`` averages over the ranks.
    """

    def __init__(self, device: torch.device, across_ranks: bool = False):
        self.across_ranks = across_ranks
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.int64)
        self.steps = 0
        self.labels = 0

    def add(self, loss: Tensor, out: Tensor | None, y: Tensor) -> None:
        self.loss_sum += loss.detach().float()
        self.steps += 1
        hits = _correct(out, y)
        if hits is not None:
            self.correct += hits
            self.labels += y.numel()

    def flush(self) -> dict[str, float]:
        """Means since the last flush (one host synchronisation; one all-reduce across ranks), then reset."""
        totals = torch.stack([self.loss_sum, self.correct.float(), self.loss_sum.new_tensor(float(self.labels))])
        ranks = 1
        if self.across_ranks:
            all_reduce_sum(totals)
            ranks = world_size()
        loss_sum, correct, labels = totals.tolist()
        values = {"train_loss": loss_sum / (self.steps * ranks)}
        if labels:
            values["train_acc"] = correct / labels
        self.loss_sum.zero_()
        self.correct.zero_()
        self.steps = self.labels = 0
        return values

    def state_dict(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum, "correct": self.correct, "steps": self.steps, "labels": self.labels}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.loss_sum.copy_(state["loss_sum"])
        self.correct.copy_(state["correct"])
        self.steps, self.labels = state["steps"], state["labels"]


class _BatchStream:
    """An endless stream of batches: iterate the loader again whenever an epoch ends."""

    def __init__(self, loader: Iterable):
        self.loader = loader
        self.iterator = None

    def next(self) -> Any:
        if self.iterator is not None:
            try:
                return next(self.iterator)
            except StopIteration:
                pass
        self.iterator = iter(self.loader)
        try:
            return next(self.iterator)
        except StopIteration:
            raise ValueError("train_loader yielded no batches") from None


def _closure(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, loss_fn: Callable,
             grad_fn: GradFn | None, device: torch.device, autocast_dtype: torch.dtype | None,
             running: _RunningMetrics, forward: nn.Module | None = None) -> Callable[[], Tensor]:
    """The step's closure: zero-grad, loss and gradients into ``.grad``, return the loss.

    Only the first call is added to the running metrics (a two-pass optimizer calls it twice).
    ``forward``: the DDP wrapper of ``model`` under torch.distributed (its backward averages the
    gradients over the ranks); ``grad_fn`` gets the plain model and the gradients it leaves are
    averaged explicitly.
    """
    logged = False

    def closure() -> Tensor:
        nonlocal logged
        optimizer.zero_grad(set_to_none=True)
        out = None
        with _autocast(device, autocast_dtype):
            if grad_fn is None:
                out = (forward or model)(x)
                loss = loss_fn(out, y)
            else:
                loss = grad_fn(model, x, y)
        if grad_fn is None:
            loss.backward()
        else:
            if forward is not None:
                average_gradients(model.parameters())
            if isinstance(loss, tuple):
                loss, out = loss
        if not isinstance(loss, Tensor):
            raise TypeError(f"grad_fn must return the loss tensor or (loss, logits), got {type(loss).__name__}")
        if not logged:
            running.add(loss, out, y)
            logged = True
        return loss

    return closure


def _positive_int(name: str, value: Any, default: int | None = None) -> int | None:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _loader_len(loader: Iterable) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


def _training_state(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, train_loader: Iterable,
                    eval_loaders: Mapping[str, Iterable]) -> dict[str, Any]:
    """The ``state_dict()`` of every stateful object of a run (None where it has none)."""
    return {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "train_loader": train_loader.state_dict() if hasattr(train_loader, "state_dict") else None,
        "eval_loaders": {n: ld.state_dict() for n, ld in eval_loaders.items() if hasattr(ld, "state_dict")},
    }


def _restore(state: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             train_loader: Iterable, eval_loaders: Mapping[str, Iterable]) -> None:
    """Load what :func:`_training_state` saved back into the run's objects."""
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


def _save_atomically(state: Mapping[str, Any], path: Path) -> None:
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


def _check_optimizer_class(state: Mapping[str, Any], optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Refuse a checkpoint saved by another optimizer class (its param groups and state would be loaded
    silently). Checkpoints written before the class was recorded pass with a warning."""
    saved, used = state.get("optimizer_class"), type(optimizer).__name__
    if saved is None:
        warnings.warn(f"{path} does not record its optimizer class (an older checkpoint): make sure it was "
                      f"saved by {used}", stacklevel=3)
    elif saved != used:
        raise CheckpointError(f"{path} was saved by optimizer {saved}, but this run uses {used}: resume with "
                              f"{saved}, or pass another checkpoint path (or delete it) to start afresh")


def train(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable, *,
          steps: int | None = None, epochs: int | None = None, loss_fn: Callable = F.cross_entropy,
          eval_loaders: Mapping[str, Iterable] | None = None, eval_every: int | None = None,
          scheduler: Any = None, hooks: Iterable[Hook] = (), grad_fn: GradFn | None = None,
          device: str | torch.device | None = None, checkpoint: str | os.PathLike | None = None,
          checkpoint_every: int | None = None, resume: bool = False, progress: bool = True,
          desc: str | None = None, seed: int | None = None, log_every: int | None = None,
          autocast_dtype: torch.dtype | None = None, channels_last: bool = False,
          meta: Mapping[str, Any] | None = None) -> History:
    """Train for ``steps`` optimizer steps (or ``epochs`` passes over ``train_loader``) and return the History.

    Each step takes the next ``(x, y)`` batch (the loader is iterated again at the end of an
    epoch) and calls ``optimizer.step(closure)``; the closure zero-grads, computes
    ``loss = loss_fn(model(x), y)`` and ``loss.backward()`` (or calls ``grad_fn(model, x, y)``,
    which must leave the gradients in ``.grad`` and return the loss, or ``(loss, logits)`` to
    get a training accuracy) and returns the loss. Only the first closure call of a step is
    logged, so a two-pass optimizer logs the loss at the current weights. ``scheduler.step()``
    follows every optimizer step.

    Logged rows (``History.df``): every ``log_every`` steps (default ``steps // 100``) the mean
    ``train_loss`` (and ``train_acc`` for classification) of the steps since the last log, the
    ``lr`` of the first param group used by that step and ``epoch`` (when the loader has a
    length); every ``eval_every`` steps (default ``steps // 20``) and at the end
    ``<name>_loss``/``<name>_acc`` from :func:`evaluate` for every ``eval_loaders`` entry and the
    values returned by each ``hook(step, model, optimizer)`` (an evaluation loader of length 0 is
    refused before training). The loop never synchronises with the device between these points.
    A non-finite training loss stops the run (with a warning).

    ``checkpoint``: a file written atomically every ``checkpoint_every`` steps (default: at every
    evaluation) and at the end, holding the model, optimizer (and its class name), scheduler,
    loaders' ``state_dict()``, every RNG state, the step and the history; a path that cannot be
    written (a directory, a read-only folder) is refused before training. ``resume=True``
    continues from it when it exists (else starts afresh): the resumed run reproduces the
    uninterrupted one bitwise when the loaders' batches depend only on their state. A file that is
    not a valid checkpoint, or one saved by another optimizer class, raises
    :class:`CheckpointError` (one without the class, from before it was recorded, warns).
    ``seed`` seeds everything at a fresh start (model initialisation happens before, so seed that
    yourself).
    ``device``: ``None`` -> cuda, mps or cpu; the model is moved there and batches follow.
    ``autocast_dtype=torch.bfloat16`` runs forward passes (and ``grad_fn``) under autocast;
    ``channels_last`` converts the model and 4-D inputs. ``meta``: JSON-serialisable facts
    (e.g. ``{"dataset": ds.name}``) stored in ``History.meta`` beside the device and timings.
    ``progress``: a ``tqdm.auto`` bar (a widget in notebooks; text when ``regkit.headless``) and a final
    one-line summary.
    ``History.meta`` also holds ``train_time_s`` and ``eval_time_s`` (evaluation, hooks and
    checkpoints), summed over resumed runs, ``time_per_step_s`` and this call's ``wall_time_s``.

    Under torch.distributed (e.g. torchrun, see :mod:`regkit.distributed`) the model is wrapped
    in ``DistributedDataParallel`` (or given wrapped): each rank trains on its slice of the global
    batch (``DeviceLoader(..., rank=r, world_size=W)``) and DDP averages the gradients, so the
    parameters follow the single-process run with the same global batch (BatchNorm layers then
    normalize per rank, unless converted to ``SyncBatchNorm``). Logged training metrics and
    evaluations are reduced over the ranks, every rank returns the same History, and only rank 0
    shows progress, prints and writes the checkpoint. ``device=None`` picks ``cuda:LOCAL_RANK``.
    """
    length = _loader_len(train_loader)
    if (steps is None) == (epochs is None):
        raise ValueError(f"give exactly one of steps and epochs, got steps={steps!r}, epochs={epochs!r}")
    if epochs is not None:
        _positive_int("epochs", epochs)
        if length is None:
            raise ValueError("epochs needs a train_loader with len(); give steps instead")
        if length == 0:
            raise ValueError("train_loader has length 0")
        total = epochs * length
    else:
        total = _positive_int("steps", steps)
    eval_every = _positive_int("eval_every", eval_every, default=max(1, total // 20))
    log_every = _positive_int("log_every", log_every, default=max(1, total // 100))
    checkpoint_every = _positive_int("checkpoint_every", checkpoint_every)
    eval_loaders = dict(eval_loaders or {})
    for name, loader in eval_loaders.items():
        if not isinstance(name, str) or not name or name == "train":
            raise ValueError(f"eval_loaders keys name the columns '<key>_loss'/'<key>_acc'; got {name!r} "
                             "('train' is taken by the running training metrics; use e.g. 'train_eval')")
        if _loader_len(loader) == 0:
            raise ValueError(f"eval_loaders[{name!r}] is empty (length 0): give it data or leave it out")
    hooks = list(hooks)
    for hook in [*hooks, grad_fn, loss_fn]:
        if hook is not None and not callable(hook):
            raise TypeError(f"hooks, grad_fn and loss_fn must be callables, got {hook!r}")
    if autocast_dtype not in (None, torch.bfloat16):
        raise ValueError(f"autocast_dtype must be None or torch.bfloat16, got {autocast_dtype!r} "
                         "(float16 would need loss scaling)")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=PATH")
    if checkpoint_every is not None and checkpoint is None:
        raise ValueError("checkpoint_every needs checkpoint=PATH")
    try:
        json.dumps(dict(meta or {}))
    except TypeError as err:
        raise ValueError(f"meta must be JSON-serialisable: {err}") from None
    device = rank_device(device)
    data_parallel = is_distributed()
    main_process = is_main_process()
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and main_process:
        check_writable_file("checkpoint", checkpoint)
    wrapped = model if isinstance(model, DistributedDataParallel) else None
    model = model.module if wrapped is not None else model
    if data_parallel and getattr(train_loader, "world_size", None) == 1 and world_size() > 1:
        warnings.warn(f"train_loader is not sharded: each of the {world_size()} ranks trains on the same batches; "
                      "give it rank=regkit.distributed.rank(), world_size=regkit.distributed.world_size()",
                      stacklevel=2)

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    running = _RunningMetrics(device, across_ranks=data_parallel)
    history = History(meta={"model": type(model).__name__, "optimizer": type(optimizer).__name__,
                            "params": sum(p.numel() for p in model.parameters()),
                            "train_time_s": 0.0, "eval_time_s": 0.0, **(meta or {})})
    start = 0
    if resume and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        start = state["step"]
        if start > total:
            raise ValueError(f"{checkpoint} is at step {start}, beyond the {total} steps asked for")
        _check_optimizer_class(state, optimizer, checkpoint)
        _restore(state, model, optimizer, scheduler, train_loader, eval_loaders)
        running.load_state_dict(state["running"])
        history = History.from_dict(state["history"])
        history.meta.update(meta or {})
        history.meta.setdefault("resumed_at", []).append(start)
        _set_rng_state(state["rng"])
    elif seed is not None:
        seed_everything(seed)
    history.meta.update(device=str(device), steps=total, autocast=str(autocast_dtype) if autocast_dtype else None,
                        world_size=world_size())
    forward = None
    if data_parallel:  # after a resume, so that DDP starts from (and broadcasts) the restored weights
        device_ids = [device.index] if device.type == "cuda" else None
        forward = wrapped if wrapped is not None else DistributedDataParallel(model, device_ids=device_ids)

    stream = _BatchStream(train_loader)
    postfix: dict[str, float] = {}
    # Headless (the course runner): a text bar updated every few seconds, no widget comms.
    bar_kind, bar_interval = (text_tqdm, 5.0) if is_headless() else (tqdm, 0.1)
    bar = bar_kind(total=total, initial=start, desc=desc, disable=not (progress and main_process), unit="step",
                   dynamic_ncols=True, mininterval=bar_interval)
    wall_start = tick = time.perf_counter()
    try:
        for step in range(start + 1, total + 1):
            x, y = _batch_to(stream.next(), device, channels_last, "train_loader")
            optimizer.step(_closure(model, optimizer, x, y, loss_fn, grad_fn, device, autocast_dtype, running,
                                    forward))
            lr = optimizer.param_groups[0].get("lr")
            if scheduler is not None:
                scheduler.step()
            bar.update()

            if step % log_every == 0 or step == total:
                values = running.flush()
                if lr is not None:
                    values["lr"] = float(lr)
                if length:
                    values["epoch"] = step / length
                history.log(step, **values)
                postfix.update(loss=values["train_loss"])
                if "train_acc" in values:
                    postfix["acc"] = values["train_acc"]
                bar.set_postfix(postfix, refresh=False)
                if not math.isfinite(values["train_loss"]):  # the same on every rank: all stop
                    if main_process:
                        warnings.warn(f"training loss is {values['train_loss']} at step {step}: stopping",
                                      stacklevel=2)
                    history.meta["stopped_at"] = step
                    break

            is_eval = step % eval_every == 0 or step == total
            save = checkpoint is not None and (step == total or (step % checkpoint_every == 0 if checkpoint_every
                                                                 else is_eval))
            if is_eval or save:
                _synchronize(device)
                now = time.perf_counter()
                history.meta["train_time_s"] += now - tick
                tick = now
            if is_eval:
                if data_parallel:  # rank 0's BatchNorm statistics, so that every rank evaluates one model
                    broadcast_buffers(model)
                for name, loader in eval_loaders.items():
                    result = evaluate(model, loader, loss_fn, device=device, autocast_dtype=autocast_dtype,
                                      channels_last=channels_last, across_ranks=data_parallel)
                    history.log(step, **{f"{name}_{k}": v for k, v in result.items()})
                    postfix[name] = result.get("acc", result["loss"])
                for hook in hooks:
                    history.log(step, **{k: float(v) for k, v in hook(step, model, optimizer).items()})
                bar.set_postfix(postfix, refresh=False)
            if save and main_process:
                _save_atomically({
                    "version": CHECKPOINT_VERSION, "step": step, "optimizer_class": type(optimizer).__name__,
                    **_training_state(model, optimizer, scheduler, train_loader, eval_loaders),
                    "running": running.state_dict(), "rng": _rng_state(), "history": history.to_dict(),
                }, checkpoint)
            if is_eval or save:
                now = time.perf_counter()
                history.meta["eval_time_s"] += now - tick
                tick = now
    finally:
        bar.close()
    _synchronize(device)
    history.meta["train_time_s"] += time.perf_counter() - tick
    history.meta["wall_time_s"] = time.perf_counter() - wall_start
    done = history.rows[-1]["step"] if history.rows else 0
    history.meta["time_per_step_s"] = history.meta["train_time_s"] / done if done else None
    if progress and main_process:
        print(_summary(history, desc))
    return history


def _summary(history: History, desc: str | None) -> str:
    """One line with the final numbers (a saved notebook shows the progress bar at 0%)."""
    meta = history.meta
    last = history.rows[-1] if history.rows else {"step": 0}
    numbers = " ".join(f"{k}={v:.4g}" for k, v in last.items() if k not in ("step", "epoch", "lr")
                       and "/" not in k and isinstance(v, float))
    per_step = meta.get("time_per_step_s")
    timing = f"{1000 * per_step:.3g} ms/step" if per_step else "no steps run"
    return f"{desc or 'train'}: step {last['step']}/{meta['steps']} on {meta['device']} ({timing}) | {numbers}"
