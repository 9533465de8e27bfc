"""Batched random-crop (reflect padding) and horizontal-flip augmentation as one gather.

Each sample ``i`` of a ``(B, C, H, W)`` batch draws offsets ``dy_i, dx_i ~ U{0..2p}`` and a
flip bit ``f_i ~ U{0, 1}``; its output is the ``H x W`` window at ``(dy_i, dx_i)`` of the
image reflect-padded by ``p`` pixels (torch's ``"reflect"``: the edge is not repeated),
mirrored left-right if ``f_i = 1`` (the CIFAR augmentation of He et al., 2016,
arXiv:1512.03385). Mirroring the window at ``dx`` equals the window at ``2p - dx`` of the
mirrored padded image, and ``2p - dx`` has the same distribution as ``dx``, so we pad the
batch once, append its mirror image ``Q = [P, flip(P)]`` and read window rows of ``Q``:
output row ``(i, c, r)`` is the ``W`` bytes starting at flat offset
``(((i + B f_i) C + c) H_p + dy_i + r) W_p + dx_i``. One ``index_select`` over an
overlapping strided view gathers all of them: no loop over samples, no host sync.
"""

import torch
import torch.nn.functional as F


def random_crop_flip(
    x: torch.Tensor, generator: torch.Generator | None = None, padding: int = 4
) -> torch.Tensor:
    """Randomly crop each image of the ``(B, C, H, W)`` batch ``x`` from its reflect-padded
    version (``padding`` pixels per side) and flip it horizontally with probability 1/2.

    Any dtype (uint8 moves the fewest bytes); random numbers come from ``generator``, which
    must live on ``x``'s device.
    """
    if x.dim() != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W), got shape {tuple(x.shape)}")
    batch, channels, height, width = x.shape
    if not 0 <= padding < min(height, width):
        raise ValueError(
            f"padding must be in [0, {min(height, width)}) for {height}x{width} images, got {padding}"
        )
    device = x.device
    span = 2 * padding + 1
    dy = torch.randint(0, span, (batch, 1, 1), generator=generator, device=device)
    dx = torch.randint(0, span, (batch, 1, 1), generator=generator, device=device)
    flip = torch.randint(0, 2, (batch, 1, 1), generator=generator, device=device)

    padded = F.pad(x, (padding,) * 4, mode="reflect")
    both = torch.cat([padded, padded.flip(3)]).reshape(-1)
    padded_height, padded_width = height + 2 * padding, width + 2 * padding
    windows = both.as_strided((both.numel() - width + 1, width), (1, 1))  # row k = both[k : k + W]

    image = torch.arange(batch, device=device).view(-1, 1, 1) + batch * flip
    channel = torch.arange(channels, device=device).view(1, -1, 1)
    row = dy + torch.arange(height, device=device).view(1, 1, -1)
    start = ((image * channels + channel) * padded_height + row) * padded_width + dx
    return windows.index_select(0, start.reshape(-1)).view(batch, channels, height, width)
