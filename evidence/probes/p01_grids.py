"""Probe for notebook 01 (cpu profile): Adam+L2 vs AdamW (lr, wd) grids on a VALIDATION split.

Fashion-MNIST pooled to 14x14, the first ``train_size`` training images, validation = training images
50,000-59,999; ``small_cnn`` (BatchNorm), ``param_groups`` decay split, cosine to 0. Prints one line per
cell: optimizer, seed, lr, wd, lr*wd, validation error. Usage: ``python p01_grids.py SEEDS``.
"""

import sys
import time

import torch

from regkit.course.experiments import Method, run_methods
from regkit.course.recipes import CPU_DECAY_GRID
from regkit.data import load_images
from regkit.data.image_dataset import downsample
from regkit.data.label_noise import validation_split
from regkit.models import build_model
from regkit.optim import Adam, AdamW
from regkit.param_groups import param_groups
from regkit.train import warmup_cosine

torch.set_num_threads(1)
cfg = CPU_DECAY_GRID
data = downsample(validation_split(load_images("fashion_mnist", verbose=False), 10_000, cfg["train_size"]), 2)
makers = {"adam_l2": Adam, "adamw": AdamW}
for seed in [int(s) for s in sys.argv[1].split(",")]:
    for opt, make in makers.items():
        cells = [(lr, wd) for lr in cfg["lr"] for wd in cfg["adam_l2_wd"]] if opt == "adam_l2" else \
            [(lr, lr_wd / lr) for lr in cfg["lr"] for lr_wd in cfg["adamw_lr_wd"]]
        methods = [Method(f"{opt} {lr:g} {wd:g}", f"{opt}_{i}",
                          lambda m, lr=lr, wd=wd, make=make: make(param_groups(m, wd, verbose=False), lr=lr))
                   for i, (lr, wd) in enumerate(cells)]
        start = time.process_time()
        runs = run_methods(methods, data, lambda: build_model("small_cnn", 10, 1, 14, width=cfg["width"]),
                           steps=cfg["steps"], seeds=[seed], batch_size=cfg["batch_size"], augment=False,
                           eval_every=cfg["steps"], progress=False,
                           scheduler=lambda o, n: warmup_cosine(o, 0, n, final_fraction=0.0))
        for (lr, wd), run in zip(cells, runs, strict=True):
            err = 100 - run.accuracy() if "test_acc" in run.history.df else 90.0
            print(f"{opt} {seed} {lr:.4g} {wd:.4g} {lr * wd:.4g} {err:.2f}", flush=True)
        print(f"# {opt} seed {seed}: {len(cells)} runs, {time.process_time() - start:.0f} s CPU", flush=True)
