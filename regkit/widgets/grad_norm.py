"""Classroom widget: the Hessian-free gradient-norm penalty on a 2-D loss surface.

A point ``theta`` on a smooth two-well surface (a narrow, deep well and a wide, shallow one); a
slider for the finite-difference radius ``r`` (log scale), one for the mixing weight ``alpha`` and a
precision toggle. Everything is computed by the real :class:`regkit.penalties.GNP` passes (through
:func:`regkit.penalties.update_gradient`):

- ``H v`` with ``v = g / ||g||``, exact (double backprop of ``||g||``, float64) and by forward and
  central differences of radius ``r`` in the chosen precision, with their relative error;
- the update directions at ``theta``: plain ``g``, SAM ``g(theta + r v)``, GNP's blend
  ``(1 - alpha) g + alpha g(theta + r v)`` and the exact penalty gradient ``g + alpha r H v``;
- the error of both differences against ``r`` from 1e-8 to 1, in float32 and float64: the V on
  log-log axes (truncation ``~ r`` or ``r^2`` on the right, round-off ``~ eps / r`` on the left).

``grad_norm_demo(r, alpha, ...)`` computes (pure, cached per point, well under a second);
``draw_grad_norm_demo(demo)`` draws a matplotlib figure from its arrays only;
``grad_norm_widget(...)`` wires sliders to both and shows the figure as a PNG (`render_png`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from regkit.penalties import gradient_norm, update_gradient
from regkit.widgets import figure_png, in_range, redraw_on_change
from regkit.widgets.presentation import DESIGN_WIDTH_IN, demo_box, picture, picture_style

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEFAULT_POINT = (-0.55, 0.45)
RADII = np.logspace(-8, 0, 25)
# (centre, width, depth) of the two Gaussian wells; a weak bowl keeps the surface bounded below
SHARP_WELL = ((-1.0, 0.0), 0.3, 1.0)
FLAT_WELL = ((1.0, 0.3), 0.9, 0.8)
BOWL = 0.05
EXTENT = (-2.2, 2.2, -1.6, 1.6)


def loss_surface(w: torch.Tensor) -> torch.Tensor:
    """``L(w) = 1 + BOWL ||w||^2 - sum_k depth_k exp(-||w - centre_k||^2 / (2 width_k^2))`` for ``w`` of
    shape ``(..., 2)``: smooth, non-quadratic (its third derivatives do not vanish)."""
    loss = 1.0 + BOWL * w.square().sum(-1)
    for centre, width, depth in (SHARP_WELL, FLAT_WELL):
        offset = w - torch.tensor(centre, dtype=w.dtype, device=w.device)
        loss = loss - depth * torch.exp(-offset.square().sum(-1) / (2 * width**2))
    return loss


@dataclass(frozen=True)
class GradNormDemo:
    """Everything the widget draws (numpy arrays; 2-vectors for points and directions)."""

    r: float
    alpha: float
    dtype: str
    point: np.ndarray
    perturbed: np.ndarray  # theta + r v
    gradient: np.ndarray  # g
    sam_gradient: np.ndarray  # g(theta + r v)
    update: np.ndarray  # (1 - alpha) g + alpha g(theta + r v): what GNP hands the base optimizer
    exact_update: np.ndarray  # g + alpha r H v
    hv_exact: np.ndarray
    hv_forward: np.ndarray
    hv_central: np.ndarray
    error_forward: float  # ||Hv_fd - Hv|| / ||Hv||
    error_central: float
    radii: np.ndarray
    curves: dict[str, np.ndarray]  # "float32 forward", ... -> relative error at each radius
    grid_x: np.ndarray
    grid_y: np.ndarray
    grid_loss: np.ndarray


def _check_number(name: str, value, low: float, low_inclusive: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (value == low and not low_inclusive):
        bound = ">=" if low_inclusive else ">"
        raise ValueError(f"{name}={value!r} is not valid; it must be a finite number {bound} {low:g}")
    return float(value)


def _check_point(point) -> tuple[float, float]:
    try:
        x, y = point
        return _check_number("point[0]", x, -math.inf, True), _check_number("point[1]", y, -math.inf, True)
    except (TypeError, ValueError):
        raise ValueError(f"point={point!r} is not valid; it must be two finite numbers (x, y)") from None


def _closure(w: torch.Tensor):
    def closure():
        w.grad = None
        loss = loss_surface(w)
        loss.backward()
        return loss
    return closure


def _step_gradient(point: tuple[float, float], dtype: str, **gnp_kwargs) -> torch.Tensor:
    """The gradient one GNP step at ``point`` hands its base optimizer (float64 copy)."""
    w = torch.tensor(point, dtype=DTYPES[dtype], requires_grad=True)
    (d,) = update_gradient([w], _closure(w), **gnp_kwargs)
    return d.double()


def _hv_estimate(point, dtype: str, r: float, difference: str, g: torch.Tensor) -> torch.Tensor:
    """``(d - g) / r`` with ``alpha = 1``: the finite-difference ``H v`` inside GNP's step (``g`` at ``point``)."""
    return (_step_gradient(point, dtype, alpha=1.0, r=r, difference=difference) - g) / r


def _relative_error(estimate: torch.Tensor, exact: torch.Tensor) -> float:
    return float((estimate - exact).norm() / exact.norm())


@functools.lru_cache(maxsize=64)
def _at_point(point: tuple[float, float]) -> dict:
    """What does not depend on the sliders: the grid, the exact ``H v`` and the error curves."""
    exact, gradient, curves = {}, {}, {}
    for dtype in DTYPES:
        # the point as stored in this precision, then differentiated exactly in float64
        w = torch.tensor(point, dtype=DTYPES[dtype]).double().requires_grad_()
        (exact[dtype],) = torch.autograd.grad(gradient_norm(loss_surface(w), [w]), [w])
        gradient[dtype] = _step_gradient(point, dtype, alpha=0.0)
        for difference in ("forward", "central"):
            curves[f"{dtype} {difference}"] = np.array([
                _relative_error(_hv_estimate(point, dtype, float(r), difference, gradient[dtype]), exact[dtype])
                for r in RADII])
    xs = np.linspace(EXTENT[0], EXTENT[1], 111)
    ys = np.linspace(EXTENT[2], EXTENT[3], 81)
    grid = torch.stack(torch.meshgrid(torch.tensor(xs), torch.tensor(ys), indexing="xy"), dim=-1)
    return {"exact": exact, "gradient": gradient, "curves": curves, "xs": xs, "ys": ys,
            "loss": loss_surface(grid).numpy()}


def grad_norm_demo(r: float = 0.1, alpha: float = 0.8, point=DEFAULT_POINT, dtype: str = "float64") -> GradNormDemo:
    """Compute the widget's arrays at ``theta = point`` for radius ``r`` (> 0), mixing ``alpha`` (>= 0)
    and precision ``dtype`` ("float32" or "float64"); see the module docstring."""
    r = _check_number("r", r, 0.0, False)
    alpha = _check_number("alpha", alpha, 0.0, True)
    point = _check_point(point)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not valid; choose one of {tuple(DTYPES)}")
    fixed = _at_point(point)
    hv = fixed["exact"][dtype]
    g = fixed["gradient"][dtype]
    sam = _step_gradient(point, dtype, alpha=1.0, r=r)
    hv_forward = (sam - g) / r  # forward difference: alpha = 1 gives d = g(theta + r v)
    hv_central = _hv_estimate(point, dtype, r, "central", g)
    theta = torch.tensor(point, dtype=DTYPES[dtype]).double()
    return GradNormDemo(
        r=r, alpha=alpha, dtype=dtype, point=theta.numpy(), perturbed=(theta + r * g / g.norm()).numpy(),
        gradient=g.numpy(), sam_gradient=sam.numpy(),
        update=_step_gradient(point, dtype, alpha=alpha, r=r).numpy(), exact_update=(g + alpha * r * hv).numpy(),
        hv_exact=hv.numpy(), hv_forward=hv_forward.numpy(), hv_central=hv_central.numpy(),
        error_forward=_relative_error(hv_forward, hv), error_central=_relative_error(hv_central, hv),
        radii=RADII, curves=fixed["curves"], grid_x=fixed["xs"], grid_y=fixed["ys"], grid_loss=fixed["loss"],
    )


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def draw_grad_norm_demo(demo: GradNormDemo) -> Figure:
    """Left: the surface, ``theta``, ``theta + r v`` and the four descent directions (negated
    gradients, one common scale). Right: relative error of ``H v`` against ``r``, current ``r`` marked."""
    fig = Figure(figsize=(DESIGN_WIDTH_IN, 4.2), layout="constrained")
    surface, errors = fig.subplots(1, 2, width_ratios=(1.15, 1))
    # a light surface, so that dark arrows and a plain legend read on it
    surface.contourf(demo.grid_x, demo.grid_y, demo.grid_loss, levels=20, cmap="Greys", alpha=0.45)
    surface.contour(demo.grid_x, demo.grid_y, demo.grid_loss, levels=20, colors="0.55", linewidths=0.4)
    arrows = {"plain -g": (demo.gradient, "black"), "SAM -g(θ+rv)": (demo.sam_gradient, "#0072b2"),
              f"GNP -d (α={demo.alpha:g})": (demo.update, "#cc79a7"),
              "exact -(g+αr Hv)": (demo.exact_update, "#d55e00")}
    scale = 0.7 / max(np.linalg.norm(v) for v, _ in arrows.values())
    x, y = demo.point
    for label, (vector, color) in arrows.items():
        dx, dy = -scale * vector
        surface.annotate("", xy=(x + dx, y + dy), xytext=(x, y),
                         arrowprops=dict(arrowstyle="-|>", color=color, lw=2))
        surface.plot([], [], color=color, lw=2, label=label)
    surface.plot(*demo.point, "o", color="black", ms=6)
    surface.plot(*demo.perturbed, "x", color="#0072b2", ms=8, mew=2, label="θ + r v")
    surface.add_patch(Circle(tuple(demo.point), demo.r, fill=False, color="#0072b2", lw=0.8, ls=":"))
    surface.set(xlim=EXTENT[:2], ylim=EXTENT[2:], aspect="equal", xlabel="$w_1$", ylabel="$w_2$",
                title=f"narrow well (left), wide well (right); r = {demo.r:.1e}")
    surface.legend(loc="lower left", framealpha=0.9)
    styles = {"float64": "-", "float32": "--"}
    colors = {"forward": "#0072b2", "central": "#009e73"}
    for key, curve in demo.curves.items():
        dtype, difference = key.split()
        errors.loglog(demo.radii, np.maximum(curve, 1e-17), styles[dtype], color=colors[difference], label=key,
                      alpha=1.0 if dtype == demo.dtype else 0.45)
    errors.axvline(demo.r, color="black", lw=0.8)
    errors.loglog([demo.r, demo.r], [max(demo.error_forward, 1e-17), max(demo.error_central, 1e-17)], "o",
                  color="black", ms=5)
    errors.set(xlabel="radius r", ylabel=r"$\|Hv_{fd} - Hv\| \,/\, \|Hv\|$",
               title=f"finite-difference error ({demo.dtype} marked)")
    errors.legend(loc="lower right")
    return fig


def render_png(demo: GradNormDemo, dpi: float | None = None) -> bytes:
    """`draw_grad_norm_demo` as PNG bytes in the demos' style and resolution (`regkit.widgets.presentation`)."""
    with picture_style():
        return figure_png(draw_grad_norm_demo(demo), dpi)


def describe(demo: GradNormDemo) -> str:
    """One HTML line with the numbers the figure shows."""
    return (f"<b>{demo.dtype}, r = {demo.r:.1e}, α = {demo.alpha:g}</b>: relative error of H v: forward "
            f"{demo.error_forward:.2e}, central {demo.error_central:.2e}; angle to the plain gradient: "
            f"SAM {_angle(demo.sam_gradient, demo.gradient):.1f}°, GNP {_angle(demo.update, demo.gradient):.1f}°, "
            f"exact penalty {_angle(demo.exact_update, demo.gradient):.1f}°")


def grad_norm_widget(point=DEFAULT_POINT, r: float = 0.1, alpha: float = 0.8, dtype: str = "float64"):
    """The classroom widget: sliders ``r`` (log, 1e-8..1), ``alpha`` (0..2), a precision toggle, the
    figure of :func:`draw_grad_norm_demo` as a PNG and a line of numbers. Returns an ``ipywidgets.VBox``.
    A starting ``r`` or ``alpha`` outside its slider's range raises ValueError."""
    import ipywidgets as widgets

    grad_norm_demo(r, alpha, point, dtype)  # validate before building anything
    style = {"description_width": "initial"}
    r_slider = in_range("r", r, widgets.FloatLogSlider(value=r, base=10, min=-8, max=0, step=0.25, description="r",
                                                       readout_format=".1e", continuous_update=False, style=style))
    alpha_slider = in_range("alpha", alpha, widgets.FloatSlider(value=alpha, min=0.0, max=2.0, step=0.05,
                                                                description="alpha", continuous_update=False,
                                                                style=style))
    dtype_toggle = widgets.ToggleButtons(options=list(DTYPES), value=dtype, description="precision",
                                         style={**style, "button_width": "auto"})
    image = picture()
    readout = widgets.HTML(layout=widgets.Layout(width="100%"))

    def redraw() -> None:
        demo = grad_norm_demo(r_slider.value, alpha_slider.value, point, dtype_toggle.value)
        image.value = render_png(demo)
        readout.value = describe(demo)

    redraw_on_change((r_slider, alpha_slider, dtype_toggle), redraw)
    redraw()
    controls = widgets.HBox([r_slider, alpha_slider, dtype_toggle], layout=widgets.Layout(flex_flow="row wrap"))
    return demo_box([controls, image, readout])
