"""Probe for notebook 04's second claim (cpu profile): Adam+GR with and without a GR warmup, on a VALIDATION split.

``CPU_GR``: 2-layer ViT on the first 5,000 Fashion-MNIST training images; validation = training images
50,000-59,999. Prints per run the validation error. Usage: ``python p04_gr.py SEEDS [KEY=VALUE ...]``.
"""

import sys

import torch

from regkit.course.experiments import run_methods
from regkit.course.recipes import CPU_GR, gr_methods
from regkit.data import load_images
from regkit.data.label_noise import validation_split
from regkit.models import build_model
from regkit.train import warmup_cosine

torch.set_num_threads(1)
cfg = dict(CPU_GR)
for item in sys.argv[2:]:
    key, value = item.split("=")
    cfg[key] = eval(value)  # probe-only: literals from the command line
data = validation_split(load_images("fashion_mnist", verbose=False), 10_000, cfg["train_size"])
methods = gr_methods(lr=cfg["lr"], weight_decay=cfg["weight_decay"], r=cfg["r"], warmup=cfg["warmup"],
                     methods=cfg["methods"])
for seed in [int(s) for s in sys.argv[1].split(",")]:
    runs = run_methods(methods, data, lambda: build_model("vit", 10, 1, 28, **cfg["vit_kwargs"]), steps=cfg["steps"],
                       seeds=[seed], batch_size=cfg["batch_size"], augment=False, eval_every=cfg["steps"],
                       progress=False, scheduler=lambda o, n: warmup_cosine(o, cfg["warmup"], n, final_fraction=0.0))
    for run in runs:
        print(f"seed {seed} r {cfg['r']} warmup {cfg['warmup']} {run.method.name:22s} val error {100 - run.accuracy():.2f} "
              f"({run.history.meta['train_time_s']:.1f} s)", flush=True)
