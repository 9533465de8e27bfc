"""Classroom demo: momentum inflates the norm of a scale-invariant weight; SGDP's projection does not.

`norm_growth` (the compute function, no drawing) runs SGD with momentum, or SGDP, on the 2-D
toy ``-cos(w, w*)`` and plain gradient descent beside it; `scale_invariance_widget` draws
``||w_t||``, the effective step ``lr / ||w_t||^2`` and the angle to ``w*`` with sliders for
the learning rate, the momentum and the projection.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from regkit._validate import check_int
from regkit.diagnostics.scale_invariance import cosine_objective, trajectory, unit_vector
from regkit.optim import SGD, SGDP
from regkit.widgets import figure_png, redraw_on_change
from regkit.widgets.presentation import DESIGN_WIDTH_IN, demo_box, picture, picture_style

MAX_STEPS = 2000


def _check(lr, momentum, project, steps, start_angle) -> None:
    for name, value, low, high in (("lr", lr, 0.0, 10.0), ("momentum", momentum, 0.0, 0.999),
                                   ("start_angle", start_angle, 0.0, 180.0)):  # fmt: skip
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    if lr == 0:
        raise ValueError("lr must be > 0, got 0")
    if project not in (True, False):
        raise ValueError(f"project must be True or False, got {project!r}")
    check_int("steps", steps, 1, MAX_STEPS)


def norm_growth(
    lr: float = 0.1, momentum: float = 0.9, project: bool = False, steps: int = 100, start_angle: float = 135.0
) -> dict[str, np.ndarray]:
    """Curves of SGD(``momentum``) (or SGDP(``momentum``) when ``project``) and plain GD on ``-cos(w, w*)``.

    Starts from the unit vector at ``start_angle`` degrees from ``w* = (1, 0)``. Returns arrays
    over t = 0..steps: ``step``, ``norm`` (``||w_t||``), ``effective_step`` (``lr/||w_t||^2``),
    ``angle`` (degrees to ``w*``), the same three for plain GD (``gd_norm``,
    ``gd_effective_step``, ``gd_angle``), and over t = 0..steps-1 ``update_norm``
    (``||w_t - w_{t+1}|| / lr``). Cached: moving a slider back is instant.
    """
    _check(lr, momentum, project, steps, start_angle)
    return _norm_growth(float(lr), float(momentum), bool(project), int(steps), float(start_angle))


@lru_cache(maxsize=256)
def _norm_growth(lr: float, momentum: float, project: bool, steps: int, start_angle: float) -> dict[str, np.ndarray]:
    w0 = unit_vector(start_angle)
    if project:
        run = trajectory(cosine_objective, w0, lambda ps: SGDP(ps, lr=lr, momentum=momentum), steps)
    else:
        run = trajectory(cosine_objective, w0, lambda ps: SGD(ps, lr=lr, momentum=momentum), steps)
    gd = trajectory(cosine_objective, w0, lambda ps: SGD(ps, lr=lr), steps)
    curves = {"step": np.arange(steps + 1)}
    for prefix, r in (("", run), ("gd_", gd)):
        curves[f"{prefix}norm"] = r.norms
        curves[f"{prefix}effective_step"] = r.effective_steps
        curves[f"{prefix}angle"] = np.degrees(np.abs(np.arctan2(r.weights[:, 1], r.weights[:, 0])))
    curves["update_norm"] = np.linalg.norm(run.updates, axis=1)
    for array in curves.values():
        array.flags.writeable = False  # cached: shared between calls
    return curves


def draw(curves: dict[str, np.ndarray], lr: float, momentum: float, project: bool, fig=None):
    """Draw `norm_growth`'s curves on ``fig`` (a new matplotlib ``Figure`` if None; no pyplot state):
    the norm, the effective step (log scale) and the angle to ``w*``, each beside plain GD."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(DESIGN_WIDTH_IN, 3.6), layout="constrained") if fig is None else fig
    axes = fig.subplots(1, 3)
    name = f"SGDP (momentum {momentum:g})" if project else f"SGD + momentum {momentum:g}"
    panels = (("norm", r"$\|w_t\|$"), ("effective_step", r"effective step $\eta/\|w_t\|^2$"),
              ("angle", r"angle to $w^*$ (degrees)"))  # fmt: skip
    for ax, (key, label) in zip(axes, panels, strict=True):
        ax.plot(curves["step"], curves[key], label=name)
        ax.plot(curves["step"], curves[f"gd_{key}"], "--", label="plain GD")
        ax.set_xlabel("step")
        ax.set_title(label)
    axes[1].set_yscale("log")
    axes[0].legend(loc="upper left")
    fig.suptitle(f"-cos(w, w*) in 2-D, lr = {lr:g}: final norm {curves['norm'][-1]:.2f} (plain GD {curves['gd_norm'][-1]:.2f})")
    return fig


def render_png(curves: dict[str, np.ndarray], lr: float, momentum: float, project: bool,
               dpi: float | None = None) -> bytes:
    """`draw` on a figure of its own, as PNG bytes (`regkit.widgets.presentation` style)."""
    with picture_style():
        return figure_png(draw(curves, lr, momentum, project), dpi)


def scale_invariance_widget(steps: int = 100):
    """Sliders (lr, momentum) and a projection checkbox redrawing `norm_growth` on the 2-D toy.

    Returns a box (`regkit.widgets.presentation.demo_box`) whose last child is an ``Image`` widget holding `render_png`'s PNG.
    ``box.controls`` maps names to the controls; ``box.drawn`` holds the curves last drawn.
    """
    import ipywidgets as widgets

    _check(0.1, 0.9, False, steps, 135.0)
    style = {"description_width": "initial"}
    controls = {
        "lr": widgets.FloatLogSlider(value=0.1, base=10, min=-3, max=0, step=0.1, description="lr",
                                     readout_format=".3g", style=style),
        "momentum": widgets.FloatSlider(value=0.9, min=0.0, max=0.99, step=0.01, description="momentum",
                                        style=style),
        "project": widgets.Checkbox(value=False, description="projection (SGDP)", style=style),
    }  # fmt: skip
    image = picture()
    box = demo_box([widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap")), image],
                   controls)

    def redraw():
        values = {name: control.value for name, control in controls.items()}
        box.drawn = norm_growth(**values, steps=steps)
        image.value = render_png(box.drawn, **values)

    redraw_on_change(controls.values(), redraw)
    redraw()
    return box
