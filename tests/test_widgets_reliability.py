"""Every classroom demo survives a value it refuses (the control goes back to its last drawn value) and
refuses starting values its sliders cannot show, instead of clamping them."""

import ipywidgets
import pytest
import torch

from regkit.widgets import _images, _without_frontend, in_range
from regkit.widgets.cpr import cpr_widget
from regkit.widgets.gallery import DEMOS, build, controls, nudge
from regkit.widgets.grad_norm import grad_norm_widget

torch.set_num_threads(1)
SMALL = {"weight_decay": dict(steps=30), "scale_invariance": dict(steps=30), "cpr": dict(steps=60),
         "dynamics": dict(steps=100)}
SLIDERS = (ipywidgets.FloatSlider, ipywidgets.FloatLogSlider)


def picture(widget) -> bytes:
    return b"".join(bytes(image.value) for image in _images(widget))


SLIDERS_OF = {"weight_decay": {"lr", "weight_decay", "momentum"}, "scale_invariance": {"lr", "momentum"},
              "cpr": {"kappa", "kappa_update"}, "grad_norm": {"r", "alpha"}, "grokking": set(),
              "dynamics": {"lr", "weight_decay", "beta1"}}


@pytest.mark.parametrize("name", DEMOS)
def test_a_refused_slider_value_goes_back_to_the_last_drawn_one_and_the_demo_keeps_working(name):
    with _without_frontend():
        widget = build(name, **SMALL.get(name, {}))
        found = controls(widget)
        sliders = {n: c for n, c in found.items() if isinstance(c, SLIDERS)}
        assert set(sliders) == SLIDERS_OF[name]
        drawn = picture(widget)
        for slider_name, slider in sliders.items():
            before = slider.value
            with pytest.raises(ValueError):
                slider.value = float("nan")
            assert slider.value == before and picture(widget) == drawn, slider_name
        for control_name in {*list(sliders)[-1:], next(iter(found))}:  # later changes redraw as before
            old, new = nudge(found[control_name])
            assert picture(widget) != drawn, f"{name}: {control_name} {old!r} -> {new!r} after a refused value"
            found[control_name].value = old
            assert picture(widget) == drawn


@pytest.mark.parametrize("build_widget, kwargs, message", [
    (cpr_widget, dict(kappa=100.0, steps=60), r"kappa=100.0 is outside the widget's range \[0.1, 10\]"),
    (cpr_widget, dict(kappa_update=0.001, steps=60), r"kappa_update=0.001 is outside the widget's range \[0.01, 10\]"),
    (grad_norm_widget, dict(r=10.0), r"r=10.0 is outside the widget's range \[1e-08, 1\]; pass a value in it"),
    (grad_norm_widget, dict(alpha=3.0), r"alpha=3.0 is outside the widget's range \[0, 2\]; pass a value in it"),
])  # fmt: skip
def test_a_starting_value_outside_a_slider_is_refused_not_clamped(build_widget, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_widget(**kwargs)


def test_the_range_ends_are_accepted_and_shown_exactly():
    with _without_frontend():
        box = cpr_widget(kappa=10.0, kappa_update=0.01, steps=60)
    assert box.controls["kappa"].value == 10.0 and box.drawn[1] == 10.0
    assert in_range("x", 0.0, ipywidgets.FloatSlider(value=0.0, min=0.0, max=1.0)).value == 0.0
    with pytest.raises(ValueError, match=r"x=nan is outside the widget's range \[0, 1\]"):
        in_range("x", float("nan"), ipywidgets.FloatSlider(min=0.0, max=1.0))
