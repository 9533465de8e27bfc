"""Joint-norm rescaling (Omnigrok style): shrink the weights at the start, then keep their joint norm fixed."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from regkit._validate import check_number
from regkit.optim._functional import device_dtype_buckets, each
from regkit.optim.measures import joint_norm


class JointNormRescaler:
    r"""Multiply a set of weight tensors by ``alpha`` once, then keep their joint L2 norm at that value.

    At construction: ``w_i <- alpha * w_i`` and ``N0 = sqrt(sum_i ||w_i||^2)``. After every
    optimizer step (`attach`) or whenever `rescale_` is called::

        w_i <- w_i * N0 / sqrt(sum_i ||w_i||^2)        jointly: the ratios between tensors move freely

    With ``alpha < 1`` this is the weight-norm intervention of Omnigrok (Liu et al.), used as
    the "AdamW + rescaling" baseline (with weight decay 0) by Franke et al. for CPR.
    ``params``: a model (its trainable tensors with ``ndim >= 2``: weight matrices, conv
    kernels, embeddings; biases and normalization gains keep their scale) or an iterable of
    tensors. The norm stays on the device: no host synchronisation. `state_dict` holds ``N0``
    (a run resumed from a checkpoint must not scale the loaded weights again: build the
    rescaler on the freshly initialised model, then load the checkpoint).

    Example::

        >>> rescaler = JointNormRescaler(model, alpha=0.8)
        >>> opt = regkit.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
        >>> rescaler.attach(opt)          # every opt.step() (e.g. inside regkit.train.train) rescales after
    """

    def __init__(self, params: nn.Module | Iterable[Tensor], alpha: float = 0.8, *, foreach: bool | None = None):
        check_number("alpha", alpha, 0.0)
        if alpha == 0:
            raise ValueError("alpha must be > 0 (0 would zero the weights), got 0")
        if isinstance(params, nn.Module):
            self.params = [p for p in params.parameters() if p.requires_grad and p.ndim >= 2]
        else:
            self.params = list(params)
        if not self.params:
            raise ValueError("JointNormRescaler got no tensor to rescale (a model's tensors with ndim >= 2 are used)")
        self.alpha = float(alpha)
        self.foreach = all(p.is_cuda for p in self.params) if foreach is None else foreach
        with torch.no_grad():
            for (bucket,) in device_dtype_buckets(self.params, foreach=self.foreach):
                each("mul_", bucket, self.alpha, foreach=self.foreach)
            self.target = joint_norm(self.params, foreach=self.foreach)

    def norm(self) -> Tensor:
        """The current joint norm ``sqrt(sum_i ||w_i||^2)`` (a 0-dim tensor on the device)."""
        with torch.no_grad():
            return joint_norm(self.params, foreach=self.foreach)

    @torch.no_grad()
    def rescale_(self) -> None:
        """``w_i <- w_i * N0 / ||w||`` for all tensors jointly (left alone if the norm is 0)."""
        current = self.norm()
        factor = torch.where(current > 0, self.target / current.clamp_min(1e-30), 1.0)
        for (bucket,) in device_dtype_buckets(self.params, foreach=self.foreach):
            each("mul_", bucket, factor.to(bucket[0].device), foreach=self.foreach)

    def attach(self, optimizer: torch.optim.Optimizer):
        """Rescale after every ``optimizer.step()`` (a step post-hook); returns the hook's removable handle."""
        return optimizer.register_step_post_hook(lambda opt, args, kwargs: self.rescale_())

    def state_dict(self) -> dict:
        return {"alpha": self.alpha, "target": self.target}

    def load_state_dict(self, state: dict) -> None:
        self.alpha = float(state["alpha"])
        self.target = state["target"].to(self.target.device, self.target.dtype)
