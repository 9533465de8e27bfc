import re

import torch
import torch.nn.functional as F

from regkit.bench import loader as bench


def test_baseline_dataset_does_the_same_augmentation():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    dataset = bench.PerSampleCropFlip(x, torch.arange(4))
    mean, std = torch.tensor(bench.MEAN).view(3, 1, 1), torch.tensor(bench.STD).view(3, 1, 1)
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    for i in range(4):
        image, label = dataset[i]
        crop = ((image * std + mean) * 255).round().to(torch.uint8)
        windows = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(9) for dx in range(9)]
        assert label == i and any(torch.equal(crop, w) or torch.equal(crop, w.flip(-1)) for w in windows)


def test_quick_run_prints_the_table_with_ratios(capsys):
    bench.main(["--quick", "--batch-sizes", "64", "--workers", "0", "--threads", "1"])
    out = capsys.readouterr().out
    assert re.search(r"cpu\s+64\s+DeviceLoader \(augment\)\s+[\d,]+\s+1\.0x", out)
    assert re.search(r"cpu\s+64\s+DataLoader \(workers=0\)\s+[\d,]+\s+\d+\.\dx", out)
