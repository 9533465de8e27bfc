"""Notebook 07 (CIFAR experiments): four sections, each with its own recipe (`regkit.course.recipes`).

``SECTIONS[section][row]`` holds every setting of a section; the notebook-wide parameters
(``seeds``, ``steps``, ``train_size``, ``width``, ``dataset``: None = the section's) and the
section's own ones (``<section>_<setting>``, e.g. ``gnp_r``) replace them in
:func:`section_settings`.
"""

from __future__ import annotations

from typing import Any

from regkit.course import recipes
from regkit.course.catalog import Knob
from regkit.course.catalog import _common as c
from regkit.course.profiles import PROFILE_ROWS, Settings, settings

STEM = "07_cifar_experiments"
SHARED = ("seeds", "steps", "train_size", "width", "dataset")  # None: each section's value


def _seeds(row: dict[str, Any]) -> dict[str, Any]:
    return row | {"seeds": list(range(row["seeds"]))}


SECTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "cpr": {
        "quick": {"dataset": "fashion_mnist_subset", "model": "small_cnn", "width": 8, "steps": 120, "batch_size": 64,
                  "lr": 3e-3, "betas": (0.9, 0.98), "warmup": 15, "final_fraction": 0.1, "label_smoothing": 0.1,
                  "augment": False, "seeds": [0], "reg_step_size": 15, "reg_ema_decay": 0.9, "train_size": 6000,
                  "test_size": 1000, "eval_every": 50, "record_every": 1},
        "full": _seeds({**recipes.CPR_CIFAR100, "train_size": None, "test_size": None, "eval_every": 1000,
                        "record_every": 10}),
    },
    "implicit": {
        "quick": {"model": "small_cnn", "width": 8, "train_size": 4096, "batch_size": 64, "micro_batch_size": 16,
                  "steps": 60, "augment": False, "datasets": ["fashion_mnist_subset"], "test_size": 1000, "seeds": [0],
                  "eval_every": 20, "probe": 256},
        "full": {**recipes.NOVACK_SETTING, "datasets": ["cifar10", "cifar100"], "test_size": None, "seeds": [0],
                 "eval_every": 250, "probe": 5120},
    },
    "adamp": {
        "quick": {"dataset": "fashion_mnist_subset", "model": "small_cnn", "width": 8, "train_size": 8000,
                  "test_size": 1000, "steps": 120, "batch_size": 64, "sgd_lr": 0.1, "momentum": 0.9, "sgd_wd": 5e-4,
                  "adam_lr": 3e-3, "adam_wd": 1e-2, "augment": False, "seeds": [0], "eval_every": 25},
        "full": {"dataset": "cifar10", "model": "resnet18", "width": 64, "train_size": None, "test_size": None,
                 "steps": 39_000, "batch_size": 128, "sgd_lr": 0.1, "momentum": 0.9, "sgd_wd": 5e-4, "adam_lr": 1e-3,
                 "adam_wd": 1e-2, "augment": True, "seeds": [0], "eval_every": 1950},
    },
    "gnp": {
        "quick": {"dataset": "fashion_mnist_subset", "model": "small_cnn", "width": 8, "batch_size": 64, "lr": 0.05,
                  "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "warmup": 0, "r": 0.1, "alpha": 0.8,
                  "augment": False, "steps": 100, "train_size": 4096, "test_size": 1000, "seeds": [0],
                  "eval_every": 25, "probe": 256},
        "full": {**{k: v for k, v in recipes.GNP_CIFAR.items() if k != "epochs"},
                 "steps": recipes.GNP_CIFAR["epochs"] * (50_000 // recipes.GNP_CIFAR["batch_size"]),
                 "train_size": None, "test_size": None, "seeds": [0], "eval_every": 1950, "probe": 2560},
    },
}

_SECTION_KNOBS = (  # (section, setting, doc)
    ("cpr", "lr", "CPR section: peak learning rate of every optimizer"),
    ("adamp", "sgd_lr", "AdamP section: learning rate of SGD and SGDP"),
    ("adamp", "adam_lr", "AdamP section: learning rate of AdamW and AdamP"),
    ("adamp", "adam_wd", "AdamP section: decoupled weight decay of AdamW and AdamP"),
    ("gnp", "lr", "GNP section: SGD learning rate"),
    ("gnp", "r", "GNP section: finite-difference radius (SAM: rho)"),
    ("gnp", "alpha", "GNP section: GNP's mixing weight"),
)
KNOBS = (
    Knob("experiments", str, "comma-separated subset of: cpr, implicit, adamp, gnp (or all)"),
    Knob("seeds", list, "seeds of every run (None: the section's)", minimum=0),
    c.steps("optimizer steps of every run (None: the section's recipe)"),
    c.DEVICE,
    Knob("dataset", str, 'None: quick "fashion_mnist_subset", full each section\'s CIFAR; "synthetic": smoke test',
         choices=c.DATASET.choices),
    Knob("train_size", int, "training images per section (None: the section's)", minimum=1),
    Knob("width", int, "model width (None: quick 8, full 64)", minimum=1),
    Knob("jacobian", bool, "section 2: also the average- and unit-Jacobian penalties"),
    Knob("autocast", bool, "bf16 autocast + channels_last (None: on CUDA)"),
    Knob("compile_model", bool, "torch.compile every model (a GPU run)"),
    c.THREADS,
    *(Knob(f"{section}_{name}", float, doc, minimum=0) for section, name, doc in _SECTION_KNOBS),
)
_TOP = {"experiments": "all", "seeds": None, "steps": None, "device": None, "dataset": None, "train_size": None,
        "width": None, "jacobian": False, "autocast": None, "compile_model": False}
PROFILES = {
    row: _TOP | {"threads": 1 if row == "quick" else None}
    | {f"{section}_{name}": SECTIONS[section][row][name] for section, name, _ in _SECTION_KNOBS}
    for row in ("quick", "full")
}


def section_row(section: str, profile: str) -> dict[str, Any]:
    """Every setting of ``section`` in ``profile``, before any parameter."""
    return dict(SECTIONS[section][PROFILE_ROWS[profile][0]])


def section_settings(options: Settings, section: str) -> Settings:
    """``section``'s settings for the notebook's ``options`` (what ``notebook_settings("07", ...)`` returned):
    its row with the notebook-wide parameters that are set and the section's own parameters."""
    row = section_row(section, options.profile)
    overrides = {name: options[name] for name in SHARED if options[name] is not None}
    if "datasets" in row and "dataset" in overrides:  # the implicit section runs a list of datasets
        overrides["datasets"] = [overrides.pop("dataset")]
    prefix = f"{section}_"
    overrides |= {name.removeprefix(prefix): value for name, value in options.items()
                  if name.startswith(prefix) and value != row[name.removeprefix(prefix)]}
    return settings(options.profile, {options.profile: row}, **overrides)
