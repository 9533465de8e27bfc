"""regkit.data.label_noise: symmetric noise on training labels, and the validation split."""

import pytest
import torch

from regkit.data import synthetic_images
from regkit.data.label_noise import symmetric_label_noise, validation_split, with_label_noise


def test_exact_fraction_wrong_and_only_where_masked():
    labels = torch.arange(1000) % 10
    noisy, mask = symmetric_label_noise(labels, 0.4, 10, seed=3)
    assert int(mask.sum()) == 400
    assert torch.equal(noisy != labels, mask)  # a masked label always changes, no other one does
    assert torch.equal(labels, torch.arange(1000) % 10)  # the input is not modified
    assert int(noisy.min()) >= 0 and int(noisy.max()) < 10


def test_noise_is_symmetric_over_the_other_classes():
    labels = torch.zeros(30_000, dtype=torch.int64)
    noisy, mask = symmetric_label_noise(labels, 0.9, 10, seed=0)
    counts = torch.bincount(noisy[mask], minlength=10).double() / int(mask.sum())
    assert counts[0] == 0  # never the true class
    assert torch.allclose(counts[1:], torch.full((9,), 1 / 9, dtype=torch.float64), atol=0.01)


def test_deterministic_per_seed():
    labels = torch.arange(500) % 7
    a, mask_a = symmetric_label_noise(labels, 0.3, 7, seed=1)
    b, mask_b = symmetric_label_noise(labels, 0.3, 7, seed=1)
    c, mask_c = symmetric_label_noise(labels, 0.3, 7, seed=2)
    assert torch.equal(a, b) and torch.equal(mask_a, mask_b)
    assert not torch.equal(mask_a, mask_c)


def test_edge_fractions():
    labels = torch.arange(10) % 2
    assert not symmetric_label_noise(labels, 0.0, 2, seed=0)[1].any()
    noisy, mask = symmetric_label_noise(labels, 1.0, 2, seed=0)
    assert mask.all() and torch.equal(noisy, 1 - labels)  # two classes: the other one


@pytest.mark.parametrize("kwargs, message", [
    (dict(fraction=1.5), r"fraction must be in \[0.0, 1.0\], got 1.5"),
    (dict(num_classes=1), "num_classes must be an int >= 2"),
    (dict(labels=torch.arange(4.0)), "labels must be a 1-D int64 tensor, got torch.float32"),
    (dict(labels=torch.tensor([0, 5])), r"labels must lie in \[0, 3\), got \[0, 5\]"),
])
def test_bad_arguments(kwargs, message):
    args = dict(labels=torch.tensor([0, 1, 2]), fraction=0.5, num_classes=3, seed=0) | kwargs
    with pytest.raises(ValueError, match=message):
        symmetric_label_noise(**args)


def test_with_label_noise_leaves_the_test_labels_alone():
    data = synthetic_images()
    noisy, mask = with_label_noise(data, 0.4, seed=0)
    assert torch.equal(noisy.y_test, data.y_test) and torch.equal(noisy.x_test, data.x_test)
    assert torch.equal(noisy.x_train, data.x_train)
    assert torch.equal(noisy.y_train != data.y_train, mask)
    assert int(mask.sum()) == round(0.4 * len(data.y_train))
    assert "40% label noise, seed 0" in noisy.name


def test_validation_split_uses_only_training_images():
    data = synthetic_images()
    n = len(data.x_train)
    split = validation_split(data, 100, train_size=200)
    assert torch.equal(split.x_train, data.x_train[:200]) and torch.equal(split.y_train, data.y_train[:200])
    assert torch.equal(split.x_test, data.x_train[n - 100:]) and torch.equal(split.y_test, data.y_train[n - 100:])
    assert len(validation_split(data, 100).x_train) == n - 100
    with pytest.raises(ValueError, match=rf"train_size must be an int in \[1, {n - 100}\]"):
        validation_split(data, 100, train_size=n)
    with pytest.raises(ValueError, match=rf"val_size must be an int in \[1, {n - 1}\]"):
        validation_split(data, n)
