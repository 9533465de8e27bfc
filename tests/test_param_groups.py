import subprocess
import sys

import pytest
import torch
from torch import nn

import regkit
import regkit.optim as ro


class Net(nn.Module):
    """One of each kind: embedding, conv, batch/layer/group/RMS norms, linear with bias, a raw position table."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.pos_embedding = nn.Parameter(torch.zeros(4, 8))
        self.conv = nn.Conv2d(3, 8, 3, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.gn = nn.GroupNorm(2, 8)
        self.ln = nn.LayerNorm(8)
        self.rms = nn.RMSNorm(8)
        self.head = nn.Linear(8, 2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def names(groups):
    return {g["weight_decay"]: g["names"] for g in groups}


def test_matrices_decay_and_the_rest_does_not():
    groups = regkit.param_groups(Net(), 0.1, verbose=False)
    assert names(groups) == {
        0.1: ["pos_embedding", "conv.weight", "head.weight"],
        0.0: [
            "embed.weight", "bn.weight", "bn.bias", "gn.weight", "gn.bias",
            "ln.weight", "ln.bias", "rms.weight", "head.bias",
        ],
    }  # fmt: skip
    model = Net()
    by_name = dict(model.named_parameters())
    groups = regkit.param_groups(model, 0.1, verbose=False)
    for group in groups:  # the names label the very tensors of the group, frozen ones left out
        assert all(p is by_name[n] for p, n in zip(group["params"], group["names"], strict=True))
    assert not any(n.startswith("frozen.") for g in groups for n in g["names"])


def test_overrides_decay_embeddings_norms_and_skip_patterns():
    groups = regkit.param_groups(Net(), 0.1, decay_embeddings=True, skip=["pos_*"], verbose=False)
    assert names(groups)[0.1] == ["embed.weight", "conv.weight", "head.weight"]
    assert "pos_embedding" in names(groups)[0.0]
    groups = regkit.param_groups(Net(), 0.1, decay_norms=True, verbose=False)
    assert names(groups)[0.1] == ["pos_embedding", "conv.weight", "head.weight"]  # norm params are 1-D
    norm2d = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm((2, 2)))
    assert names(regkit.param_groups(norm2d, 0.1, verbose=False))[0.1] == ["0.weight"]
    assert names(regkit.param_groups(norm2d, 0.1, decay_norms=True, verbose=False))[0.1] == [
        "0.weight",
        "1.weight",
        "1.bias",
    ]


def test_shared_parameter_is_exempt_if_any_owner_exempts_it():
    embed, unembed = nn.Embedding(5, 4), nn.Linear(4, 5, bias=False)
    unembed.weight = embed.weight  # tied weights
    groups = regkit.param_groups(nn.ModuleDict({"unembed": unembed, "embed": embed}), 0.1, verbose=False)
    assert names(groups) == {0.0: ["unembed.weight"]}
    assert len(groups) == 1 and groups[0]["params"] == [embed.weight]


def test_verbose_reports_counts(capsys):
    regkit.param_groups(Net(), 0.05)
    out = capsys.readouterr().out
    assert "decay (wd=0.05) 3 tensors (264 values)" in out  # 4*8 + 8*3*3*3 + 2*8
    assert (
        "no decay 9 tensors" in out
        and "normalization 7" in out
        and "embedding 1" in out
        and "bias/1-D 1" in out
    )


def test_groups_drive_an_optimizer():
    model = Net()
    opt = ro.AdamW(regkit.param_groups(model, 0.1, verbose=False), lr=1e-3)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    model.head.weight.grad = torch.zeros_like(model.head.weight)
    model.head.bias.grad = torch.zeros_like(model.head.bias)
    weight, bias = model.head.weight.detach().clone(), model.head.bias.detach().clone()
    opt.step()  # zero gradient: only the decayed group moves, by exactly 1 - lr * wd
    assert torch.equal(model.head.weight, weight * (1 - 1e-3 * 0.1)) and torch.equal(model.head.bias, bias)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"weight_decay": 0.1, "skip": ["no_such*"]}, "no_such"),
        ({"weight_decay": 0.1, "skip": "pos_embedding"}, "skip"),
        ({"weight_decay": 0.1, "decay_embeddings": "yes"}, "decay_embeddings"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        regkit.param_groups(Net(), **kwargs)


def test_import_regkit_stays_free_of_torch():
    """`regkit.param_groups` is exported from the package, yet `import regkit` (the course runner) loads no torch."""
    code = "import sys, regkit; assert callable(regkit.param_groups); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
