"""The classroom gallery headless: every registered demo redraws a different picture for each control,
the picture is a function of the control values, bad input is refused clearly, and notebook 08
shows every demo."""

import functools
import math

import ipywidgets
import nbformat
import pytest
import torch

from regkit.bench.widgets import main as bench_main
from regkit.course.runner import NOTEBOOKS_DIR
from regkit.widgets import _images, _without_frontend
from regkit.widgets.gallery import DEMOS, build, controls, nudge, update_times

torch.set_num_threads(1)
# shorter runs than the demos' defaults keep this file fast; a demo missing here uses its defaults
SMALL = {"weight_decay": dict(steps=30), "scale_invariance": dict(steps=30), "cpr": dict(steps=60),
         "dynamics": dict(steps=100)}
INVALID = {
    "weight_decay": (dict(steps=0), r"steps must be a positive int, got 0"),
    "scale_invariance": (dict(steps=0), r"steps must be an int in \[1, \d+\], got 0"),
    "cpr": (dict(kappa=0.0), r"kappa must be > 0, got 0"),
    "grad_norm": (dict(r=-1e-3), r"r=-0.001 is not valid; it must be a finite number > 0"),
    "grokking": (dict(metric="f1"), r"metric must be one of .*; got metric='f1'"),
    "dynamics": (dict(beta1=1.5), r"beta1 must be a number in \[0.0, 0.999\], got 1.5"),
}


def picture(widget) -> bytes:
    images = _images(widget)
    assert images, "a demo draws into an ipywidgets.Image"
    return b"".join(bytes(image.value) for image in images)


@pytest.mark.parametrize("name", DEMOS)
def test_each_control_redraws_a_different_picture_and_going_back_restores_it(name):
    with _without_frontend():
        widget = build(name, **SMALL.get(name, {}))
        found = controls(widget)
        assert found, name
        first = picture(widget)
        assert first.startswith(b"\x89PNG\r\n\x1a\n")
        for control_name, control in found.items():
            old, new = nudge(control)
            assert new != old, (name, control_name)
            moved = picture(widget)
            assert moved != first, f"{name}: moving {control_name} from {old!r} to {new!r} left the picture unchanged"
            control.value = old
            assert picture(widget) == first, f"{name}: {control_name} back to {old!r} did not restore the picture"


@pytest.mark.parametrize("name", DEMOS)
def test_invalid_values_are_refused_with_the_argument_named(name):
    assert name in INVALID, f"add an invalid-value case for the new demo {name!r}"
    kwargs, message = INVALID[name]
    with pytest.raises(ValueError, match=message):
        build(name, **kwargs)


def tiny_demo(broken: bool = False):
    """Two controls; the picture shows only the slider unless ``broken`` (then the toggle changes nothing)."""
    slider = ipywidgets.IntSlider(value=1, min=0, max=3, description="n")
    toggle = ipywidgets.ToggleButtons(options=["a", "b"], description="mode")
    image = ipywidgets.Image(format="png")

    def redraw(_=None):
        image.value = b"\x89PNG" + bytes([slider.value]) + (b"" if broken else toggle.value.encode())

    for control in (slider, toggle):
        control.observe(redraw, names="value")
    redraw()
    return ipywidgets.VBox([ipywidgets.HBox([slider, toggle]), image])


def test_update_times_nudges_every_control_and_reports_a_redraw_that_changed_nothing(monkeypatch):
    monkeypatch.setitem(DEMOS, "tiny", tiny_demo)
    rows = update_times("tiny")
    assert [(row.control, row.old, row.new, row.changed) for row in rows] == [("n", 1, 2, True), ("mode", "a", "b", True)]
    assert all(math.isfinite(t) and t >= 0 for row in rows for t in (row.seconds, row.cpu_seconds, row.back_seconds))
    assert [row.changed for row in update_times("tiny", broken=True)] == [True, False]


def test_controls_are_found_in_the_tree_when_the_builder_does_not_list_them():
    slider, toggle = ipywidgets.FloatSlider(description="a"), ipywidgets.ToggleButtons(options=["x", "y"], description="b")
    box = ipywidgets.VBox([ipywidgets.HBox([slider]), toggle, ipywidgets.Image(), ipywidgets.HTML()])
    assert controls(box) == {"a": slider, "b": toggle}
    with pytest.raises(ValueError, match="has no slider, selection or checkbox"):
        controls(ipywidgets.VBox([ipywidgets.HTML()]))


def test_nudge_moves_to_a_valid_neighbour():
    log = ipywidgets.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.5)
    assert nudge(log) == (1.0, pytest.approx(10**0.5))  # log sliders step their exponent
    assert nudge(log) == (pytest.approx(10**0.5), pytest.approx(10**1.0))
    assert nudge(log) == (pytest.approx(10**1.0), pytest.approx(10**0.5))  # at the top end: down
    top = ipywidgets.IntSlider(value=5, min=0, max=5, step=1)
    assert nudge(top) == (5, 4)  # at the top end a slider steps down
    toggle = ipywidgets.ToggleButtons(options=["a", "b"], value="b")
    assert nudge(toggle) == ("b", "a")
    box = ipywidgets.Checkbox(value=False)
    assert nudge(box) == (False, True)
    with pytest.raises(TypeError, match="cannot move a Text"):
        nudge(ipywidgets.Text())


def test_unknown_demo_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"demo must be one of 'weight_decay', .*'grad_norm'.*, got 'nope'"):
        build("nope")
    with pytest.raises(SystemExit):
        bench_main(["--demo", "nope"])


def test_notebook_08_shows_every_registered_demo():
    nb = nbformat.read(NOTEBOOKS_DIR / "08_classroom_demos.ipynb", as_version=4)
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    for name, builder in DEMOS.items():
        builder = builder.func if isinstance(builder, functools.partial) else builder
        assert f"show({builder.__name__}" in code or f'show(DEMOS["{name}"]' in code, f"notebook 08 does not show {name!r}"
