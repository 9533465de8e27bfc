"""Notebook 01 (weight decay: L2 vs decoupled): the (lr, wd) grids of four optimizers."""

from regkit.course.catalog import Knob
from regkit.course.catalog import _common as c
from regkit.course.recipes import CPU_DECAY_GRID

STEM = "01_weight_decay_l2_vs_decoupled"
OPTIMIZERS = ("SGD + L2", "SGDW", "Adam + L2", "AdamW")
HALF_DECADE = 10**0.5


def _grid_knob(name: str, doc: str) -> Knob:
    return Knob(name, list, doc, minimum=0)


KNOBS = (
    c.DATASET, c.steps("optimizer steps per training run", minimum=20), c.TRAIN_SIZE, c.ONE_SEED,
    Knob("optimizers", list, "the optimizers compared on the (lr, wd) grid", choices=OPTIMIZERS),
    _grid_knob("adam_lr_grid", "learning rates of Adam + L2 and AdamW"),
    _grid_knob("adam_l2_wd_grid", "L2 coefficients of Adam + L2"),
    _grid_knob("adamw_wd_grid", "decoupled weight decays of AdamW"),
    _grid_knob("sgd_lr_grid", "learning rates of SGD + L2 and SGDW (momentum 0.9)"),
    _grid_knob("sgd_l2_wd_grid", "L2 coefficients of SGD + L2"),
    _grid_knob("sgdw_wd_grid", "decoupled weight decays of SGDW"),
)
PROFILES = {
    "quick": {
        "dataset": "fashion_mnist_subset", "steps": 300, "train_size": 2_000, "seeds": [0], "batch_size": 128,
        "model": "mlp", "width": 128, "augment": False, "optimizers": list(OPTIMIZERS),
        "adam_lr_grid": c.grid(1e-3, HALF_DECADE, 3), "adam_l2_wd_grid": c.grid(1e-3, 10, 3), "adamw_wd_grid": c.grid(0.1, 10, 3),
        "sgd_lr_grid": c.grid(1e-2, HALF_DECADE, 3), "sgd_l2_wd_grid": c.grid(1e-3, 10, 3), "sgdw_wd_grid": c.grid(1e-2, 10, 3),
    },
    "full": {
        "dataset": "auto", "steps": 7_800, "train_size": 0, "seeds": [0], "batch_size": 128, "model": "resnet18",
        "width": 64, "augment": True, "optimizers": list(OPTIMIZERS),
        "adam_lr_grid": c.grid(1e-4, HALF_DECADE, 6), "adam_l2_wd_grid": c.grid(1e-6, 10, 6), "adamw_wd_grid": c.grid(1e-4, 10, 6),
        "sgd_lr_grid": c.grid(1e-3, HALF_DECADE, 6), "sgd_l2_wd_grid": c.grid(1e-6, 10, 6), "sgdw_wd_grid": c.grid(1e-5, 10, 6),
    },
}
EVIDENCE_SEEDS = [0, 1, 2, 3, 4]
PROFILES["cpu"] = {**PROFILES["quick"], "evidence": {**CPU_DECAY_GRID, "seeds": EVIDENCE_SEEDS}}
"""The quick notebook plus its evidence experiment (``evidence``: evidence/DESIGN.md's design, 5 seeds), packaged
in evidence/01.json: `regkit.course.decay_evidence`."""
