"""The scale-invariance classroom demo: its curves obey the norm-growth laws; sliders change them; bad input is rejected."""

import numpy as np
import pytest

from regkit.widgets.scale_invariance import draw, norm_growth, scale_invariance_widget


def growth(curves, lr):
    """``||w_{t+1}||^2 - ||w_t||^2`` and ``lr^2 ||update_t||^2`` per step."""
    return np.diff(curves["norm"] ** 2), (lr * curves["update_norm"]) ** 2


def test_projection_keeps_the_plain_gd_growth_law():
    """SGDP's update is orthogonal to w: ||w_{t+1}||^2 = ||w_t||^2 + lr^2 ||u_t||^2, GD's law with u for g."""
    lr, beta, eps = 0.2, 0.95, 1e-8
    curves = norm_growth(lr=lr, momentum=beta, project=True, steps=200)
    actual, law = growth(curves, lr)
    # w_hat = w / (||w|| + eps) leaves a radial part <w, u> ~ 2 eps ||p|| (||w|| >= 1 here), and the
    # momentum ||p|| <= max ||g|| / (1 - beta) = 1 / (1 - beta) on this toy: |actual - law| <= 4 lr eps / (1 - beta)
    assert (curves["norm"] >= 1).all()
    np.testing.assert_allclose(actual, law, rtol=1e-12, atol=4 * lr * eps / (1 - beta))
    assert np.abs(actual - law).max() < 1e-3 * law.max()


def test_momentum_follows_the_heavy_ball_closed_form():
    """||w_{t+1}||^2 = ||w_t||^2 + lr^2 ||p_t||^2 + 2 lr^2 sum_{k<t} beta^(t-k) ||p_k||^2, to rounding error."""
    lr, beta = 0.1, 0.9
    curves = norm_growth(lr=lr, momentum=beta, project=False, steps=100)
    actual, plain = growth(curves, lr)
    p2 = curves["update_norm"] ** 2
    cross = np.array([sum(beta ** (t - k) * p2[k] for k in range(t)) for t in range(len(p2))])
    np.testing.assert_allclose(actual, plain + 2 * lr**2 * cross, rtol=1e-9, atol=1e-14)
    assert (actual[1:] > plain[1:]).all() and actual.sum() > 5 * plain.sum()  # growth beyond the GD law


def test_plain_gd_reference_follows_the_gd_law():
    curves = norm_growth(lr=0.3, momentum=0.0, project=False, steps=50)
    np.testing.assert_allclose(curves["norm"], curves["gd_norm"], rtol=0, atol=0)  # momentum 0 is GD
    actual, law = growth(curves, 0.3)
    np.testing.assert_allclose(actual, law, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("change", [dict(momentum=0.5), dict(lr=0.03), dict(project=True), dict(steps=150)])
def test_different_slider_values_give_different_curves(change):
    base = dict(lr=0.1, momentum=0.9, project=False, steps=100)
    a, b = norm_growth(**base), norm_growth(**(base | change))
    assert a["norm"].shape != b["norm"].shape or not np.allclose(a["norm"], b["norm"])
    assert a["norm"][-1] != b["norm"][-1] and a["effective_step"][-1] != b["effective_step"][-1]


def test_momentum_inflates_the_norm_and_projection_removes_it():
    heavy, projected = norm_growth(momentum=0.99), norm_growth(momentum=0.99, project=True)
    assert heavy["norm"][-1] > 10 * heavy["gd_norm"][-1]
    assert projected["norm"][-1] < 2 * projected["gd_norm"][-1]
    assert (heavy["effective_step"][-1] < projected["effective_step"][-1] / 50)


@pytest.mark.parametrize("kwargs,message", [
    (dict(lr=-0.1), r"lr must be a number in \[0.0, 10.0\], got -0.1"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(momentum=1.0), r"momentum must be a number in \[0.0, 0.999\], got 1.0"),
    (dict(project="yes"), "project must be True or False, got 'yes'"),
    (dict(steps=0), r"steps must be an int in \[1, 2000\], got 0"),
    (dict(steps=10.5), "steps must be an int"),
    (dict(start_angle=270.0), "start_angle must be a number"),
])  # fmt: skip
def test_invalid_values_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        norm_growth(**kwargs)


def test_widget_redraws_the_curves_of_its_controls():
    widget = scale_invariance_widget(steps=30)
    first = widget.children[-1].value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    widget.controls["momentum"].value = 0.5
    widget.controls["project"].value = True
    assert widget.drawn is norm_growth(0.1, 0.5, True, 30)  # the cached curves of the current controls
    assert widget.children[-1].value != first


def test_draw_plots_the_computed_curves():
    curves = norm_growth(0.05, 0.5, True, 30)
    fig = draw(curves, 0.05, 0.5, True)
    assert len(fig.axes) == 3
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), curves["norm"])
    np.testing.assert_array_equal(fig.axes[1].lines[1].get_ydata(), curves["gd_effective_step"])
