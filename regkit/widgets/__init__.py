"""ipywidgets classroom demos, one module per demo.

Each demo is a function returning a widget; its computation is a separate, testable function
(no browser needed), and drawing renders PNG bytes into an ``ipywidgets.Image`` (no pyplot
state, no ``Output`` capture). Notebooks display a demo with ``show(builder)``: the live widget
in JupyterLab, a static picture of its first state when executed headless by the course runner
(see ``regkit.headless``).

Every demo shares one look (`regkit.widgets.presentation`): fonts of at least 11 pt in its picture
and its controls, the picture at the full width of the output, a gallery-wide `set_scale` for a big room.

Every builder refuses a starting value its slider cannot show (`in_range`: ipywidgets would clamp
it silently) and redraws through `redraw_on_change`: a value the demo refuses (NaN, say) raises,
and the control goes back to its last drawn value, so the widget keeps working.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable, Iterator
from unittest import mock

from regkit.headless import is_headless


@contextlib.contextmanager
def _without_frontend() -> Iterator[None]:
    """Widgets built inside get a ``comm.DummyComm``: no message reaches the frontend."""
    import comm

    with mock.patch.object(comm, "create_comm", comm.DummyComm):
        yield


def _images(widget) -> list:
    """Every ``ipywidgets.Image`` in a widget tree, depth first."""
    import ipywidgets

    if isinstance(widget, ipywidgets.Image):
        return [widget]
    return [im for child in getattr(widget, "children", ()) for im in _images(child)]


def in_range(name: str, value, slider):
    """``slider`` (built with ``value=value``) after checking that ``value`` lies in its range.

    ipywidgets clamps a value outside ``[min, max]`` (``[base**min, base**max]`` for a log slider)
    without a word; this raises ValueError naming the argument, its value and the range instead.
    """
    import ipywidgets

    log = isinstance(slider, ipywidgets.FloatLogSlider)
    low, high = (slider.base**slider.min, slider.base**slider.max) if log else (slider.min, slider.max)
    if not low <= value <= high:  # NaN fails too
        raise ValueError(f"{name}={value!r} is outside the widget's range [{low:g}, {high:g}]; pass a value in it")
    return slider


def redraw_on_change(controls: Iterable, redraw: Callable[[], None]) -> None:
    """Call ``redraw()`` whenever one of ``controls`` changes value.

    When ``redraw`` raises (a value the demo refuses, e.g. NaN typed into a slider), the control
    goes back to its previous value (drawn again) and the error propagates: the widget stays at its
    last valid state instead of failing on every later change.
    """
    restoring = False

    def on_change(change) -> None:
        nonlocal restoring
        try:
            redraw()
        except Exception:
            if not restoring:
                restoring = True
                try:
                    change["owner"].value = change["old"]
                finally:
                    restoring = False
            raise

    for control in controls:
        control.observe(on_change, names="value")


def figure_png(figure, dpi: float | None = None) -> bytes:
    """A matplotlib ``Figure`` (built without pyplot) as PNG bytes for an ``ipywidgets.Image``, at ``dpi``
    (default: the presentation resolution, `regkit.widgets.presentation.dpi`)."""
    from regkit.widgets.presentation import dpi as presentation_dpi

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=presentation_dpi() if dpi is None else dpi)
    return buffer.getvalue()


def show(build: Callable, *args, **kwargs):
    """Display the demo ``build(*args, **kwargs)``.

    Interactive: returns the widget (the cell displays it). Headless: builds it without a
    frontend, displays the PNG of each of its ``Image`` children and returns None.
    """
    if not is_headless():
        return build(*args, **kwargs)
    from IPython.display import Image, display

    with _without_frontend():
        widget = build(*args, **kwargs)
    pictures = [bytes(im.value) for im in _images(widget) if im.value]
    if not pictures:
        raise ValueError(f"{getattr(build, '__name__', build)!r} drew no Image: demos render PNGs into ipywidgets.Image")
    for png in pictures:
        display(Image(data=png, format="png"))
    print("(static picture of the demo's first state: open the notebook in JupyterLab to move the sliders)")
    return None
