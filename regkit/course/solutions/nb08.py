"""Notebook 08 (classroom demos): reference solutions."""

DISCUSSIONS = {
    "08.2": "The final norm of heavy ball over plain GD's grows with the momentum, roughly like the square root "
            "of $(1+\\beta)/(1-\\beta)$ once the growth dominates ($\\lVert w\\rVert^2$ grows by that factor "
            "faster): about 1.7x at 0.5, 4x at 0.9, and far more at 0.99 (bounded by the steps shown).",
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
