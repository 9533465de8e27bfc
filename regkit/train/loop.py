"""``train``: one seeded training loop for the whole course (the package docstring has an example).

The loop never synchronizes with the device between logging, evaluation and checkpoint points; the
running training metrics are summed on the device.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm
from tqdm.std import tqdm as text_tqdm

from regkit._files import check_writable_file
from regkit._validate import check_int
from regkit.device import synchronize
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
from regkit.train import checkpoint as checkpoints
from regkit.train.evaluation import autocast, batch_to, correct_predictions, evaluate
from regkit.train.hooks import Hook, StopTraining
from regkit.train.seeding import rng_state, seed_everything, set_rng_state

GradFn = Callable[[nn.Module, Tensor, Tensor], "Tensor | tuple[Tensor, Tensor]"]


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
        hits = correct_predictions(out, y)
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
        with autocast(device, autocast_dtype):
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
    return default if value is None else check_int(name, value)


def _loader_len(loader: Iterable) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


@dataclass
class _Plan:
    """The validated schedule of one ``train`` call."""

    total: int
    length: int | None
    eval_every: int | frozenset[int]  # every n steps, or at these steps
    log_every: int
    checkpoint_every: int | None
    eval_loaders: dict[str, Iterable]
    hooks: list[Hook]
    checkpoint: Path | None

    def evaluates(self, step: int) -> bool:
        """Whether ``step`` is an evaluation step (the last step always is)."""
        every = self.eval_every
        return step == self.total or (step in every if isinstance(every, frozenset) else step % every == 0)


def _eval_steps(eval_every: Any, total: int) -> int | frozenset[int]:
    """``eval_every`` as an int (default ``total // 20``) or, given as a collection of steps, a frozenset."""
    if eval_every is None or isinstance(eval_every, int):
        return _positive_int("eval_every", eval_every, default=max(1, total // 20))
    try:
        steps = frozenset(eval_every)
    except TypeError:
        raise ValueError(f"eval_every must be a positive int or a collection of steps, got {eval_every!r}") from None
    for step in steps:
        check_int("a step of eval_every", step, 1, total, note="steps of the run")
    return steps


def _plan(train_loader: Iterable, steps, epochs, eval_every, log_every, checkpoint_every, eval_loaders, hooks,
          callables: Iterable, autocast_dtype, resume: bool, checkpoint, meta) -> _Plan:
    """Check every argument of ``train`` before anything runs; ValueError/TypeError name the bad value."""
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
    eval_loaders = dict(eval_loaders or {})
    for name, loader in eval_loaders.items():
        if not isinstance(name, str) or not name or name == "train":
            raise ValueError(f"eval_loaders keys name the columns '<key>_loss'/'<key>_acc'; got {name!r} "
                             "('train' is taken by the running training metrics; use e.g. 'train_eval')")
        if _loader_len(loader) == 0:
            raise ValueError(f"eval_loaders[{name!r}] is empty (length 0): give it data or leave it out")
    hooks = list(hooks)
    for hook in [*hooks, *callables]:
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
    return _Plan(total, length, _eval_steps(eval_every, total),
                 _positive_int("log_every", log_every, default=max(1, total // 100)),
                 _positive_int("checkpoint_every", checkpoint_every), eval_loaders, hooks,
                 Path(checkpoint) if checkpoint is not None else None)


class _Loop:
    """One ``train`` call: the run's objects, its History, progress bar and time accounting."""

    def __init__(self, plan: _Plan, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 train_loader: Iterable, step_fn: dict[str, Any], device, channels_last: bool, meta):
        self.plan, self.optimizer, self.scheduler, self.train_loader = plan, optimizer, scheduler, train_loader
        self.step_fn, self.channels_last = step_fn, channels_last
        self.device = rank_device(device)
        self.data_parallel, self.main_process = is_distributed(), is_main_process()
        if plan.checkpoint is not None and self.main_process:
            check_writable_file("checkpoint", plan.checkpoint)
        self.wrapped = model if isinstance(model, DistributedDataParallel) else None
        self.model = model.module if self.wrapped is not None else model
        if self.data_parallel and getattr(train_loader, "world_size", None) == 1 and world_size() > 1:
            warnings.warn(f"train_loader is not sharded: each of the {world_size()} ranks trains on the same "
                          "batches; give it rank=regkit.distributed.rank(), world_size=regkit.distributed.world_size()",
                          stacklevel=3)
        self.model.to(self.device)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.running = _RunningMetrics(self.device, across_ranks=self.data_parallel)
        self.history = History(meta={"model": type(self.model).__name__, "optimizer": type(optimizer).__name__,
                                     "params": sum(p.numel() for p in self.model.parameters()),
                                     "train_time_s": 0.0, "eval_time_s": 0.0, **(meta or {})})
        self.forward, self.postfix = None, {}

    def begin(self, resume: bool, seed: int | None, meta) -> int:
        """Restore the checkpoint (``resume``) or seed; wrap the model in DDP; return the step to start after."""
        start, path = 0, self.plan.checkpoint
        if resume and path.exists():
            state = checkpoints.load_checkpoint(path)
            start = state["step"]
            if start > self.plan.total:
                raise ValueError(f"{path} is at step {start}, beyond the {self.plan.total} steps asked for")
            checkpoints.check_optimizer_class(state, self.optimizer, path)
            checkpoints.restore(state, self.model, self.optimizer, self.scheduler, self.train_loader,
                                self.plan.eval_loaders)
            self.running.load_state_dict(state["running"])
            self.history = History.from_dict(state["history"])
            self.history.meta.update(meta or {})
            self.history.meta.setdefault("resumed_at", []).append(start)
            set_rng_state(state["rng"])
        elif seed is not None:
            seed_everything(seed)
        dtype = self.step_fn["autocast_dtype"]
        self.history.meta.update(device=str(self.device), steps=self.plan.total, world_size=world_size(),
                                 autocast=str(dtype) if dtype else None)
        if self.data_parallel:  # after a resume, so that DDP starts from (and broadcasts) the restored weights
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = self.wrapped or DistributedDataParallel(self.model, device_ids=device_ids)
        return start

    def step(self, x: Tensor, y: Tensor) -> float | None:
        """One optimizer step (and scheduler step); the lr of the first group that the step used."""
        f = self.step_fn
        self.optimizer.step(_closure(self.model, self.optimizer, x, y, f["loss_fn"], f["grad_fn"], self.device,
                                     f["autocast_dtype"], self.running, self.forward))
        lr = self.optimizer.param_groups[0].get("lr")
        if self.scheduler is not None:
            self.scheduler.step()
        return lr

    def log(self, step: int, lr: float | None, bar) -> bool:
        """Log the running training metrics; False (and a warning) when the loss is not finite."""
        values = self.running.flush()
        if lr is not None:
            values["lr"] = float(lr)
        if self.plan.length:
            values["epoch"] = step / self.plan.length
        self.history.log(step, **values)
        self.postfix.update(loss=values["train_loss"])
        if "train_acc" in values:
            self.postfix["acc"] = values["train_acc"]
        bar.set_postfix(self.postfix, refresh=False)
        if math.isfinite(values["train_loss"]):
            return True
        if self.main_process:  # the same loss on every rank: all stop
            warnings.warn(f"training loss is {values['train_loss']} at step {step}: stopping", stacklevel=4)
        self.history.meta["stopped_at"] = step
        return False

    def evaluate(self, step: int, bar) -> bool:
        """Every evaluation loader and hook, logged at ``step``; True when a hook raised `StopTraining`."""
        if self.data_parallel:  # rank 0's BatchNorm statistics, so that every rank evaluates one model
            broadcast_buffers(self.model)
        for name, loader in self.plan.eval_loaders.items():
            result = evaluate(self.model, loader, self.step_fn["loss_fn"], device=self.device,
                              autocast_dtype=self.step_fn["autocast_dtype"], channels_last=self.channels_last,
                              across_ranks=self.data_parallel)
            self.history.log(step, **{f"{name}_{k}": v for k, v in result.items()})
            self.postfix[name] = result.get("acc", result["loss"])
        stop = False
        for hook in self.plan.hooks:
            try:
                self.history.log(step, **{k: float(v) for k, v in hook(step, self.model, self.optimizer).items()})
            except StopTraining:
                stop = True
        bar.set_postfix(self.postfix, refresh=False)
        return stop

    def save(self, step: int) -> None:
        checkpoints.save_atomically({
            "version": checkpoints.CHECKPOINT_VERSION, "step": step, "optimizer_class": type(self.optimizer).__name__,
            **checkpoints.training_state(self.model, self.optimizer, self.scheduler, self.train_loader,
                                         self.plan.eval_loaders),
            "running": self.running.state_dict(), "rng": rng_state(), "history": self.history.to_dict(),
        }, self.plan.checkpoint)

    def run(self, start: int, progress: bool, desc: str | None) -> History:
        """Steps ``start + 1 .. total``, with logging, evaluation and checkpoints; then the timings."""
        plan, meta = self.plan, self.history.meta
        stream = _BatchStream(self.train_loader)
        # Headless (the course runner): a text bar updated every few seconds, no widget comms.
        bar_kind, bar_interval = (text_tqdm, 5.0) if is_headless() else (tqdm, 0.1)
        bar = bar_kind(total=plan.total, initial=start, desc=desc, disable=not (progress and self.main_process),
                       unit="step", dynamic_ncols=True, mininterval=bar_interval)
        wall_start = tick = time.perf_counter()
        try:
            for step in range(start + 1, plan.total + 1):
                lr = self.step(*batch_to(stream.next(), self.device, self.channels_last, "train_loader"))
                bar.update()
                if (step % plan.log_every == 0 or step == plan.total) and not self.log(step, lr, bar):
                    break
                is_eval = plan.evaluates(step)
                every = plan.checkpoint_every
                save = plan.checkpoint is not None and (step == plan.total or (step % every == 0 if every else is_eval))
                if not (is_eval or save):
                    continue
                synchronize(self.device)
                meta["train_time_s"] += (now := time.perf_counter()) - tick
                stop = is_eval and self.evaluate(step, bar)
                if (save or (stop and plan.checkpoint is not None)) and self.main_process:
                    self.save(step)
                meta["eval_time_s"] += (tick := time.perf_counter()) - now
                if stop:
                    meta["stopped_at"] = step
                    break
        finally:
            bar.close()
        synchronize(self.device)
        meta["train_time_s"] += time.perf_counter() - tick
        meta["wall_time_s"] = time.perf_counter() - wall_start
        done = self.history.rows[-1]["step"] if self.history.rows else 0
        meta["time_per_step_s"] = meta["train_time_s"] / done if done else None
        if progress and self.main_process:
            print(_summary(self.history, desc))
        return self.history


def train(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable, *,
          steps: int | None = None, epochs: int | None = None, loss_fn: Callable = F.cross_entropy,
          eval_loaders: Mapping[str, Iterable] | None = None, eval_every: int | Iterable[int] | None = None,
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
    length); every ``eval_every`` steps (default ``steps // 20``; or at the steps of a collection, e.g.
    a log-spaced grid) and at the end ``<name>_loss``/``<name>_acc`` from :func:`evaluate` for every
    ``eval_loaders`` entry and the values returned by each ``hook(step, model, optimizer)`` (an
    evaluation loader of length 0 is refused before training). The loop never synchronises with the
    device between these points. A non-finite training loss stops the run (with a warning), and so
    does a hook that raises :class:`StopTraining` (after that evaluation).

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
    plan = _plan(train_loader, steps, epochs, eval_every, log_every, checkpoint_every, eval_loaders, hooks,
                 (grad_fn, loss_fn), autocast_dtype, resume, checkpoint, meta)
    step_fn = {"loss_fn": loss_fn, "grad_fn": grad_fn, "autocast_dtype": autocast_dtype}
    loop = _Loop(plan, model, optimizer, scheduler, train_loader, step_fn, device, channels_last, meta)
    start = loop.begin(resume, seed, meta)
    return loop.run(start, progress, desc)


def _summary(history: History, desc: str | None) -> str:
    """One line with the final numbers (a saved notebook shows the progress bar at 0%)."""
    meta = history.meta
    last = history.rows[-1] if history.rows else {"step": 0}
    numbers = " ".join(f"{k}={v:.4g}" for k, v in last.items() if k not in ("step", "epoch", "lr")
                       and "/" not in k and isinstance(v, float))
    per_step = meta.get("time_per_step_s")
    timing = f"{1000 * per_step:.3g} ms/step" if per_step else "no steps run"
    return f"{desc or 'train'}: step {last['step']}/{meta['steps']} on {meta['device']} ({timing}) | {numbers}"
