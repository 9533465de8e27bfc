"""Notebook 10's ``cpu``-profile experiment (evidence/DESIGN.md "10"): composed regularizers on the test set.

`composition_evidence(design)` runs `regkit.course.recipes.composition_methods` through `regkit.course.experiments.run_methods`
on two designs, each the one where its claim's phenomenon shows at cpu scale (chosen on a validation split):

* ``design["sgd"]``: SGD over a weight-decay sweep and SGD+CPR (``with_cpr(SGD)``) on notebook 01's data and
  model (`regkit.course.recipes.CPU_SMALL_CNN`);
* ``design["sam"]``: AdamCPR and SAM over AdamCPR on notebook 04's label-noise task (an MLP that memorizes wrong
  labels without a sharpness penalty).

It returns ``(values, frame)``: the per-seed values that `regkit.course.evidence.CLAIMS` names for notebook 10
(``{name: {seed: value}}``, ready for `regkit.course.evidence.package`) and one row per run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from regkit.course.experiments import Run, run_methods
from regkit.course.recipes import composition_methods
from regkit.data import load_images
from regkit.data.image_dataset import downsample
from regkit.data.label_noise import with_label_noise
from regkit.models import build_model
from regkit.train import warmup_cosine

Values = dict[str, dict[int, float]]


def design_runs(keys: tuple[str, ...], design: Mapping[str, Any], attach: Callable | None = None) -> list[Run]:
    """The methods ``keys`` of `composition_methods` (``sgd_wd`` standing for the whole sweep) with every seed of
    ``design``: its data (first ``train_size`` training images, 0 for all, pooled to ``image_size``;
    ``label_noise`` of the training labels fixed per seed; the whole test set), its model (``mlp`` of ``hidden``
    sizes, else of ``width``), ``warmup`` steps of linear warmup then cosine to 0, crop+flip if ``augment``, test
    accuracy every ``eval_every`` steps (at the end if absent). ``attach``: as in `run_methods`."""
    methods = [m for m in composition_methods(
        sgd_lr=design["sgd_lr"], weight_decays=design["weight_decays"], adam_lr=design["adam_lr"],
        warmup=design["warmup"], rho=design["rho"]) if m.key in keys or ("sgd_wd" in keys and m.key.startswith("sgd_wd"))]
    full = load_images(design["dataset"], train_size=design["train_size"] or None, verbose=False)
    clean = downsample(full, full.image_size // design["image_size"])
    size = {"hidden": tuple(design["hidden"])} if design["model"] == "mlp" else {"width": design["width"]}
    runs = []
    for seed in design["seeds"]:
        data = with_label_noise(clean, design["label_noise"], seed)[0] if design["label_noise"] else clean
        runs += run_methods(
            methods, data, lambda d=data: build_model(design["model"], d.num_classes, d.in_channels, d.image_size, **size),
            steps=design["steps"], seeds=[seed], batch_size=design["batch_size"], augment=design["augment"],
            eval_every=design.get("eval_every", design["steps"]), progress=False, attach=attach,
            scheduler=lambda opt, steps: warmup_cosine(opt, design["warmup"], steps, final_fraction=0.0))
    return runs


def composition_evidence(design: Mapping[str, Any]) -> tuple[Values, pd.DataFrame]:
    """Both designs, every seed. Values: ``sgd_cpr_acc`` and ``sgd_best_acc`` (SGD at ``design["sgd"]["best_wd"]``,
    chosen on validation), ``sam_adamcpr_acc`` and ``adamcpr_acc``: final test accuracy (%). Frame: design,
    method, key, seed, test acc (%), final train loss."""
    sgd, sam = design["sgd"], design["sam"]
    if sgd["best_wd"] not in sgd["weight_decays"]:
        raise ValueError(f"best_wd={sgd['best_wd']!r} must be one of weight_decays={sgd['weight_decays']!r}")
    rows = []
    for name, keys, part in (("sgd", ("sgd_wd", "sgd_cpr"), sgd), ("sam", ("adamcpr", "sam_adamcpr"), sam)):
        rows += [{"design": name, "method": run.method.name, "key": run.method.key, "seed": run.seed,
                  "test acc (%)": run.accuracy(), "final train loss": run.history.last("train_loss")}
                 for run in design_runs(keys, part)]
    frame = pd.DataFrame(rows)

    def per_seed(key: str) -> dict[int, float]:
        part = frame[frame["key"] == key]
        return {int(seed): float(acc) for seed, acc in zip(part["seed"], part["test acc (%)"], strict=True)}

    values = {"sgd_cpr_acc": per_seed("sgd_cpr"), "sgd_best_acc": per_seed(f"sgd_wd_{sgd['best_wd']:g}"),
              "sam_adamcpr_acc": per_seed("sam_adamcpr"), "adamcpr_acc": per_seed("adamcpr")}
    return values, frame
