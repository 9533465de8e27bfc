"""Notebook 00 (course overview): reference solutions."""

DISCUSSIONS = {
    "00.1": "The runner writes `runs/quick/summary.md`; the notebook's recorded keys appear in its row with the "
            "parameters of the run (`steps=1000`), next to the reference numbers where METHODS.md has some. "
            "More steps usually raise the test accuracy of the small CNN by a point or two.",
    "00.2": "Adam with `weight_decay` adds the decay to the gradient before the moments (coupled L2), so it is "
            "divided by $\\sqrt{\\hat v}$: weights with large gradients are barely decayed. The accuracy may "
            "move by a few tenths of a point in 300 steps; notebook 01 shows where the two differ.",
}


def exercise_3():
    """Parameter tensors that `param_groups` exempts from decay in the notebook's small CNN."""
    from regkit import param_groups
    from regkit.models import build_model

    model = build_model("small_cnn", 10, 1, 28, width=16)
    groups = param_groups(model, weight_decay=0.05)
    exempt = [group for group in groups if group["weight_decay"] == 0.0]
    return sum(len(group["params"]) for group in exempt)


def exercise_4():
    """The factor by which one AdamW step with a zero gradient multiplies a weight."""
    import torch

    from regkit.optim import AdamW

    w = torch.nn.Parameter(torch.ones(3))
    opt = AdamW([w], lr=0.1, weight_decay=0.05)
    w.grad = torch.zeros(3)
    opt.step()
    return w.detach()[0].item()
