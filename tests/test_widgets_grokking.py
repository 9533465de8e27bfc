"""The grokking explorer, headless: it reads recorded histories, the controls change what is drawn,
bad values are rejected by name."""

import os

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from regkit.course.grokking import METHODS, PROFILES, load_histories, read_histories_info, save_histories
from regkit.history import History
from regkit.widgets.grokking import (
    PACKAGED_HISTORIES,
    draw,
    grokking_curves,
    grokking_widget,
    latest_recorded,
    load_runs,
    render_png,
)  # fmt: skip

matplotlib.use("Agg")


def recorded():
    steps = [1, 10, 100, 1000]
    adam = History([{"step": s, "train_acc": min(1, s / 10), "val_acc": 0.01, "train_loss": 1 / s, "val_loss": 5.0,
                     "weight_norm": 10.0 + s} for s in steps], {"label": "Adam"})  # fmt: skip
    cpr = History([{"step": s, "train_acc": min(1, s / 10), "val_acc": min(1, s / 1000), "train_loss": 1 / s,
                    "val_loss": 5 / s, "weight_norm": 10.0, "R/w": 2.0, "kappa/w": 1.5, "lambda/w": 0.1 * s}
                   for s in steps], {"label": "CPR"})  # fmt: skip
    return {"adam/seed0": adam, "cpr/seed0": cpr}


def test_curves_are_the_recorded_columns():
    runs = recorded()
    curves = grokking_curves(runs, ["adam/seed0", "cpr/seed0"], "accuracy")
    steps, values = curves["cpr/seed0"]["val_acc"]
    np.testing.assert_array_equal(steps, [1, 10, 100, 1000])
    np.testing.assert_array_equal(values, [0.001, 0.01, 0.1, 1.0])
    assert list(curves["adam/seed0"]) == ["train_acc", "val_acc"]
    cpr = grokking_curves(runs, ["adam/seed0", "cpr/seed0"], "CPR measure")
    assert cpr["adam/seed0"] == {} and list(cpr["cpr/seed0"]) == ["R/w", "kappa/w"]
    np.testing.assert_array_equal(grokking_curves(runs, ["cpr/seed0"], "CPR multiplier")["cpr/seed0"]["lambda/w"][1],
                                  [0.1, 1.0, 10.0, 100.0])  # fmt: skip


def test_drawing_shows_the_curves_on_the_chosen_axis():
    runs = recorded()
    curves = grokking_curves(runs, ["cpr/seed0"], "weight norm")
    ax = Figure().subplots()
    draw(ax, runs, curves, "weight norm", logx=True)
    assert ax.get_xscale() == "log" and len(ax.lines) == 1
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [10.0] * 4)


def test_controls_redraw_what_they_say():
    runs = recorded()
    box = grokking_widget(runs)
    image = box.children[-1]
    first = image.value
    curves, metric, logx = box.drawn
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and metric == "accuracy" and logx is True and set(curves) == set(runs)
    assert first == render_png(runs, curves, metric, logx)
    box.controls["metric"].value = "weight norm"
    curves, metric, _ = box.drawn
    assert image.value != first and metric == "weight norm"
    np.testing.assert_array_equal(curves["adam/seed0"]["weight_norm"][1], [11.0, 20.0, 110.0, 1010.0])
    before = image.value
    box.controls["logx"].value = False
    assert box.drawn[2] is False and image.value != before
    before = image.value
    box.controls["runs"].value = ("cpr/seed0",)
    assert list(box.drawn[0]) == ["cpr/seed0"] and image.value != before


@pytest.mark.parametrize(
    "kwargs, message",
    [({"metric": "norm"}, "metric"), ({"runs": ["sgd/seed0"]}, "unknown run"), ({"runs": []}, "names"),
     ({"logx": "yes"}, "logx"), ({"histories": {}}, "histories"), ({"histories": "/no/such/file.json"}, "histories")],  # fmt: skip
)
def test_invalid_values_are_rejected(kwargs, message):
    kwargs = {"histories": recorded(), **kwargs}
    with pytest.raises(ValueError, match=message):
        grokking_widget(**kwargs)


def test_the_latest_quick_recording_is_found(tmp_path):
    runs = recorded()
    assert latest_recorded(tmp_path) is None
    older = save_histories(runs, tmp_path / "quick" / "06_grokking.histories.json", profile="quick")
    newer = save_histories(runs, tmp_path / "test" / "06_grokking.histories.json", profile="quick")
    full = save_histories(runs, tmp_path / "full" / "06_grokking.histories.json", profile="full")
    os.utime(older, (1, 1))
    os.utime(newer, (2, 2))
    os.utime(full, (3, 3))
    assert latest_recorded(tmp_path) == newer
    assert {k: h.to_dict() for k, h in load_runs(newer).items()} == {k: h.to_dict() for k, h in runs.items()}
    as_dicts = load_runs({k: h.to_dict() for k, h in runs.items()})
    assert as_dicts["cpr/seed0"].last("lambda/w") == 100.0


def test_the_packaged_histories_are_a_quick_profile_run_of_every_method():
    runs = load_histories(PACKAGED_HISTORIES)
    assert read_histories_info(PACKAGED_HISTORIES)["profile"] == "quick"
    assert sorted(h.meta["method"] for h in runs.values()) == sorted(METHODS)
    quick = PROFILES["quick"]
    for h in runs.values():
        assert (h.meta["p"], h.meta["steps"], h.meta["lr"], h.meta["init_scale"]) == (
            quick["p"], quick["steps"], quick["lr"], quick["init_scale"])
    assert PACKAGED_HISTORIES.stat().st_size < 40_000
