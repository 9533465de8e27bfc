"""The demos' presentation scale: fonts of at least 11 pt in every picture, pictures rendered at least at
their design width, legends off the data, controls with room for their labels (the browser test
measures the same in JupyterLab)."""

import math
import struct

import numpy as np
import pytest
import torch
from matplotlib.text import Text

from regkit.widgets import _images, _without_frontend, presentation
from regkit.widgets.gallery import DEMOS, build
from regkit.widgets.weight_decay import WD_MIN, WD_STEP

torch.set_num_threads(1)
SMALL = {"weight_decay": dict(steps=30), "scale_invariance": dict(steps=30), "cpr": dict(steps=60),
         "dynamics": dict(steps=100)}


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib figures the demos render, captured at ``figure_png``."""
    import regkit.widgets as widgets

    figures = []
    original = widgets.figure_png

    def capture(figure, dpi=None):
        figures.append(figure)
        return original(figure, dpi)

    for name in DEMOS:
        module = __import__(f"regkit.widgets.{name}", fromlist=["figure_png"])
        monkeypatch.setattr(module, "figure_png", capture)
    return figures


def texts(figure) -> list[Text]:
    figure.canvas.draw()  # legends and tick labels exist once drawn
    return [t for t in figure.findobj(Text) if t.get_text().strip() and t.get_visible()]


@pytest.mark.parametrize("name", DEMOS)
def test_every_text_of_every_picture_is_at_least_11_pt_and_the_png_is_not_upscaled(name, drawn):
    with _without_frontend():
        box = build(name, **SMALL.get(name, {}))
    assert drawn, name
    small = [(t.get_text(), t.get_fontsize()) for t in texts(drawn[-1]) if t.get_fontsize() < presentation.MIN_FONT_PT]
    assert not small, f"{name}: texts under 11 pt: {small[:5]}"
    (png,) = [bytes(image.value) for image in _images(box)]
    width = struct.unpack(">I", png[16:20])[0]
    inches = drawn[-1].get_figwidth()
    assert abs(width - inches * presentation.CSS_DPI * presentation.PIXEL_RATIO) <= 1  # shown scaled down, not up
    assert presentation.DEMO_CLASS in box._dom_classes
    assert _images(box)[0].layout.width == "100%"


def test_a_larger_scale_enlarges_the_fonts_of_pictures_and_controls(drawn):
    presentation.set_scale(1.5)
    try:
        with _without_frontend():
            build("cpr", steps=60)
        sizes = [t.get_fontsize() for t in texts(drawn[-1])]
        assert min(sizes) >= 1.5 * presentation.MIN_FONT_PT
        assert "--jp-widgets-font-size: 22.5px" in presentation.controls_css()
    finally:
        presentation.set_scale(1.0)
    assert "--jp-widgets-font-size: 15.0px" in presentation.controls_css()


@pytest.mark.parametrize("value", [0.2, 5, True, float("nan"), "big"])
def test_a_scale_outside_half_to_three_is_refused_by_value(value):
    with pytest.raises(ValueError, match=rf"scale={value!r} is not valid; pass a number in \[0.5, 3.0\]"):
        presentation.set_scale(value)
    assert presentation.scale() == 1.0


def test_the_weight_decay_slider_shows_the_values_the_text_names():
    for value in (0.5, 0.05):  # the default and exercise 08.1's answer lie on the slider's grid
        k = (math.log10(value) - WD_MIN) / WD_STEP
        assert abs(k - round(k)) < 1e-9, value
    with _without_frontend():
        box = build("weight_decay", steps=30)
    assert box.controls["weight_decay"].value == 0.5


def _overlaps(extent, points) -> bool:
    inside = ((points[:, 0] >= extent.x0) & (points[:, 0] <= extent.x1) & (points[:, 1] >= extent.y0)
              & (points[:, 1] <= extent.y1))  # fmt: skip
    return bool(inside.any())


def test_legends_do_not_cover_the_curves(drawn):
    with _without_frontend():
        build("cpr", steps=300)
        build("grokking")
    cpr, grokking = drawn[0], drawn[-1]
    cpr.canvas.draw()
    r_ax = cpr.axes[0]
    curve = r_ax.lines[0]
    points = r_ax.transData.transform(np.column_stack(curve.get_data()))
    assert not _overlaps(r_ax.get_legend().get_window_extent(), points)  # the R(w) curve stays visible
    grokking.canvas.draw()
    (ax,) = grokking.axes
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1  # beside the axes
    assert ax.get_ylabel() == "accuracy (%)" and max(line.get_ydata().max() for line in ax.lines) == pytest.approx(100)
