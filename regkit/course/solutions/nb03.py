"""Notebook 03 (constrained parameter regularization): reference solutions."""

DISCUSSIONS = {
    "03.2": "`pre_step` applies the constraint before Adam's update instead of after it; the bounds and the "
            "detection steps are identical (they depend on the measured norms), and the accuracies move by "
            "less than the seed-to-seed noise.",
    "03.3": "With `std` the measure is the standard deviation of a matrix: layers whose spread stops growing "
            "early (the first layers) hit their inflection point first. The multipliers are on a different "
            "scale from the $\\ell_2$ runs since the measure's gradient is normalized by the number of entries.",
    "03.4": "$\\kappa$ moves only at steps where the multiplier falls back to 0, i.e. where the constraint is "
            "released. The multiplier reaches 0 only when $R(w) < \\kappa$ (its update adds $\\mu(R - \\kappa)$), "
            "so $\\kappa \\leftarrow R(w)$ can only lower the bound: AdaCPR's bounds never exceed plain CPR's. "
            "Whether the final norms end lower depends on the run (not measured here).",
    "03.5": "A gap is meaningful only when it exceeds about twice the seed standard deviation; on CIFAR-100 "
            "the published CPR gains of 1-2 points usually are, the differences between bound strategies not.",
}


def exercise_1():
    """The bound kappa that kappa_init_method="dependent" (0.8, l2) sets for the notebook's matrix W."""
    import torch

    from regkit.optim import AdamCPR

    w = torch.nn.Parameter(torch.arange(1.0, 7.0).reshape(2, 3) / 10)
    opt = AdamCPR([{"params": [w], "regularize": True}], lr=1e-3, kappa_init_method="dependent",
                  kappa_init_param=0.8, reg_function="l2")
    w.grad = torch.zeros_like(w)
    opt.step()
    return opt.state[w]["kappa"].item()

