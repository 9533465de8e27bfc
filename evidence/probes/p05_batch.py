"""Probe for notebook 05 (cpu profile): small vs large batch at equal epochs, micro-batch penalties, on a VALIDATION split.

Starting from NOTES.md's setting (``recipes.CPU_BATCH`` holds the chosen one): ``mlp`` 256x256 on the first
``train_size`` Fashion-MNIST training images, plain SGD on a cosine schedule to 0, equal epochs: SB = batch
``micro`` (lr ``sb``), LB = batch ``batch`` as micro-batches of ``micro`` (lr ``lb``), LB+GN / LB+FT (lr ``lb``,
weight ``lam``); validation = training images 50,000-59,999.
Usage: ``python p05_batch.py SEEDS [KEY=VALUE ...]``; prints one line per run.
"""

import sys

import torch

from regkit.course.experiments import run_methods
from regkit.course.recipes import implicit_sgd_methods
from regkit.data import load_images
from regkit.data.label_noise import validation_split
from regkit.models import build_model
from regkit.train import warmup_cosine

torch.set_num_threads(1)
cfg = {"train_size": 8192, "epochs": 30, "micro": 32, "batch": 1024, "sb": 0.1, "lb": 0.3, "lam": 0.01,
       "penalties": ("gn", "fisher")}
for item in sys.argv[2:]:
    key, value = item.split("=")
    cfg[key] = eval(value)  # probe-only: literals from the command line
data = validation_split(load_images("fashion_mnist", verbose=False), 10_000, cfg["train_size"])
methods = implicit_sgd_methods(lr={"sb": cfg["sb"], "lb": cfg["lb"], "reg": cfg["lb"]},
                               lam=dict.fromkeys(cfg["penalties"], cfg["lam"]), batch_size=cfg["batch"],
                               micro_batch_size=cfg["micro"], penalties=cfg["penalties"])
print(cfg, flush=True)
for seed in [int(s) for s in sys.argv[1].split(",")]:
    for method in methods:  # equal epochs: each method's own number of steps
        steps = cfg["epochs"] * cfg["train_size"] // method.batch_size
        run, = run_methods([method], data, lambda: build_model("mlp", 10, 1, 28), steps=steps, seeds=[seed],
                           batch_size=method.batch_size, augment=False, eval_every=steps, progress=False,
                           scheduler=lambda opt, n: warmup_cosine(opt, 0, n, final_fraction=0.0))
        print(f"seed {seed} {method.name:8s} steps {steps:5d} val {run.accuracy():.2f} "
              f"train_loss {run.history.last('train_loss'):.3f} ({run.history.meta['train_time_s']:.1f} s)",
              flush=True)
