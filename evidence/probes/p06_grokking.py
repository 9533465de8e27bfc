"""Probe for notebook 06 (cpu profile): grokking delay per method over seeds.

The quick profile's one-hot MLP (``regkit.grokking.PROFILES["quick"]``) with ``CPU_GROKKING`` overrides;
prints per run: steps to 99% train and validation accuracy, the delay, CPU seconds.
Usage: ``python p06_grokking.py SEEDS METHOD,METHOD``.
"""

import sys
import time

import torch

from regkit.grokking import run, steps_to
from regkit.recipes import CPU_GROKKING, grokking_delay

torch.set_num_threads(1)
kw = {k: v for k, v in CPU_GROKKING.items() if k not in ("methods", "seeds")}
for seed in [int(s) for s in sys.argv[1].split(",")]:
    for method in sys.argv[2].split(","):
        start = time.process_time()
        history = run(method, seed=seed, **kw)
        print(f"{method} seed {seed}: train99 {steps_to(history, 'train_acc')} val99 {steps_to(history, 'val_acc')} "
              f"delay {grokking_delay(history, kw['steps'])} {time.process_time() - start:.0f} s CPU", flush=True)
