"""The course's plot style (one seaborn theme and palette) and its plot helpers.

One style for every plot of the course: axes labelled in words with their units (``metric_label``:
``test_acc`` is "test accuracy", drawn in %), fonts of at least 11 pt (``use_theme``), legends beside
the data rather than on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from regkit.history import History

PALETTE = "colorblind"
SPLITS = {"train": "training", "val": "validation", "test": "test"}
# a metric's suffix -> (its name, the y label, the factor it is drawn with): accuracies in %
QUANTITIES = {"loss": ("loss", "cross-entropy loss", 1.0), "acc": ("accuracy", "accuracy (%)", 100.0)}


def use_theme(context: str = "notebook") -> None:
    """Set the course's seaborn theme: white grid, colour-blind-safe palette, compact figures."""
    sns.set_theme(context=context, style="whitegrid", palette=PALETTE,
                  rc={"figure.figsize": (6.0, 3.8), "figure.dpi": 100, "axes.spines.top": False,
                      "axes.spines.right": False, "legend.frameon": False})


def metric_label(metric: str) -> tuple[str, str, float]:
    """``(title, y label, factor)`` of a logged History column: ``"test_acc"`` -> ("test accuracy",
    "accuracy (%)", 100), ``"train_loss"`` -> ("training loss", "cross-entropy loss", 1); another
    name is its own title and label (factor 1)."""
    split, _, quantity = metric.partition("_")
    if split in SPLITS and quantity in QUANTITIES:
        name, label, factor = QUANTITIES[quantity]
        return f"{SPLITS[split]} {name}", label, factor
    return metric, metric, 1.0


def legend_beside(ax: Axes, **kwargs):
    """The legend of ``ax`` to the right of its axes (off the data), top-aligned."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)


def _axes_for(ax: Axes | Sequence[Axes] | None, count: int) -> tuple[Figure, list[Axes]]:
    if ax is None:
        fig, axes = plt.subplots(1, count, figsize=(4.6 * count, 3.4), squeeze=False, layout="constrained")
        return fig, list(axes[0])
    axes = [ax] if isinstance(ax, Axes) else list(ax)
    if len(axes) != count:
        raise ValueError(f"ax must hold one Axes per metric ({count}), got {len(axes)}")
    return axes[0].figure, axes


def plot_history(history: History | Mapping[str, History], metrics: str | Sequence[str] = ("train_loss", "val_acc"),
                 *, x: str = "step", logx: bool = False, logy: bool = False,
                 ax: Axes | Sequence[Axes] | None = None) -> tuple[Figure, list[Axes]]:
    """One panel per metric, one line per run (same colour for a run in every panel, named in one legend
    beside the last panel); titles and y labels in words (`metric_label`), accuracies in %.

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
        title, ylabel, factor = metric_label(metric)
        for label, df in present.items():
            data = df[[x, metric]].dropna()
            panel.plot(data[x], factor * data[metric], label=label or None, color=colors[label])
        panel.set(title=title, xlabel="optimizer step" if x == "step" else x, ylabel=ylabel,
                  xscale="log" if logx else "linear", yscale="log" if logy else "linear")
    if len(runs) > 1:
        legend_beside(axes[-1])  # one legend: a run has the same colour in every panel
    return fig, axes


def _grid_key(values, digits: int):
    """Coordinates rounded to ``digits`` significant digits (``0.1 * 3`` and ``0.3`` share a cell)."""
    return values.map(lambda v: float(f"{v:.{digits}g}"))


def heatmap(data: pd.DataFrame, x: str, y: str, value: str, *, best: str | None = "min", fmt: str = ".1f",
            cmap: str = "viridis_r", vmin: float | None = None, vmax: float | None = None, digits: int = 3,
            colorbar: bool = True, ax: Axes | None = None) -> tuple[Figure, Axes]:
    """Heatmap of ``data[value]`` over the grid of ``data[x]`` (columns) and ``data[y]`` (rows, increasing upwards).

    ``data`` is long-form, one row per cell (e.g. one per run of a sweep). Coordinates are matched
    after rounding to ``digits`` significant digits, so values computed in different ways (a
    product ``lr * wd``) land in one cell; grid points with no row are left blank (a sheared
    grid). Each cell shows its value (``fmt``); ``best`` ("min", "max" or None) outlines the best
    cell. Columns and rows are labelled with the rounded coordinates. Returns ``(figure, axes)``.
    """
    missing = [c for c in (x, y, value) if c not in data.columns]
    if missing:
        raise ValueError(f"heatmap: no column {missing[0]!r} in data; columns: {', '.join(map(str, data.columns))}")
    if best not in ("min", "max", None):
        raise ValueError(f"best must be 'min', 'max' or None, got {best!r}")
    cells = pd.DataFrame({"x": _grid_key(data[x], digits), "y": _grid_key(data[y], digits), "v": data[value]})
    duplicated = cells.duplicated(["x", "y"])
    if duplicated.any():
        row = cells[duplicated].iloc[0]
        raise ValueError(f"heatmap: several rows for {x}={row.x:g}, {y}={row.y:g}; aggregate them first")
    grid = cells.pivot(index="y", columns="x", values="v").sort_index().sort_index(axis=1)
    values = grid.to_numpy(dtype=float)
    if ax is None:
        fig, ax = plt.subplots(figsize=(0.95 * values.shape[1] + 2.2, 0.6 * values.shape[0] + 1.4),
                               layout="constrained")
    else:
        fig = ax.figure
    colormap = plt.get_cmap(cmap).with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(values), origin="lower", aspect="auto", cmap=colormap, vmin=vmin, vmax=vmax)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            r, g, b, _ = colormap(image.norm(v))
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=11,
                    color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white")
    if best is not None and np.isfinite(values).any():
        i, j = np.unravel_index(np.nanargmin(values) if best == "min" else np.nanargmax(values), values.shape)
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2.5, color="C3"))
    ax.set_xticks(range(values.shape[1]), [f"{v:g}" for v in grid.columns], rotation=45)
    ax.set_yticks(range(values.shape[0]), [f"{v:g}" for v in grid.index])
    ax.set(xlabel=x, ylabel=y)
    ax.grid(False)
    if colorbar:
        fig.colorbar(image, ax=ax, label=value)
    return fig, ax


def mean_lines(data: pd.DataFrame, x: str, y: str, *, std: str | None = None, hue: str | None = None,
               logx: bool | None = None, ax: Axes | None = None) -> tuple[Figure, Axes]:
    """``data[y]`` against ``data[x]``, one line per value of ``data[hue]``, with a ``± data[std]`` band.

    ``data`` is long-form, one row per point (e.g. a sweep's mean and std over seeds). Points are
    sorted by ``x``; a NaN std draws no band. ``logx=None``: a log axis when ``x`` is positive and
    spans a factor of 10 or more. Returns ``(figure, axes)``.
    """
    missing = [c for c in (x, y, std, hue) if c is not None and c not in data.columns]
    if missing:
        raise ValueError(f"mean_lines: no column {missing[0]!r} in data; columns: {', '.join(map(str, data.columns))}")
    if ax is None:
        fig, ax = plt.subplots(layout="constrained")
    else:
        fig = ax.figure
    groups = [(None, data)] if hue is None else list(data.groupby(hue, sort=False))
    colors = sns.color_palette(PALETTE, len(groups))
    for (label, group), color in zip(groups, colors, strict=True):
        group = group.sort_values(x)
        ax.plot(group[x], group[y], marker="o", color=color, label=None if hue is None else f"{hue}={label}")
        if std is not None:
            ax.fill_between(group[x], group[y] - group[std], group[y] + group[std], color=color, alpha=0.2, lw=0)
    if logx is None:
        values = pd.to_numeric(data[x], errors="coerce")
        logx = bool(values.notna().all() and (values > 0).all() and values.max() >= 10 * values.min())
    ax.set(xlabel=x, ylabel=y, xscale="log" if logx else "linear")
    if hue is not None:
        legend_beside(ax)
    return fig, ax


def wrap_name(name: str, width: int) -> str:
    """``name`` on lines of at most ``width`` characters, broken at underscores or spaces (a tick label that fits)."""
    lines: list[str] = []
    for part in re.split(r"(?<=[_ ])", name):
        if lines and len(lines[-1]) + len(part) <= width:
            lines[-1] += part
        else:
            lines.append(part)
    return "\n".join(line.rstrip() for line in lines)


def plot_intervals(values: Mapping[str, Sequence[float]], *, title: str = "", ylabel: str = "",
                   ax: Axes | None = None) -> tuple[Figure, Axes]:
    """One column per method: every seed's value (dots), the mean and its 95% Student-t interval (bar).

    ``values``: ``{method: per-seed values}``; one seed gives the dot and the mean without an interval.
    Returns ``(figure, axes)``.
    """
    from regkit.course.stats import t_interval

    if not values or not all(len(v) for v in values.values()):
        raise ValueError("plot_intervals needs at least one method, each with at least one value")
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(3.6, 1.6 + 1.4 * len(values)), 3.4), layout="constrained")
    colors = sns.color_palette(PALETTE, len(values))
    for i, seeds in enumerate(values.values()):
        interval = t_interval(seeds)
        ax.scatter(np.full(len(seeds), i) + np.linspace(-0.12, 0.12, len(seeds)), seeds, s=14, alpha=0.5,
                   color=colors[i])
        yerr = None if np.isnan(interval.half_width) else interval.half_width
        ax.errorbar(i, interval.mean, yerr=yerr, fmt="o", color=colors[i], capsize=6, markersize=7)
    ax.set_xticks(range(len(values)), [wrap_name(name, 14) for name in values])
    ax.set(title=title, ylabel=ylabel, xlim=(-0.6, len(values) - 0.4))
    return ax.figure, ax
