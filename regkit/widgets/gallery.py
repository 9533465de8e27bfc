"""Every classroom demo of the course in one place (notebook 08), and how fast each one redraws.

`DEMOS` maps a demo's name to its builder, in course order; every builder returns a widget with
``box.controls`` (name -> ipywidgets control) and an ``Image`` child it redraws when a control
changes (see `regkit.widgets`). `nudge` moves one control the way a teacher would (a slider one
step, a toggle to its next option, a checkbox flipped); `update_times` nudges each control of a
demo once (a new value: computed and drawn) and then back (a value seen before: cached), timing
each redraw and checking that the picture changed. ``python -m regkit.bench widgets`` prints them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from regkit.widgets import _images, _without_frontend
from regkit.widgets.cpr import cpr_widget
from regkit.widgets.scale_invariance import scale_invariance_widget
from regkit.widgets.weight_decay import weight_decay_widget

DEMOS: dict[str, Callable] = {
    "weight_decay": weight_decay_widget,
    "scale_invariance": scale_invariance_widget,
    "cpr": cpr_widget,
}


@dataclass(frozen=True)
class Update:
    """One nudge of one control: its values, the seconds its redraw took, and whether the picture changed."""

    demo: str
    control: str
    old: object
    new: object
    seconds: float  # first visit of ``new``: computed and drawn
    back_seconds: float  # back to ``old``, a value drawn before (cached computation)
    changed: bool  # the PNG differs from the one before the nudge


def build(name: str, **kwargs):
    """``DEMOS[name](**kwargs)``; an unknown ``name`` raises ValueError listing the demos."""
    if name not in DEMOS:
        raise ValueError(f"demo must be one of {', '.join(map(repr, DEMOS))}, got {name!r}")
    return DEMOS[name](**kwargs)


def nudge(control) -> tuple[object, object]:
    """Move ``control`` to a neighbouring valid value; return ``(old, new)`` values.

    Sliders go one ``step`` up (down at the top end; log sliders step their exponent),
    selections (toggle buttons, dropdowns) go to the next option, checkboxes flip.
    """
    import ipywidgets as widgets

    old = control.value
    if isinstance(control, widgets.FloatLogSlider):
        exponent = math.log(old, control.base)
        exponent += control.step if exponent + control.step <= control.max else -control.step
        control.value = control.base**exponent
    elif isinstance(control, (widgets.FloatSlider, widgets.IntSlider)):
        control.value = old + control.step if old + control.step <= control.max else old - control.step
    elif control.has_trait("options") and control.has_trait("index"):  # ToggleButtons, Dropdown, ...
        control.index = (control.index + 1) % len(control.options)
    elif isinstance(control, widgets.Checkbox):
        control.value = not old
    else:
        raise TypeError(f"nudge: cannot move a {type(control).__name__}; demos use sliders, selections or checkboxes")
    return old, control.value


def _picture(widget) -> bytes:
    return b"".join(bytes(image.value) for image in _images(widget))


def update_times(name: str, **kwargs) -> list[Update]:
    """Build demo ``name`` (without a frontend: no widget comm is opened) and nudge each of its controls.

    For each control: the time of the redraw to a new value (compute + draw), then of the redraw
    back to the old value (the computation is cached). ``kwargs`` go to the builder.
    """
    rows = []
    with _without_frontend():
        widget = build(name, **kwargs)
        for control_name, control in widget.controls.items():
            before = _picture(widget)
            start = time.perf_counter()
            old, new = nudge(control)
            seconds = time.perf_counter() - start
            changed = _picture(widget) != before
            start = time.perf_counter()
            control.value = old
            back_seconds = time.perf_counter() - start
            rows.append(Update(name, control_name, old, new, seconds, back_seconds, changed))
    return rows
