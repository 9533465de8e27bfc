import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402

from regkit.history import History  # noqa: E402
from regkit.plots import mean_lines, plot_history, use_theme  # noqa: E402


def history(scale):
    h = History()
    for step in range(1, 7):
        h.log(step, train_loss=scale / step)
        if step % 3 == 0:
            h.log(step, val_acc=1 - scale / step)
    return h


def test_use_theme_sets_the_course_palette():
    use_theme()
    colors = [matplotlib.colors.to_hex(c) for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]]
    assert colors[:3] == sns.color_palette("colorblind").as_hex()[:3]


def test_plot_history_draws_one_line_per_run_and_metric_with_the_logged_points():
    runs = {"sgd": history(1.0), "adam": history(0.5)}
    fig, axes = plot_history(runs, logx=True)
    assert len(axes) == 2 and [a.get_title() for a in axes] == ["training loss", "validation accuracy"]
    assert [a.get_ylabel() for a in axes] == ["cross-entropy loss", "accuracy (%)"]
    assert axes[0].get_xlabel() == "optimizer step"
    loss_lines, acc_lines = axes[0].get_lines(), axes[1].get_lines()
    assert [line.get_label() for line in loss_lines] == ["sgd", "adam"]
    assert list(acc_lines[1].get_xdata()) == [3, 6]  # only the evaluated steps
    assert list(acc_lines[1].get_ydata()) == pytest.approx([100 * (1 - 0.5 / 3), 100 * (1 - 0.5 / 6)])  # in %
    fig.canvas.draw()
    assert axes[0].get_legend() is None  # one legend, beside the last panel, off its data
    assert axes[1].get_legend().get_window_extent().x0 >= axes[1].get_window_extent().x1
    assert loss_lines[0].get_color() == acc_lines[0].get_color() != loss_lines[1].get_color()
    assert axes[0].get_xscale() == "log" and axes[0].get_yscale() == "linear"
    plt.close(fig)


def test_plot_history_draws_into_given_axes_and_rejects_unknown_metrics():
    fig, ax = plt.subplots()
    got_fig, axes = plot_history(history(1.0), "train_loss", ax=ax, logy=True)
    assert got_fig is fig and axes == [ax] and ax.get_yscale() == "log" and len(ax.get_lines()) == 1
    with pytest.raises(ValueError, match="metric 'val_loss' .* never logged; logged: step, train_loss, val_acc"):
        plot_history(history(1.0), "val_loss", ax=ax)
    with pytest.raises(ValueError, match=r"one Axes per metric \(2\), got 1"):
        plot_history(history(1.0), ax=ax)
    plt.close(fig)


def test_mean_lines_draw_one_sorted_line_per_hue_with_a_std_band():
    table = pd.DataFrame({"lr": [1e-2, 1e-4, 1e-3] * 2, "wd": [0.0] * 3 + [0.1] * 3,
                          "mean": [3.0, 1.0, 2.0, 6.0, 4.0, 5.0], "std": [0.1, 0.1, 0.1, 0.2, np.nan, 0.2]})
    fig, ax = mean_lines(table, "lr", "mean", std="std", hue="wd")
    assert [line.get_label() for line in ax.get_lines()] == ["wd=0.0", "wd=0.1"]
    for line, expected in zip(ax.get_lines(), ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]), strict=True):
        assert list(line.get_xdata()) == [1e-4, 1e-3, 1e-2] and list(line.get_ydata()) == expected
    assert len(ax.collections) == 2 and ax.get_xscale() == "log"  # lr spans 100x: log axis chosen
    plt.close(fig)
    fig, ax = mean_lines(table[table.wd == 0], "wd", "mean")
    assert ax.get_xscale() == "linear" and ax.get_legend() is None and not ax.collections
    plt.close(fig)
    with pytest.raises(ValueError, match="mean_lines: no column 'acc' in data; columns: lr, wd, mean, std"):
        mean_lines(table, "lr", "acc")
