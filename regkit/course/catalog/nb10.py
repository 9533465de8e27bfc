"""Notebook 10 (composing regularizers): SGD+CPR vs tuned SGD, SAM over AdamCPR vs AdamCPR."""

from regkit.course.catalog import Knob
from regkit.course.catalog import _common as c
from regkit.course.recipes import CPU_COMPOSE

STEM = "10_composing_regularizers"
KNOBS = (
    c.DATASET, c.TRAIN_SIZE, c.SEEDS, c.THREADS,
    c.steps("steps of each SGD / SGD+CPR run (section 2)"),
    Knob("sam_steps", int, "steps of each AdamCPR / SAM-over-AdamCPR run (section 2)", minimum=1),
    Knob("sgd_lr", float, "peak learning rate of SGD and SGD+CPR", minimum=0),
    Knob("weight_decay", float, "the SGD baseline's L2 coefficient on the matrices", minimum=0),
    Knob("adam_lr", float, "AdamCPR's peak learning rate, with and without SAM", minimum=0),
    Knob("rho", float, "SAM's radius over AdamCPR", minimum=0),
    Knob("label_noise", float, "fraction of wrong training labels in the AdamCPR / SAM runs", minimum=0),
)
PROFILES = {
    "quick": {"dataset": "fashion_mnist_subset", "train_size": 5000, "seeds": [0], "threads": 1, "steps": 300,
              "sam_steps": 600, "sgd_lr": 0.1, "weight_decay": 1e-2, "adam_lr": 1e-3, "rho": 0.3, "label_noise": 0.4,
              "sgd_model": {"model": "small_cnn", "width": 8, "hidden": None, "image_size": 14, "batch_size": 64,
                            "warmup": 20, "augment": False},
              "sam_model": {"model": "mlp", "width": None, "hidden": [256, 256], "image_size": 28, "batch_size": 128,
                            "warmup": 50, "augment": False}},
    "full": {"dataset": "cifar10", "train_size": 0, "seeds": [0, 1, 2], "threads": None, "steps": 20_000,
             "sam_steps": 20_000, "sgd_lr": 0.1, "weight_decay": 5e-4, "adam_lr": 1e-3, "rho": 0.1, "label_noise": 0.4,
             "sgd_model": {"model": "resnet18", "width": 64, "hidden": None, "image_size": 32, "batch_size": 128,
                           "warmup": 500, "augment": True},
             "sam_model": {"model": "resnet18", "width": 64, "hidden": None, "image_size": 32, "batch_size": 128,
                           "warmup": 500, "augment": True}},
}
PROFILES["cpu"] = {**PROFILES["quick"], "evidence": CPU_COMPOSE}
"""The quick notebook plus its evidence experiment (``evidence``: evidence/DESIGN.md's design "10", 5 seeds),
packaged in evidence/10.json: `regkit.course.compose_evidence`."""
