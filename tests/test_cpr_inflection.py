"""The two inflection-point rules of CPR over recorded norm paths (regkit.optim.inflection)."""

import pytest
import torch

from regkit.optim import AdamCPR
from regkit.optim.inflection import package_rule_step, paper_rule_step


def s_curve(growth: float, steps: int = 600, bend: float = 150.0) -> torch.Tensor:
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    return 10 * (1 + growth * torch.sigmoid((t - bend) / 40))


def test_the_papers_rule_fires_at_the_first_negative_second_difference_of_r():
    # R = ||w||^2 = 1, 4, 9, 12, 13 at steps 1..5 (warmup 10: sampled every step): second differences
    # 2, -2, -2: the first negative one is known at step 4
    norms = torch.tensor([1.0, 4.0, 9.0, 12.0, 13.0]).sqrt()
    assert paper_rule_step(norms, warmup_steps=10) == 4
    # sampled every 2 steps (warmup 20): R at steps 2, 4, 6, ... ; a convex R never fires
    assert paper_rule_step(torch.arange(1, 40, dtype=torch.float64), warmup_steps=20) is None


def test_slow_growth_is_bounded_by_the_papers_rule_only():
    slow, fast = s_curve(0.03), s_curve(0.30)
    assert package_rule_step(fast, reg_step_size=30, reg_ema_decay=0.9) is not None
    assert package_rule_step(slow, reg_step_size=30, reg_ema_decay=0.9) is None  # < 1% per check
    assert abs(paper_rule_step(slow, warmup_steps=30) - 150) <= 10  # at the bend of the S


def test_the_package_rule_is_what_adamcpr_does():
    # a 1x2 weight driven along a fixed norm path by a loss whose gradient sets w to the path each step
    path = s_curve(0.30, steps=400)
    expected = package_rule_step(path.float(), reg_step_size=30, reg_ema_decay=0.9)
    w = torch.nn.Parameter(torch.tensor([[float(path[0]), 0.0]]))
    opt = AdamCPR([{"params": [w], "regularize": True}], lr=0.0, kappa_init_method="inflection_point",
                  reg_step_size=30, reg_ema_decay=0.9, verbose=False)
    fired = None
    for t in range(len(path)):
        with torch.no_grad():
            w.copy_(torch.tensor([[float(path[t]), 0.0]]))
        w.grad = torch.zeros_like(w)
        opt.step()
        if fired is None and torch.isfinite(opt.state[w]["kappa"]).all():
            fired = t + 1
    assert fired is not None and abs(fired - expected) <= 1


@pytest.mark.parametrize("bad", [torch.tensor([]), torch.ones(2, 2), [1.0, 2.0]])
def test_bad_paths_are_refused(bad):
    with pytest.raises(ValueError, match="norms must be a non-empty 1-D tensor"):
        package_rule_step(bad)
    with pytest.raises(ValueError, match="norms must be a non-empty 1-D tensor"):
        paper_rule_step(bad, warmup_steps=10)


def test_a_bad_warmup_is_refused():
    with pytest.raises(ValueError, match=r"warmup_steps must be a positive int \(the lr warmup\), got 0"):
        paper_rule_step(torch.ones(5), warmup_steps=0)
