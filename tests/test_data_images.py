import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from regkit.data import IMAGE_DATASETS, ImageDataset, channel_stats, data_root, load_images, synthetic_images
from regkit.data.fashion_mnist import DEBIAN_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fashion():
    if not DEBIAN_DIR.exists():
        if os.environ.get("CI"):
            pytest.fail(
                f"CI must provide Fashion-MNIST in {DEBIAN_DIR} (apt-get install dataset-fashion-mnist)"
            )
        pytest.skip(f"{DEBIAN_DIR} missing (apt-get install dataset-fashion-mnist)")
    return load_images("fashion_mnist", root=REPO_ROOT / "no-such-data-root", download=False, verbose=False)


def test_fashion_mnist_loads_from_the_debian_package(fashion):
    assert fashion.name == "fashion_mnist" and fashion.source == str(DEBIAN_DIR)
    assert fashion.x_train.shape == (60000, 1, 28, 28) and fashion.x_test.shape == (10000, 1, 28, 28)
    assert fashion.x_train.dtype == torch.uint8 and fashion.y_train.dtype == torch.int64
    assert fashion.num_classes == 10 and fashion.in_channels == 1 and fashion.image_size == 28
    # The published splits are balanced: 6,000 training and 1,000 test images per class.
    assert torch.equal(torch.bincount(fashion.y_train), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(fashion.y_test), torch.full((10,), 1000))
    assert fashion.x_train.float().std() > 50  # real images, not blanks


def test_auto_falls_back_to_fashion_mnist_and_says_why(tmp_path, capsys):
    if not DEBIAN_DIR.exists() and not os.environ.get("CI"):
        pytest.skip(f"{DEBIAN_DIR} missing")
    dataset = load_images("auto", root=tmp_path, download=False, train_size=100)
    out = capsys.readouterr().out
    assert dataset.name == "fashion_mnist" and len(dataset.x_train) == 100
    assert f"using fashion_mnist: 100 train / 10000 test images 1x28x28, 10 classes, from {DEBIAN_DIR}" in out
    assert f"auto chose full Fashion-MNIST: there is no {tmp_path / 'cifar-10-python.tar.gz'}, and auto never downloads CIFAR-10." in out


def test_train_size_keeps_the_first_images_and_recomputes_statistics():
    small = load_images("synthetic", train_size=40, verbose=False)
    reference = synthetic_images()
    assert torch.equal(small.x_train, reference.x_train[:40]) and torch.equal(
        small.y_train, reference.y_train[:40]
    )
    assert small.mean == channel_stats(reference.x_train[:40])[0] and small.mean != reference.mean
    assert torch.equal(small.x_test, reference.x_test) and small.name == "synthetic"
    with pytest.raises(
        ValueError, match=r"train_size must be an int in \[1, 512\] \(training images of synthetic\), got 0"
    ):
        load_images("synthetic", train_size=0, verbose=False)


def test_unknown_name_lists_the_choices():
    with pytest.raises(
        ValueError, match="unknown image dataset name='mnist'; choose one of: " + ", ".join(IMAGE_DATASETS)
    ):
        load_images("mnist")


def test_data_root_argument_then_environment_then_repo_data(tmp_path, monkeypatch):
    monkeypatch.delenv("REGKIT_DATA_DIR", raising=False)
    assert data_root() == REPO_ROOT / "data"
    monkeypatch.setenv("REGKIT_DATA_DIR", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"


def test_channel_stats_match_a_direct_float_computation():
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    mean, std = channel_stats(x)
    direct = x.double().div(255).transpose(0, 1).reshape(3, -1)
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), direct.mean(1), rtol=0, atol=1e-12)
    assert torch.allclose(
        torch.tensor(std, dtype=torch.float64), direct.std(1, correction=0), rtol=0, atol=1e-12
    )


def test_image_dataset_validates_its_tensors():
    x, y = torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(
        ValueError, match=r"x_train must be uint8 square images \(N, C, H, H\), got torch.float32"
    ):
        ImageDataset("t", x.float(), y, x, y, 10, "test")
    with pytest.raises(ValueError, match=r"y_test must be int64 of shape \(4,\)"):
        ImageDataset("t", x, y, x, y.int(), 10, "test")
    with pytest.raises(ValueError, match=r"y_train has labels outside \[0, 2\)"):
        ImageDataset("t", x, y + 2, x, y, 2, "test")


def test_synthetic_images_are_balanced_deterministic_and_seeded():
    a, b, c = synthetic_images(seed=0), synthetic_images(seed=0), synthetic_images(seed=1)
    assert a.x_train.shape == (512, 3, 32, 32) and a.x_test.shape == (256, 3, 32, 32)
    for labels in (a.y_train, a.y_test):
        counts = torch.bincount(labels, minlength=10)
        assert counts.sum() == len(labels) and counts.max() - counts.min() <= 1
    assert not torch.equal(a.y_train[:10], torch.arange(10))  # shuffled, not in class order
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    grey = synthetic_images(n_train=20, n_test=10, channels=1, size=28, num_classes=4)
    assert grey.x_train.shape == (20, 1, 28, 28) and grey.num_classes == 4
    with pytest.raises(ValueError, match="size must be an int >= 8, got 4"):
        synthetic_images(size=4)


def test_a_small_cnn_learns_the_synthetic_set_in_a_few_dozen_steps():
    torch.manual_seed(0)
    data = synthetic_images()
    train, test = data.loaders(batch_size=64, device="cpu", augment=True)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(4),
        torch.nn.Flatten(), torch.nn.Linear(16 * 8 * 8, 10),
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps = 0
    while steps < 40:
        for x, y in train:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            steps += 1
    assert train.epoch == 5  # 8 batches of 64 per epoch
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in test)
    assert correct / len(data.x_test) > 0.9
