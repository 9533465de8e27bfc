"""Probe for notebook 10 (cpu profile): SGD+CPR vs an SGD weight-decay sweep, SAM over AdamCPR vs AdamCPR, on a
VALIDATION split (training images 50,000-59,999 of Fashion-MNIST; the first ``train_size`` train).

Data and model: notebook 01's design (``CPU_SMALL_CNN``). Usage:
``python evidence/probes/p10_compose.py SEEDS KEY=VALUE...`` (``sgd_lr``, ``weight_decays``, ``adam_lr``,
``warmup``, ``rhos``, ``only``: a comma-separated subset of sgd,cpr,adamcpr,sam; ``label_noise`` (training labels
only, fixed per seed), and any key of ``CPU_SMALL_CNN``, ``model=mlp hidden=(256,256)``); prints one line per run.
"""

import sys

import torch

from regkit.course.experiments import run_methods
from regkit.course.recipes import CPU_SMALL_CNN, composition_methods
from regkit.data import load_images
from regkit.data.image_dataset import downsample
from regkit.data.label_noise import validation_split, with_label_noise
from regkit.models import build_model
from regkit.train import warmup_cosine

torch.set_num_threads(1)
cfg = {"sgd_lr": 0.1, "weight_decays": (0.0, 1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2), "adam_lr": 0.01, "warmup": 20,
       "rhos": (0.05, 0.1, 0.2), "only": "sgd,cpr,adamcpr,sam", "label_noise": 0.0, **CPU_SMALL_CNN, "hidden": None}
seeds = [int(s) for s in sys.argv[1].split(",")]
for item in sys.argv[2:]:
    key, value = item.split("=")
    cfg[key] = value if key in ("only", "model") else eval(value)  # probe-only: literals from the command line
only = cfg["only"].split(",")
design = cfg
full = downsample(load_images(design["dataset"], verbose=False), 28 // design["image_size"])
clean = validation_split(full, 10_000, design["train_size"])
width = {"hidden": tuple(design["hidden"])} if design["model"] == "mlp" else {"width": design["width"]}
methods = []
for rho in cfg["rhos"]:
    for method in composition_methods(sgd_lr=cfg["sgd_lr"], weight_decays=cfg["weight_decays"], adam_lr=cfg["adam_lr"],
                                      warmup=cfg["warmup"], rho=rho):
        kind = "sgd" if method.key.startswith("sgd_wd") else {"sgd_cpr": "cpr", "adamcpr": "adamcpr",
                                                               "sam_adamcpr": "sam"}[method.key]
        if kind not in only or (kind != "sam" and rho != cfg["rhos"][0]):
            continue
        if kind == "sam":
            method = type(method)(f"{method.name} rho {rho:g}", f"{method.key}_{rho:g}", method.optimizer)
        methods.append(method)
print(cfg, flush=True)
for seed in seeds:
    data = with_label_noise(clean, design["label_noise"], seed)[0] if design["label_noise"] else clean
    runs = run_methods(methods, data, lambda: build_model(design["model"], 10, 1, design["image_size"], **width),
                       steps=design["steps"], seeds=[seed], batch_size=design["batch_size"], augment=False,
                       eval_every=design["steps"], progress=False,
                       scheduler=lambda o, n: warmup_cosine(o, cfg["warmup"], n, final_fraction=0.0))
    for run in runs:
        print(f"seed {seed} {run.method.name:28s} val {run.accuracy():.2f} train_acc {100 * run.history.last('train_acc'):.1f} "
              f"train_loss {run.history.last('train_loss'):.3f} {run.history.meta['train_time_s']:.1f} s", flush=True)
