"""Probe for notebook 02 (cpu profile): norm growth of scale-invariant weights and speed, on a VALIDATION split.

Notebook 01's data and model (``CPU_DECAY_GRID``: its conv weights feed BatchNorm, so they are scale-
invariant); ``CPU_NORMS`` sets the optimizers. Prints per run: ||w_T|| / ||w_0|| of the conv weights and the
validation accuracy at every evaluation. Usage: ``python p02_norms.py SEEDS``.
"""

import sys

import torch

from regkit.course.experiments import run_methods
from regkit.course.recipes import CPU_DECAY_GRID, CPU_NORMS, norm_methods, scale_invariant_norm
from regkit.data import load_images
from regkit.data.image_dataset import downsample
from regkit.data.label_noise import validation_split
from regkit.models import build_model
from regkit.train import warmup_cosine

torch.set_num_threads(1)
grid, cfg = CPU_DECAY_GRID, CPU_NORMS
data = downsample(validation_split(load_images("fashion_mnist", verbose=False), 10_000, grid["train_size"]), 2)
for seed in [int(s) for s in sys.argv[1].split(",")]:
    runs = run_methods(norm_methods(**{k: cfg[k] for k in ("sgd_lr", "adam_lr", "weight_decay")}), data,
                       lambda: build_model("small_cnn", 10, 1, 14, width=grid["width"]), steps=cfg["steps"],
                       seeds=[seed], batch_size=grid["batch_size"], augment=False, eval_every=cfg["eval_every"],
                       progress=False, attach=lambda net, opt: (net, scale_invariant_norm(net)),
                       scheduler=lambda o, n: warmup_cosine(o, 0, n, final_fraction=0.0))
    for run in runs:
        net, norm0 = run.attached
        curve = " ".join(f"{a:.1f}" for a in run.test_acc().to_numpy())
        print(f"seed {seed} {run.method.name:6s} norm ratio {scale_invariant_norm(net) / norm0:.2f} "
              f"val {curve} ({run.history.meta['train_time_s']:.1f} s)", flush=True)
