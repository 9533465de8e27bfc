"""Notebook 08 (classroom demos): reference solutions."""

DISCUSSIONS = {
    "08.2": "In the demo's default setting (lr 0.1, 100 steps, start at 135 degrees) the final norm over plain "
            "GD's is 1.32x at momentum 0.5, 5.35x at 0.9 and 32.9x at 0.99 (`norm_growth(momentum=...)` of "
            "`regkit.widgets.scale_invariance`). It grows with $(1+\\beta)/(1-\\beta)$ (3, 19, 199) but is not "
            "its square root (1.73, 4.36, 14.1) at this horizon: below it at 0.5, above it at 0.9 and 0.99. Rerun "
            "with more steps to see how the ratio changes.",
    "08.3": "A `kappa_update` around 0.1-0.3 overshoots $R$ by a few percent without jitter; larger values "
            "react faster but the multiplier oscillates, smaller ones overshoot for longer.",
    "08.4": "A demo is a cached compute function returning arrays, a `render_png(result)` drawing it, and a "
            "builder returning a box with `box.controls` and an `Image` child; registered in "
            "`regkit.widgets.gallery.DEMOS`, `python -m regkit.bench widgets` times it.",
}


def exercise_1():
    """The L2 coefficient with which SGD + L2 settles where SGDW (wd 0.5) settles, both with momentum 0.9."""
    from regkit.widgets.weight_decay import CURVATURES, TARGET, decay_paths

    w = decay_paths("sgd", 0.1, 0.5, 0.9, steps=1500).decoupled[-1]  # where SGDW settles
    h, c = CURVATURES[0], TARGET[0]
    return float(h * (c - w[0]) / w[0])  # SGD + L2 settles at h c / (h + wd): solve for wd
