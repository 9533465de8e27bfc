"""Notebook 07 (CIFAR experiments): reference solutions."""

DISCUSSIONS = {
    "07.1": "With three seeds most gaps between methods in the quick profile are within one or two seed "
            "standard deviations: they are not evidence either way.",
    "07.2": "AJ and UJ barely move the average micro-batch gradient norm, while GN and FT pull it down: the "
            "Jacobian penalties measure directions the loss ignores (AJ) or random ones (UJ).",
    "07.3": "Without weight decay nothing shrinks the scale-invariant conv weights, and momentum SGD grows their "
            "norm at every step (notebook 02's law) while SGDP's stays near the GD law: the gap widens.",
    "07.5": "Compilation speeds up the forward and backward passes; in a real run part of it is lost to data "
            "loading, the optimizer step and the evaluation, so the end-to-end speed-up is smaller than the "
            "benchmark's.",
}


def exercise_4():
    """One SAM step (rho 0.05, SGD lr 0.1) on L = 1/2 theta^T diag(1, 2, 3) theta from theta = (1, 1, 1)."""
    import torch

    from regkit.penalties import SAM

    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    theta = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = SAM([theta], torch.optim.SGD, rho=0.05, lr=0.1)

    def closure():
        loss = 0.5 * (a * theta**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return theta.detach().numpy()
