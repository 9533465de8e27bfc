"""The cpu-profile designs' helpers: method factories, grids, downsampling, delay and constraint measures."""

import math

import pandas as pd
import pytest
import torch

from regkit.course.recipes import (
    CPU_DECAY_GRID,
    _decades,
    grokking_delay,
    max_constraint_violation,
    sam_gnp_methods,
)
from regkit.data import synthetic_images
from regkit.data.image_dataset import downsample
from regkit.history import History
from regkit.optim import SGD
from regkit.penalties import GNP, SAM


def test_sam_gnp_methods_share_one_sgd():
    model = torch.nn.Linear(3, 2)
    methods = sam_gnp_methods(lr=0.05, weight_decay=2e-2, rho=0.3, alpha=0.8, r=0.1)
    assert [(m.name, m.key) for m in methods] == [("SGD", "sgd"), ("SAM", "sam"), ("GNP", "gnp")]
    sgd, sam, gnp = (m.optimizer(model) for m in methods)
    assert type(sgd) is SGD and isinstance(sam, SAM) and type(gnp) is GNP
    for opt in (sgd, sam, gnp):
        group = opt.param_groups[0]
        assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.05, 0.9, 2e-2)
    assert (sam.param_groups[0]["gnp_alpha"], sam.param_groups[0]["gnp_r"]) == (1.0, 0.3)
    assert (gnp.param_groups[0]["gnp_alpha"], gnp.param_groups[0]["gnp_r"]) == (0.8, 0.1)
    assert [m.key for m in sam_gnp_methods(lr=0.1, weight_decay=0, rho=0.1, alpha=0.8, r=0.1,
                                           methods=("gnp", "sgd"))] == ["gnp", "sgd"]
    per_method = sam_gnp_methods(lr=0.1, weight_decay={"sgd": 2e-2, "sam": 5e-4}, rho=0.1, alpha=0.8, r=0.1,
                                 methods=("sgd", "sam"))
    assert [m.optimizer(model).param_groups[0]["weight_decay"] for m in per_method] == [2e-2, 5e-4]
    with pytest.raises(ValueError, match=r"has no value for \['gnp'\]"):
        sam_gnp_methods(lr=0.1, weight_decay={"sgd": 0.0}, rho=0.1, alpha=0.8, r=0.1, methods=("sgd", "gnp"))
    with pytest.raises(ValueError, match=r"methods=\('adam',\): choose a non-empty subset of \['sgd', 'sam', 'gnp'\]"):
        sam_gnp_methods(lr=0.1, weight_decay=0, rho=0.1, alpha=0.8, r=0.1, methods=("adam",))


def test_half_decade_grids():
    assert _decades(3e-3, 1e-1) == (0.00316, 0.01, 0.0316, 0.1)
    # notebook 01's cpu grid drops the 0.00316 column (evidence/DESIGN.md: 180 runs fit the 10-minute budget)
    assert CPU_DECAY_GRID["lr"] == (0.01, 0.0316, 0.1)


def test_downsample_averages_blocks():
    data = synthetic_images()
    small = downsample(data, 2)
    assert small.image_size == data.image_size // 2 and torch.equal(small.y_train, data.y_train)
    block = data.x_train[0, 0, :2, :2].double().mean().round()
    assert small.x_train[0, 0, 0, 0] == block and small.x_test.dtype == torch.uint8
    with pytest.raises(ValueError, match=f"dividing the image size {data.image_size}, got 5"):
        downsample(data, 5)


def history(train, val):
    h = History()
    for step, (a, b) in enumerate(zip(train, val, strict=True)):
        h.log(step * 100, train_acc=a, val_acc=b)
    return h


def test_grokking_delay():
    assert grokking_delay(history([0.5, 1.0, 1.0, 1.0], [0.1, 0.1, 0.2, 0.995]), 400) == 200
    assert grokking_delay(history([0.5, 1.0, 1.0], [0.1, 0.1, 0.2]), 1000) == 900  # never grokked: capped
    with pytest.raises(ValueError, match="never reached 99% training accuracy in 300 steps"):
        grokking_delay(history([0.5, 0.6], [0.1, 0.1]), 300)


class Recorded:
    def __init__(self, frame):
        self._frame = frame

    def frame(self):
        return self._frame


def test_max_constraint_violation_ignores_steps_before_kappa():
    frame = pd.DataFrame({"R": [9.0, 2.0, 3.0, 1.0], "kappa": [math.inf, 2.0, 2.0, 2.0]})
    assert max_constraint_violation(Recorded(frame)) == 0.5
    with pytest.raises(ValueError, match="kappa stayed inf"):
        max_constraint_violation(Recorded(frame.iloc[:1]))


def grid_frame(err):
    lrs, wds = [1e-3, 1e-2, 1e-1], [1e-4, 1e-3, 1e-2, 1e-1]
    return pd.DataFrame([{"lr": lr, "wd": wd, "err": err(math.log10(lr), math.log10(wd))} for lr in lrs for wd in wds])


def test_best_decay_slope():
    from regkit.course.experiments import best_decay_slope

    assert best_decay_slope(grid_frame(lambda x, y: (y + 3) ** 2 + x**2)) == pytest.approx(0.0, abs=1e-12)
    assert best_decay_slope(grid_frame(lambda x, y: (x + y + 4) ** 2)) == pytest.approx(-1.0)  # product matters
    with pytest.raises(ValueError, match=r"no column\(s\) \['err'\]"):
        best_decay_slope(grid_frame(lambda x, y: 0.0).rename(columns={"err": "e"}))


def test_gr_methods_warmup_schedules():
    from regkit.course.recipes import gr_methods

    model = torch.nn.Linear(3, 2)
    built = {m.key: m.optimizer(model) for m in gr_methods(lr=1e-3, weight_decay=0.3, r=0.1, warmup=150)}
    assert type(built["adam"]).__name__ == "AdamW"
    assert (built["adam_gr"].warmup, built["adam_gr"].warmup_steps) == (None, None)
    for schedule in ("lambda", "r", "zero"):
        gnp = built[f"adam_gr_{schedule}_warmup"]
        assert (gnp.warmup, gnp.warmup_steps, gnp.param_groups[0]["gnp_alpha"]) == (schedule, 150, 1.0)
    with pytest.raises(ValueError, match="choose a non-empty subset of"):
        gr_methods(lr=1e-3, weight_decay=0.3, r=0.1, warmup=150, methods=())


def test_norm_methods_and_scale_invariant_norm():
    from regkit.course.recipes import norm_methods, scale_invariant_norm
    from regkit.models import build_model
    from regkit.optim import SGDP, AdamP

    net = build_model("small_cnn", 10, 1, 14, width=4)
    kinds = {m.key: type(m.optimizer(net)) for m in norm_methods(sgd_lr=0.1, adam_lr=3e-3)}
    assert kinds["sgdp"] is SGDP and kinds["adamp"] is AdamP and kinds["sgd"] is SGD
    convs = [p for p in net.parameters() if p.dim() == 4]
    expected = math.sqrt(sum(float(p.detach().pow(2).sum()) for p in convs))
    assert scale_invariant_norm(net) == pytest.approx(expected, rel=1e-6)
    with torch.no_grad():
        for p in convs:
            p.mul_(2)
    assert scale_invariant_norm(net) == pytest.approx(2 * expected, rel=1e-6)
