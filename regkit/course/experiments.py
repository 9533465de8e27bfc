"""Seeded comparisons of training methods: every method over every seed through ``regkit.train.train``,
then one table of our accuracy next to the published number and the compute used.

Example::

    methods = [Method("SGD", "sgd", lambda m: SGD(m.parameters(), lr=0.1, momentum=0.9)),
               Method("SGDP", "sgdp", lambda m: SGDP(m.parameters(), lr=0.1, momentum=0.9))]
    runs = run_methods(methods, data, lambda: build_model("resnet18", 10, width=16), steps=500, seeds=[0, 1],
                       batch_size=128)
    table = comparison_table(runs, references={"sgd": "adamp.imagenet.resnet18.sgd.acc"})
    record_comparison(table, prefix="mine.cifar10.resnet18_w16", reproduction=False)

Every run of a seed starts from the same initial weights (``seed_everything(seed)`` right before the
model is built) and reads the training split in the same order (``DeviceLoader(seed=seed)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer

from regkit._validate import check_int
from regkit.course import record
from regkit.course.references import REFERENCES
from regkit.data import DeviceLoader, ImageDataset
from regkit.device import resolve_device
from regkit.history import History
from regkit.train import GradFn, Hook, seed_everything, train

METRICS = ("final", "best")


def select(requested: str, choices: Sequence[str], name: str = "experiments") -> list[str]:
    """The names in the comma-separated ``requested`` (``"all"``: every choice), in the order of ``choices``.

    >>> select("gnp, cpr", ("cpr", "implicit", "gnp"))
    ['cpr', 'gnp']
    """
    if not isinstance(requested, str):
        raise ValueError(f"{name} must be a comma-separated string of {', '.join(choices)} or 'all', "
                         f"got {requested!r}")
    names = [n.strip() for n in requested.split(",") if n.strip()]
    if names == ["all"]:
        return list(choices)
    unknown = [n for n in names if n not in choices]
    if unknown or not names:
        raise ValueError(f"{name}={requested!r}: unknown {unknown or 'empty selection'}; choose a comma-separated "
                         f"subset of {', '.join(choices)}, or 'all'")
    return [c for c in choices if c in names]


@dataclass(frozen=True)
class Method:
    """One compared training method (a row of the comparison table).

    ``name``: its label in tables and plots. ``key``: a short identifier, the ``<key>`` of record keys
    ``<prefix>.<key>.acc``. ``optimizer(model)``: builds the optimizer. ``batch_size``: overrides the
    experiment's. ``grad_fn(model, optimizer)``: builds ``train``'s ``grad_fn`` (e.g. micro-batch
    penalties), None for the default forward+backward. ``hooks(model, optimizer)``: extra
    ``train`` hooks of this method.
    """

    name: str
    key: str
    optimizer: Callable[[nn.Module], Optimizer]
    batch_size: int | None = None
    grad_fn: Callable[[nn.Module, Optimizer], GradFn] | None = None
    hooks: Callable[[nn.Module, Optimizer], Iterable[Hook]] | None = None


@dataclass
class Run:
    """One training run: its method, seed, batch size, ``History`` and what ``attach`` returned for it."""

    method: Method
    seed: int
    batch_size: int
    history: History
    attached: Any = None

    def test_acc(self) -> pd.Series:
        """Test accuracy (%) at every evaluation, indexed by step."""
        df = self.history.df
        if "test_acc" not in df:
            raise ValueError(f"{self.method.name} (seed {self.seed}) logged no test_acc")
        df = df.dropna(subset=["test_acc"])
        return pd.Series(100 * df["test_acc"].to_numpy(), index=df["step"].to_numpy(), name=self.method.name)

    def accuracy(self, metric: str = "final") -> float:
        """The test accuracy (%) at the last evaluation (``"final"``) or the best one (``"best"``)."""
        if metric not in METRICS:
            raise ValueError(f"metric={metric!r}; choose one of {METRICS}")
        acc = self.test_acc()
        return float(acc.iloc[-1] if metric == "final" else acc.max())


def run_methods(methods: Sequence[Method], data: ImageDataset, model: Callable[[], nn.Module], *, steps: int,
                seeds: Sequence[int], batch_size: int, device: str | torch.device | None = None,
                loss_fn: Callable = F.cross_entropy, augment: bool = True,
                scheduler: Callable[[Optimizer, int], Any] | None = None, eval_every: int | None = None,
                hooks: Callable[[nn.Module], Iterable[Hook]] | None = None,
                attach: Callable[[nn.Module, Optimizer], Any] | None = None, test_batch_size: int = 1000,
                autocast_dtype: torch.dtype | None = None, channels_last: bool = False,
                compile_model: bool | Mapping[str, Any] = False, progress: bool = True,
                meta: Mapping[str, Any] | None = None,
                normalization: tuple[Sequence[float], Sequence[float]] | None = None) -> list[Run]:
    """Train every method with every seed for ``steps`` optimizer steps; return the runs (seed-major order).

    Per run: ``seed_everything(seed)``; ``net = model()``; ``optimizer = method.optimizer(net)``;
    a ``DeviceLoader`` over ``data``'s training split (``method.batch_size or batch_size``, crop+flip
    when ``augment``, shuffled by ``seed``, normalized with ``data.mean/std``); then
    ``train(...)`` evaluating on the whole test split every ``eval_every`` steps (``test_acc``) with
    the hooks ``hooks(net)`` + ``method.hooks(net, optimizer)``, the schedule
    ``scheduler(optimizer, steps)`` (None: constant lr) and ``loss_fn``. ``attach(net, optimizer)``
    runs before training; its return value (e.g. a ``ConstraintRecorder``) is kept in ``Run.attached``.
    ``normalization=(mean, std)``: the per-channel statistics both loaders normalize with, in place of
    ``data``'s (e.g. those of the full-resolution images when ``data`` holds pooled ones).
    Speed (CUDA): ``autocast_dtype=torch.bfloat16``, ``channels_last=True``, ``compile_model``
    (True or the keyword arguments of ``nn.Module.compile``: the model's forward is compiled in place,
    its parameters and state_dict keep their names).
    """
    check_int("steps", steps)
    check_int("batch_size", batch_size)
    if isinstance(seeds, int) or not seeds:
        raise ValueError(f"seeds must be a non-empty sequence of ints, got {seeds!r}")
    if not methods:
        raise ValueError("methods is empty: give at least one Method")
    names = [m.name for m in methods]
    keys = [m.key for m in methods]
    for what, values in (("names", names), ("keys", keys)):
        if len(set(values)) != len(values):
            raise ValueError(f"method {what} must be unique, got {values}")
    for m in methods:
        if m.batch_size is not None:
            check_int(f"{m.name}: batch_size", m.batch_size)
    device = resolve_device(device)
    mean, std = normalization or (data.mean, data.std)
    common = dict(device=device, mean=mean, std=std)
    test_loader = DeviceLoader(data.x_test, data.y_test, test_batch_size, shuffle=False, drop_last=False, **common)
    runs = []
    for seed in seeds:
        for method in methods:
            seed_everything(seed)
            net = model()
            optimizer = method.optimizer(net)
            attached = attach(net, optimizer) if attach is not None else None
            if compile_model:
                net.compile(**(compile_model if isinstance(compile_model, Mapping) else {}))
            batch = method.batch_size or batch_size
            loader = DeviceLoader(data.x_train, data.y_train, batch, shuffle=True, augment=augment, seed=seed,
                                  **common)
            run_hooks = [*(hooks(net) if hooks is not None else ()),
                         *(method.hooks(net, optimizer) if method.hooks is not None else ())]
            history = train(
                net, optimizer, loader, steps=steps, loss_fn=loss_fn, eval_loaders={"test": test_loader},
                eval_every=eval_every, scheduler=scheduler(optimizer, steps) if scheduler is not None else None,
                hooks=run_hooks, grad_fn=method.grad_fn(net, optimizer) if method.grad_fn is not None else None,
                device=device, progress=progress, desc=f"{method.name} seed {seed}",
                autocast_dtype=autocast_dtype, channels_last=channels_last,
                meta={"dataset": data.name, "method": method.key, "seed": seed, "batch_size": batch,
                      **(meta or {})},
            )
            runs.append(Run(method, seed, batch, history, attached))
    return runs


def probe_batch(data: ImageDataset, size: int, device: str | torch.device | None = None) -> tuple[Tensor, Tensor]:
    """The first ``size`` training images, normalized as in training (no augmentation), and their labels,
    as one batch on ``device``: a fixed batch that measures every run the same way (e.g. for
    ``regkit.penalties.micro_grad_norm_hook``)."""
    check_int("size", size, 1, len(data.x_train), note="training images")
    loader = DeviceLoader(data.x_train[:size], data.y_train[:size], size, shuffle=False, device=device,
                          mean=data.mean, std=data.std)
    return next(iter(loader))


def runs_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run: method, key, seed, final and best test accuracy (%), final training loss,
    steps, batch size, examples seen (steps x batch), training and wall time (s), device."""
    rows = []
    for run in runs:
        meta = run.history.meta
        steps = run.history.rows[-1]["step"] if run.history.rows else 0
        rows.append({
            "method": run.method.name, "key": run.method.key, "seed": run.seed,
            "final acc (%)": run.accuracy("final"), "best acc (%)": run.accuracy("best"),
            "final train loss": run.history.last("train_loss"), "steps": steps, "batch": run.batch_size,
            "examples": steps * run.batch_size, "train s": meta.get("train_time_s", math.nan),
            "wall s": meta.get("wall_time_s", math.nan), "device": meta.get("device", "?"),
        })
    return pd.DataFrame(rows)


def comparison_table(runs: Sequence[Run], *, metric: str = "final",
                     references: Mapping[str, str | None] | None = None) -> pd.DataFrame:
    """Per method (rows in the order of first appearance): our mean and standard deviation over seeds of
    the test accuracy (``metric``: ``"final"`` or ``"best"`` evaluation), the published number of its
    reference key (``references[method.key]``, a key of ``regkit.course.references.REFERENCES``; NaN when
    there is none), ``ours - published``, and the compute: optimizer steps x batch size, mean wall
    time per seed, device. The standard deviation is the sample one (ddof 1): NaN for one seed.
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}; choose one of {METRICS}")
    if not runs:
        raise ValueError("runs is empty")
    references = dict(references or {})
    unknown = [ref for ref in references.values() if ref is not None and ref not in REFERENCES]
    if unknown:
        raise ValueError(f"unknown reference keys {unknown}; see regkit.course.references.REFERENCES")
    frame = runs_frame(runs)
    column = f"{metric} acc (%)"
    rows = []
    for name, group in frame.groupby("method", sort=False):
        key = group["key"].iloc[0]
        ref = references.get(key)
        published = REFERENCES[ref].value if ref is not None else math.nan
        mean = group[column].mean()
        steps, batch = group["steps"].iloc[0], group["batch"].iloc[0]
        rows.append({
            "method": name, "key": key, f"ours: {metric} acc (%)": mean,
            "std": group[column].std(ddof=1) if len(group) > 1 else math.nan, "seeds": len(group),
            "published (%)": published, "ours - published": mean - published, "reference": ref or "",
            "steps x batch": f"{steps} x {batch}", "wall s / seed": group["wall s"].mean(),
            "device": ", ".join(sorted(set(group["device"]))),
        })
    return pd.DataFrame(rows).set_index("method")


def record_comparison(table: pd.DataFrame, *, prefix: str, reproduction: bool, **meta: Any) -> dict[str, str]:
    """``regkit.course.record`` every row's mean accuracy; return ``{method: key used}``.

    Under the row's reference key when ``reproduction`` is True (the run used the published setting)
    and the row has one; else under ``<prefix>.<key>.acc``, so that a sanity check is never shown as
    a reproduction. ``meta`` (e.g. ``dataset=..., profile=...``) is recorded beside each value, with
    the row's std, seeds, steps x batch and device.
    """
    column = next((c for c in table.columns if str(c).startswith("ours: ")), None)
    if column is None:
        raise ValueError("table has no 'ours: ...' column: build it with comparison_table")
    metric = column.split()[1]
    used = {}
    for name, row in table.iterrows():
        key = row["reference"] if reproduction and row["reference"] else f"{prefix}.{row['key']}.acc"
        std = row["std"]
        record(key, round(float(row[column]), 3), metric=metric,
               std=None if math.isnan(std) else round(float(std), 3), seeds=int(row["seeds"]),
               compute=row["steps x batch"], device=row["device"], **meta)
        used[name] = key
    return used


def best_decay_slope(grid: pd.DataFrame, *, lr: str = "lr", decay: str = "wd", value: str = "err") -> float:
    """Least-squares slope of ``log10(best decay)`` against ``log10(lr)`` over a (lr, decay) grid of ``value``
    (lower is better; one row per cell): 0 when the best decay does not depend on the lr (an axis-aligned good
    region, Loshchilov & Hutter's separability), -1 when only the product ``lr * decay`` matters."""
    missing = [c for c in (lr, decay, value) if c not in grid]
    if missing:
        raise ValueError(f"grid has no column(s) {missing}; it has {list(grid.columns)}")
    best = grid.loc[grid.groupby(lr)[value].idxmin(), [lr, decay]]
    if len(best) < 2:
        raise ValueError(f"the grid needs at least two learning rates for a slope, got {len(best)}")
    x, y = np.log10(best[lr].to_numpy(float)), np.log10(best[decay].to_numpy(float))
    return float(np.polyfit(x, y, 1)[0])
