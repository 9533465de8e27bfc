"""Notebook 04 (gradient-norm penalty, Hessian-free): reference solutions."""

DISCUSSIONS = {
    "04.1": "Central differences cancel the $r\\,T[v,v]$ term, but a ReLU network is piecewise linear: "
            "between kinks the forward difference is already exact, so at $r = 0.1$ the accuracy does not move "
            "beyond the noise.",
    "04.2": "No unit flips as long as $r$ stays below the smallest "
            "$|\\text{pre-activation}| / |\\partial\\,\\text{pre-activation}/\\partial\\theta\\cdot v|$: the "
            "distance to the nearest kink along $v$ to first order; the measured largest $r$ matches it.",
    "04.3": "With `normalize=\"layer\"` each tensor is perturbed by $r$ along its own gradient: layers with "
            "small gradients (often the last layer's bias) get a relatively large perturbation and dominate "
            "the error.",
    "04.5": "During the warmup, Adam's `exp_avg_sq` of the GR run accumulates the squared combined gradient, "
            "which is larger than the plain gradient; at the end of the warmup the two estimates differ by up "
            "to the factor of the penalty's contribution, and zero-warmup avoids seeding $\\hat v$ with them.",
}


def exercise_4():
    """d(official mix) - d(paper's mix) for L = 1/2 theta^T diag(1, 2, 3) theta at theta = 1, alpha 0.5, r 0.1."""
    import torch

    from regkit.penalties import GNP

    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    directions = {}
    for mix in ("paper", "official"):
        theta = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
        opt = GNP([theta], torch.optim.SGD, alpha=0.5, r=0.1, mix=mix, lr=0.0)  # lr 0: only d is computed

        def closure(theta=theta):
            loss = 0.5 * (a * theta**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        directions[mix] = theta.grad.numpy()  # the wrapper leaves d in .grad
    return directions["official"] - directions["paper"]
