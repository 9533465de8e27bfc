import pytest
import torch
import torch.nn.functional as F

from regkit.data import DeviceLoader, channel_stats, modular_arithmetic, random_crop_flip


def images(n=50, channels=3, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)


def epochs(loader, count):
    """Every batch of ``count`` epochs, as (x, y) pairs."""
    return [(x.clone(), y.clone()) for _ in range(count) for x, y in loader]


def same_batches(a, b):
    return len(a) == len(b) and all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True)
    )


def find_crop(padded_image, crop, padding=4):
    """(dy, dx, flipped) such that ``crop`` is that window of ``padded_image``, or None."""
    size = crop.shape[-1]
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            window = padded_image[:, dy : dy + size, dx : dx + size]
            for flipped in (False, True):
                if torch.equal(window.flip(-1) if flipped else window, crop):
                    return dy, dx, flipped
    return None


def test_batches_have_the_right_shape_dtype_and_count():
    x, y = images(50), torch.arange(50)
    loader = DeviceLoader(x, y, batch_size=16, device="cpu")
    batches = epochs(loader, 1)
    assert len(loader) == len(batches) == 3 and loader.drop_last  # shuffle -> drop the partial batch
    for xb, yb in batches:
        assert xb.shape == (16, 3, 12, 12) and xb.dtype == torch.float32 and yb.dtype == torch.int64
        assert xb.device.type == "cpu"
    assert torch.allclose(batches[0][0], x[batches[0][1]].float() / 255)  # no mean/std: just x / 255


@pytest.mark.parametrize(
    "shuffle, drop_last, sizes",
    [(True, None, [4, 4]), (False, None, [4, 4, 2]), (True, False, [4, 4, 2]), (False, True, [4, 4])],
)
def test_drop_last(shuffle, drop_last, sizes):
    loader = DeviceLoader(
        torch.arange(10.0), torch.arange(10), 4, shuffle=shuffle, drop_last=drop_last, device="cpu"
    )
    assert [len(y) for _, y in loader] == sizes and len(loader) == len(sizes)


def test_every_sample_appears_once_per_epoch_in_a_new_order():
    y = torch.arange(103)
    loader = DeviceLoader(images(103), y, 10, drop_last=False, device="cpu")
    orders = [torch.cat([yb for _, yb in loader]) for _ in range(2)]
    for order in orders:
        assert torch.equal(order.sort().values, y)
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[0], y)
    dropped = DeviceLoader(images(103), y, 10, device="cpu")
    seen = torch.cat([yb for _, yb in dropped])
    assert len(seen) == 100 and len(seen.unique()) == 100


def test_normalization_gives_zero_mean_unit_std_on_unaugmented_data():
    x = images(64)
    mean, std = channel_stats(x)
    loader = DeviceLoader(x, torch.zeros(64), 20, shuffle=False, mean=mean, std=std, device="cpu")
    everything = torch.cat([xb for xb, _ in loader]).double()
    per_channel = everything.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(per_channel.std(1, correction=0), torch.ones(3, dtype=torch.float64), atol=1e-5)
    expected = (x.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(everything, expected, atol=1e-5)


def test_same_seed_same_batches_other_seed_other_batches():
    x, y = images(40), torch.arange(40)
    make = lambda seed: DeviceLoader(x, y, 8, augment=True, seed=seed, device="cpu")
    assert same_batches(epochs(make(3), 2), epochs(make(3), 2))
    assert not same_batches(epochs(make(3), 2), epochs(make(4), 2))


def test_crop_flip_is_a_window_of_the_reflect_padded_image():
    x = images(200, size=10, seed=1)
    out = random_crop_flip(x, torch.Generator().manual_seed(0))
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    found = [find_crop(padded[i], out[i]) for i in range(len(x))]
    assert all(f is not None for f in found)
    offsets = {(dy, dx) for dy, dx, _ in found}
    assert len(offsets) > 40 and {flipped for *_, flipped in found} == {False, True}
    assert (
        sum(torch.equal(out[i], x[i]) for i in range(len(x))) < 10
    )  # only (4, 4, unflipped) is the identity


def test_augmenting_loader_yields_shifted_or_flipped_copies_of_its_samples():
    x, y = images(30), torch.arange(30)
    loader = DeviceLoader(x, y, 10, augment=True, device="cpu")
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    changed = 0
    for xb, yb in loader:
        restored = (xb * 255).round().to(torch.uint8)
        for crop, index in zip(restored, yb, strict=True):
            assert find_crop(padded[index], crop) is not None
            changed += not torch.equal(crop, x[index])
    assert changed > 20


def test_random_crop_flip_validates_its_input():
    with pytest.raises(
        ValueError, match=r"x must be a batch of images \(B, C, H, W\), got shape \(3, 8, 8\)"
    ):
        random_crop_flip(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"padding must be in \[0, 4\) for 4x4 images, got 4"):
        random_crop_flip(torch.zeros(1, 1, 4, 4))


@pytest.mark.parametrize("stop_after", [0, 3, 5, 7])  # 5 batches per epoch: 5 is an epoch boundary
def test_state_dict_resume_reproduces_the_uninterrupted_batches(stop_after):
    x, y = images(52), torch.arange(52)
    make = lambda: DeviceLoader(x, y, 10, augment=True, seed=7, device="cpu")
    reference = epochs(make(), 3)

    first, consumed = make(), []
    while len(consumed) < stop_after:
        for batch in first:
            consumed.append(batch)
            if len(consumed) == stop_after:
                break
    state = first.state_dict()
    assert state == {"epoch": stop_after // 5, "batch": stop_after % 5}

    resumed = make()
    resumed.load_state_dict(state)
    rest = []
    while len(consumed) + len(rest) < len(reference):
        rest.extend(resumed)
    assert same_batches(consumed + rest, reference)
    assert same_batches(consumed + epochs(first, 3)[: len(reference) - stop_after], reference)  # carrying on


def test_set_epoch_jumps_to_that_epoch():
    x, y = images(20), torch.arange(20)
    walked = DeviceLoader(x, y, 5, augment=True, device="cpu")
    epochs(walked, 2)
    assert walked.epoch == 2 and walked.state_dict() == {"epoch": 2, "batch": 0}
    jumped = DeviceLoader(x, y, 5, augment=True, device="cpu")
    jumped.set_epoch(2)
    assert same_batches(epochs(walked, 1), epochs(jumped, 1))
    with pytest.raises(ValueError, match=r"state batch=9 is outside \[0, 4\]"):
        jumped.load_state_dict({"epoch": 0, "batch": 9})


def test_tokens_pass_through_and_full_batch_yields_the_whole_set():
    data = modular_arithmetic(p=13)
    loader = DeviceLoader(data.x_train, data.y_train, batch_size=10**6, device="cpu")
    ((x, y),) = epochs(loader, 1)
    assert len(loader) == 1 and x.dtype == torch.int64 and x.shape == data.x_train.shape
    order = x[:, 0] * 13 + x[:, 1]
    expected_order = data.x_train[:, 0] * 13 + data.x_train[:, 1]
    assert torch.equal(order.sort().values, expected_order.sort().values)
    lookup = dict(zip(expected_order.tolist(), data.y_train.tolist(), strict=True))
    assert [lookup[k] for k in order.tolist()] == y.tolist()  # labels travel with their tokens


def test_channels_last_output():
    loader = DeviceLoader(images(8), torch.zeros(8), 4, channels_last=True, device="cpu")
    x, _ = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"augment": True, "x": torch.zeros(8, 3, dtype=torch.int64)},
            r"augment=True needs images \(N, C, H, W\), got x of shape \(8, 3\)",
        ),
        ({"mean": (0.5,) * 3}, "give both mean and std or neither"),
        ({"mean": (0.5,), "std": (0.2,)}, "one value per channel"),
        ({"mean": (0.5,) * 3, "std": (0.2, 0.0, 0.2)}, "std must be positive"),
        ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
        ({"y": torch.zeros(7)}, "same number"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    args = {"x": images(8), "y": torch.zeros(8), "batch_size": 4, "device": "cpu"} | kwargs
    with pytest.raises(ValueError, match=message):
        DeviceLoader(**args)


@pytest.mark.cuda
def test_no_host_synchronisation_per_batch_on_cuda():
    x, y = images(256, size=32), torch.arange(256)
    loader = DeviceLoader(x, y, 64, augment=True, mean=(0.5,) * 3, std=(0.25,) * 3, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = epochs(loader, 2)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(batches) == 8 and batches[0][0].is_cuda
