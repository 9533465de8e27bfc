"""``python -m regkit.bench loader [--quick]``: images/s of ``DeviceLoader`` (batched on-device
crop+flip+normalize) vs ``torch.utils.data.DataLoader`` over a per-sample augmentation
``Dataset`` doing the same work (reflect pad 4, random crop, random flip, normalize) with
0 and 2 workers, on CIFAR-shaped uint8 data, on the CPU and on CUDA when available.
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from regkit.data import DeviceLoader
from regkit.device import synchronize

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


class PerSampleCropFlip(Dataset):
    """The usual per-sample pipeline: one image at a time, in Python, on the CPU."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, padding: int = 4):
        self.x, self.y, self.padding = x, y, padding
        self.mean = torch.tensor(MEAN).view(-1, 1, 1)
        self.std = torch.tensor(STD).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        image = self.x[i]
        _, height, width = image.shape
        padded = F.pad(image.unsqueeze(0), (self.padding,) * 4, mode="reflect")[0]
        dy, dx = torch.randint(0, 2 * self.padding + 1, (2,)).tolist()
        image = padded[:, dy : dy + height, dx : dx + width]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return (image.float() / 255 - self.mean) / self.std, self.y[i]


def images_per_second(batches, device: torch.device, n_images: int, min_seconds: float) -> float:
    """Throughput over at least ``n_images`` images and ``min_seconds`` after a warm-up batch;
    every batch ends on ``device``."""
    iterator = iter(batches)
    next(iterator)  # starts workers / moves the split to the device
    synchronize(device)
    seen, start = 0, time.perf_counter()
    while seen < n_images or time.perf_counter() - start < min_seconds:
        try:
            x, y = next(iterator)
        except StopIteration:
            iterator = iter(batches)
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        seen += len(x)
    synchronize(device)
    return seen / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m regkit.bench loader", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few-second run with fewer images")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> None:
    n_data, n_images, min_seconds = (2048, 1024, 0.1) if args.quick else (16384, 8192, 1.0)
    x = torch.randint(
        0, 256, (n_data, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    y = torch.randint(0, 10, (n_data,))
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    dataset = PerSampleCropFlip(x, y)

    print(f"CIFAR-shaped uint8 data {tuple(x.shape)}, >= {n_images} images and {min_seconds} s per row, "
          f"torch {torch.__version__}, {args.threads} threads")  # fmt: skip
    print(f"{'device':<7}{'batch':>6}  {'loader':<28}{'images/s':>12}{'DeviceLoader speed-up':>24}")
    for device in devices:
        for batch_size in args.batch_sizes:
            ours = DeviceLoader(x, y, batch_size, augment=True, device=device, mean=MEAN, std=STD)
            ours_rate = images_per_second(ours, device, n_images, min_seconds)
            print(
                f"{device.type:<7}{batch_size:>6}  {'DeviceLoader (augment)':<28}{ours_rate:>12,.0f}{'1.0x':>24}"
            )
            for workers in args.workers:
                baseline = DataLoader(
                    dataset, batch_size, shuffle=True, drop_last=True, num_workers=workers,
                    pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                )  # fmt: skip
                rate = images_per_second(baseline, device, n_images, min_seconds)
                label = f"DataLoader (workers={workers})"
                print(f"{device.type:<7}{batch_size:>6}  {label:<28}{rate:>12,.0f}{ours_rate / rate:>23.1f}x")
