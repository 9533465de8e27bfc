"""Per-seed slopes and best cells of a ``p01_grids.py`` log: ``python analyze_p01.py LOG``."""

import sys

import pandas as pd

from regkit.course.experiments import best_decay_slope

rows = [line.split() for line in open(sys.argv[1]) if line[0] != "#" and not line.startswith("{")]
frame = pd.DataFrame(rows, columns=["opt", "seed", "lr", "wd", "lr_wd", "err"]).astype(
    {"seed": int, "lr": float, "wd": float, "lr_wd": float, "err": float})
frame["decay"] = frame.wd.where(frame.opt == "adam_l2", frame.lr_wd)  # each paper's coordinates
for (opt, seed), grid in frame.groupby(["opt", "seed"]):
    print(f"{opt:8s} seed {seed}: slope {best_decay_slope(grid, decay='decay'):+.2f}, best cell "
          f"{grid.err.min():.2f}")
mean = frame.groupby(["opt", "lr", "decay"], as_index=False).err.mean()
for opt, grid in mean.groupby("opt"):
    print(f"{opt:8s} seed-mean grid: slope {best_decay_slope(grid, decay='decay'):+.2f}, best cell "
          f"{grid.err.min():.2f} at lr {grid.loc[grid.err.idxmin(), 'lr']:g} decay {grid.loc[grid.err.idxmin(), 'decay']:g}")
    print(grid.pivot(index="decay", columns="lr", values="err").round(2).to_string())
