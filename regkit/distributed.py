"""Data-parallel training with torch.distributed: the process group, reductions, sharded-tensor checks.

Under ``torchrun --nproc-per-node N`` every process runs the same script; ``init_from_env()``
joins the process group (NCCL on CUDA, else gloo) and :func:`regkit.train.train` then wraps
the model in ``DistributedDataParallel``: each rank computes the gradient of its slice of the
global batch (``DeviceLoader(..., rank=rank(), world_size=world_size())``) and DDP averages the
gradients, so every rank applies the update of the whole global batch. Without an initialized
process group every function here is the single-process identity (rank 0 of 1).

Sharded parameters (FSDP, DTensor) hold a slice of each tensor per rank. Element-wise updates
(SGD, Adam, AdamW) are unchanged on a slice, but per-tensor norms are not: ``||w||^2`` of a
sharded ``w`` is the sum over ranks of each shard's ``||w_r||^2``. :func:`reject_sharded`
refuses such tensors in the optimizers that need whole-tensor norms.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from regkit.device import resolve_device


def is_distributed() -> bool:
    """Whether a default process group is initialized (e.g. under torchrun after :func:`init_from_env`)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0: the process that logs, prints and writes checkpoints."""
    return rank() == 0


def local_rank() -> int:
    """This process's index on its node (torchrun's ``LOCAL_RANK``; the rank when unset)."""
    return int(os.environ.get("LOCAL_RANK", rank()))


def rank_device(device: str | torch.device | None = None) -> torch.device:
    """This process's device: ``device`` resolved (None: cuda, mps or cpu); under torch.distributed a
    ``cuda`` without index becomes ``cuda:LOCAL_RANK``, one GPU per process."""
    device = resolve_device(device)
    if is_distributed() and device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank())
    return device


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's variables (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``, ...).

    ``backend=None``: NCCL when CUDA is available, else gloo. Returns False (and does nothing)
    when ``WORLD_SIZE`` is unset, i.e. outside torchrun, or when the group exists already.
    """
    if is_distributed() or "WORLD_SIZE" not in os.environ:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend)
    return True


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over the ranks, in place (unchanged in a single process); returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients(params: Iterable[Tensor]) -> None:
    """Replace each ``.grad`` by its mean over the ranks (what DDP does during backward).

    For gradients computed outside a DDP forward/backward (e.g. a ``grad_fn`` that accumulates
    micro-batches through ``torch.func``). One all-reduce over the flattened gradients.
    """
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    torch._foreach_copy_(grads, [f.view_as(g) for f, g in zip(flat.split([g.numel() for g in grads]), grads,
                                                                 strict=True)])


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (e.g. BatchNorm running statistics) to every rank."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, src)


def sharding(tensor: Tensor) -> str | None:
    """How ``tensor`` is split across ranks, or None when each rank holds all of it.

    Detects DTensors with a ``Shard`` or ``Partial`` placement (FSDP2's ``fully_shard``, tensor
    parallelism) and FSDP1's flattened parameters (``FlatParameter``, and the views FSDP1 hands
    out with ``use_orig_params=True``).
    """
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed support
        DTensor = ()  # noqa: N806
    if isinstance(tensor, DTensor):
        split = [p for p in tensor.placements if not p.is_replicate()]
        return f"a DTensor with placements {tuple(tensor.placements)}" if split else None
    if getattr(tensor, "_fsdp_flattened", False):
        return "an FSDP flattened (sharded) parameter"
    return None


def reject_sharded(params: Iterable[Tensor], owner: str, names: Sequence[str] | None = None) -> None:
    """ValueError if one of ``params`` is sharded: ``owner`` computes whole-tensor norms, which a shard lacks.

    ``names``: the parameters' names for the message (default ``params[i]``).
    """
    for i, p in enumerate(params):
        kind = sharding(p)
        if kind is not None:
            name = names[i] if names is not None else f"params[{i}]"
            raise ValueError(
                f"{owner} got {name} of shape {tuple(p.shape)}, {kind}. {owner} computes norms of whole "
                "tensors, and each rank holds only a shard, so the norms would be per shard and wrong. "
                "Use unsharded parameters (DDP: regkit.train under torchrun); an FSDP version would need an "
                "all-reduce of the per-tensor squared norms (and sums) across shards before using them."
            )
