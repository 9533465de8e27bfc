r"""Normalized GD and grafting: the direction of one gradient with the length of another.

Novack et al. (ICLR 2023, "Disentangling the mechanisms behind implicit regularization in SGD")
ask whether a large-batch run recovers small-batch generalization when it only borrows the
small batch's step length. With ``g`` the gradient in ``.grad`` (the large-batch gradient
``g_B``, e.g. accumulated by ``regkit.penalties.accumulate_microbatches``)::

    NGD                   w <- w - lr * g / max(||g||, eps)
    iterative grafting    w <- w - lr * ||g_M|| * g / max(||g||, eps)   g_M: a small-batch gradient
                                                                        at the current point
    external grafting     w <- w - lr * m_t * g / max(||g||, eps)       m_t: ||g_M|| recorded at
                                                                        step t of a separate
                                                                        small-batch run

``norm="global"``: one norm over every parameter (and one magnitude); ``norm="layer"``: each
parameter tensor separately (one magnitude per tensor). A zero gradient gives a zero step. A
non-finite norm or magnitude (a NaN/inf gradient entry) skips the step of every tensor it scales
(all of them with ``norm="global"``): the weights stay as they were, decided on the device by a
mask (no host sync).
The grafting idea (magnitude of one optimizer, direction of another) is from Agarwal et al.,
"Disentangling Adaptive Gradient Methods from Learning Rates" (2020).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor
from torch.optim import Optimizer

from regkit._validate import check_number
from regkit.distributed import reject_sharded
from regkit.optim._base import (
    ChecksLoadedState,
    KeepsOwnAttributes,
    kept_if_valid,
    param_names,
    reject_unsupported_dtypes,
)
from regkit.optim._functional import each

NORMS = ("global", "layer")


def step_norms(tensors: list[Tensor], *, norm: str, foreach: bool) -> list[Tensor]:
    """``||t||`` per tensor (``norm="layer"``) or one norm over all of them (``"global"``, accumulated in at
    least float32), as 0-dim device tensors."""
    norms = each("norm", tensors, foreach=foreach)
    if norm == "layer":
        return norms
    dtype = torch.promote_types(norms[0].dtype, torch.float32)
    return [torch.linalg.vector_norm(torch.stack([n.to(norms[0].device, dtype) for n in norms]))]


def graft_scales(
    grads: list[Tensor], magnitudes: list[Tensor] | None, *, norm: str, eps: float, foreach: bool
) -> list[Tensor]:
    """``s = m / max(||g||, eps)``: one 0-dim tensor for ``norm="global"``, one per tensor for
    ``norm="layer"``; NaN where ``||g||`` is not finite (then ``m / ||g||`` may be 0 while the step
    ``s * g`` is not). ``magnitudes``: None (``m = 1``, NGD) or aligned with the result. A division,
    not ``m * (1 / ||g||)``: ``m == ||g||`` gives ``s == 1`` exactly."""
    norms = step_norms(grads, norm=norm, foreach=foreach)
    if magnitudes is None:
        magnitudes = [torch.ones((), dtype=n.dtype, device=n.device) for n in norms]
    return [
        torch.where(n.isfinite(), m.to(n.device, n.dtype) / n.clamp_min(eps), torch.nan)
        for m, n in zip(magnitudes, norms, strict=True)
    ]


def apply_scaled_steps(
    params: list[Tensor], grads: list[Tensor], scales: list[Tensor], *, lr: float, foreach: bool
):
    """``w <- w - lr * s * g``, with one scale for all tensors or one per tensor; no step where ``s`` is
    not finite (a mask on the device, no host sync)."""
    scales = scales * len(grads) if len(scales) == 1 else scales
    steps = each("mul", grads, scales, foreach=foreach)
    each("masked_fill_", steps, [~s.isfinite() for s in scales], 0.0, foreach=False)  # torch has no foreach form
    each("add_", params, steps, alpha=-lr, foreach=foreach)


def graft_update(
    params: list[Tensor],
    grads: list[Tensor],
    magnitudes: list[Tensor] | None,
    *,
    lr: float,
    norm: str,
    eps: float,
    foreach: bool,
) -> None:
    """``w <- w - lr * m * g / max(||g||, eps)`` over lists of tensors (the math of Graft and NGD)."""
    scales = graft_scales(grads, magnitudes, norm=norm, eps=eps, foreach=foreach)
    apply_scaled_steps(params, grads, scales, lr=lr, foreach=foreach)


def gradient_magnitude(params: Iterable[Tensor], norm: str = "global") -> Tensor:
    """Norm of the gradients in ``.grad``: 0-dim (``global``) or one per tensor (``layer``);
    a parameter without a gradient counts as zero."""
    _check_norm(norm)
    params = list(params)
    norms = torch.stack(
        [torch.linalg.vector_norm(p.grad) if p.grad is not None else p.new_zeros(()) for p in params]
    )
    return torch.linalg.vector_norm(norms) if norm == "global" else norms


class GraftingSchedule:
    """Magnitudes of a small-batch run, one row per step, for external grafting.

    Call ``record(model.parameters())`` after each backward of the small-batch run; row ``t``
    (``schedule[t]``) is then ``||g_M||`` at step ``t`` (0-dim, or one norm per tensor with
    ``norm="layer"``). ``magnitudes`` stacks the rows; ``GraftingSchedule(norm, rows)`` rebuilds
    a saved schedule.
    """

    def __init__(self, norm: str = "global", rows: Iterable[Tensor] = ()):
        _check_norm(norm)
        self.norm = norm
        self.rows = list(rows)

    def record(self, params: Iterable[Tensor]) -> None:
        self.rows.append(gradient_magnitude(params, self.norm))

    @property
    def magnitudes(self) -> Tensor:
        return torch.stack(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, step: int) -> Tensor:
        if not 0 <= step < len(self.rows):
            raise IndexError(
                f"step {step} is outside the grafting schedule of {len(self.rows)} recorded steps"
            )
        return self.rows[step]


class Graft(KeepsOwnAttributes, ChecksLoadedState, Optimizer):
    r"""Grafting: ``w <- w - lr * m * g / max(||g||, eps)`` (see the module docstring).

    The magnitude ``m`` of each step comes from ``schedule[t]`` if a ``GraftingSchedule`` is
    given (external grafting; ``t`` = steps taken so far, kept in ``state["step"]`` so it survives
    ``state_dict``), otherwise from ``set_magnitude(m)`` called before each step, e.g. in the
    closure (iterative grafting). With ``norm="layer"``, ``m`` has one entry per parameter tensor
    in the order of the optimizer's parameters (all groups). The global norm spans all groups.
    No momentum, no weight decay.

    Args: ``lr`` (float >= 0, per group), ``norm`` ("global" or "layer"), ``schedule``
    (GraftingSchedule or None), ``eps`` (1e-12, floor of the norm), ``foreach`` (None: the
    ``torch._foreach_*`` path when every parameter is on CUDA); ``norm``, ``eps`` and
    ``foreach`` are stored in every group and must be the same in all of them.

    Example (iterative grafting on micro-batch accumulation)::

        opt = Graft(model.parameters(), lr=0.1)
        stats = accumulate_microbatches(model, F.cross_entropy, x, y, 128)
        opt.set_magnitude(stats.grad_norm[0])   # ||g_M|| of one small batch, same point
        opt.step()
    """

    _shared = ("norm", "eps", "foreach")

    def __init__(
        self,
        params,
        lr: float,
        *,
        norm: str = "global",
        schedule: GraftingSchedule | None = None,
        eps: float = 1e-12,
        foreach: bool | None = None,
    ):
        if schedule is not None and not isinstance(schedule, GraftingSchedule):
            raise TypeError(f"schedule must be a GraftingSchedule or None, got {type(schedule).__name__}")
        if schedule is not None and schedule.norm != norm:
            raise ValueError(f"schedule.norm={schedule.norm!r} differs from norm={norm!r}")
        defaults = dict(lr=lr, norm=norm, eps=eps, foreach=foreach)
        _check_group(defaults)  # before params are looked at (torch.optim's order)
        self.schedule = schedule
        self._magnitude: list[Tensor] | None = None
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        """Validate the group (defaults filled in) before adding it: a rejected group is not kept."""
        group = {**self.defaults, **param_group}
        _check_group(group)
        for key in self._shared if self.param_groups else ():
            if group[key] != self.param_groups[0][key]:
                raise ValueError(
                    f"{key}={group[key]!r} differs from the first group's {key}="
                    f"{self.param_groups[0][key]!r}; every group must use the same {key}"
                )
        super().add_param_group(param_group)
        with kept_if_valid(self.param_groups) as (group, index):  # ||g|| of a shard is not ||g||
            reject_unsupported_dtypes(group["params"], type(self).__name__, {})
            reject_sharded(group["params"], type(self).__name__, param_names(group, index))

    def required_state(self, group: dict) -> tuple[str, ...]:
        return ("step",)  # a loaded state without it was saved by another optimizer

    @property
    def _num_params(self) -> int:
        return sum(len(g["params"]) for g in self.param_groups)

    def set_magnitude(self, magnitude: float | Tensor | Sequence[float | Tensor]) -> None:
        """The magnitude ``m`` of the next step: a number or 0-dim tensor (``norm="global"``), or
        one value per parameter tensor (``norm="layer"``)."""
        if self.schedule is not None:
            raise RuntimeError("set_magnitude() conflicts with the schedule given to this optimizer")
        self._magnitude = self._as_magnitudes(magnitude)

    def _as_magnitudes(self, magnitude) -> list[Tensor]:
        """Validate the shape (never the values of tensors: no host sync) and split per tensor."""
        if isinstance(magnitude, (int, float)) and not isinstance(magnitude, bool) and magnitude < 0:
            raise ValueError(f"magnitude must be >= 0, got {magnitude!r}")
        values = None if isinstance(magnitude, Sequence) else torch.as_tensor(magnitude)
        if self.param_groups[0]["norm"] == "global":
            if values is None or values.dim() != 0:
                raise ValueError(
                    f'norm="global" takes one magnitude (a number or 0-dim tensor), got {magnitude!r}'
                )
            return [values]
        count = len(magnitude) if values is None else (values.shape[0] if values.dim() == 1 else -1)
        if count != self._num_params:
            raise ValueError(
                f'norm="layer" takes one magnitude per parameter tensor ({self._num_params}), got {magnitude!r}'
            )
        return [torch.as_tensor(m) for m in magnitude] if values is None else list(values.unbind(0))

    def _step_magnitudes(self) -> list[Tensor] | None:
        """This step's magnitudes in the optimizer's parameter order (the schedule or set_magnitude)."""
        if self.schedule is not None:
            states = [self.state[p] for g in self.param_groups for p in g["params"] if p in self.state]
            return self._as_magnitudes(self.schedule[int(states[0]["step"]) if states else 0])
        if self._magnitude is None:
            raise RuntimeError(
                "Graft needs a magnitude per step: call set_magnitude() before step() "
                "(iterative grafting) or pass schedule= (external grafting)"
            )
        magnitudes, self._magnitude = self._magnitude, None
        return magnitudes

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        per_group, where, index = [], [], 0
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            where += [index + i for i, p in enumerate(group["params"]) if p.grad is not None]
            index += len(group["params"])
            per_group.append((group["lr"], params, [p.grad for p in params]))
        grads = [g for _, _, gs in per_group for g in gs]
        if not grads:
            return loss
        if any(g.is_sparse for g in grads):
            raise ValueError(f"{type(self).__name__} does not support sparse gradients (use a dense nn.Embedding)")
        magnitudes = self._step_magnitudes()
        first = self.param_groups[0]
        norm, foreach = first["norm"], first["foreach"]
        if foreach is None:
            foreach = all(g.is_cuda for g in grads)
        if magnitudes is not None and norm == "layer":
            magnitudes = [magnitudes[i] for i in where]
        scales = graft_scales(grads, magnitudes, norm=norm, eps=first["eps"], foreach=foreach)
        offset = 0
        for lr, params, group_grads in per_group:
            for p in params:
                state = self.state[p]
                if "step" not in state:
                    state["step"] = torch.tensor(0.0)
                state["step"] += 1
            if params:
                part = scales if norm == "global" else scales[offset : offset + len(params)]
                apply_scaled_steps(params, group_grads, part, lr=lr, foreach=foreach)
            offset += len(params)
        return loss


class NGD(Graft):
    r"""Normalized gradient descent: ``w <- w - lr * g / max(||g||, eps)`` (Graft with ``m = 1``);
    every step has length ``lr`` (global norm) or ``lr`` per tensor (``norm="layer"``)."""

    def __init__(
        self, params, lr: float, *, norm: str = "global", eps: float = 1e-12, foreach: bool | None = None
    ):
        super().__init__(params, lr, norm=norm, eps=eps, foreach=foreach)

    def set_magnitude(self, magnitude) -> None:
        raise RuntimeError("NGD has unit magnitude; use Graft for grafting")

    def _step_magnitudes(self) -> None:
        return None


def _check_group(group: dict) -> None:
    """ValueError naming a bad ``lr`` (a number >= 0), ``norm``, ``eps`` (> 0) or ``foreach``."""
    check_number("lr", group["lr"], 0.0)
    _check_norm(group["norm"])
    check_number("eps", group["eps"], 0.0)
    if group["eps"] == 0:
        raise ValueError(f"eps must be > 0 (the floor of the gradient norm), got {group['eps']!r}")
    if group["foreach"] not in (None, True, False):
        raise ValueError(f"foreach must be None, True or False, got {group['foreach']!r}")


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of {', '.join(map(repr, NORMS))}")
