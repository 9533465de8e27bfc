"""Notebook 09 (weight decay as dynamics): the timescale, the rotational equilibrium, corrected and cautious decay."""

from regkit.course.catalog import Knob
from regkit.course.catalog import _common as c

STEM = "09_weight_decay_dynamics"
KNOBS = (
    Knob("lr", float, "AdamW's peak learning rate for the network runs", minimum=0),
    Knob("tau_epoch", float, "decay timescale in epochs held fixed across data sizes (section 1)", minimum=0),
    Knob("sizes", list, "training-set sizes of the timescale experiment (200 .. 8000)", minimum=200),
    Knob("epochs", int, "epochs of the timescale runs", minimum=1),
    Knob("equilibrium_steps", int, "steps of the equilibrium run on the network (section 2)", minimum=1),
    Knob("walk_steps", int, "steps of the random-walk model runs", minimum=1),
    Knob("seeds", list, "seeds of the random-walk model runs, e.g. [0, 1]", minimum=0),
    c.THREADS,
)
PROFILES = {
    "quick": {"lr": 3e-3, "tau_epoch": 1.0, "sizes": [1000, 4000], "epochs": 6, "equilibrium_steps": 800,
              "walk_steps": 3000, "seeds": [0, 1], "threads": 1},
    "full": {"lr": 3e-3, "tau_epoch": 1.0, "sizes": [1000, 2000, 4000, 8000], "epochs": 10,
             "equilibrium_steps": 3000, "walk_steps": 6000, "seeds": [0, 1, 2, 3, 4], "threads": None},
}
# The cpu profile's evidence design (evidence/DESIGN.md "09"), chosen on a validation split: the quick notebook plus
# the three claims with seeds (`regkit.course.dynamics_evidence`), packaged in evidence/09.json.
EVIDENCE = {
    "dataset": "fashion_mnist", "image_size": 14, "validation_size": 10_000, "train_images": 50_000, "width": 128,
    "batch_size": 100, "seeds": [0, 1, 2],
    "timescale": {"sizes": [1000, 2000, 4000, 8000], "epochs": 30, "tau_epoch": [0.5, 1.0, 2.0, 4.0, 8.0, 16.0],
                  "lr": 3e-3, "decay": "matrices"},
    "equilibrium": {"train_size": 8000, "steps": 2000, "window": 200, "lr": 3e-3, "weight_decay": 1.0},
    "schedule": {"train_size": 50_000, "steps": 3000, "warmup": 0, "lr": 3e-3, "weight_decay": 1.0,
                 "curve_every": 20},
}
PROFILES["cpu"] = {**PROFILES["quick"], "evidence": EVIDENCE}
