"""FunctionalOptimizer behaviour shared by every regkit optimizer."""

import pytest
import torch

import regkit.optim as ro


@pytest.mark.parametrize("cls", [ro.SGD, ro.Adam])
def test_complex_params_are_rejected_and_leave_no_group(cls):
    real, cplx = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2, dtype=torch.complex64))
    with pytest.raises(ValueError, match="complex64"):
        cls([cplx], lr=0.1)
    opt = cls([real], lr=0.1)
    with pytest.raises(ValueError, match="real floating-point"):
        opt.add_param_group({"params": [cplx]})
    assert len(opt.param_groups) == 1


def test_sparse_gradients_are_rejected():
    w = torch.nn.Parameter(torch.ones(4))
    w.grad = torch.ones(4).to_sparse()
    with pytest.raises(ValueError, match="sparse"):
        ro.Adam([w]).step()


@pytest.mark.parametrize("foreach, expected", [(None, False), (True, True), (False, False)])
def test_foreach_default_is_false_on_cpu_and_overridable(foreach, expected):
    w = torch.nn.Parameter(torch.ones(3))
    w.grad = torch.ones(3)
    opt = ro.Adam([w], foreach=foreach)
    _, kwargs = opt.prepare_update(opt.param_groups[0], [w])
    assert kwargs["foreach"] is expected


def test_adam_step_counter_is_a_cpu_float_tensor_like_torch():
    w, v = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    for p in (w, v):
        p.grad = torch.ones(3)
    ours, theirs = ro.Adam([w]), torch.optim.Adam([v])
    for _ in range(3):
        ours.step()
        theirs.step()
    step, ref = ours.state[w]["step"], theirs.state[v]["step"]
    assert step.device.type == "cpu" and step.dtype == ref.dtype and step.item() == ref.item() == 3
