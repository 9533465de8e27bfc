"""First probe for notebook 09's timescale claim (before `regkit.course.dynamics_evidence` existed), on a VALIDATION
split (the last 10,000 Fashion-MNIST training images): a tau_epoch grid at several training-set sizes for a fixed
number of epochs, per decay placement (``all`` matrices or the ``hidden`` scale-invariant ones) and schedule
(``constant`` lr or ``cosine`` to 0). The BatchNorm MLP of notebook 09, AdamW, batch 100. Prints per run:
validation loss and error (%), the last logged training loss.

Usage: ``python p09_timescale_explore.py [decay=all] [sched=constant] [sizes=1000,4000] [taus=0.25,...,32]
[seeds=0] [epochs=30] [lr=3e-3]`` (the runs and their output: evidence/DESIGN.md "09").
"""

import itertools
import sys
import time

import torch
import torch.nn.functional as F

from regkit.course.dynamics_evidence import bn_mlp
from regkit.data import load_images
from regkit.data.label_noise import validation_split
from regkit.data.loader import DeviceLoader
from regkit.optim import AdamW, weight_decay_for_timescale
from regkit.train import train, warmup_cosine

torch.set_num_threads(1)
args = dict(a.split("=") for a in sys.argv[1:])
lr, epochs, batch = float(args.get("lr", 3e-3)), int(args.get("epochs", 30)), 100
sizes = [int(s) for s in args.get("sizes", "1000,4000").split(",")]
taus = [float(t) for t in args.get("taus", "0.25,0.5,1,2,4,8,16,32").split(",")]
seeds = [int(s) for s in args.get("seeds", "0").split(",")]
decay, sched = args.get("decay", "all"), args.get("sched", "constant")

data = validation_split(load_images("fashion_mnist", verbose=False), 10_000)
x_train, x_val = (F.avg_pool2d(x.float().div(255), 2).flatten(1) for x in (data.x_train[:16000], data.x_test))
mean, std = x_train.mean(0), x_train.std(0) + 1e-3
x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
y_train, y_val = data.y_train[:16000], data.y_test
for seed, n, tau in itertools.product(seeds, sizes, taus):
    torch.manual_seed(seed)
    model = bn_mlp()
    named = dict(model.named_parameters())
    decayed = [k for k, p in named.items() if p.ndim == 2 and (decay == "all" or k in ("0.weight", "3.weight"))]
    wd = weight_decay_for_timescale(lr, tau, n // batch)
    opt = AdamW([{"params": [named[k] for k in decayed]},
                 {"params": [p for k, p in named.items() if k not in decayed], "weight_decay": 0.0}],
                lr=lr, weight_decay=wd)
    steps = epochs * n // batch
    start = time.time()
    history = train(model, opt, DeviceLoader(x_train[:n], y_train[:n], batch_size=batch, seed=seed), steps=steps,
                    scheduler=warmup_cosine(opt, 0, steps, final_fraction=0.0) if sched == "cosine" else None,
                    eval_loaders={"val": DeviceLoader(x_val, y_val, batch_size=5000, shuffle=False)},
                    eval_every=steps, progress=False, device="cpu")
    last = history.df.dropna(subset=["val_loss"]).iloc[-1]
    train_loss = history.df.dropna(subset=["train_loss"]).iloc[-1]["train_loss"]
    print(f"{decay} {sched} seed {seed} n {n} tau {tau:g} wd {wd:.3g}: val loss {last['val_loss']:.4f} "
          f"err {100 - 100 * last['val_acc']:.2f} train loss {train_loss:.3f} ({time.time() - start:.0f}s)", flush=True)
