"""Notebook 05 (implicit regularization of SGD): reference solutions."""

DISCUSSIONS = {
    "05.1": "As the network fits the data the mean gradient $\\bar g$ shrinks faster than the per-example "
            "gradients, so the noise term $\\operatorname{tr}\\Sigma/b$ takes a growing share of "
            "$\\mathbb E\\lVert g_M\\rVert^2$ (most of it after 100 steps).",
    "05.2": "The $\\lambda$ that brings the average micro-batch gradient norm closest to SB SGD is not always the "
            "one with the best test accuracy in the quick profile (one seed, noise of a point); Smith et al.'s "
            "$\\lambda = \\eta/4$ is of the same order as the best value.",
    "05.4": "With equal epochs small-batch SGD is no longer under-trained and usually overtakes LB SGD; equal "
            "epochs (equal data) is the comparison that answers the paper's question about generalization.",
    "05.5": "The crossover depends on the model size and the cores: on a 2-core CPU the serial loop wins for "
            "small micro-batches of a small model, the vectorized path for many micro-batches.",
}


def exercise_3():
    """mean_M ||g_M||^2 of the notebook's linear least-squares model, micro-batches of 2."""
    import torch

    from regkit.penalties import micro_batch_grad_norms

    x = torch.linspace(-1.0, 1.0, 24, dtype=torch.float64).reshape(8, 3)
    y = torch.cos(torch.arange(8.0, dtype=torch.float64)).unsqueeze(1)
    model = torch.nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -0.2, 0.1]]))
    norms = micro_batch_grad_norms(model, torch.nn.functional.mse_loss, x, y, micro_batch_size=2)
    return (norms**2).mean().item()
