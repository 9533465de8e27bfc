"""The AdamCPR classroom widget, headless: what the sliders change and what they reject."""

import matplotlib
import numpy as np
import pytest

from regkit.widgets.cpr import TARGET, cpr_toy_run, cpr_widget

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


def test_sliders_change_the_figure():
    box = cpr_widget(kappa=1.0, kappa_update=1.0, steps=150)
    r_axis = box.figure.axes[0]
    before = r_axis.lines[0].get_ydata().copy()
    box.sliders["kappa"].value = 2.0
    after_kappa = r_axis.lines[0].get_ydata().copy()
    assert not np.allclose(before, after_kappa) and r_axis.lines[1].get_ydata()[0] == pytest.approx(2.0)
    lam_before = box.figure.axes[1].lines[0].get_ydata().copy()
    box.sliders["kappa_update"].value = 0.1
    assert not np.allclose(lam_before, box.figure.axes[1].lines[0].get_ydata())


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
