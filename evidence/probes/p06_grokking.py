"""Probe for notebook 06 (cpu profile): grokking delay per method over seeds.

Notebook 06's cpu row (``regkit/course/catalog/nb06.py``: the quick profile's one-hot MLP, 3,000 steps);
prints per run: steps to 99% train and validation accuracy, the delay, CPU seconds.
Usage: ``python p06_grokking.py SEEDS METHOD,METHOD``.
"""

import sys
import time

import torch

from regkit.course.catalog import load
from regkit.course.grokking import profile_run_kwargs, run, steps_to
from regkit.course.recipes import grokking_delay

torch.set_num_threads(1)
kw = profile_run_kwargs(load("06").row("cpu"))
for seed in [int(s) for s in sys.argv[1].split(",")]:
    for method in sys.argv[2].split(","):
        start = time.process_time()
        history = run(method, seed=seed, **kw)
        print(f"{method} seed {seed}: train99 {steps_to(history, 'train_acc')} val99 {steps_to(history, 'val_acc')} "
              f"delay {grokking_delay(history, kw['steps'])} {time.process_time() - start:.0f} s CPU", flush=True)
