"""The course's plot style (one seaborn theme and palette) and its plot helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from regkit.history import History

PALETTE = "colorblind"


def use_theme(context: str = "notebook") -> None:
    """Set the course's seaborn theme: white grid, colour-blind-safe palette, compact figures."""
    sns.set_theme(context=context, style="whitegrid", palette=PALETTE,
                  rc={"figure.figsize": (6.0, 3.8), "figure.dpi": 100, "axes.spines.top": False,
                      "axes.spines.right": False, "legend.frameon": False})


def _axes_for(ax: Axes | Sequence[Axes] | None, count: int) -> tuple[Figure, list[Axes]]:
    if ax is None:
        fig, axes = plt.subplots(1, count, figsize=(4.2 * count, 3.2), squeeze=False, layout="constrained")
        return fig, list(axes[0])
    axes = [ax] if isinstance(ax, Axes) else list(ax)
    if len(axes) != count:
        raise ValueError(f"ax must hold one Axes per metric ({count}), got {len(axes)}")
    return axes[0].figure, axes


def plot_history(history: History | Mapping[str, History], metrics: str | Sequence[str] = ("train_loss", "val_acc"),
                 *, x: str = "step", logx: bool = False, logy: bool = False,
                 ax: Axes | Sequence[Axes] | None = None) -> tuple[Figure, list[Axes]]:
    """One panel per metric, one line per run (same colour for a run in every panel).

    ``history``: one History or ``{label: History}``; rows where a metric was not logged are
    skipped. ``ax``: an Axes (one metric) or one Axes per metric; default a new figure.
    Returns ``(figure, axes)``.
    """
    runs = {"": history} if isinstance(history, History) else dict(history)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not runs or not metrics:
        raise ValueError("plot_history needs at least one history and one metric")
    frames = {label: h.df for label, h in runs.items()}
    fig, axes = _axes_for(ax, len(metrics))
    colors = dict(zip(runs, sns.color_palette(PALETTE, len(runs)), strict=True))
    for metric, panel in zip(metrics, axes, strict=True):
        present = {label: df for label, df in frames.items() if metric in df and x in df}
        if not present:
            logged = sorted({c for df in frames.values() for c in df.columns})
            raise ValueError(f"metric {metric!r} (or x={x!r}) was never logged; logged: {', '.join(logged)}")
        for label, df in present.items():
            data = df[[x, metric]].dropna()
            panel.plot(data[x], data[metric], label=label or None, color=colors[label])
        panel.set(title=metric, xlabel=x, xscale="log" if logx else "linear", yscale="log" if logy else "linear")
        if len(runs) > 1:
            panel.legend()
    return fig, axes
