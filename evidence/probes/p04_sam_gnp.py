"""Probe for notebook 04 (cpu profile): SGD vs SAM vs GNP with label noise, on a VALIDATION split.

Training: the first ``train`` Fashion-MNIST training images with 40% symmetric label noise (fixed per
seed); validation: training images 50,000-59,999 (clean). Usage:
``python evidence/probes/p04_sam_gnp.py SEEDS KEY=VALUE...`` (see ``CPU_SAM_NOISE``); prints one line per run.
"""

import sys
import time

import torch

from regkit.course.experiments import run_methods
from regkit.course.recipes import CPU_SAM_NOISE, sam_gnp_methods
from regkit.data import load_images
from regkit.data.label_noise import validation_split, with_label_noise
from regkit.models import build_model
from regkit.train import warmup_cosine

torch.set_num_threads(1)
cfg = dict(CPU_SAM_NOISE)
seeds = [int(s) for s in sys.argv[1].split(",")]
for item in sys.argv[2:]:
    key, value = item.split("=")
    cfg[key] = eval(value)  # probe-only: literals from the command line
full = load_images("fashion_mnist", verbose=False)
val = validation_split(full, 10_000, cfg["train_size"])
steps = cfg["epochs"] * (cfg["train_size"] // cfg["batch_size"])
print(cfg, "steps", steps, flush=True)
for seed in seeds:
    data, _ = with_label_noise(val, cfg["label_noise"], seed)
    start = time.perf_counter()
    runs = run_methods(
        sam_gnp_methods(**{k: cfg[k] for k in ("lr", "weight_decay", "rho", "alpha", "r", "methods")}), data,
        lambda: build_model("mlp", 10, 1, 28, hidden=tuple(cfg["hidden"])), steps=steps, seeds=[seed],
        batch_size=cfg["batch_size"], augment=False, eval_every=steps, progress=False,
        scheduler=lambda opt, n: warmup_cosine(opt, 0, n, final_fraction=0.0))
    for run in runs:
        print(f"seed {seed} {run.method.name:28s} val {run.accuracy():.2f} "
              f"train_acc(noisy) {100 * run.history.last('train_acc'):.1f} "
              f"{run.history.meta['wall_time_s']:.1f} s", flush=True)
