"""The weight-decay classroom widget: trajectories of the real optimizers on the 2-D quadratic, headless."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from regkit.widgets.weight_decay import (  # noqa: E402
    START,
    TARGET,
    decay_paths,
    draw_paths,
    fixed_points,
    render_png,
    weight_decay_widget,
)


def test_plain_sgd_l2_and_decoupled_paths_coincide_and_differ_with_momentum():
    """Without momentum ``w - lr (g + wd w) == w (1 - lr wd) - lr g`` (to rounding); momentum amplifies only L2."""
    plain = decay_paths("sgd", lr=0.1, weight_decay=0.5, momentum=0.0, steps=100)
    np.testing.assert_allclose(plain.l2, plain.decoupled, rtol=1e-13, atol=1e-13)
    assert np.abs(plain.l2 - plain.no_decay).max() > 0.5
    heavy = decay_paths("sgd", lr=0.1, weight_decay=0.5, momentum=0.9, steps=100)
    assert np.abs(heavy.l2 - heavy.decoupled).max() > 0.5
    adam = decay_paths("adam", lr=0.1, weight_decay=0.5, momentum=0.0, steps=100)
    assert np.abs(adam.l2 - adam.decoupled).max() > 0.5  # Adam: they differ even without momentum


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_paths_start_at_start_and_settle_where_the_derivation_says(optimizer):
    """Stationary points: L2 -> h c / (h + wd); SGDW -> h c / (h + (1 - mu) wd); AdamW -> clip(c, +-1/wd)."""
    paths = decay_paths(optimizer, lr=0.1, weight_decay=0.5, momentum=0.9, steps=400)
    l2_point, decoupled_point = fixed_points(optimizer, 0.5, 0.9)
    for path in (paths.l2, paths.decoupled, paths.no_decay):
        np.testing.assert_array_equal(path[0], START)
    tolerance = 1e-8 if optimizer == "sgd" else 0.01  # Adam with a constant lr keeps jittering near its limit
    np.testing.assert_allclose(paths.l2[-1], l2_point, atol=tolerance)
    np.testing.assert_allclose(paths.decoupled[-1], decoupled_point, atol=tolerance)
    np.testing.assert_allclose(paths.no_decay[-1], TARGET, atol=tolerance)
    assert np.abs(l2_point - decoupled_point).min() > 0.3  # the two decays settle in visibly different places


def test_different_slider_values_give_different_trajectories():
    base = dict(optimizer="sgd", lr=0.1, weight_decay=0.5, momentum=0.9)
    reference = decay_paths(**base)
    for change in ({"lr": 0.05}, {"weight_decay": 0.2}, {"momentum": 0.5}, {"optimizer": "adam"}):
        other = decay_paths(**(base | change))
        assert np.abs(other.l2 - reference.l2).max() > 1e-3, change
        assert np.abs(other.decoupled - reference.decoupled).max() > 1e-3, change
    adam = decay_paths(**(base | {"optimizer": "adam"}))
    slow = decay_paths(**(base | {"optimizer": "adam", "beta2": 0.999}))
    assert np.abs(slow.decoupled - adam.decoupled).max() > 1e-2  # a longer memory of v: slower to the box


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "rmsprop"}, "optimizer must be one of 'sgd', 'adam', got 'rmsprop'"),
        ({"lr": -0.1}, r"lr must be in \[0.0, inf\], got -0.1"),
        ({"lr": 0.0}, "lr must be > 0, got 0"),
        ({"weight_decay": -1}, r"weight_decay must be in \[0.0, inf\], got -1"),
        ({"momentum": 1.0}, r"momentum must be in \[0.0, 1.0\), got 1.0"),
        ({"steps": 0}, "steps must be a positive int, got 0"),
        ({"beta2": 1.0}, r"beta2 must be in \[0.0, 1.0\), got 1.0"),
    ],
)
def test_invalid_values_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        decay_paths(**kwargs)


def test_drawing_shows_the_computed_paths_and_rejects_an_unknown_decay():
    paths = decay_paths("adam", lr=0.1, weight_decay=0.5, momentum=0.9)
    ax = draw_paths(paths, "decoupled")
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_array_equal(np.column_stack(lines["decoupled"].get_data()), paths.decoupled)
    np.testing.assert_array_equal(np.column_stack(lines["L2 (coupled)"].get_data()), paths.l2)
    assert lines["decoupled"].get_linewidth() > lines["L2 (coupled)"].get_linewidth()  # the chosen one is bold
    assert len(ax.patches) == 1  # AdamW's box |w|_inf <= 1/wd
    with pytest.raises(ValueError, match="decay must be one of 'l2', 'decoupled', got 'l1'"):
        draw_paths(paths, "l1", ax)
    plt.close(ax.figure)


def test_widget_redraws_what_its_controls_say():
    box = weight_decay_widget(steps=60)
    paths, decay = box.drawn
    assert (paths.optimizer, paths.lr, decay) == ("sgd", 0.1, "l2")
    image = box.children[-1]
    first = image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and first == render_png(paths, decay)
    box.controls["momentum"].value = 0.5
    assert image.value != first  # a new slider value, a new picture
    box.controls["lr"].value = 0.02
    box.controls["decay"].value = "decoupled"
    box.controls["optimizer"].value = "adam"
    paths, decay = box.drawn
    assert (paths.optimizer, decay) == ("adam", "decoupled") and paths.lr == pytest.approx(0.02)
    np.testing.assert_array_equal(paths.decoupled, decay_paths("adam", paths.lr, 0.5, 0.5, 60).decoupled)
    assert image.value == render_png(paths, decay)
