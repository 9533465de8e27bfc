"""regkit.course.decay_evidence: notebooks 01-03's cpu-profile experiments return the values CLAIMS names."""

import math

import numpy as np
import pytest

from regkit.course import evidence
from regkit.course.catalog import load
from regkit.course.decay_evidence import cpr_evidence, decay_grid_evidence, design_data
from regkit.course.experiments import best_decay_slope

TINY = {"dataset": "fashion_mnist_subset", "image_size": 14, "train_size": 256, "model": "small_cnn", "width": 4,
        "batch_size": 32, "steps": 12, "seeds": [0, 1]}


def test_design_data_pools_the_first_training_images():
    data = design_data(TINY)
    assert data.image_size == 14 and len(data.x_train) == 256 and tuple(data.x_train.shape[1:]) == (1, 14, 14)
    with pytest.raises(ValueError, match="image_size=10 must divide"):
        design_data(TINY | {"image_size": 10})


def test_decay_grid_values_are_the_grid_s_slopes_and_the_chosen_cells():
    design = TINY | {"lr": (0.01, 0.1), "adam_l2_wd": (0.001, 0.1), "adamw_lr_wd": (0.001, 0.01),
                     "best_cells": {"adam_l2": (0.01, 0.1), "adamw": (0.1, 0.001)}}
    values, frame = decay_grid_evidence(design)
    names = {c.treatment for c in evidence.CLAIMS if c.notebook == "01"} | {c.baseline for c in evidence.CLAIMS
                                                                          if c.notebook == "01"}
    assert set(values) == names and all(set(v) == {0, 1} for v in values.values())
    assert len(frame) == 2 * 2 * 2 * 2  # grids x lrs x decays x seeds
    for seed in (0, 1):
        grid = frame[(frame.optimizer == "adamw") & (frame.seed == seed)]
        assert values["adamw_abs_slope"][seed] == abs(best_decay_slope(grid, decay="decay"))
        cell = grid[np.isclose(grid.lr, 0.1) & np.isclose(grid.decay, 0.001)]
        assert values["adamw_best_err"][seed] == float(cell.err.iloc[0])
    with pytest.raises(ValueError, match=r"best_cells\['adamw'\]=\(0.3, 0.001\) is not a cell of the lr x adamw_lr_wd"):
        decay_grid_evidence(design | {"best_cells": {"adam_l2": (0.01, 0.1), "adamw": (0.3, 0.001)}})


def test_cpr_design_must_name_a_swept_baseline_before_running():
    design = dict(load("03").row("cpu")["evidence"], adamw_best_wd=0.5)
    with pytest.raises(ValueError, match=r"adamw_best_wd=0.5 one of adamw_wd=\(0.01, 0.0316"):
        cpr_evidence(design)


def test_cpr_values_hold_the_claimed_run_and_the_fixed_baseline():
    design = TINY | {"lr": 0.01, "warmup": 2, "adamw_wd": (0.1, 1.0), "cpr": ("cpr_warm_start",), "reg_step_size": 2,
                     "adamw_best_wd": 1.0, "claimed_cpr": "cpr_warm_start", "steps": 16}
    values, frame = cpr_evidence(design)
    assert set(values) == {"cpr_max_violation", "cpr_acc", "adamw_best_acc"}
    for seed in (0, 1):
        rows = frame[frame.seed == seed].set_index("key")
        assert values["adamw_best_acc"][seed] == rows.loc["adamw_1", "test acc (%)"]
        assert values["cpr_acc"][seed] == rows.loc["cpr_warm_start", "test acc (%)"]
        assert values["cpr_max_violation"][seed] == rows.loc["cpr_warm_start", "max R/kappa - 1"]
        assert math.isfinite(values["cpr_max_violation"][seed]) and math.isnan(rows.loc["adamw_0.1", "max R/kappa - 1"])
