"""Notebook 06 (grokking): reference solutions."""

DISCUSSIONS = {
    "06.2": "At `init_scale` 1.0 the initial norm is already small: every method groks, and the 0.8x bounds "
            "are too tight to fit the training set quickly. At 8.0 the norm is far too large and AdamW with a "
            "weak decay waits much longer; the 0.8x bounds still sit far above a generalizing norm, which is "
            "why they fail at the default scale too: the bound is relative to a norm that is already too large.",
    "06.3": "A smaller `kappa_update` makes the integral controller slower: the multiplier winds up less and "
            "the collapse of std-CPR goes away or comes later, at the price of a longer overshoot of the bound.",
    "06.4": "Report the mean and the standard deviation over the seeds of the step at which validation reaches "
            "99%; the spread is often a few hundred steps in the quick profile.",
    "06.5": "Expected from the papers, not yet measured here (no GPU run of the full profile so far): the "
            "transformer runs order the methods as the quick profile's MLP does, AdamW 0.1 last, rescaling and "
            "CPR first, with exact steps that differ with the seed. Record your own order and steps.",
}


def exercise_1():
    """Where ||w|| settles under decoupled decay (lr 0.01, wd 1) with random-sign unit updates, d = 1000."""
    import torch

    from regkit.optim import SGDW

    generator = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(1000, dtype=torch.float64))
    opt = SGDW([w], lr=0.01, weight_decay=1.0)
    norms = []
    for _ in range(2000):
        w.grad = torch.randint(0, 2, (1000,), generator=generator).double() * 2 - 1  # +-1: |update| = lr
        opt.step()
        norms.append(w.detach().norm().item())
    return sum(norms[-1000:]) / 1000  # time scale 1/(lr wd) = 100 steps: averaged long after it
