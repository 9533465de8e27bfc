"""Notebook 09's ``cpu``-profile experiments (evidence/DESIGN.md "09"): weight decay as dynamics, with seeds.

Each experiment trains a BatchNorm MLP (`bn_mlp`) with regkit's AdamW on pooled images (`design_split`) and
returns ``(values, frame)``: the per-seed values that `regkit.course.evidence.CLAIMS` names (``{name: {seed:
value}}``, ready for `regkit.course.evidence.package`) and a frame for the notebook's tables and plots.

- `timescale_evidence` (Wang & Aitchison, ICML 2025): a grid over the EMA timescale ``tau_epoch`` at several
  training-set sizes; per seed, how fast the best ``tau_epoch`` and the best ``wd`` move with the size.
- `equilibrium_evidence` (Kosson et al., ICML 2024): the RMS row norm and angular update of the scale-invariant
  hidden matrices at the end of a constant-lr run against `regkit.diagnostics.rotation.adamw_equilibrium`.
- `schedule_evidence` (Defazio et al., 2025): the gradient norm of those matrices under a cosine schedule, at
  the end against the middle of the run, without and with ``corrected=True``.

A design is the ``evidence`` entry of notebook 09's ``cpu`` catalog row; ``validation=True`` runs it on the
split the settings were chosen on (the last ``validation_size`` training images as the test split).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regkit.data import load_images
from regkit.data.label_noise import validation_split
from regkit.data.loader import DeviceLoader
from regkit.diagnostics.rotation import RotationMonitor, adamw_equilibrium
from regkit.history import History
from regkit.optim import AdamW, weight_decay_for_timescale
from regkit.train import train, warmup_cosine

Values = dict[str, dict[int, float]]
HIDDEN = ("0.weight", "3.weight")
"""The scale-invariant matrices of `bn_mlp`: Linear layers without bias, each followed by BatchNorm."""


def bn_mlp(in_features: int = 196, width: int = 128, num_classes: int = 10) -> nn.Sequential:
    """``in -> width -> width -> classes`` with BatchNorm after each hidden Linear (their rows are scale-invariant)."""
    return nn.Sequential(nn.Linear(in_features, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(),
                         nn.Linear(width, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(),
                         nn.Linear(width, num_classes))


class Split(NamedTuple):
    """Flattened, standardized features and labels of a training and a test split."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def design_split(design: Mapping[str, Any], validation: bool = False) -> Split:
    """The design's ``dataset`` pooled to ``image_size`` and flattened, each feature standardized with the mean and
    standard deviation of the first ``train_images`` training images (the most any run uses). ``validation``: the
    test split is the last ``validation_size`` training images (`regkit.data.label_noise.validation_split`)."""
    data = load_images(design["dataset"], verbose=False)
    if validation:
        data = validation_split(data, design["validation_size"])
    if data.image_size % design["image_size"] or len(data.x_train) < design["train_images"]:
        raise ValueError(f"image_size={design['image_size']!r} must divide {data.name}'s {data.image_size} and "
                         f"train_images={design['train_images']!r} be at most its {len(data.x_train)} training images")
    factor = data.image_size // design["image_size"]

    def features(x: Tensor) -> Tensor:
        return F.avg_pool2d(x.float().div(255), factor).flatten(1)

    x_train, x_test = features(data.x_train[:design["train_images"]]), features(data.x_test)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-3
    return Split((x_train - mean) / std, data.y_train[:design["train_images"]], (x_test - mean) / std, data.y_test)


def adamw(model: nn.Sequential, lr: float, weight_decay: float, decay: str = "hidden", **kwargs: Any) -> AdamW:
    """AdamW decaying `HIDDEN` (``decay="hidden"``) or every matrix (``"matrices"``: the head too); biases and
    BatchNorm parameters never. ``kwargs``: e.g. ``corrected=True``."""
    if decay not in ("hidden", "matrices"):
        raise ValueError(f"decay must be 'hidden' or 'matrices', got {decay!r}")
    named = dict(model.named_parameters())
    decayed = [n for n, p in named.items() if n in HIDDEN or (decay == "matrices" and p.ndim == 2)]
    return AdamW([{"params": [named[n] for n in decayed]},
                  {"params": [p for n, p in named.items() if n not in decayed], "weight_decay": 0.0}],
                 lr=lr, weight_decay=weight_decay, **kwargs)


def _train(split: Split, size: int, seed: int, steps: int, design: Mapping[str, Any], optimizer_fn: Callable, *,
           attach: Callable | None = None, hook: bool = False, warmup: int | None = 0, evaluate: bool = False,
           eval_every: int | None = None) -> tuple[nn.Sequential, History, Any]:
    """Train a fresh `bn_mlp` (seeded by ``seed``) with ``optimizer_fn(model)`` on the first ``size`` training
    examples for ``steps`` steps, cosine to 0 after ``warmup`` linear warmup steps (None: a constant lr);
    ``evaluate``: the test split at the end. ``attach(model, optimizer)`` runs before training (with ``hook``, its
    result is a `regkit.train.train` hook called every ``eval_every`` steps). Returns the model, the history and
    what ``attach`` returned."""
    torch.manual_seed(seed)
    model = bn_mlp(split.x_train.shape[1], design["width"])
    optimizer = optimizer_fn(model)
    attached = attach(model, optimizer) if attach is not None else None
    scheduler = None if warmup is None else warmup_cosine(optimizer, warmup, steps, final_fraction=0.0)
    tests = {"test": DeviceLoader(split.x_test, split.y_test, batch_size=5000, shuffle=False)} if evaluate else None
    history = train(model, optimizer, DeviceLoader(split.x_train[:size], split.y_train[:size],
                                                   batch_size=design["batch_size"], seed=seed),
                    steps=steps, scheduler=scheduler, eval_loaders=tests, eval_every=eval_every or steps,
                    hooks=[attached] if hook else (), device="cpu", progress=False)
    return model, history, attached


# --- claim (a): the best decay transfers as tau_epoch -------------------------------------------------------

def timescale_grid(design: Mapping[str, Any], split: Split) -> pd.DataFrame:
    """Every seed x size x ``tau_epoch`` run: AdamW at ``lr`` with ``wd = 1 / (lr tau_epoch S)`` (``S`` steps per
    epoch) on every matrix, ``epochs`` epochs cosine to 0. Rows: seed, size, tau_epoch, wd, test loss, error (%)."""
    t = design["timescale"]
    rows = []
    for seed, size, tau in itertools.product(design["seeds"], t["sizes"], t["tau_epoch"]):
        per_epoch = size // design["batch_size"]
        wd = weight_decay_for_timescale(t["lr"], tau, per_epoch)
        _, history, _ = _train(split, size, seed, t["epochs"] * per_epoch, design,
                               lambda m, wd=wd: adamw(m, t["lr"], wd, t["decay"]), evaluate=True)
        last = history.df.dropna(subset=["test_loss"]).iloc[-1]
        rows.append({"seed": seed, "size": size, "tau_epoch": tau, "wd": wd, "loss": float(last["test_loss"]),
                     "error (%)": 100 * (1 - float(last["test_acc"]))})
    return pd.DataFrame(rows)


def best_log2(x: Sequence[float], y: Sequence[float]) -> float:
    """The minimizer of ``y`` over ``x`` (log2 units, sorted, evenly spaced): the vertex of the parabola through the
    grid's best point and its two neighbours, clipped to their range; the grid's end when the best point is one."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.any(np.diff(x) <= 0):
        raise ValueError(f"best_log2 needs at least 3 increasing grid points, got {x.tolist()}")
    i = int(np.argmin(y))
    if i in (0, len(x) - 1):
        return float(x[i])
    a, b, _ = np.polyfit(x[i - 1:i + 2], y[i - 1:i + 2], 2)
    return float(np.clip(-b / (2 * a), x[i - 1], x[i + 1])) if a > 0 else float(x[i])


def best_timescales(grid: pd.DataFrame, lr: float, batch_size: int, metric: str = "loss") -> pd.DataFrame:
    """Per seed and size: ``log2_tau`` (`best_log2` of ``metric`` over log2 tau_epoch) and ``log2_wd``, the same
    optimum as a weight decay (``wd = 1 / (lr tau S)``)."""
    rows = []
    for (seed, size), part in grid.groupby(["seed", "size"]):
        part = part.sort_values("tau_epoch")
        log2_tau = best_log2(np.log2(part["tau_epoch"]), part[metric])
        rows.append({"seed": seed, "size": size, "log2_tau": log2_tau,
                     "log2_wd": -np.log2(lr * (size // batch_size)) - log2_tau})
    return pd.DataFrame(rows)


def _slope(part: pd.DataFrame, column: str) -> float:
    return float(np.polyfit(np.log2(part["size"]), part[column], 1)[0])


TIMESCALE_METRICS = {"err": "error (%)", "loss": "loss"}
"""Value suffix -> the grid column whose optimum `timescale_evidence` follows."""


def timescale_evidence(design: Mapping[str, Any], split: Split) -> tuple[Values, pd.DataFrame]:
    """Claim (a). Values per seed, for the test error (``_err``) and loss (``_loss``): ``tau_abs_slope_*`` and
    ``wd_abs_slope_*``, the |least-squares slope| of log2 of the best tau_epoch (resp. wd) against log2 of the
    training-set size (0: the optimum stays put as the data grow; at a fixed batch size the wd slope is the tau
    slope - 1), and ``best_log2_tau_*_n<size>``, the best log2 tau_epoch at each size. Frame: the grid
    (`timescale_grid`)."""
    t = design["timescale"]
    grid = timescale_grid(design, split)
    values: Values = {}
    for suffix, metric in TIMESCALE_METRICS.items():
        best = best_timescales(grid, t["lr"], design["batch_size"], metric)
        for kind in ("tau", "wd"):
            values[f"{kind}_abs_slope_{suffix}"] = {int(seed): abs(_slope(part, f"log2_{kind}"))
                                                     for seed, part in best.groupby("seed")}
        for size, part in best.groupby("size"):
            values[f"best_log2_tau_{suffix}_n{size}"] = dict(zip(part["seed"].astype(int), part["log2_tau"].astype(float),
                                                                 strict=True))
    return values, grid


# --- claim (b): the rotational equilibrium --------------------------------------------------------------------

def equilibrium_evidence(design: Mapping[str, Any], split: Split) -> tuple[Values, pd.DataFrame]:
    """Claim (b). AdamW (constant lr) decaying `HIDDEN` only, `RotationMonitor` over windows of ``window`` steps.
    Values per seed: ``eq_norm_error`` and ``eq_angle_error``, the largest over the hidden matrices of |measured /
    predicted - 1| for the RMS row norm at the end and the RMS angle of the last window. Frame: seed, layer, ratios."""
    e = design["equilibrium"]
    rows = []
    for seed in design["seeds"]:
        model, history, monitor = _train(split, e["train_size"], seed, e["steps"], design,
                                         lambda m: adamw(m, e["lr"], e["weight_decay"]),
                                         attach=lambda m, o: RotationMonitor(m, o, names=list(HIDDEN)), hook=True,
                                         warmup=None, eval_every=e["window"])
        monitor.remove()
        last = history.df.dropna(subset=[f"angle/{HIDDEN[0]}"]).iloc[-1]
        for name in HIDDEN:
            eq = adamw_equilibrium(e["lr"], e["weight_decay"], dict(model.named_parameters())[name].shape[1])
            rows.append({"seed": seed, "layer": name, "norm ratio": last[f"norm/{name}"] / eq.norm,
                         "angle ratio": last[f"angle/{name}"] / eq.angle})
    frame = pd.DataFrame(rows)
    worst = frame.assign(norm=(frame["norm ratio"] - 1).abs(), angle=(frame["angle ratio"] - 1).abs()) \
        .groupby("seed")[["norm", "angle"]].max()
    return {"eq_norm_error": worst["norm"].to_dict(), "eq_angle_error": worst["angle"].to_dict()}, frame


# --- claim (c): the gradient-norm rise under a cosine schedule -------------------------------------------------

class StepNorms:
    """After every optimizer step, the joint norm of the gradient the step used and of the weights it left, over
    ``params``; no host sync per step. ``remove()`` unhooks; ``grad`` and ``weight`` are arrays over the steps."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: Sequence[Tensor]):
        self.params = list(params)
        self._grads: list[Tensor] = []
        self._weights: list[Tensor] = []
        self._handle = optimizer.register_step_post_hook(self._record)

    def _record(self, *_: Any) -> None:
        self._grads.append(self._norm("grad"))
        self._weights.append(self._norm("data"))

    @torch.no_grad()
    def _norm(self, attribute: str) -> Tensor:
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(getattr(p, attribute))
                                                     for p in self.params]))

    def remove(self) -> None:
        self._handle.remove()

    @property
    def grad(self) -> np.ndarray:
        return torch.stack(self._grads).numpy()

    @property
    def weight(self) -> np.ndarray:
        return torch.stack(self._weights).numpy()


def end_rise(values: np.ndarray, end: float = 0.1, middle: tuple[float, float] = (0.3, 0.4)) -> float:
    """Mean of ``values`` over the last ``end`` of the steps / their mean over the ``middle`` fraction of the run."""
    n = len(values)
    return float(values[int((1 - end) * n):].mean() / values[int(middle[0] * n):int(middle[1] * n)].mean())


def schedule_evidence(design: Mapping[str, Any], split: Split) -> tuple[Values, pd.DataFrame]:
    """Claim (c). AdamW decaying `HIDDEN` only, warmup then cosine to 0, without and with ``corrected=True``.
    Values per seed: ``plain_grad_rise`` and ``corrected_grad_rise`` (`end_rise` of the hidden matrices' gradient
    norm), ``plain_weight_ratio`` and ``corrected_weight_ratio`` (the same ratio of their weight norm). Frame: seed,
    corrected, step, gradient norm and weight norm (means over ``curve_every`` steps)."""
    s = design["schedule"]
    values: Values = {f"{run}_{what}": {} for run in ("plain", "corrected") for what in ("grad_rise", "weight_ratio")}
    curves = []
    for seed, corrected in itertools.product(design["seeds"], (False, True)):
        _, _, norms = _train(split, s["train_size"], seed, s["steps"], design,
                             lambda m, c=corrected: adamw(m, s["lr"], s["weight_decay"], corrected=c), warmup=s["warmup"],
                             attach=lambda m, o: StepNorms(o, [dict(m.named_parameters())[n] for n in HIDDEN]))
        norms.remove()
        run = "corrected" if corrected else "plain"
        values[f"{run}_grad_rise"][seed] = end_rise(norms.grad)
        values[f"{run}_weight_ratio"][seed] = end_rise(norms.weight)
        k = s["curve_every"]
        curves.append(pd.DataFrame({"seed": seed, "corrected": corrected, "step": np.arange(len(norms.grad))[::k] + k,
                                    "grad norm": norms.grad.reshape(-1, k).mean(1),
                                    "weight norm": norms.weight.reshape(-1, k).mean(1)}))
    return values, pd.concat(curves, ignore_index=True)


def dynamics_evidence(design: Mapping[str, Any], validation: bool = False) -> tuple[Values, dict[str, pd.DataFrame]]:
    """All three experiments of ``design`` on `design_split` (``validation``: the split the design was chosen on):
    their values merged and their frames by name (``timescale``, ``equilibrium``, ``schedule``)."""
    split = design_split(design, validation)
    values: Values = {}
    frames = {}
    for name, experiment in (("timescale", timescale_evidence), ("equilibrium", equilibrium_evidence),
                             ("schedule", schedule_evidence)):
        part, frames[name] = experiment(design, split)
        values.update(part)
    return values, frames
