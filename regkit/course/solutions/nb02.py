"""Notebook 02 (scale invariance, AdamP/SGDP): reference solutions."""

DISCUSSIONS = {
    "02.2": "With Nesterov the step is $g_t + \\beta p_t$, still tangent-free in the radial direction only up "
            "to the momentum term, so $\\lVert w\\rVert^2$ grows by $\\eta^2\\lVert g_t+\\beta p_t\\rVert^2$ "
            "per step: the same $(1+\\beta)/(1-\\beta)$ order of growth as heavy ball, and on the 2-D toy a final "
            "norm of the same size (slightly larger).",
    "02.3": "Weight decay shrinks the norm every step, so a large enough decay keeps heavy ball's norm as small "
            "as SGDP's; but it also pulls on the direction's dynamics (the effective step grows as the norm "
            "shrinks) and the angle to $w^*$ after 100 steps is no better. SGDP changes only the radial part.",
    "02.4": "The gap keeps growing with the epochs: the momentum-SGD norm grows at every step while SGDP's "
            "follows the slow GD law, so the ratio of effective steps $\\lVert w_{SGDP}\\rVert^2/\\lVert "
            "w_{SGD}\\rVert^2$ per epoch rises.",
}


def exercise_1():
    """Late-window growth of ||w||^2 per step over eta^2 ||p_t||^2, heavy ball with momentum 0.5."""
    import numpy as np

    from regkit.widgets.scale_invariance import norm_growth

    lr = 0.01
    curves = norm_growth(lr=lr, momentum=0.5, steps=100)
    growth = np.diff(curves["norm"] ** 2)[-50:]  # ||w_{t+1}||^2 - ||w_t||^2 in the last 50 steps
    step_sq = (lr * curves["update_norm"][-50:]) ** 2  # eta^2 ||p_t||^2
    return float(growth.sum() / step_sq.sum())


def exercise_5():
    """The views that `invariant_views` finds for a ConvTranspose2d -> BatchNorm2d weight, channel_dim 0 and 1."""
    import torch

    from regkit.optim.adamp import invariant_views

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.ConvTranspose2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    model(torch.randn(8, 3, 5, 5)).pow(3).sum().backward()
    w = model[0].weight
    return tuple(invariant_views([w], [w.grad], channel_dim=dim)[0] for dim in (0, 1))
