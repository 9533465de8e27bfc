"""Classroom demo: coupled L2 vs decoupled weight decay on an ill-conditioned 2-D quadratic.

The loss is ``f(w) = 1/2 sum_i h_i (w_i - c_i)^2`` with curvatures ``h = CURVATURES``
(condition number 20) and minimizer ``c = TARGET``. `decay_paths` runs the real
``regkit.optim`` optimizers (SGD with momentum, Adam) on a 2-element float64 parameter,
three times: with coupled L2, with decoupled decay, and without decay. Where each run
settles follows from setting its update to zero (torch's convention, ``mu`` the momentum):

- coupled L2, SGD or Adam: ``grad f(w) + wd w = 0``, i.e. ``w_i = h_i c_i / (h_i + wd)``,
  the minimizer of ``f + wd/2 ||w||^2``;
- decoupled SGD(W): the buffer settles at ``grad f / (1 - mu)``, so
  ``w_i = h_i c_i / (h_i + (1 - mu) wd)``: the decay is not amplified by momentum;
- decoupled Adam(W): ``wd w = -m_hat / (sqrt(v_hat) + eps)``. Once ``v_hat`` has forgotten
  the early, larger gradients, ``|m_hat / sqrt(v_hat)| <= 1`` bounds ``|w_i| <= 1 / wd``: the limit
  is the box-constrained minimizer ``clip(c, -1/wd, 1/wd)`` (Xie & Li, ICML 2024,
  arXiv:2404.04454, for full-batch AdamW). The demo's default ``beta2 = 0.95`` (a memory of
  about 20 steps) lets this limit show within its steps; with 0.999 it takes thousands.

`weight_decay_widget` draws these paths with sliders for lr, weight decay, momentum (beta1
for Adam), the optimizer and the L2/decoupled toggle.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from regkit._validate import check_int, check_number
from regkit.optim import SGD, Adam
from regkit.widgets import figure_png, redraw_on_change
from regkit.widgets.presentation import demo_box, label_width, picture, picture_style

CURVATURES = (1.0, 0.05)
TARGET = (1.5, 3.0)
START = (-2.0, -1.5)
OPTIMIZERS = ("sgd", "adam")
DECAYS = ("l2", "decoupled")
ADAM_BETA2 = 0.95  # default: a short memory of v, so the decoupled limit shows within the demo (module docstring)
FIGSIZE = (6.4, 5.4)  # inches: beside the column of controls, within one screen at 1280x720
WD_STEP = 0.05  # the weight-decay slider's step in log10; its grid starts so that 0.05 and 0.5 lie on it
WD_MIN = math.log10(0.5) - 34 * WD_STEP  # ~0.00998


@dataclass(frozen=True)
class DecayPaths:
    """Trajectories ``(steps + 1, 2)`` from `START` and the points where each variant settles."""

    optimizer: str
    lr: float
    weight_decay: float
    momentum: float
    beta2: float  # Adam's (unused by SGD)
    l2: np.ndarray
    decoupled: np.ndarray
    no_decay: np.ndarray
    l2_fixed_point: np.ndarray
    decoupled_fixed_point: np.ndarray

    def path(self, decay: str) -> np.ndarray:
        """The trajectory of ``decay`` ("l2" or "decoupled")."""
        return {"l2": self.l2, "decoupled": self.decoupled}[_choice("decay", decay, DECAYS)]

    def fixed_point(self, decay: str) -> np.ndarray:
        """Where ``decay`` ("l2" or "decoupled") settles (see the module docstring)."""
        return {"l2": self.l2_fixed_point, "decoupled": self.decoupled_fixed_point}[_choice("decay", decay, DECAYS)]


def _choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def quadratic_loss(w: np.ndarray) -> np.ndarray:
    """``f(w) = 1/2 sum_i h_i (w_i - c_i)^2`` over the last axis of ``w`` (shape ``(..., 2)``)."""
    h, c = np.asarray(CURVATURES), np.asarray(TARGET)
    return 0.5 * (h * (np.asarray(w) - c) ** 2).sum(-1)


def fixed_points(optimizer: str, weight_decay: float, momentum: float) -> tuple[np.ndarray, np.ndarray]:
    """``(l2, decoupled)``: where each variant settles on the quadratic (module docstring)."""
    h, c = np.asarray(CURVATURES), np.asarray(TARGET)
    l2 = h * c / (h + weight_decay)
    if optimizer == "sgd":
        decoupled = h * c / (h + (1 - momentum) * weight_decay)
    else:
        decoupled = np.clip(c, -1 / weight_decay, 1 / weight_decay) if weight_decay > 0 else c.copy()
    return l2, decoupled


def _make(optimizer: str, params, lr: float, weight_decay: float, momentum: float, beta2: float, decoupled: bool):
    if optimizer == "sgd":
        return SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, decoupled_weight_decay=decoupled)
    return Adam(params, lr=lr, betas=(momentum, beta2), weight_decay=weight_decay, decoupled_weight_decay=decoupled)


def _trajectory(optimizer: str, lr: float, weight_decay: float, momentum: float, beta2: float, decoupled: bool,
                steps: int) -> np.ndarray:
    h, c = torch.tensor(CURVATURES, dtype=torch.float64), torch.tensor(TARGET, dtype=torch.float64)
    w = torch.nn.Parameter(torch.tensor(START, dtype=torch.float64))
    opt = _make(optimizer, [w], lr, weight_decay, momentum, beta2, decoupled)
    path = torch.empty(steps + 1, 2, dtype=torch.float64)
    path[0] = w.detach()
    for t in range(1, steps + 1):
        w.grad = h * (w.detach() - c)  # the exact gradient of the quadratic
        opt.step()
        path[t] = w.detach()
    return path.numpy()


@functools.lru_cache(maxsize=512)
def _cached_trajectory(optimizer: str, lr: float, weight_decay: float, momentum: float, beta2: float,
                       decoupled: bool, steps: int) -> np.ndarray:
    path = _trajectory(optimizer, lr, weight_decay, momentum, beta2, decoupled, steps)
    path.flags.writeable = False  # shared between calls
    return path


def decay_paths(optimizer: str = "sgd", lr: float = 0.1, weight_decay: float = 0.5, momentum: float = 0.9,
                steps: int = 150, beta2: float = ADAM_BETA2) -> DecayPaths:
    """Trajectories of ``optimizer`` ("sgd" or "adam") with L2, decoupled and no decay on the quadratic.

    ``lr > 0``; ``weight_decay >= 0`` (torch's convention: decoupled decay multiplies ``w``
    by ``1 - lr * wd`` per step); ``momentum`` in [0, 1) is SGD's momentum or Adam's beta1;
    ``beta2`` in [0, 1) is Adam's (eps = 1e-8); ``steps >= 1``. Trajectories are cached (the no-decay
    path does not depend on ``weight_decay``), so the widget redraws fast.
    """
    _choice("optimizer", optimizer, OPTIMIZERS)
    check_number("lr", lr, 0.0)
    if lr == 0:
        raise ValueError("lr must be > 0, got 0")
    check_number("weight_decay", weight_decay, 0.0)
    check_number("momentum", momentum, 0.0, 1.0, high_open=True)
    check_number("beta2", beta2, 0.0, 1.0, high_open=True)
    check_int("steps", steps)
    lr, weight_decay, momentum, beta2 = float(lr), float(weight_decay), float(momentum), float(beta2)
    run = functools.partial(_cached_trajectory, optimizer, lr, momentum=momentum,
                            beta2=beta2 if optimizer == "adam" else 0.0, steps=steps)  # SGD: one cache entry
    l2_point, decoupled_point = fixed_points(optimizer, weight_decay, momentum)
    return DecayPaths(
        optimizer=optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum, beta2=beta2,
        l2=run(weight_decay, decoupled=False), decoupled=run(weight_decay, decoupled=True),
        no_decay=run(0.0, decoupled=False), l2_fixed_point=l2_point, decoupled_fixed_point=decoupled_point,
    )  # fmt: skip


@functools.lru_cache(maxsize=1)
def _loss_grid(points: int = 121) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = np.meshgrid(np.linspace(-3.5, 3.5, points), np.linspace(-3.0, 4.0, points))
    return x, y, quadratic_loss(np.stack([x, y], -1))


def draw_paths(paths: DecayPaths, decay: str, ax=None):
    """Draw ``paths`` on the loss contours: ``decay``'s path bold, the other variant dashed, no decay dotted."""
    from matplotlib.patches import Rectangle

    _choice("decay", decay, DECAYS)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    x, y, z = _loss_grid()
    ax.contour(x, y, z, levels=np.geomspace(0.02, 20, 12), colors="0.8", linewidths=0.8)
    other = "decoupled" if decay == "l2" else "l2"
    names = {"l2": "L2 (coupled)", "decoupled": "decoupled"}
    ax.plot(*paths.no_decay.T, ":", color="0.45", lw=1.2, label="no decay")
    ax.plot(*paths.path(other).T, "--", color="C1", lw=1.2, alpha=0.8, label=names[other])
    ax.plot(*paths.path(decay).T, "-", color="C0", lw=2.2, label=names[decay])
    ax.plot(*paths.fixed_point(decay), "*", color="C0", ms=15, mec="k", label=f"{names[decay]} settles here")
    ax.plot(*paths.fixed_point(other), "*", color="C1", ms=11, mec="k", alpha=0.8, label=f"{names[other]} settles here")
    ax.plot(*TARGET, "x", color="k", ms=9, mew=2, label="loss minimum")
    if paths.optimizer == "adam" and decay == "decoupled" and paths.weight_decay > 0:
        r = 1 / paths.weight_decay
        ax.add_patch(Rectangle((-r, -r), 2 * r, 2 * r, fill=False, ls="-.", color="C2",
                               label=r"$\|w\|_\infty \leq 1/\mathrm{wd}$"))
    ax.set(xlim=(-3.5, 3.5), ylim=(-3.0, 4.0), xlabel="$w_1$ (curvature 1)", ylabel="$w_2$ (curvature 0.05)",
           aspect="equal")
    betas = (f"momentum={paths.momentum:.2f}" if paths.optimizer == "sgd"
             else f"betas=({paths.momentum:.2f}, {paths.beta2:g})")
    ax.set_title(f"{paths.optimizer.upper()}: lr={paths.lr:.3g}, wd={paths.weight_decay:.3g}, {betas}")
    ax.legend(loc="upper left")  # the paths run from the lower left to the upper right
    return ax


def render_png(paths: DecayPaths, decay: str, dpi: float | None = None) -> bytes:
    """`draw_paths` on a figure of its own (no pyplot state), as PNG bytes (the demos' style and resolution,
    `regkit.widgets.presentation`)."""
    from matplotlib.figure import Figure

    with picture_style():
        fig = Figure(figsize=FIGSIZE, layout="constrained")
        draw_paths(paths, decay, fig.add_subplot())
        return figure_png(fig, dpi)


def weight_decay_widget(steps: int = 150):
    """Sliders for lr, weight decay, momentum/beta1, the optimizer and the L2/decoupled toggle, redrawing `draw_paths`.

    Returns a box (`regkit.widgets.presentation.demo_box`): the controls in a column beside an ``Image``
    widget holding `render_png`'s PNG (an image, not an ``Output`` widget: nothing is captured or cleared,
    which keeps headless execution simple). ``box.controls`` maps names to the controls and ``box.drawn`` holds the
    ``(DecayPaths, decay)`` last drawn (for tests and for reading the numbers behind the plot).
    """
    import ipywidgets as widgets

    names = ("optimizer", "weight decay", "lr", "weight decay (wd)", "momentum / beta1")
    style = {"description_width": label_width(*names)}
    buttons = {**style, "button_width": "auto"}
    layout = widgets.Layout(width="100%")
    optimizer = widgets.ToggleButtons(options=[("SGD", "sgd"), ("Adam", "adam")], value="sgd",
                                      description=names[0], style=buttons)
    decay = widgets.ToggleButtons(options=[("L2 (coupled)", "l2"), ("decoupled", "decoupled")], value="l2",
                                  description=names[1], style=buttons)
    lr = widgets.FloatLogSlider(value=0.1, base=10, min=-3, max=0, step=0.05, description=names[2],
                                readout_format=".3g", style=style, layout=layout)
    weight_decay = widgets.FloatLogSlider(value=0.5, base=10, min=WD_MIN, max=WD_MIN + 3, step=WD_STEP,
                                          description=names[3], readout_format=".3g", style=style, layout=layout)
    momentum = widgets.FloatSlider(value=0.9, min=0.0, max=0.99, step=0.01, description=names[4],
                                   style=style, layout=layout)
    image = picture(flex="1 1 0%", min_width="0")
    controls = {"optimizer": optimizer, "decay": decay, "lr": lr, "weight_decay": weight_decay, "momentum": momentum}
    column = widgets.VBox(list(controls.values()), layout=widgets.Layout(width="430px", flex="0 0 auto"))
    box = demo_box([column, image], controls, vertical=False)

    def redraw():
        paths = decay_paths(optimizer.value, lr.value, weight_decay.value, momentum.value, steps)
        box.drawn = (paths, decay.value)
        image.value = render_png(paths, decay.value)

    redraw_on_change(controls.values(), redraw)
    redraw()
    return box
