"""Notebook 03 (constrained parameter regularization): AdamCPR and its baselines."""

from regkit.course.catalog import Knob
from regkit.course.catalog import _common as c
from regkit.course.recipes import CPU_CPR, CPU_SMALL_CNN
from regkit.optim.cpr import KAPPA_INIT_METHODS
from regkit.optim.measures import MEASURES

STEM = "03_constrained_parameter_regularization"
KNOBS = (
    c.DATASET, c.steps("optimizer steps of every run (at least 4 warmups)"), c.TRAIN_SIZE,
    Knob("width", int, "model width", minimum=1), c.SEEDS, c.DEVICE,
    Knob("lr", float, "peak learning rate of every optimizer", minimum=0),
    Knob("weight_decay", float, "the AdamW baseline's weight decay", minimum=0),
    Knob("kappa_init_method", str, "bound initialization of the tuned AdamCPR run (the 'warm start' row)",
         choices=KAPPA_INIT_METHODS),
    Knob("kappa_init_param", float, "its parameter (warm start: steps; dependent: factor; uniform: kappa)", minimum=0),
    Knob("reg_function", str, "the constrained measure R of every AdamCPR run", choices=MEASURES),
)
PROFILES = {
    "quick": {"dataset": "fashion_mnist_subset", "model": "small_cnn", "width": 8, "steps": 300, "warmup": 30,
              "batch_size": 64, "lr": 3e-3, "weight_decay": 0.1, "kappa_init_method": "warm_start",
              "kappa_init_param": 60.0, "reg_function": "l2", "train_size": 6_000, "test_size": 2_000,
              "seeds": [0], "device": None, "reg_step_size": 30, "reg_ema_decay": 0.9, "eval_every": 100,
              "record_every": 1},
    "full": {"dataset": "cifar100", "model": "resnet18", "width": 64, "steps": 20_000, "warmup": 500,
             "batch_size": 128, "lr": 1e-3, "weight_decay": 0.1, "kappa_init_method": "warm_start",
             "kappa_init_param": 1000.0, "reg_function": "l2", "train_size": 0, "test_size": 0, "seeds": [0],
             "device": None, "reg_step_size": 200, "reg_ema_decay": 0.99, "eval_every": 1_000, "record_every": 10},
}
EVIDENCE_SEEDS = [0, 1, 2, 3, 4]
PROFILES["cpu"] = {**PROFILES["quick"], "evidence": {**CPU_SMALL_CNN, **CPU_CPR, "seeds": EVIDENCE_SEEDS}}
"""The quick notebook plus its evidence experiment (``evidence``: evidence/DESIGN.md's design, 5 seeds), packaged
in evidence/03.json: `regkit.course.decay_evidence`."""
