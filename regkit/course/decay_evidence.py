"""The ``cpu``-profile experiments of notebooks 01-03 (evidence/DESIGN.md) on the test set: each runs its design
through `regkit.course.experiments.run_methods` and returns ``(values, frame)``: the per-seed values that
`regkit.course.evidence.CLAIMS` names (``{name: {seed: value}}``, ready for `regkit.course.evidence.package`)
and one row per run for the notebook's tables and plots.

A design is the ``evidence`` entry of the notebook's ``cpu`` catalog row: `regkit.course.recipes.CPU_SMALL_CNN` (data,
model, length) with the notebook's own settings and ``seeds``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from regkit.course.experiments import Method, Run, best_decay_slope, run_methods
from regkit.course.grokking import steps_to
from regkit.course.recipes import cpr_methods, max_constraint_violation, norm_methods, scale_invariant_norm
from regkit.data import ImageDataset, load_images
from regkit.data.image_dataset import downsample
from regkit.models import build_model
from regkit.optim import Adam, AdamCPR, AdamW, ConstraintRecorder
from regkit.param_groups import param_groups
from regkit.train import warmup_cosine

Values = dict[str, dict[int, float]]


def design_data(design: Mapping[str, Any]) -> ImageDataset:
    """The design's ``dataset`` (its first ``train_size`` training images, the whole test set), pooled to
    ``image_size``."""
    data = load_images(design["dataset"], train_size=design["train_size"], verbose=False)
    if data.image_size % design["image_size"]:
        raise ValueError(f"image_size={design['image_size']!r} must divide {data.name}'s {data.image_size}")
    return downsample(data, data.image_size // design["image_size"])


def run_design(methods: Sequence[Method], design: Mapping[str, Any], *, warmup: int = 0,
               eval_every: int | None = None, attach: Callable | None = None) -> list[Run]:
    """Every method with every seed of ``design`` on its data and model: a linear warmup of ``warmup`` steps
    then cosine to 0, no augmentation, test accuracy every ``eval_every`` steps (default: at the end)."""
    data = design_data(design)

    def model():
        return build_model(design["model"], data.num_classes, data.in_channels, data.image_size,
                           width=design["width"])

    return run_methods(methods, data, model, steps=design["steps"], seeds=design["seeds"],
                       batch_size=design["batch_size"], augment=False, eval_every=eval_every or design["steps"],
                       progress=False, attach=attach,
                       scheduler=lambda opt, steps: warmup_cosine(opt, warmup, steps, final_fraction=0.0))


def _per_seed(frame: pd.DataFrame, column: str) -> dict[int, float]:
    return {int(seed): float(value) for seed, value in zip(frame["seed"], frame[column], strict=True)}


# --- notebook 01: the (lr, decay) grids of Adam + L2 and AdamW ----------------------------------------------

GRID_OPTIMIZERS = {"adam_l2": (Adam, "adam_l2_wd"), "adamw": (AdamW, "adamw_lr_wd")}
"""Grid key -> (optimizer, the design's decay axis: Adam + L2's L2 coefficient, AdamW's ``lr * wd``)."""


def _test_error(run: Run) -> float:
    """Final test error (%); a run whose loss became non-finite (no accuracy logged) counts as 90% (chance)."""
    return 100 - run.accuracy() if "test_acc" in run.history.df else 90.0


def decay_grid_evidence(design: Mapping[str, Any]) -> tuple[Values, pd.DataFrame]:
    """Notebook 01: both grids, every seed. Values: ``<grid>_abs_slope`` (per seed, |slope| of log10 best
    decay vs log10 lr, `best_decay_slope`) and ``<grid>_best_err`` (per seed, the test error of the design's
    ``best_cells[grid]``, chosen on validation). Frame: optimizer, seed, lr, decay, test error (%)."""
    for key, (_, axis) in GRID_OPTIMIZERS.items():
        lr, decay = design["best_cells"][key]
        if not (np.isclose(design["lr"], lr).any() and np.isclose(design[axis], decay).any()):
            raise ValueError(f"best_cells[{key!r}]=({lr}, {decay}) is not a cell of the lr x {axis} grid")
    methods, cells = [], []
    for key, (optimizer, axis) in GRID_OPTIMIZERS.items():
        for lr in design["lr"]:
            for decay in design[axis]:
                wd = decay if key == "adam_l2" else decay / lr  # AdamW's torch weight_decay from lr * wd
                methods.append(Method(f"{key} lr {lr:g} decay {decay:g}", f"{key}_{len(methods)}",
                                      lambda m, make=optimizer, lr=lr, wd=wd: make(param_groups(m, wd, verbose=False),
                                                                                   lr=lr)))
                cells.append((key, lr, decay))
    runs = run_design(methods, design)  # seed-major: every cell of seed 0, then of seed 1, ...
    frame = pd.DataFrame([dict(zip(("optimizer", "lr", "decay"), cells[i % len(cells)], strict=True), seed=run.seed,
                               err=_test_error(run)) for i, run in enumerate(runs)])
    values: Values = {}
    for key in GRID_OPTIMIZERS:
        grid = frame[frame["optimizer"] == key]
        values[f"{key}_abs_slope"] = {int(seed): abs(best_decay_slope(part, decay="decay"))
                                      for seed, part in grid.groupby("seed")}
        lr, decay = design["best_cells"][key]
        best = grid[np.isclose(grid["lr"], lr) & np.isclose(grid["decay"], decay)]
        values[f"{key}_best_err"] = _per_seed(best, "err")
    return values, frame


# --- notebook 02: norms of scale-invariant weights, and speed --------------------------------------------

def norm_evidence(design: Mapping[str, Any]) -> tuple[Values, pd.DataFrame]:
    """Notebook 02: SGD, SGDP, Adam, AdamP (`norm_methods`), every seed. Values: ``<key>_norm_ratio`` (final /
    initial joint norm of the conv weights, `scale_invariant_norm`) and ``<key>_steps_to_acc`` for Adam and
    AdamP (the first evaluated step with ``target_acc`` % test accuracy; a run that never gets there counts
    as ``steps``). Frame: method, key, seed, norm ratio, steps to target, final test acc (%)."""
    methods = norm_methods(sgd_lr=design["sgd_lr"], adam_lr=design["adam_lr"], weight_decay=design["weight_decay"])
    runs = run_design(methods, design, eval_every=design["eval_every"],
                      attach=lambda net, opt: (net, scale_invariant_norm(net)))
    rows = []
    for run in runs:
        net, initial = run.attached
        reached = steps_to(run.history, "test_acc", design["target_acc"] / 100)
        rows.append({"method": run.method.name, "key": run.method.key, "seed": run.seed,
                     "norm ratio": scale_invariant_norm(net) / initial,
                     "steps to target": design["steps"] if reached is None else reached,
                     "final test acc (%)": run.accuracy()})
    frame = pd.DataFrame(rows)
    values: Values = {}
    for key, part in frame.groupby("key", sort=False):
        values[f"{key}_norm_ratio"] = _per_seed(part, "norm ratio")
        if key in ("adam", "adamp"):
            values[f"{key}_steps_to_acc"] = _per_seed(part, "steps to target")
    return values, frame


# --- notebook 03: AdamCPR vs an AdamW weight-decay sweep ---------------------------------------------------

def cpr_evidence(design: Mapping[str, Any]) -> tuple[Values, pd.DataFrame]:
    """Notebook 03: AdamW over ``adamw_wd`` and the AdamCPR bounds ``cpr`` (keys of `cpr_methods`), every seed,
    Adam betas (0.9, 0.999), linear warmup then cosine. Values: ``cpr_max_violation`` and ``cpr_acc`` (the
    ``claimed_cpr`` run: `max_constraint_violation`, final test accuracy) and ``adamw_best_acc`` (AdamW at
    ``adamw_best_wd``, chosen on validation). Frame: method, key, seed, test acc (%), max R/kappa - 1."""
    if design["claimed_cpr"] not in design["cpr"] or design["adamw_best_wd"] not in design["adamw_wd"]:
        raise ValueError(f"claimed_cpr={design['claimed_cpr']!r} must be one of cpr={design['cpr']!r} and "
                         f"adamw_best_wd={design['adamw_best_wd']!r} one of adamw_wd={design['adamw_wd']!r}")
    lr = design["lr"]
    methods = [Method(f"AdamW wd {wd:g}", f"adamw_{wd:g}",
                      lambda m, wd=wd: AdamW(param_groups(m, wd, verbose=False), lr=lr)) for wd in design["adamw_wd"]]
    methods += [m for m in cpr_methods(lr=lr, warmup=design["warmup"], betas=(0.9, 0.999),
                                       reg_step_size=design["reg_step_size"]) if m.key in design["cpr"]]
    runs = run_design(methods, design, warmup=design["warmup"],
                      attach=lambda net, opt: ConstraintRecorder(opt) if isinstance(opt, AdamCPR) else None)
    frame = pd.DataFrame([{"method": run.method.name, "key": run.method.key, "seed": run.seed,
                           "test acc (%)": run.accuracy(),
                           "max R/kappa - 1": np.nan if run.attached is None else max_constraint_violation(run.attached)}
                          for run in runs])
    claimed = frame[frame["key"] == design["claimed_cpr"]]
    adamw = frame[frame["key"] == f"adamw_{design['adamw_best_wd']:g}"]
    values = {"cpr_max_violation": _per_seed(claimed, "max R/kappa - 1"), "cpr_acc": _per_seed(claimed, "test acc (%)"),
              "adamw_best_acc": _per_seed(adamw, "test acc (%)")}
    return values, frame
