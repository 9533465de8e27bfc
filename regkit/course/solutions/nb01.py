"""Notebook 01 (L2 vs decoupled weight decay): reference solutions."""

DISCUSSIONS = {
    "01.1": "With 60 steps $\\text{lr}\\cdot\\text{wd}\\cdot T$ is small for most cells: the decay has not acted "
            "yet and the hurt cells line up along a fixed product `lr * wd` (view 2). With 1200 steps the decay "
            "reaches its stationary regime in more cells and what matters is `wd` alone (one row of view 1).",
    "01.2": "The spread of one cell over three seeds is a few tenths of a point; differences between the best "
            "cells smaller than about twice that spread are not real.",
    "01.3": "For AdamW `adam_decay_rates` returns `lr * weight_decay` for every coordinate: the decay is "
            "decoupled from $\\hat v$, so the histogram of rates is a single line. With Adam + L2 the rates are "
            "`lr * wd / (sqrt(v_hat) + eps)` and spread over decades.",
}


def exercise_4():
    """Where SGDW with momentum 0.9 and dampening 0.5 settles on the widget's quadratic (wd 0.5, lr 0.1)."""
    import torch

    from regkit.optim import SGDW
    from regkit.widgets.weight_decay import CURVATURES, START, TARGET

    h, c = torch.tensor(CURVATURES, dtype=torch.float64), torch.tensor(TARGET, dtype=torch.float64)
    w = torch.nn.Parameter(torch.tensor(START, dtype=torch.float64))
    opt = SGDW([w], lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.5)
    for _ in range(4000):
        w.grad = h * (w.detach() - c)
        opt.step()
    return w.detach().numpy()


def exercise_5():
    """The coordinate (0 or 1) that AdamW with weight decay 0.5 clips at 1/wd on the widget's quadratic."""
    import numpy as np

    from regkit.widgets.weight_decay import TARGET, decay_paths

    final = decay_paths("adam", 0.1, 0.5, 0.9, steps=3000, beta2=0.95).decoupled[-1]
    return int(np.argmax(np.abs(final - np.asarray(TARGET))))
