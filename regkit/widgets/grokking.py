"""Classroom demo: explore recorded grokking runs (accuracy, loss, weight norm, CPR state) without training.

`load_runs` finds the histories (`regkit.course.grokking.save_histories` files): a given dict or path,
else the latest quick-profile file the course runner recorded under ``runs/``, else the small
packaged file ``regkit/widgets/data/grokking_quick.json`` (written by `write_packaged_histories`
from a real quick-profile run). `grokking_curves` picks the curves of the selected runs and
metric (arrays), `render_png` draws them, and `grokking_widget` puts a run selector, a metric
menu and a log-axis switch above the PNG in an ``ipywidgets.Image``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from regkit.course.grokking import (
    METHODS,
    PROFILES,
    load_histories,
    profile_run_kwargs,
    read_histories_info,
    run_methods,
    save_histories,
    steps_to,
)  # fmt: skip
from regkit.history import History
from regkit.widgets import figure_png, redraw_on_change
from regkit.widgets.presentation import DESIGN_WIDTH_IN, demo_box, label_width, picture, picture_style

PACKAGED_HISTORIES = Path(__file__).parent / "data" / "grokking_quick.json"
HISTORIES_NAME = "06_grokking"  # the notebook records runs/<profile>/06_grokking.histories.json
# metric -> (y label, the History columns drawn: exact names, or a prefix ending in "/")
METRICS = {
    "accuracy": ("accuracy (%)", ("train_acc", "val_acc")),  # drawn in %, like every accuracy of the course
    "loss": ("cross-entropy", ("train_loss", "val_loss")),
    "weight norm": ("joint L2 norm of all weights", ("weight_norm",)),
    "CPR multiplier": ("multiplier lambda", ("lambda/",)),
    "CPR measure": ("R(W) (dashed: kappa)", ("R/", "kappa/")),
}
DASHED = ("val_", "kappa/")  # validation and bound columns: dashed
KINDS = {"train_acc": "train", "val_acc": "validation", "train_loss": "train", "val_loss": "validation",
         "R/": "R(W)", "kappa/": "bound kappa"}  # what the line styles mean, in the legend


def latest_recorded(runs_dir: str | os.PathLike | None = None, profile: str = "quick") -> Path | None:
    """The newest ``*/06_grokking.histories.json`` under ``runs_dir`` (default the course's ``runs/``)
    saved with ``profile``; None if there is none."""
    if runs_dir is None:
        from regkit.course.runner import RUNS_DIR

        runs_dir = RUNS_DIR
    found = [p for p in Path(runs_dir).glob(f"*/{HISTORIES_NAME}.histories.json")
             if read_histories_info(p).get("profile") == profile]  # fmt: skip
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def load_runs(histories: Mapping[str, History | Mapping] | str | os.PathLike | None = None) -> dict[str, History]:
    """``{run name: History}`` from a dict (Histories or their ``to_dict()``), a histories file, or
    (None) the latest recorded quick run, else the packaged file."""
    if histories is None:
        histories = latest_recorded() or PACKAGED_HISTORIES
    if isinstance(histories, (str, os.PathLike)):
        if not Path(histories).is_file():
            raise ValueError(f"histories={str(histories)!r} is not a file")
        return load_histories(histories)
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError(f"histories must be a non-empty dict of run name -> History, a path or None; got {histories!r}")
    return {name: h if isinstance(h, History) else History.from_dict(h) for name, h in histories.items()}


def grokking_curves(runs: Mapping[str, History], names: Sequence[str], metric: str = "accuracy") -> dict:
    """``{run: {column: (steps, values)}}`` of ``metric`` (`METRICS`) for the runs ``names``.

    Rows where a column was not logged are skipped; a CPR metric gives no curves for runs without
    constraints (they log no ``lambda/`` columns).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}; got metric={metric!r}")
    if isinstance(names, str) or not names:
        raise ValueError(f"names must be a non-empty list of run names, got names={names!r}")
    unknown = [n for n in names if n not in runs]
    if unknown:
        raise ValueError(f"unknown run(s) {unknown}; recorded runs: {', '.join(runs)}")
    curves = {}
    for name in names:
        columns = runs[name].columns
        chosen = [c for key in METRICS[metric][1] for c in columns if c == key or key.endswith("/") and c.startswith(key)]
        series = {}
        for column in chosen:
            pairs = [(row["step"], row[column]) for row in runs[name].rows if row.get(column) is not None]
            steps, values = (np.array(v, dtype=float) for v in zip(*pairs, strict=True)) if pairs else ([], [])
            series[column] = (np.asarray(steps), np.asarray(values))
        curves[name] = series
    return curves


def draw(ax, runs: Mapping[str, History], curves: dict, metric: str, logx: bool) -> None:
    """One colour per run (one run: per tensor), solid train / R and dashed validation / kappa columns;
    the legend, beside the axes, names each colour and each line style once."""
    from matplotlib.lines import Line2D

    single = len(curves) == 1
    colors: dict[str, str] = {}
    handles = []
    for name, series in curves.items():
        for column, (steps, values) in series.items():
            key = column.split("/", 1)[-1] if single and "/" in column else name
            if key not in colors:
                colors[key] = f"C{len(colors) % 10}"
                handles.append(Line2D([], [], color=colors[key], label=runs[name].meta.get("label", name)
                                      if key == name else key))  # fmt: skip
            scale = 100.0 if metric == "accuracy" else 1.0
            ax.plot(steps, scale * values, color=colors[key], ls="--" if column.startswith(DASHED) else "-")
    kinds = METRICS[metric][1]
    if len(kinds) > 1:
        handles += [Line2D([], [], color="0.3", ls="--" if kind.startswith(DASHED) else "-", label=KINDS[kind])
                    for kind in kinds]  # fmt: skip
    ax.set(xlabel="step", ylabel=METRICS[metric][0], xscale="log" if logx else "linear", title=metric)
    if ax.lines:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    else:
        ax.text(0.5, 0.5, "no such curves in the selected runs", ha="center", transform=ax.transAxes)


def render_png(runs: Mapping[str, History], curves: dict, metric: str, logx: bool, dpi: float | None = None) -> bytes:
    """`draw` on a figure of its own (no pyplot state), as PNG bytes (`regkit.widgets.presentation` style;
    fixed margins, the legend in the right third: a constrained layout would double the drawing time)."""
    from matplotlib.figure import Figure

    with picture_style():
        figure = Figure(figsize=(DESIGN_WIDTH_IN, 4.2))
        figure.subplots_adjust(left=0.08, right=0.69, bottom=0.14, top=0.91)
        draw(figure.subplots(), runs, curves, metric, logx)
        return figure_png(figure, dpi)


def grokking_widget(histories=None, runs: Sequence[str] | None = None, metric: str = "accuracy", logx: bool = True):
    """A run selector, a metric menu and a log-axis switch above the PNG of `draw` (reads histories only).

    ``histories``: see `load_runs`. ``runs``: the run names selected first (default all).
    ``box.controls`` maps names to the controls; ``box.drawn`` holds the ``(curves, metric, logx)``
    last drawn. Display it with ``regkit.widgets.show(grokking_widget)``.
    """
    import ipywidgets as widgets

    recorded = load_runs(histories)
    names = list(recorded) if runs is None else list(runs)
    grokking_curves(recorded, names, metric)  # validate before building anything
    if logx is not True and logx is not False:
        raise ValueError(f"logx must be True or False, got logx={logx!r}")
    style = {"description_width": label_width("metric")}
    controls = {
        "runs": widgets.SelectMultiple(options=list(recorded), value=names, rows=min(len(recorded), 8),
                                       description="runs", style=style, layout=widgets.Layout(width="auto")),
        "metric": widgets.Dropdown(options=list(METRICS), value=metric, description="metric", style=style),
        "logx": widgets.Checkbox(value=logx, description="log step axis", style=style),
    }  # fmt: skip
    image = picture()
    box = demo_box([widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap")), image],
                   controls)

    def redraw():
        selected = list(controls["runs"].value)
        if not selected:
            return  # keep the last picture while nothing is selected
        chosen_metric, chosen_logx = controls["metric"].value, bool(controls["logx"].value)
        curves = grokking_curves(recorded, selected, chosen_metric)
        box.drawn = (curves, chosen_metric, chosen_logx)
        image.value = render_png(recorded, curves, chosen_metric, chosen_logx)

    redraw_on_change(controls.values(), redraw)
    redraw()
    return box


def _thin(history: History, points: int = 20, every: int = 100, digits: int = 3) -> History:
    """The rows at about ``points`` log-spaced steps, at every ``every``-th step, the last row and the first row at 99% validation
    accuracy (so `regkit.course.grokking.steps_to` still reads the same step), numbers rounded to ``digits``
    significant digits: a few KB per run for the packaged file."""
    steps = [row["step"] for row in history.rows]
    wanted = {s for s in steps if s % every == 0} | {steps[-1], steps_to(history, "val_acc", 0.99), steps_to(history, "train_acc", 0.99)}
    wanted |= {min(steps, key=lambda s, t=t: abs(math.log(s / t))) for t in np.geomspace(1, steps[-1], points)}
    rows = [{k: float(f"{v:.{digits}g}") if isinstance(v, float) else v for k, v in row.items()}
            for row in history.rows if row["step"] in wanted]  # fmt: skip
    return History(rows, history.meta)


def write_packaged_histories(path: str | os.PathLike = PACKAGED_HISTORIES, seeds: int = 1) -> Path:
    """Run all six `regkit.course.grokking.METHODS` in the quick setting (`regkit.course.grokking.PROFILES`; about 2.5
    minutes of one busy CPU core) and save the histories, thinned and rounded (about 20 KB), as the
    widget's fallback data.

    Regenerate with ``python -c "from regkit.widgets.grokking import write_packaged_histories as w; w()"``.
    """
    cfg = PROFILES["quick"]
    histories = run_methods(list(METHODS), seeds, **profile_run_kwargs(cfg))
    return save_histories({name: _thin(h) for name, h in histories.items()}, path, profile="quick", packaged=True)
