"""Classroom demo: AdamW's weight norm and angular update settle at the rotational equilibrium.

`random_walk` (the compute function, no drawing) trains scale-invariant rows with regkit's AdamW
(or SGDW) in the random-walk model of Kosson et al. (2024): each step, each row ``w_i`` gets the
gradient of ``<w_i / ||w_i||, xi_i>`` for fresh Gaussian noise ``xi_i``, orthogonal to ``w_i`` and of
size ``~sqrt(C) / ||w_i||``. It records the RMS row norm, the RMS per-step angle and the gradient norm
under a constant or cosine lr schedule, the cosine optionally with schedule-corrected decay
(``corrected=True``). `dynamics_widget` draws them against `regkit.diagnostics.rotation`'s predicted equilibrium
with sliders for lr, weight decay and beta1 and a schedule toggle.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from regkit._validate import check_int
from regkit.diagnostics.rotation import adamw_equilibrium, angular_updates, neuron_norms, sgd_equilibrium
from regkit.optim import SGDW, AdamW
from regkit.widgets import figure_png, in_range, redraw_on_change
from regkit.widgets.presentation import DESIGN_WIDTH_IN, demo_box, picture, picture_style

SCHEDULES = ("constant", "cosine", "cosine, corrected")
OPTIMIZERS = ("adamw", "sgdw")
MAX_STEPS = 20_000


def _check(optimizer, lr, weight_decay, beta1, schedule, steps, neurons, fan_in) -> None:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    for name, value, low, high, low_open in (("lr", lr, 0.0, 10.0, True), ("beta1", beta1, 0.0, 0.999, False),
                                             ("weight_decay", weight_decay, 0.0, 100.0, True)):  # fmt: skip
        inside = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
        if not inside or (low_open and value == low):
            raise ValueError(f"{name} must be a number in {'(' if low_open else '['}{low}, {high}], got {value!r}")
    for name, value, high in (("steps", steps, MAX_STEPS), ("neurons", neurons, 4096), ("fan_in", fan_in, 4096)):
        check_int(name, value, 2, high)


def lr_multiplier(schedule: str, steps: int) -> np.ndarray:
    """The lr multiplier per step: 1 (``constant``) or ``(1 + cos(pi t / steps)) / 2`` (the cosine ones)."""
    t = np.arange(steps)
    return np.ones(steps) if schedule == "constant" else 0.5 * (1 + np.cos(np.pi * t / steps))


def random_walk(optimizer: str = "adamw", lr: float = 0.01, weight_decay: float = 0.1, beta1: float = 0.9,
                schedule: str = "constant", steps: int = 1000, neurons: int = 32, fan_in: int = 64,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Train ``neurons`` scale-invariant rows of ``fan_in`` weights on pure gradient noise (see the module doc).

    ``optimizer``: ``"adamw"`` (regkit AdamW, betas ``(beta1, 0.999)``) or ``"sgdw"`` (regkit SGDW,
    momentum ``beta1``). Rows start at unit norm. Returns arrays over steps 1..steps: ``step``,
    ``lr``, ``norm`` (RMS row norm after the step), ``angle`` (RMS per-step angle, radians),
    ``grad_norm`` (the gradient's norm over all rows), and the instantaneous predictions
    ``norm_eq`` and ``angle_eq`` (`regkit.diagnostics.rotation` with the step's lr and effective decay).
    Cached: moving a slider back is instant.
    """
    _check(optimizer, lr, weight_decay, beta1, schedule, steps, neurons, fan_in)
    return _random_walk(optimizer, float(lr), float(weight_decay), float(beta1), schedule, steps, neurons, fan_in,
                        int(seed))


@lru_cache(maxsize=128)
def _random_walk(optimizer, lr, weight_decay, beta1, schedule, steps, neurons, fan_in, seed) -> dict[str, np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    w0 = torch.randn(neurons, fan_in, generator=generator, dtype=torch.float64)
    w = torch.nn.Parameter(w0 / w0.norm(dim=1, keepdim=True))
    corrected = schedule.endswith("corrected")
    if optimizer == "adamw":
        opt = AdamW([w], lr=lr, betas=(beta1, 0.999), weight_decay=weight_decay, corrected=corrected)
    else:
        opt = SGDW([w], lr=lr, momentum=beta1, weight_decay=weight_decay, corrected=corrected)
    multiplier = lr_multiplier(schedule, steps)
    rec = {k: np.empty(steps) for k in ("norm", "angle", "grad_norm")}
    with torch.no_grad():
        for t in range(steps):
            opt.param_groups[0]["lr"] = lr * multiplier[t]
            xi = torch.randn(neurons, fan_in, generator=generator, dtype=torch.float64)
            norms = w.norm(dim=1, keepdim=True)
            w_hat = w / norms
            w.grad = (xi - (xi * w_hat).sum(1, keepdim=True) * w_hat) / norms  # grad of <w/||w||, xi>
            before = w.detach().clone()
            opt.step()
            rec["angle"][t] = angular_updates(before, w).square().mean().sqrt().item()
            rec["norm"][t] = neuron_norms(w).square().mean().sqrt().item()
            rec["grad_norm"][t] = w.grad.norm().item()
    lrs = lr * multiplier
    decays = weight_decay * multiplier if corrected else np.full(steps, weight_decay)  # corrected: wd * lr/lr_max
    rec["norm_eq"], rec["angle_eq"] = np.empty(steps), np.empty(steps)
    for t in range(steps):
        if optimizer == "adamw":
            eq = adamw_equilibrium(lrs[t], decays[t], fan_in, beta1)
        else:  # E||g||^2 ||w||^2 per row = fan_in - 1: the noise minus its radial component
            eq = sgd_equilibrium(lrs[t], decays[t], fan_in - 1.0, beta1)
        rec["norm_eq"][t], rec["angle_eq"][t] = eq.norm, eq.angle
    rec.update(step=np.arange(1, steps + 1), lr=lrs)
    for array in rec.values():
        array.flags.writeable = False  # cached: shared between calls
    return rec


def draw(curves: dict[str, np.ndarray], title: str = "", fig=None):
    """Draw `random_walk`'s curves on ``fig`` (a new ``Figure`` if None; no pyplot state): the RMS row norm
    and the RMS angle per step, each with its predicted equilibrium (dashed), and the gradient norm."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(DESIGN_WIDTH_IN, 3.6), layout="constrained") if fig is None else fig
    axes = fig.subplots(1, 3)
    step = curves["step"]
    for ax, key, label in ((axes[0], "norm", r"RMS row norm $\|w_i\|$"),
                           (axes[1], "angle", "RMS angular update per step (rad)")):  # fmt: skip
        ax.plot(step, curves[key], label="measured")
        ax.plot(step, curves[f"{key}_eq"], "--", color="k", label="predicted equilibrium")
        ax.set_title(label)
        ax.set_xlabel("step")
    axes[1].set_yscale("log")
    axes[0].legend()
    axes[2].plot(step, curves["grad_norm"], color="C3")
    axes[2].set_title("gradient norm")
    axes[2].set_xlabel("step")
    if title:
        fig.suptitle(title)
    return fig


def render_png(curves: dict[str, np.ndarray], title: str = "", dpi: float | None = None) -> bytes:
    """`draw` on a figure of its own, as PNG bytes (`regkit.widgets.presentation` style)."""
    with picture_style():
        return figure_png(draw(curves, title), dpi)


def dynamics_widget(lr: float = 0.01, weight_decay: float = 0.1, beta1: float = 0.9, schedule: str = "constant",
                    steps: int = 1000):
    """Sliders (lr, weight decay, beta1) and a schedule toggle redrawing AdamW's `random_walk`.

    Returns a box (`regkit.widgets.presentation.demo_box`) whose last child is an ``Image`` holding `render_png`'s PNG; ``box.controls``
    maps names to the controls, ``box.drawn`` holds the curves last drawn.
    """
    import ipywidgets as widgets

    _check("adamw", lr, weight_decay, beta1, schedule, steps, 32, 64)
    style = {"description_width": "initial"}
    controls = {
        "lr": in_range("lr", lr, widgets.FloatLogSlider(value=lr, base=10, min=-4, max=-1, step=0.25,
                                                        description="lr", readout_format=".2g", style=style)),
        "weight_decay": in_range("weight_decay", weight_decay, widgets.FloatLogSlider(
            value=weight_decay, base=10, min=-3, max=1, step=0.25, description="weight decay", readout_format=".2g",
            style=style)),
        "beta1": in_range("beta1", beta1, widgets.FloatSlider(value=beta1, min=0.0, max=0.99, step=0.05,
                                                              description="beta1", style=style)),
        "schedule": widgets.ToggleButtons(options=SCHEDULES, value=schedule, description="schedule",
                                         style={**style, "button_width": "auto"}),
    }  # fmt: skip
    image = picture()
    sliders = widgets.HBox(list(controls.values())[:3], layout=widgets.Layout(flex_flow="row wrap"))
    box = demo_box([sliders, controls["schedule"], image], controls)

    def redraw():
        values = {name: control.value for name, control in controls.items()}
        box.drawn = random_walk("adamw", **values, steps=steps)
        eq = adamw_equilibrium(values["lr"], values["weight_decay"], 64, values["beta1"])
        image.value = render_png(box.drawn, f"AdamW, 32 scale-invariant rows of 64 weights: equilibrium norm "
                                            f"{eq.norm:.2f}, angle {math.degrees(eq.angle):.2f} deg/step, "
                                            f"reached in ~{eq.relaxation_steps:.0f} steps")
    redraw_on_change(controls.values(), redraw)
    redraw()
    return box
