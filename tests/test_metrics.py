import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regkit.diagnostics.metrics import (
    cosine_similarity,
    effective_step_sizes,
    grad_norm,
    named_tensors,
    total_weight_norm,
    weight_norms,
)


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3, bias=False))
    F.cross_entropy(net(torch.randn(11, 5)), torch.randint(3, (11,))).backward()
    return net


def test_all_parameter_forms_give_the_same_names(model):
    named = list(model.named_parameters())
    assert [n for n, _ in named_tensors(model)] == ["0.weight", "0.bias", "2.weight"]
    assert [n for n, _ in named_tensors(dict(named))] == [n for n, _ in named]
    assert [n for n, _ in named_tensors(iter(named))] == [n for n, _ in named]
    assert [n for n, _ in named_tensors([p for _, p in named])] == ["0", "1", "2"]


def test_bad_parameter_forms_are_rejected():
    with pytest.raises(TypeError, match="single tensor"):
        named_tensors(torch.ones(3))
    with pytest.raises(TypeError, match="item 1 is int"):
        named_tensors([torch.ones(3), 4])


def test_weight_norms_match_explicit_norms(model):
    norms = weight_norms(model)
    for name, p in model.named_parameters():
        assert norms[name] == pytest.approx(torch.linalg.vector_norm(p.double()).item(), rel=1e-6)
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    assert total_weight_norm(model) == pytest.approx(flat.norm().item(), rel=1e-6)


def test_norms_of_bf16_weights_are_accumulated_in_float32():
    torch.manual_seed(1)
    w = torch.randn(4096).to(torch.bfloat16)
    exact = w.double().norm().item()
    assert weight_norms([w])["0"] == pytest.approx(exact, rel=1e-6)


def test_float64_tensors_keep_float64_precision():
    w = torch.tensor([1.0, 1e-9], dtype=torch.float64)
    assert weight_norms({"w": w})["w"] == math.sqrt(1.0 + 1e-18)


def test_grad_norm_total_and_per_tensor(model):
    grads = [p.grad for p in model.parameters()]
    total = grad_norm(model)
    assert total.ndim == 0
    assert total.item() == pytest.approx(torch.cat([g.flatten() for g in grads]).norm().item(), rel=1e-6)
    per_tensor = grad_norm(model, per_tensor=True)
    assert torch.allclose(per_tensor, torch.stack([g.norm() for g in grads]), rtol=1e-6)


def test_grad_norm_skips_tensors_without_grad(model):
    model[0].bias.grad = None
    expected = math.hypot(model[0].weight.grad.norm().item(), model[2].weight.grad.norm().item())
    assert grad_norm(model).item() == pytest.approx(expected, rel=1e-6)
    assert grad_norm(model, per_tensor=True).shape == (2,)
    assert grad_norm([torch.ones(2)]).item() == 0.0


def test_effective_step_sizes_are_lr_over_squared_norm(model):
    steps = effective_step_sizes(model, lr=0.3)
    for name, p in model.named_parameters():
        assert steps[name] == pytest.approx(0.3 / p.detach().double().norm().item() ** 2, rel=1e-6)
    lrs = {"0.weight": 1.0, "0.bias": 2.0, "2.weight": 3.0}
    per_tensor = effective_step_sizes(model, lr=lrs)
    assert per_tensor["2.weight"] == pytest.approx(3.0 * steps["2.weight"] / 0.3, rel=1e-9)
    with pytest.raises(KeyError, match="0.bias"):
        effective_step_sizes(model, lr={"0.weight": 1.0, "2.weight": 1.0})


def test_cosine_similarity_of_lists_is_that_of_the_concatenation():
    torch.manual_seed(2)
    a = [torch.randn(3, 4), torch.randn(5)]
    b = [torch.randn(3, 4), torch.randn(5)]
    flat_a = torch.cat([t.flatten() for t in a])
    flat_b = torch.cat([t.flatten() for t in b])
    expected = F.cosine_similarity(flat_a, flat_b, dim=0)
    assert torch.allclose(cosine_similarity(a, b), expected, rtol=1e-6)
    single = F.cosine_similarity(a[0].flatten(), b[0].flatten(), dim=0)
    assert torch.allclose(cosine_similarity(a[0], b[0]), single, rtol=1e-6)
    assert cosine_similarity(a, [2 * t for t in a]).item() == pytest.approx(1.0, abs=1e-6)
    assert cosine_similarity(a, [-t for t in a]).item() == pytest.approx(-1.0, abs=1e-6)
    assert cosine_similarity([torch.zeros(3)], [torch.ones(3)]).item() == 0.0


def test_cosine_similarity_rejects_mismatches():
    with pytest.raises(ValueError, match="same positive number"):
        cosine_similarity([torch.ones(2)], [torch.ones(2), torch.ones(2)])
    with pytest.raises(ValueError, match=r"tensor 0: shapes differ, \(2,\) vs \(3,\)"):
        cosine_similarity(torch.ones(2), torch.ones(3))
