import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402

from regkit.history import History  # noqa: E402
from regkit.plots import plot_history, use_theme  # noqa: E402


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
    assert len(axes) == 2 and [a.get_title() for a in axes] == ["train_loss", "val_acc"]
    loss_lines, acc_lines = axes[0].get_lines(), axes[1].get_lines()
    assert [line.get_label() for line in loss_lines] == ["sgd", "adam"]
    assert list(acc_lines[1].get_xdata()) == [3, 6]  # only the evaluated steps
    assert list(acc_lines[1].get_ydata()) == pytest.approx([1 - 0.5 / 3, 1 - 0.5 / 6])
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
