"""Notebook 10 (composing regularizers): reference solutions."""

DISCUSSIONS = {
    "10.2": "The outer projection removes the radial part of the whole inner step, and the l2 constraint step "
            "W <- (1 - 2 lambda) W' is purely radial: on scale-invariant weights it is projected away entirely. "
            "R(W) keeps growing past kappa (at second order, like any projected run), the multiplier integrates "
            "the violation and grows without bound, yet the weights never shrink. Nest the wrappers as "
            "with_cpr(with_projection(Base)): project the base's step, then constrain.",
    "10.3": "SAM resists memorizing the wrong labels over either base: the training accuracy on the noisy labels "
            "stays near the clean fraction (about 60%) instead of climbing towards 100%. How much it adds on top of "
            "the base depends on how much the base already memorizes; compare SGD+CPR and AdamCPR without SAM first.",
    "10.4": "Grafting takes the step length from Adam, so the effective step size per layer follows Adam's (about "
            "lr per coordinate, independent of the gradient's scale) while the direction is SGD's momentum "
            "direction. Agarwal et al. find that the grafted optimizer behaves like the magnitude optimizer "
            "(the implicit step-size schedule carries much of an optimizer's behaviour). The norm growth of the "
            "scale-invariant weights follows the step length, i.e. Adam's.",
}


def exercise_1():
    """The multiplier with_cpr(SGD) settles at on 0.5 ||W - W*||^2 with ||W*|| = 3, kappa = 1, lr 0.05."""
    import torch

    from regkit.optim import SGD, with_cpr

    w = torch.nn.Parameter(torch.zeros(3, 2, dtype=torch.float64))
    w_star = 3 * torch.ones(3, 2, dtype=torch.float64) / 6**0.5
    opt = with_cpr(SGD)([{"params": [w], "regularize": True}], lr=0.05, kappa_init_method="uniform",
                        kappa_init_param=1.0, verbose=False)
    for _ in range(3000):
        opt.zero_grad()
        (0.5 * (w - w_star).square().sum()).backward()
        opt.step()
    return opt.state[w]["lagmul"].item()
