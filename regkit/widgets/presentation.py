"""How the classroom demos look on a projector: one gallery-wide presentation scale.

Pictures are designed for `DESIGN_WIDTH_IN` inches at 96 dpi (1 pt = 4/3 CSS px, so a font of N pt
shows at N pt when the picture is shown at its design width, about the width of a notebook's output
at 1280x720 with the file browser hidden). They are rendered at `PIXEL_RATIO` times that resolution
and shown at the full width of the output area (``picture()``), so the browser scales them down,
never up: sharp text on a projector. Fonts: ``picture_style()`` (a matplotlib rc context) sets every
text of a picture to at least 11 pt times the scale; ``controls_css()`` sets the widgets' labels,
readouts and buttons to 15 px (11 pt) times the scale, inside the demo's box only.

``set_scale(1.3)`` enlarges every demo built afterwards (fonts of pictures and controls); the default
1.0 already meets the course's floor of 11 pt. Notebook 08 documents it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

DESIGN_WIDTH_IN = 10.5  # 1008 CSS px at 96 dpi
CSS_DPI = 96
PIXEL_RATIO = 1.5  # rendered pixels per CSS pixel: shown scaled down, never up
MIN_FONT_PT = 11.0
CONTROL_FONT_PX = 15.0  # 11.25 pt
DEMO_CLASS = "regkit-demo"

_scale = 1.0


def set_scale(scale: float) -> None:
    """Scale the fonts of every demo built from now on (pictures and controls); 1.0 is the default."""
    global _scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.5 <= scale <= 3.0:
        raise ValueError(f"scale={scale!r} is not valid; pass a number in [0.5, 3.0] (1.0: the default size)")
    _scale = float(scale)


def scale() -> float:
    """The presentation scale set by `set_scale` (1.0 unless changed)."""
    return _scale


def dpi() -> float:
    """The resolution pictures are rendered at: `CSS_DPI` times `PIXEL_RATIO`."""
    return CSS_DPI * PIXEL_RATIO


def style_rc() -> dict[str, float | bool]:
    """matplotlib rc settings of a demo picture: every font at least `MIN_FONT_PT` times the scale."""
    base = MIN_FONT_PT * _scale
    return {"font.size": base + 1, "axes.titlesize": base + 2, "axes.labelsize": base + 1,
            "xtick.labelsize": base, "ytick.labelsize": base, "legend.fontsize": base,
            "legend.title_fontsize": base, "figure.titlesize": base + 2, "axes.titlepad": 5.0}  # fmt: skip


@contextlib.contextmanager
def picture_style() -> Iterator[None]:
    """Draw and render a picture inside this context (matplotlib reads rc settings when artists are made)."""
    import matplotlib

    with matplotlib.rc_context(style_rc()):
        yield


def controls_css() -> str:
    """CSS for the controls inside a demo's box (class `DEMO_CLASS`): labels, readouts and buttons at 15 px
    times the scale, tall enough for that text."""
    size = CONTROL_FONT_PX * _scale
    return (f".{DEMO_CLASS} {{--jp-widgets-font-size: {size:.1f}px; "
            f"--jp-widgets-inline-height: {math.ceil(2 * size)}px;}}\n"
            f".{DEMO_CLASS} .widget-label, .{DEMO_CLASS} .widget-label-basic, .{DEMO_CLASS} .widget-readout, "
            f".{DEMO_CLASS} button, .{DEMO_CLASS} select, .{DEMO_CLASS} .widget-html-content "
            f"{{font-size: {size:.1f}px;}}")  # fmt: skip


def label_width(*descriptions: str) -> str:
    """A CSS width (em of the label's font) that holds the longest of ``descriptions`` uncut: for a column
    of controls whose sliders should line up."""
    return f"{0.62 * max(map(len, descriptions)) + 0.8:.1f}em"


def picture(**layout):
    """An ``ipywidgets.Image`` (PNG) shown at the full width of its box, its height following its aspect."""
    import ipywidgets

    return ipywidgets.Image(format="png", layout=ipywidgets.Layout(width="100%", height="auto", **layout))


def demo_box(children, controls: dict | None = None, vertical: bool = True):
    """The demo's outer box: ``children`` in a ``VBox`` (``HBox`` when not ``vertical``) with the class
    `DEMO_CLASS` and a style element for its controls; ``controls`` becomes ``box.controls``."""
    import ipywidgets

    style = ipywidgets.HTML(f"<style>{controls_css()}</style>", layout=ipywidgets.Layout(display="none"))
    kind = ipywidgets.VBox if vertical else ipywidgets.HBox
    box = kind([style, *children], layout=ipywidgets.Layout(width="100%"))
    box.add_class(DEMO_CLASS)
    if controls is not None:
        box.controls = controls
    return box
