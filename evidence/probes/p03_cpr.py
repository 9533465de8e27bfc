"""Probe for notebook 03 (cpu profile): AdamCPR (no wd) vs an AdamW weight-decay sweep, on a VALIDATION split.

Same data and model as notebook 01's design (``CPU_DECAY_GRID``); ``CPU_CPR`` sets lr, warmup, the AdamW
sweep. Prints per run: validation accuracy and, for AdamCPR, max over steps and tensors of R/kappa - 1.
Usage: ``python p03_cpr.py SEEDS [lr=...]``.
"""

import sys

import torch

from regkit.course.experiments import Method, run_methods
from regkit.course.recipes import CPU_CPR, CPU_DECAY_GRID, cpr_methods, max_constraint_violation
from regkit.data import load_images
from regkit.data.image_dataset import downsample
from regkit.data.label_noise import validation_split
from regkit.models import build_model
from regkit.optim import AdamCPR, AdamW, ConstraintRecorder
from regkit.param_groups import param_groups
from regkit.train import warmup_cosine

torch.set_num_threads(1)
cfg = dict(CPU_CPR)
for item in sys.argv[2:]:
    key, value = item.split("=")
    cfg[key] = float(value)
grid = CPU_DECAY_GRID
data = downsample(validation_split(load_images("fashion_mnist", verbose=False), 10_000, grid["train_size"]), 2)
lr = cfg["lr"]
methods = [Method(f"AdamW wd {wd:g}", f"adamw_{wd:g}",
                  lambda m, wd=wd: AdamW(param_groups(m, wd, verbose=False), lr=lr)) for wd in cfg["adamw_wd"]]
methods += [m for m in cpr_methods(lr=lr, warmup=cfg["warmup"], betas=(0.9, 0.999),
                                   reg_step_size=int(cfg["reg_step_size"])) if m.key in cfg["cpr"]]
for seed in [int(s) for s in sys.argv[1].split(",")]:
    runs = run_methods(methods, data, lambda: build_model("small_cnn", 10, 1, 14, width=grid["width"]),
                       steps=grid["steps"], seeds=[seed], batch_size=grid["batch_size"], augment=False,
                       eval_every=grid["steps"], progress=False,
                       scheduler=lambda o, n: warmup_cosine(o, cfg["warmup"], n, final_fraction=0.0),
                       attach=lambda net, opt: ConstraintRecorder(opt) if isinstance(opt, AdamCPR) else None)
    for run in runs:
        try:
            extra = "" if run.attached is None else f" max R/kappa-1 {max_constraint_violation(run.attached):.2e}"
        except ValueError as e:
            extra = f" ({e})"
        print(f"seed {seed} lr {lr:g} {run.method.name:28s} val {run.accuracy():.2f}{extra} "
              f"{run.history.meta['train_time_s']:.1f} s", flush=True)
