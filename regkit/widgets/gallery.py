"""Every classroom demo of the course in one place (notebook 08), and how fast each one redraws.

`DEMOS` is the registry: a demo's name -> its builder (a callable returning the widget), in course
order. Every builder returns a widget with an ``Image`` child it redraws when a control changes (see
`regkit.widgets`); `controls` finds its controls (``box.controls`` where the builder sets it, else
every slider, selection and checkbox in the widget tree). Adding a demo to the gallery is one entry
here (a builder that needs arguments goes in as ``functools.partial``) plus one cell in notebook 08;
the tests, notebook 08's timing table and ``python -m regkit.bench widgets`` then cover it.

`nudge` moves one control the way a teacher would (a slider one step, a toggle to its next option, a
checkbox flipped); `update_times` nudges each control of a demo once (a new value: computed and
drawn) and then back (a value seen before: cached), timing each redraw and checking that the
picture changed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from regkit.widgets import _images, _without_frontend
from regkit.widgets.cpr import cpr_widget
from regkit.widgets.dynamics import dynamics_widget
from regkit.widgets.grad_norm import grad_norm_widget
from regkit.widgets.grokking import grokking_widget
from regkit.widgets.scale_invariance import scale_invariance_widget
from regkit.widgets.weight_decay import weight_decay_widget

DEMOS: dict[str, Callable] = {
    "weight_decay": weight_decay_widget,  # notebook 01: coupled L2 vs decoupled decay
    "scale_invariance": scale_invariance_widget,  # notebook 02: norm growth, SGDP's projection
    "cpr": cpr_widget,  # notebook 03: CPR's bound and Lagrange multiplier
    "grad_norm": grad_norm_widget,  # notebook 04: finite-difference Hessian-vector product vs r
    "grokking": grokking_widget,  # notebook 06: recorded grokking runs, accuracy / norm / CPR state
    "dynamics": dynamics_widget,  # notebook 09: AdamW's norm and angular update reach the rotational equilibrium
}


@dataclass(frozen=True)
class Update:
    """One nudge of one control: its values, the seconds its redraw took, and whether the picture changed."""

    demo: str
    control: str
    old: object
    new: object
    seconds: float  # first visit of ``new``: computed and drawn (wall clock)
    cpu_seconds: float  # the same redraw in this process's CPU time (less sensitive to a busy machine)
    back_seconds: float  # back to ``old``, a value drawn before (cached computation)
    changed: bool  # the PNG differs from the one before the nudge


def build(name: str, **kwargs):
    """``DEMOS[name](**kwargs)``; an unknown ``name`` raises ValueError listing the demos."""
    if name not in DEMOS:
        raise ValueError(f"demo must be one of {', '.join(map(repr, DEMOS))}, got {name!r}")
    return DEMOS[name](**kwargs)


def controls(widget) -> dict[str, object]:
    """A demo's controls by name: ``widget.controls`` if the builder set it, else every slider,
    selection and checkbox in the widget tree, named by its ``description``."""
    import ipywidgets as widgets

    if hasattr(widget, "controls"):
        return dict(widget.controls)
    found = {}

    def visit(w) -> None:
        if isinstance(w, (widgets.FloatSlider, widgets.FloatLogSlider, widgets.IntSlider, widgets.Checkbox)) or (
            w.has_trait("options") and w.has_trait("index")
        ):
            found[w.description or f"control {len(found)}"] = w
        for child in getattr(w, "children", ()):
            visit(child)

    visit(widget)
    if not found:
        raise ValueError(f"the demo widget {type(widget).__name__} has no slider, selection or checkbox")
    return found


def nudge(control) -> tuple[object, object]:
    """Move ``control`` to a neighbouring valid value; return ``(old, new)`` values.

    Sliders go one ``step`` up (down at the top end; log sliders step their exponent),
    selections (toggle buttons, dropdowns) go to the next option, a multiple selection drops its
    last option (or adds the next to a single one), checkboxes flip.
    """
    import ipywidgets as widgets

    old = control.value
    if isinstance(control, widgets.FloatLogSlider):
        exponent = math.log(old, control.base)
        exponent += control.step if exponent + control.step <= control.max else -control.step
        control.value = control.base**exponent
    elif isinstance(control, (widgets.FloatSlider, widgets.IntSlider)):
        control.value = old + control.step if old + control.step <= control.max else old - control.step
    elif isinstance(control, widgets.SelectMultiple):  # drop the last chosen option; add the next to a lone one
        index = tuple(control.index)
        control.index = index[:-1] if len(index) > 1 else tuple(sorted({*index, (index[0] + 1) % len(control.options)}))
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

    For each control: the time of the redraw to a new value (compute + draw; wall clock and CPU
    time), then of the redraw back to the old value (the computation is cached). ``kwargs`` go to
    the builder.
    """
    rows = []
    with _without_frontend():
        widget = build(name, **kwargs)
        for control_name, control in controls(widget).items():
            before = _picture(widget)
            start, cpu_start = time.perf_counter(), time.process_time()
            old, new = nudge(control)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
            changed = _picture(widget) != before
            start = time.perf_counter()
            control.value = old
            back_seconds = time.perf_counter() - start
            rows.append(Update(name, control_name, old, new, seconds, cpu_seconds, back_seconds, changed))
    return rows
