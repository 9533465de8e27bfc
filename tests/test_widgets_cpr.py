"""The AdamCPR classroom widget, headless: what the sliders change and what they reject."""

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from regkit.widgets.cpr import TARGET, cpr_toy_run, cpr_widget, draw, render_png

matplotlib.use("Agg")


def test_the_bound_holds_the_measure_below_the_unconstrained_optimum():
    run = cpr_toy_run(kappa=1.0, kappa_update=1.0)
    natural = sum(t * t for t in TARGET)
    assert 0.8 <= run["R"][-100:].mean() <= 1.02 and natural > 3
    assert (run["lambda"] >= 0).all() and run["lambda"][-1] > 0
    loose = cpr_toy_run(kappa=9.0, kappa_update=1.0)
    assert (loose["lambda"] == 0).all(), "a bound above ||w*||^2 never activates"
    assert loose["R"][-100:].mean() == pytest.approx(natural, rel=0.2)


def test_a_small_kappa_update_reacts_late_and_overshoots():
    slow, fast = cpr_toy_run(1.0, 0.01), cpr_toy_run(1.0, 1.0)
    assert slow["R"].max() > 1.3 and fast["R"].max() < 1.1


def test_drawing_shows_the_computed_run():
    run = cpr_toy_run(1.0, 1.0, steps=100)
    figure = Figure()
    axes = figure.subplots(1, 3)
    draw(axes, run, 1.0)
    np.testing.assert_array_equal(axes[0].lines[0].get_ydata(), run["R"])
    np.testing.assert_array_equal(axes[1].lines[0].get_ydata(), run["lambda"])
    assert axes[0].lines[1].get_ydata()[0] == 1.0  # the bound


def test_sliders_redraw_what_they_say():
    box = cpr_widget(kappa=1.0, kappa_update=1.0, steps=150)
    image = box.children[-1]
    first = image.value
    run, kappa = box.drawn
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and first == render_png(run, kappa) and kappa == 1.0
    box.controls["kappa"].value = 2.0
    run, kappa = box.drawn
    assert image.value != first and kappa == pytest.approx(2.0)
    np.testing.assert_array_equal(run["R"], cpr_toy_run(kappa, 1.0, 150)["R"])
    before = run["lambda"]
    box.controls["kappa_update"].value = 0.1
    run, _ = box.drawn
    assert not np.allclose(before, run["lambda"]) and image.value == render_png(run, kappa)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"kappa": 0.0}, "kappa"), ({"kappa": -1.0}, "kappa"), ({"kappa_update": 0.0}, "kappa_update"),
     ({"steps": 0}, "steps"), ({"kappa": "1"}, "kappa")],  # fmt: skip
)
def test_invalid_values_are_rejected(kwargs, name):
    with pytest.raises(ValueError, match=name):
        cpr_toy_run(**kwargs)
    with pytest.raises(ValueError, match=name):
        cpr_widget(**kwargs)
