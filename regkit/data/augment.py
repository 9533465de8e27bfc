"""Random crop (reflect padding) + horizontal flip for a whole batch as one gather.

Each sample ``i`` draws offsets ``dy_i, dx_i ~ U{0..2p}`` and a flip bit ``f_i ~ U{0, 1}``;
its output is the ``H x W`` window at ``(dy_i, dx_i)`` of the image reflect-padded by ``p``
pixels (torch's ``"reflect"``: the edge is not repeated), mirrored left-right if ``f_i = 1``
(the CIFAR augmentation of He et al., 2016, arXiv:1512.03385).

Mirroring the window at ``dx`` equals taking the window at ``2p - dx`` of the mirrored padded
image, and ``2p - dx`` has the same distribution as ``dx``. So ``PaddedMirrors`` stores, once,
``Q = [pad(x), flip(pad(x))]`` (``2 (H+2p)(W+2p) / (HW)`` times the bytes of ``x``: 3.1x for
32x32) and every crop row is ``W`` consecutive elements of ``Q``: output row ``(i, c, r)`` of
sample ``n_i`` starts at flat offset ``(((n_i + N f_i) C + c) H_p + dy_i + r) W_p + dx_i``.
One ``index_select`` over an overlapping strided view of ``Q`` gathers a whole batch,
shuffling included: no loop over samples, no host sync.
"""

import torch
import torch.nn.functional as F


class PaddedMirrors:
    """Reflect-padded copies of the images ``x`` ``(N, C, H, W)`` and of their mirror images."""

    def __init__(self, x: torch.Tensor, padding: int = 4):
        if x.dim() != 4:
            raise ValueError(f"x must be a batch of images (B, C, H, W), got shape {tuple(x.shape)}")
        n, channels, height, width = x.shape
        if not 0 <= padding < min(height, width):
            raise ValueError(
                f"padding must be in [0, {min(height, width)}) for {height}x{width} images, got {padding}"
            )
        self.n, self.channels, self.height, self.width, self.padding = n, channels, height, width, padding
        self.padded_height, self.padded_width = height + 2 * padding, width + 2 * padding
        store = x.new_empty((2, n, channels, self.padded_height, self.padded_width))
        store[0] = F.pad(x, (padding,) * 4, mode="reflect")
        store[1] = store[0].flip(-1)
        flat = store.reshape(-1)
        self._rows = flat.as_strided((flat.numel() - width + 1, width), (1, 1))  # row k = flat[k : k + W]

    def random_offsets(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(dy, dx, flip)`` for ``batch`` samples, each of shape ``(batch, 1, 1)``, drawn in this order."""
        span = 2 * self.padding + 1
        dy = torch.randint(0, span, (batch, 1, 1), generator=generator, device=device)
        dx = torch.randint(0, span, (batch, 1, 1), generator=generator, device=device)
        flip = torch.randint(0, 2, (batch, 1, 1), generator=generator, device=device)
        return dy, dx, flip

    def crops(self, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """The windows at ``(dy, dx)`` of the samples ``index``, mirrored where ``flip`` is 1."""
        batch, device = len(index), index.device
        image = index.view(-1, 1, 1) + self.n * flip
        channel = torch.arange(self.channels, device=device).view(1, -1, 1)
        row = dy + torch.arange(self.height, device=device).view(1, 1, -1)
        start = ((image * self.channels + channel) * self.padded_height + row) * self.padded_width + dx
        crops = self._rows.index_select(0, start.reshape(-1))
        return crops.view(batch, self.channels, self.height, self.width)

    def random_crops(self, index: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Randomly cropped, randomly flipped copies of the samples ``index`` (a device tensor)."""
        return self.crops(index, *self.random_offsets(len(index), generator, index.device))


def random_crop_flip(
    x: torch.Tensor, generator: torch.Generator | None = None, padding: int = 4
) -> torch.Tensor:
    """Randomly crop each image of the ``(B, C, H, W)`` batch ``x`` from its reflect-padded
    version (``padding`` pixels per side) and flip it horizontally with probability 1/2.

    Random numbers come from ``generator``, which must live on ``x``'s device.
    """
    mirrors = PaddedMirrors(x, padding)
    return mirrors.random_crops(torch.arange(len(x), device=x.device), generator)
