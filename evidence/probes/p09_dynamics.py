"""Probe for notebook 09 (cpu profile): the three experiments of `regkit.course.dynamics_evidence` on a VALIDATION
split (the last 10,000 Fashion-MNIST training images as the test split).

Starts from notebook 09's cpu design (``regkit/course/catalog/nb09.py``); ``part.key=value`` replaces a setting of
one experiment (``timescale.epochs=20``), ``key=value`` a shared one. Prints every per-seed value and the frames.
Usage: ``python p09_dynamics.py EXPERIMENT[,EXPERIMENT] SEEDS [overrides]`` (experiments: timescale, equilibrium,
schedule).
"""

import ast
import sys
import time

import pandas as pd
import torch

from regkit.course import dynamics_evidence as de
from regkit.course.catalog import load

torch.set_num_threads(1)
pd.set_option("display.width", 200, "display.max_rows", 500)
design = {k: dict(v) if isinstance(v, dict) else v for k, v in load("09").row("cpu")["evidence"].items()}
design["seeds"] = [int(s) for s in sys.argv[2].split(",")]
for item in sys.argv[3:]:
    key, value = item.split("=", 1)
    *part, name = key.split(".")
    (design[part[0]] if part else design)[name] = ast.literal_eval(value)
print(design, flush=True)
split = de.design_split(design, validation=True)
experiments = {"timescale": de.timescale_evidence, "equilibrium": de.equilibrium_evidence,
               "schedule": de.schedule_evidence}
for name in sys.argv[1].split(","):
    start = time.process_time()
    values, frame = experiments[name](design, split)
    print(f"--- {name}: {time.process_time() - start:.0f} s CPU", flush=True)
    if name == "schedule":
        frame = frame[frame["step"] % (10 * design["schedule"]["curve_every"]) == 0]
    print(frame.round(4).to_string(), flush=True)
    for key, per_seed in values.items():
        print(f"{key}: " + ", ".join(f"seed {s} {v:.4f}" for s, v in per_seed.items()), flush=True)
