"""Notebook 02 (scale invariance, AdamP / SGDP): the CNN runs' optimizers."""

from regkit.course.catalog import Knob
from regkit.course.catalog import _common as c
from regkit.course.recipes import CPU_NORMS, CPU_SMALL_CNN

STEM = "02_scale_invariance_adamp_sgdp"
KNOBS = (
    Knob("epochs", int, "epochs of every CNN run", minimum=1), c.TRAIN_SIZE,
    Knob("width", int, "CNN width", minimum=1), c.DATASET, c.ONE_SEED, c.DEVICE,
    Knob("lr", float, "peak learning rate of SGD, SGD + momentum and SGDP", minimum=0),
    Knob("adam_lr", float, "peak learning rate of AdamW and AdamP", minimum=0),
    Knob("momentum", float, "momentum of SGD + momentum and SGDP", minimum=0),
    Knob("weight_decay", float, "decoupled weight decay of AdamW and AdamP", minimum=0),
    Knob("delta", float, "AdamP / SGDP: project when cos(w, grad) < delta / sqrt(dim)", minimum=0),
    Knob("wd_ratio", float, "AdamP / SGDP: weight-decay factor on projected (scale-invariant) weights", minimum=0),
)
_OPTIMIZERS = {"lr": 0.1, "adam_lr": 3e-3, "momentum": 0.9, "weight_decay": 1e-2, "delta": 0.1, "wd_ratio": 0.1}
PROFILES = {
    "quick": {"dataset": "fashion_mnist_subset", "epochs": 4, "train_size": 8000, "width": 8, "model": "small_cnn",
              "batch_size": 128, "augment": False, "seeds": [0], "device": None, **_OPTIMIZERS},
    "full": {"dataset": "auto", "epochs": 30, "train_size": 0, "width": 64, "model": "resnet18", "batch_size": 128,
             "augment": True, "seeds": [0], "device": None, **_OPTIMIZERS},
}
EVIDENCE_SEEDS = [0, 1, 2, 3, 4]
PROFILES["cpu"] = {**PROFILES["quick"], "evidence": {**CPU_SMALL_CNN, **CPU_NORMS, "seeds": EVIDENCE_SEEDS}}
"""The quick notebook plus its evidence experiment (``evidence``: evidence/DESIGN.md's design, 5 seeds), packaged
in evidence/02.json: `regkit.course.decay_evidence`."""
