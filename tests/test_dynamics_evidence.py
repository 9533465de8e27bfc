"""regkit.course.dynamics_evidence: notebook 09's cpu-profile experiments return the values CLAIMS names."""

import math

import numpy as np
import pytest
import torch

from regkit.course import evidence
from regkit.course.catalog import load
from regkit.course.dynamics_evidence import (
    HIDDEN,
    StepNorms,
    adamw,
    best_log2,
    best_timescales,
    bn_mlp,
    design_split,
    end_rise,
    equilibrium_evidence,
    schedule_evidence,
    timescale_evidence,
)
from regkit.diagnostics.rotation import adamw_equilibrium
from regkit.optim import weight_decay_for_timescale

TINY = {"dataset": "fashion_mnist_subset", "image_size": 14, "validation_size": 1000, "train_images": 400,
        "width": 16, "batch_size": 50, "seeds": [0, 1],
        "timescale": {"sizes": [100, 200, 400], "epochs": 2, "tau_epoch": [0.5, 1.0, 2.0], "lr": 3e-3,
                      "decay": "matrices"},
        "equilibrium": {"train_size": 400, "steps": 20, "window": 10, "lr": 3e-3, "weight_decay": 1.0},
        "schedule": {"train_size": 400, "steps": 20, "warmup": 2, "lr": 3e-3, "weight_decay": 1.0, "curve_every": 5}}


def names_of(notebook):
    claims = [c for c in evidence.CLAIMS if c.notebook == notebook]
    return {c.treatment for c in claims} | {c.baseline for c in claims if c.baseline is not None}


def test_hidden_rows_are_scale_invariant_in_training_mode():
    torch.manual_seed(0)
    model, x = bn_mlp(8, 6), torch.randn(32, 8)
    before = model(x)
    with torch.no_grad():
        for name in HIDDEN:
            dict(model.named_parameters())[name].mul_(torch.rand(6, 1) * 5 + 0.1)  # every row by its own factor
    torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("decay", "decayed"), [("hidden", set(HIDDEN)), ("matrices", {*HIDDEN, "6.weight"})])
def test_adamw_decays_the_chosen_matrices_only(decay, decayed):
    model = bn_mlp(8, 6)
    opt = adamw(model, 1e-3, 0.5, decay, corrected=True)
    names = {id(p): n for n, p in model.named_parameters()}
    by_decay = {g["weight_decay"]: {names[id(p)] for p in g["params"]} for g in opt.param_groups}
    assert by_decay[0.5] == decayed and by_decay[0.0] == set(names.values()) - decayed
    assert all(g["corrected"] for g in opt.param_groups)
    with pytest.raises(ValueError, match="decay must be 'hidden' or 'matrices', got 'all'"):
        adamw(model, 1e-3, 0.5, "all")


def test_best_log2_is_the_parabola_vertex_or_the_grid_end():
    x = np.arange(-1.0, 5.0)
    assert math.isclose(best_log2(x, (x - 1.3) ** 2), 1.3)
    assert best_log2(x, x) == -1.0 and best_log2(x, -x) == 4.0
    assert math.isclose(best_log2(x, np.abs(x - 2.0)), 2.0)  # a kink: the parabola through it is symmetric
    with pytest.raises(ValueError, match="at least 3 increasing grid points"):
        best_log2([0.0, 1.0], [1.0, 0.0])


def test_best_timescales_express_the_same_optimum_as_a_weight_decay():
    import pandas as pd

    taus = [0.5, 1.0, 2.0, 4.0]
    grid = pd.DataFrame([{"seed": 0, "size": size, "tau_epoch": t, "loss": (math.log2(t) - 0.7) ** 2}
                         for size in (1000, 4000) for t in taus])
    best = best_timescales(grid, lr=3e-3, batch_size=100)
    for _, row in best.iterrows():
        assert math.isclose(row["log2_tau"], 0.7)
        wd = weight_decay_for_timescale(3e-3, 2**0.7, row["size"] // 100)
        assert math.isclose(row["log2_wd"], math.log2(wd))


def test_end_rise_compares_the_last_tenth_with_the_30_to_40_percent_window():
    values = np.ones(100)
    values[90:] = 3.0
    values[30:40] = 2.0
    assert end_rise(values) == 1.5


def test_step_norms_record_the_step_s_gradient_and_the_new_weights():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = torch.optim.SGD([w], lr=0.5)
    norms = StepNorms(opt, [w])
    for target in ([0.0, 0.0], [1.0, 1.0]):
        opt.zero_grad()
        (w - torch.tensor(target)).square().sum().div(2).backward()
        opt.step()
    norms.remove()
    opt.step()  # not recorded
    np.testing.assert_allclose(norms.grad, [5.0, math.hypot(0.5, 1.0)], rtol=1e-6)
    np.testing.assert_allclose(norms.weight, [2.5, math.hypot(1.25, 1.5)], rtol=1e-6)


def test_design_split_standardizes_on_the_training_images_and_holds_out_the_last_ones():
    split = design_split(TINY)
    assert split.x_train.shape == (400, 196) and len(split.x_test) == 5000
    torch.testing.assert_close(split.x_train.mean(0), torch.zeros(196), atol=1e-4, rtol=0)
    held_out = design_split(TINY, validation=True)
    assert len(held_out.x_test) == 1000 and torch.equal(held_out.x_train, split.x_train)
    with pytest.raises(ValueError, match="train_images=20000 be at most its 10000"):
        design_split(TINY | {"train_images": 20_000})


def test_the_three_experiments_return_every_value_notebook_09_claims():
    split = design_split(TINY)
    values = {}
    for experiment in (timescale_evidence, equilibrium_evidence, schedule_evidence):
        part, frame = experiment(TINY, split)
        assert all(set(v) == {0, 1} for v in part.values()) and len(frame)
        values |= part
    sizes = [f"best_log2_tau_{m}_n{n}" for m in ("err", "loss") for n in (100, 200, 400)]
    assert set(values) == names_of("09") | {"plain_weight_ratio", "corrected_weight_ratio", *sizes}
    for suffix in ("err", "loss"):  # at a fixed batch size the wd slope is the tau slope - 1
        for seed in (0, 1):
            tau, wd = values[f"tau_abs_slope_{suffix}"][seed], values[f"wd_abs_slope_{suffix}"][seed]
            assert math.isclose(wd, abs(tau - 1)) or math.isclose(wd, tau + 1)


def test_equilibrium_values_are_the_worst_layer_against_the_prediction():
    values, frame = equilibrium_evidence(TINY, design_split(TINY))
    assert set(frame["layer"]) == set(HIDDEN) and len(frame) == 4
    for seed in (0, 1):
        rows = frame[frame["seed"] == seed]
        assert values["eq_norm_error"][seed] == (rows["norm ratio"] - 1).abs().max()
        assert values["eq_angle_error"][seed] == (rows["angle ratio"] - 1).abs().max()
    assert adamw_equilibrium(3e-3, 1.0, 196).norm > 0  # the prediction the ratios divide by


def test_schedule_values_and_curves_cover_both_runs_of_every_seed():
    values, curves = schedule_evidence(TINY, design_split(TINY))
    assert set(values) == {f"{run}_{what}" for run in ("plain", "corrected") for what in ("grad_rise", "weight_ratio")}
    assert len(curves) == 2 * 2 * 4 and set(curves["step"]) == {5, 10, 15, 20}
    assert all(v > 0 for part in values.values() for v in part.values())


def test_the_cpu_row_is_the_quick_row_plus_the_evidence_design():
    catalog = load("09")
    row = catalog.row("cpu")
    assert {k: v for k, v in row.items() if k != "evidence"} == catalog.row("quick")
    assert len(row["evidence"]["seeds"]) >= 3


def test_packaged_result_is_the_cpu_row_s_committed_run_with_three_seeds_per_claim():
    data = evidence.load("09")
    assert data is not None, "evidence/09.json is missing: run python -m regkit.course run --profile cpu --only 09"
    assert evidence.stale_keys(data["settings"], load("09").row("cpu")) == []
    assert data["profile"] == "cpu" and data["threads"] == 1 and data["device"].startswith("cpu")
    assert not data["git_commit"].endswith("+dirty"), "packaged from uncommitted code: commit, then rerun"
    for claim in (c for c in evidence.CLAIMS if c.notebook == "09"):
        for name in filter(None, (claim.treatment, claim.baseline)):
            assert sorted(data["values"][name]) == ["0", "1", "2"], (claim.key, name)
        assert evidence.decide(claim, data).verdict != evidence.NO_RESULT
    for suffix in ("err", "loss"):  # the packaged slopes obey wd slope = tau slope - 1 (fixed batch)
        for seed, tau in data["values"][f"tau_abs_slope_{suffix}"].items():
            wd = data["values"][f"wd_abs_slope_{suffix}"][seed]
            assert math.isclose(wd, abs(tau - 1)) or math.isclose(wd, tau + 1)
