"""Classroom demo: the bound ``kappa`` and the multiplier's step size ``kappa_update`` of AdamCPR on a 2-D toy.

`cpr_toy_run` trains one 2-D weight ``w`` with `regkit.optim.AdamCPR` (``l2``: ``R(w) =
||w||^2``, a uniform bound) on noisy gradients of ``0.5 ||w - w*||^2`` with ``||w*||^2 = 4``;
`cpr_widget` draws ``R`` against ``kappa``, the multiplier ``lambda`` and the path of ``w``
(`draw`, rendered to a PNG in an ``ipywidgets.Image``), with sliders for ``kappa`` and
``kappa_update``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from regkit._validate import check_int, check_number
from regkit.optim import AdamCPR
from regkit.widgets import figure_png, in_range, redraw_on_change
from regkit.widgets.presentation import DESIGN_WIDTH_IN, demo_box, picture, picture_style

TARGET = (1.6, 1.2)  # w*, ||w*||^2 = 4: bounds below 4 bind


@functools.lru_cache(maxsize=64)
def cpr_toy_run(kappa: float = 1.0, kappa_update: float = 1.0, steps: int = 300, lr: float = 0.05,
                noise: float = 0.5, seed: int = 0) -> dict[str, np.ndarray]:  # fmt: skip
    """``{"step", "R", "lambda", "w"}`` over ``steps`` AdamCPR steps on the toy (arrays; cached).

    ``kappa > 0`` the bound on ``||w||^2``, ``kappa_update > 0`` the multiplier's step size
    (``mu = kappa_update / 2`` for this 2-element tensor), ``lr`` Adam's learning rate,
    ``noise`` the std of the Gaussian noise added to each gradient. About 0.1 s on a laptop CPU.
    """
    check_number("kappa", kappa, 0.0, high=math.inf, high_open=True)
    if kappa == 0:
        raise ValueError("kappa must be > 0, got 0")
    check_number("kappa_update", kappa_update, 0.0, high=math.inf, high_open=True)
    if kappa_update == 0:
        raise ValueError("kappa_update must be > 0, got 0")
    check_int("steps", steps)
    check_number("lr", lr, 0.0)
    check_number("noise", noise, 0.0)
    generator = torch.Generator().manual_seed(seed)
    target = torch.tensor(TARGET, dtype=torch.float64)
    w = torch.nn.Parameter(torch.tensor([0.3, -0.2], dtype=torch.float64))
    opt = AdamCPR([{"params": [w], "regularize": True}], lr=lr, kappa_init_method="uniform",
                  kappa_init_param=kappa, kappa_update=kappa_update)  # fmt: skip
    path, values, multipliers = [], [], []
    for _ in range(steps):
        w.grad = (w.detach() - target) + noise * torch.randn(2, generator=generator, dtype=torch.float64)
        opt.step()
        path.append(w.detach().clone())
        multipliers.append(opt.state[w]["lagmul"].item())
    path = torch.stack(path).numpy()
    values = (path**2).sum(1)
    return {"step": np.arange(1, steps + 1), "R": values, "lambda": np.array(multipliers), "w": path}


def draw(axes, run: dict[str, np.ndarray], kappa: float) -> None:
    """R against kappa, lambda, and the path of w with the feasible disc ``||w||^2 <= kappa`` (three Axes)."""
    r_ax, lam_ax, path_ax = axes
    r_ax.plot(run["step"], run["R"], label=r"$R(w)=\|w\|^2$")
    r_ax.axhline(kappa, color="k", ls=":", label=r"$\kappa$")
    r_ax.axhline(sum(t * t for t in TARGET), color="gray", ls="--", lw=0.8, label=r"$\|w^*\|^2$")
    r_ax.set(xlabel="step", ylabel=r"$\|w\|^2$", title="measure vs bound",
             ylim=(0, 1.45 * max(kappa, float(run["R"].max()), 4.0)))  # headroom: the legend sits above the curves
    r_ax.legend(loc="upper center", ncols=3, handlelength=1.2, columnspacing=0.8)
    lam_ax.plot(run["step"], run["lambda"], color="C4")
    lam_ax.set(xlabel="step", ylabel=r"$\lambda$", title=r"multiplier $\lambda$")
    theta = np.linspace(0, 2 * np.pi, 200)
    path_ax.fill(math.sqrt(kappa) * np.cos(theta), math.sqrt(kappa) * np.sin(theta), alpha=0.15, label="feasible")
    path_ax.plot(run["w"][:, 0], run["w"][:, 1], lw=0.8)
    path_ax.plot(*TARGET, "k*", label=r"$w^*$")
    path_ax.set(aspect="equal", xlabel="$w_1$", ylabel="$w_2$", title="path of w")
    path_ax.legend(loc="lower left")


def render_png(run: dict[str, np.ndarray], kappa: float, dpi: float | None = None) -> bytes:
    """`draw` on a figure of its own (no pyplot state), as PNG bytes (`regkit.widgets.presentation` style)."""
    from matplotlib.figure import Figure

    with picture_style():
        figure = Figure(figsize=(DESIGN_WIDTH_IN, 3.6), layout="constrained")
        draw(figure.subplots(1, 3), run, kappa)
        return figure_png(figure, dpi)


def cpr_widget(kappa: float = 1.0, kappa_update: float = 1.0, steps: int = 300):
    """Sliders for ``kappa`` (0.1..10) and ``kappa_update`` (0.01..10), log scale, above the PNG of `draw`
    in an ``Image`` widget (a starting value outside a slider's range raises ValueError).

    ``box.controls`` maps the names to the sliders; ``box.drawn`` holds the ``(run, kappa)`` last
    drawn (for tests and for reading the numbers behind the picture). Display it with
    ``regkit.widgets.show(cpr_widget)`` (a static picture when run headless).
    """
    import ipywidgets as widgets

    cpr_toy_run(kappa, kappa_update, steps)  # validate before building anything
    style = {"description_width": "initial"}
    controls = {
        "kappa": in_range("kappa", kappa, widgets.FloatLogSlider(
            value=kappa, base=10, min=-1, max=1, step=0.05, description="kappa", readout_format=".3g", style=style)),
        "kappa_update": in_range("kappa_update", kappa_update, widgets.FloatLogSlider(
            value=kappa_update, base=10, min=-2, max=1, step=0.1, description="kappa_update", readout_format=".3g",
            style=style)),
    }  # fmt: skip
    image = picture()
    box = demo_box([widgets.HBox(list(controls.values())), image], controls)

    def redraw():
        k, mu = float(controls["kappa"].value), float(controls["kappa_update"].value)
        run = cpr_toy_run(k, mu, steps)
        box.drawn = (run, k)
        image.value = render_png(run, k)

    redraw_on_change(controls.values(), redraw)
    redraw()
    return box
