"""The gradient-norm penalty widget: its numbers against closed-form facts, and the widget headless."""

import numpy as np
import pytest
import torch

from regkit.widgets import grad_norm as demo_module
from regkit.widgets.gallery import controls as gallery_controls
from regkit.widgets.grad_norm import grad_norm_demo, grad_norm_widget, loss_surface

torch.set_num_threads(1)
POINT = demo_module.DEFAULT_POINT


def gradient(point):
    w = torch.tensor(point, dtype=torch.float64, requires_grad=True)
    return torch.autograd.grad(loss_surface(w), w)[0]


def hessian_and_gradient(point):
    w = torch.tensor(point, dtype=torch.float64)
    return torch.autograd.functional.hessian(loss_surface, w), gradient(point)


def test_directions_are_the_gnp_combinations_and_the_exact_hv_matches_the_hessian():
    H, g = hessian_and_gradient(POINT)
    v = g / g.norm()
    r, alpha = 0.2, 0.6
    demo = grad_norm_demo(r, alpha, POINT)
    np.testing.assert_allclose(demo.gradient, g.numpy(), rtol=1e-12)
    np.testing.assert_allclose(demo.hv_exact, (H @ v).numpy(), rtol=1e-12)
    np.testing.assert_allclose(demo.perturbed, (torch.tensor(POINT, dtype=torch.float64) + r * v).numpy(), rtol=1e-14)
    sam = gradient(demo.perturbed)
    np.testing.assert_allclose(demo.sam_gradient, sam.numpy(), rtol=1e-12)
    np.testing.assert_allclose(demo.update, (1 - alpha) * demo.gradient + alpha * demo.sam_gradient, rtol=1e-12)
    np.testing.assert_allclose(demo.exact_update, demo.gradient + alpha * r * demo.hv_exact, rtol=1e-12)
    np.testing.assert_allclose(grad_norm_demo(r, 0.0, POINT).update, demo.gradient, rtol=0)  # alpha = 0: plain
    np.testing.assert_allclose(grad_norm_demo(r, 1.0, POINT).update, demo.sam_gradient, rtol=0)  # alpha = 1: SAM


def test_error_curves_have_the_derived_orders_and_float32_bottoms_out_at_a_larger_r():
    demo = grad_norm_demo()
    radii = demo.radii
    truncation = (radii >= 1e-4) & (radii <= 1e-2)
    for difference, order in (("forward", 1.0), ("central", 2.0)):
        slope = np.polyfit(np.log(radii[truncation]), np.log(demo.curves[f"float64 {difference}"][truncation]), 1)[0]
        assert abs(slope - order) < 0.1, (difference, slope)
    best = {dtype: radii[np.argmin(demo.curves[f"{dtype} central"])] for dtype in ("float32", "float64")}
    assert best["float32"] > 30 * best["float64"], best  # optimum r ~ eps^(1/3): 5e-3 vs 6e-6
    assert demo.curves["float32 forward"][0] > 0.1  # r = 1e-8 in float32: round-off swamps H v


def test_widget_redraws_for_every_control_and_rejects_bad_values():
    widget = grad_norm_widget()
    controls = gallery_controls(widget)
    assert set(controls) == {"r", "alpha", "precision"}
    image, readout = widget.children[-2], widget.children[-1]
    assert image.value[:8] == b"\x89PNG\r\n\x1a\n" and "r = 1.0e-01" in readout.value
    seen = {(image.value, readout.value)}
    for name, value in (("r", 1e-3), ("alpha", 1.5), ("precision", "float32")):
        controls[name].value = value
        assert (image.value, readout.value) not in seen, name
        seen.add((image.value, readout.value))
    assert "float32, r = 1.0e-03, α = 1.5" in readout.value


@pytest.mark.parametrize("kwargs, message", [
    (dict(r=0.0), r"r=0.0 is not valid; it must be a finite number > 0"),
    (dict(r=float("nan")), r"r=nan is not valid"),
    (dict(alpha=-0.5), r"alpha=-0.5 is not valid; it must be a finite number >= 0"),
    (dict(dtype="float16"), r"dtype='float16' is not valid; choose one of \('float32', 'float64'\)"),
    (dict(point=(1.0,)), r"point=\(1.0,\) is not valid; it must be two finite numbers"),
])
def test_invalid_values_raise_with_the_argument_and_valid_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        grad_norm_demo(**kwargs)
    with pytest.raises(ValueError, match=message):
        grad_norm_widget(**kwargs)
