"""Notebook 09 (weight decay as dynamics): reference solutions."""

DISCUSSIONS = {
    "09.1": "Plot the validation loss against tau_epoch for each training-set size. Wang & Aitchison find the "
            "optimum at about the same tau_epoch for every size; in runs of a few epochs (the quick profile) a "
            "timescale longer than the run only means less decay, so the curve may fall monotonically and show no "
            "optimum to transfer: the runs must be many timescales long for the claim to be testable.",
    "09.2": "Under Adam + L2 the decay is divided by sqrt(v_hat) like the gradient, so neurons with small gradients "
            "are decayed much harder than others: their equilibria differ and the per-neuron angles spread over a "
            "wide range, where AdamW's are nearly equal (balanced rotation, Kosson et al.). Compare the quantiles "
            "of `monitor.last_angles` for the two runs.",
    "09.4": "Without the correction the weight norm falls with the lr at the end of the cosine schedule and the "
            "gradient norm of the scale-invariant matrices (which scales as 1/||w||) rises; with `corrected=True` "
            "the decay shrinks with the lr and the weight norm holds, which shrinks the rise but need not remove "
            "it: in the notebook's cpu evidence (evidence/09.json, 3 seeds) the last-10% gradient norm rose "
            "1.64x without and 1.14x with the correction, and the rise times the weight norm's ratio (the gradient "
            "at unit weight norm) is 1.14-1.20 on every seed of both runs: that part the correction leaves.",
    "09.5": "Count, per step, the coordinates where the update and the weight share a sign (the decayed ones) "
            "over all coordinates. Early in training about half of them are decayed (update and weight are "
            "nearly independent); the fraction then drifts as the weights align with the updates.",
}


def exercise_3():
    """Mean of t90 * lr * wd in the random walk, for wd in 1.0, 0.3, 0.1 (lr 0.01, d 10,000)."""
    import math

    import torch

    from regkit.optim import SGDW

    lr, d, products = 0.01, 10_000, []
    for wd in (1.0, 0.3, 0.1):
        generator = torch.Generator().manual_seed(0)
        w = torch.nn.Parameter(torch.zeros(d, dtype=torch.float64))
        opt = SGDW([w], lr=lr, weight_decay=wd)
        target = 0.9 * math.sqrt(lr * d / (2 * wd))
        step = 0
        while w.detach().norm().item() < target:
            w.grad = torch.randint(0, 2, (d,), generator=generator).double() * 2 - 1  # +-1: |update| = lr
            opt.step()
            step += 1
        products.append(step * lr * wd)
    return sum(products) / len(products)
