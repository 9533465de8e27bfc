"""A data loader that keeps a whole split on the device and builds batches there.

The split is moved to the device once. Each epoch draws a permutation on the device and
each batch is an ``index_select`` of it; uint8 images become float32 ``x / 255``, normalized
per channel ``(x - mean) / std``. With ``augment=True`` (random crop with 4-pixel reflect
padding + horizontal flip) the loader also keeps padded and mirrored copies of the split
(3.1x its bytes for 32x32 images) and gathers each augmented batch, shuffle included, in one
``index_select`` (see ``regkit.data.augment``). Non-image tensors (e.g. int64 token
sequences) pass through unchanged; ``batch_size >= N`` yields the whole set every epoch
(full-batch training).

Randomness is stateless: the permutation of epoch ``e`` and the augmentation of batch
``b`` come from a device ``torch.Generator`` seeded with a hash of ``(seed, e)`` and
``(seed, e, b)``. The loader's whole state is the position ``{"epoch": e, "batch": b}``
of the next batch, so ``load_state_dict`` resumes exactly the batches an uninterrupted
run would produce. No ``.item()`` or branch on tensor values: no host sync per batch.

Data parallelism: with ``rank=r, world_size=W`` (e.g. under torchrun) ``batch_size`` is the
global batch. Every rank draws the same permutation and the same augmentation for the whole
global batch, and yields its contiguous slice ``[floor(r n / W), floor((r+1) n / W))`` of each
batch of ``n`` samples; so every sample is loaded and augmented exactly as in a single process,
whatever ``W``, and the ranks' slices of a batch are disjoint and cover it.
"""

import hashlib
from collections.abc import Iterator

import torch

from regkit._validate import check_int
from regkit.data.augment import PaddedMirrors
from regkit.device import resolve_device


def stream_seed(seed: int, *position: int) -> int:
    """A 63-bit seed for the random stream at ``position`` (e.g. epoch, batch) of run ``seed``."""
    key = "/".join(str(int(v)) for v in (seed, *position)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


class DeviceLoader:
    """Iterate ``(x, y)`` batches of a device-resident split. Example::

        loader = DeviceLoader(x_uint8, y, batch_size=512, augment=True, mean=m, std=s)
        for epoch in range(3):
            for xb, yb in loader:  # one epoch from the current position, then epoch += 1
                ...
        state = loader.state_dict()  # {"epoch": 3, "batch": 0}

    ``drop_last=None`` drops the last partial batch when shuffling (training) and keeps it
    otherwise (evaluation). ``device=None``: CUDA if available, else MPS, else CPU.
    ``rank``/``world_size``: this process's slice of every (global) batch, see the module
    docstring; with ``drop_last`` the batch size must be a multiple of ``world_size``, so that
    every rank's slice has the same size and DDP's gradient average is the global batch's mean.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        augment: bool = False,
        drop_last: bool | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"x and y must hold the same number (>0) of samples, got {len(x)} and {len(y)}")
        check_int("batch_size", batch_size)
        self.is_image = x.dim() == 4
        if augment and not self.is_image:
            raise ValueError(f"augment=True needs images (N, C, H, W), got x of shape {tuple(x.shape)}")
        if (mean is None) != (std is None):
            raise ValueError(f"give both mean and std or neither, got mean={mean!r}, std={std!r}")
        if mean is not None and not (self.is_image and len(mean) == len(std) == x.shape[1]):
            raise ValueError(
                f"mean and std need one value per channel of images (N, C, H, W); got {len(mean)} and "
                f"{len(std)} values for x of shape {tuple(x.shape)}"
            )
        if channels_last and not self.is_image:
            raise ValueError(f"channels_last=True needs images (N, C, H, W), got x of shape {tuple(x.shape)}")

        self.device = resolve_device(device)
        self.x, self.y = x.to(self.device), y.to(self.device)
        self._mirrors = PaddedMirrors(self.x) if augment else None
        self.num_samples = len(x)
        self.batch_size = min(batch_size, self.num_samples)
        self.shuffle, self.augment, self.seed = bool(shuffle), bool(augment), int(seed)
        self.drop_last = self.shuffle if drop_last is None else bool(drop_last)
        self.channels_last = channels_last
        check_int("world_size", world_size, note="processes sharing the batch")
        check_int("rank", rank, 0, world_size - 1, note=f"this process's index, world_size={world_size}")
        if self.drop_last and self.batch_size % world_size:
            capped = " (capped at the number of samples)" if batch_size > self.num_samples else ""
            raise ValueError(
                f"batch_size={self.batch_size}{capped} is the global batch and must be a multiple of "
                f"world_size={world_size} when the last partial batch is dropped (training), so that every "
                "rank gets an equal slice"
            )
        self.rank, self.world_size = rank, world_size
        if self.is_image:
            # (x * to_unit - mean) / std == x * scale + shift
            to_unit = 1 / 255 if x.dtype == torch.uint8 else 1.0
            channels = x.shape[1]
            m = torch.tensor(mean if mean is not None else (0.0,) * channels, dtype=torch.float64)
            s = torch.tensor(std if std is not None else (1.0,) * channels, dtype=torch.float64)
            if (s <= 0).any():
                raise ValueError(f"std must be positive, got std={std!r}")
            self._scale = (to_unit / s).float().view(1, -1, 1, 1).to(self.device)
            self._shift = (-m / s).float().view(1, -1, 1, 1).to(self.device)
        self._generator = torch.Generator(device=self.device)
        self._epoch, self._batch = 0, 0

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Continue from the first batch of ``epoch``."""
        self._epoch, self._batch = int(epoch), 0

    def state_dict(self) -> dict[str, int]:
        """The position of the next batch: all the state there is (randomness is derived from it)."""
        if self._batch >= len(self):
            return {"epoch": self._epoch + 1, "batch": 0}
        return {"epoch": self._epoch, "batch": self._batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if not 0 <= batch <= len(self):
            raise ValueError(f"state batch={batch} is outside [0, {len(self)}] for this loader")
        self._epoch, self._batch = epoch, batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._batch >= len(self):
            self._epoch, self._batch = self._epoch + 1, 0
        epoch = self._epoch
        order = None
        if self.shuffle:
            self._generator.manual_seed(stream_seed(self.seed, epoch))
            order = torch.randperm(self.num_samples, generator=self._generator, device=self.device)
        for index in range(self._batch, len(self)):
            start = index * self.batch_size
            n = min(self.batch_size, self.num_samples - start)
            lo, hi = n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size  # this rank's slice
            take = torch.arange(start + lo, start + hi, device=self.device) if order is None \
                else order[start + lo:start + hi]
            y = self.y.index_select(0, take)
            if self._mirrors is None:
                x = self.x.index_select(0, take)
            else:  # offsets for the whole global batch, so a sample's crop does not depend on world_size
                self._generator.manual_seed(stream_seed(self.seed, epoch, index))
                offsets = self._mirrors.random_offsets(n, self._generator, self.device)
                x = self._mirrors.crops(take, *(o[lo:hi] for o in offsets))
            if self.is_image:
                x = self._normalize(x)
            self._batch = index + 1
            yield x, y
        self._epoch, self._batch = epoch + 1, 0

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        # x is a fresh gather (never a view of the split), so the in-place ops are safe.
        x = x.to(torch.float32).mul_(self._scale).add_(self._shift)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __repr__(self) -> str:
        return (
            f"DeviceLoader({self.num_samples} samples, batch_size={self.batch_size}, batches={len(self)}, "
            f"shuffle={self.shuffle}, augment={self.augment}, drop_last={self.drop_last}, "
            f"device={self.device}, epoch={self._epoch}, batch={self._batch}"
            + (f", rank={self.rank}, world_size={self.world_size})" if self.world_size > 1 else ")")
        )
