"""`with_projection`: AdamP/SGDP's radial projection (Heo et al., ICLR 2021) of any optimizer's step."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim import Optimizer

from regkit.distributed import reject_sharded
from regkit.optim._base import kept_if_valid, param_names
from regkit.optim._functional import device_dtype_buckets, each
from regkit.optim.adamp import LOW_PRECISION, check_projection, scale_invariant_factors, tested_indices
from regkit.optim.compose import base_step, check_base, resolve_foreach, run_closure, stepped, with_options

PROJECTION_OPTIONS = ("delta", "wd_ratio", "projection_eps", "channel_dim")  # the param-group keys it adds


def decoupled_decay(group: dict) -> float:
    """The base's decoupled decay rate ``wd`` of ``group`` (its step multiplies w by ``1 - lr * wd``), else 0.

    Read from the group keys of regkit's and torch.optim's optimizers (``decoupled_weight_decay``,
    ``weight_decay``); coupled L2 (and any other decay) is part of the step's direction instead.
    """
    return group.get("weight_decay", 0.0) if group.get("decoupled_weight_decay", False) else 0.0


def project_step_(
    params: list[Tensor],
    previous: list[Tensor],
    grads: list[Tensor],
    *,
    keep: float,
    keep_projected: float,
    delta: float,
    eps: float,
    channel_dim: int,
    foreach: bool,
) -> None:
    """Remove the radial part of the step a base optimizer just took from ``previous`` (``w0``) to ``params`` (``w``).

    Per tensor with ``ndim > 1``, scale-invariant in the channel or layer view of AdamP's test on
    ``w0`` and the gradient ``g`` (`regkit.optim.adamp.scale_invariant_factors`), with
    ``s = w - keep * w0`` the step without the base's decoupled decay::

        w <- w + (keep_projected - keep - <w0_i, s_i> / (||w0_i|| + eps)^2) w0  =  keep_projected w0 + Pi_w0(s)

    per row ``i`` of the view; other tensors keep the base's ``w`` bit for bit. ``s`` and the
    statistics are float32 for float16/bfloat16 weights.
    """
    tested = tested_indices(params)
    lists = [[ts[i] for i in tested] for ts in (params, previous, grads)]
    for w, w0, g in device_dtype_buckets(*lists, foreach=True) if tested else []:
        wide = [t.float() for t in w] if w[0].dtype in LOW_PRECISION else w
        steps = each("sub", wide, each("mul", [t.to(wide[0].dtype) for t in w0], keep, foreach=foreach), foreach=foreach)
        factors, _ = scale_invariant_factors(
            w0, g, steps, [-1.0] * len(w), keep=keep, keep_projected=keep_projected, delta=delta, eps=eps,
            channel_dim=channel_dim,
        )  # fmt: skip
        each("addcmul_", w, w0, [f - keep for f in factors], foreach=foreach)


def with_projection(base: type[Optimizer]) -> type[Optimizer]:
    r"""The optimizer class ``base`` whose steps lose their radial part on scale-invariant weights (AdamP/SGDP).

    ``with_projection(Base)(params, *base_args, delta=0.1, wd_ratio=0.1, projection_eps=1e-8,
    channel_dim=0, **base_kwargs)``: each step, with ``w0`` the weights before it and ``g`` the
    gradient, Base steps as usual to ``w``; then for each tensor with ``ndim > 1`` that AdamP's test
    finds scale-invariant on ``(w0, g)`` (channel view, else layer view; `regkit.optim.adamp`)::

        s = w - (1 - lr * wd) w0                      Base's step without its decoupled decay
        w <- (1 - lr * wd * wd_ratio) w0 + Pi_w0(s)    Pi_w0(s)_i = s_i - <w0_i, s_i> / (||w0_i|| + eps)^2 w0_i

    ``wd`` is Base's decoupled weight decay (``decoupled_weight_decay=True`` groups: regkit's SGDW,
    AdamW, ``SGD``/``Adam(decoupled_weight_decay=True)``, torch.optim.AdamW), 0 otherwise: coupled L2
    is part of ``s`` and is projected with it. The options live in the param groups
    (``projection_eps`` is the projection's own eps, so an Adam base keeps its ``eps``).

    Exactness. In exact arithmetic ``with_projection(AdamW)`` is ``AdamP`` (``nesterov=False``,
    ``eps == projection_eps``) and ``with_projection(SGD)(..., weight_decay=wd / (1 - mu),
    decoupled_weight_decay=True)`` is ``SGDP(..., weight_decay=wd)`` (``dampening=0``,
    ``project_buffer=False``). Bit for bit they cannot be, for a structural reason: the wrapper
    sees Base's rounded result ``w = fl(fl((1 - lr wd) w0) - lr_t u)``, not Base's direction ``u``,
    so ``s`` carries the rounding of that sum (an ulp of ``w``), whereas AdamP/SGDP round
    ``(keep + lr_t c) w0 - lr_t u`` once. The difference is a few ulps of ``w`` per step (the
    tests pin ``rtol=1e-13`` in float64 over 20 steps). Also structural: with ``dampening != 0``
    SGDP's zero-initialised buffer differs from torch SGD's ``b = g`` first step, and AdamP's
    ``nesterov`` has no regkit base. Tensors the test does not project keep Base's update bit for bit.

    Memory: a copy of the ``ndim > 1`` weights during ``step``. The buffers of Base (momentum,
    Adam moments) are never projected (the paper's Algorithm 1). Compose with CPR as
    ``with_cpr(with_projection(Base))``: the projection of Base's step, then the constraint step
    (the other order would project away the constraint step's radial shrinking).

    Example::

        >>> SGDP_like = with_projection(regkit.optim.SGD)
        >>> opt = SGDP_like(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, delta=0.1, wd_ratio=0.1)

    Reference: Heo, Chun, Oh, Han, Yun, Kim, Uh & Ha, "AdamP: Slowing Down the Slowdown for
    Momentum Optimizers on Scale-invariant Weights", ICLR 2021 (arXiv:2006.08217).
    """
    check_base(base, "with_projection")
    step_of_base = base_step(base)

    class Projected(base):
        def __init__(self, params, *args, delta: float = 0.1, wd_ratio: float = 0.1, projection_eps: float = 1e-8,
                     channel_dim: int = 0, **kwargs):
            options = dict(delta=delta, wd_ratio=wd_ratio, projection_eps=projection_eps, channel_dim=channel_dim)
            check_projection(options, "projection_eps")  # before params are looked at
            super().__init__(with_options(params, options), *args, **kwargs)
            self.defaults.update(options)

        def add_param_group(self, param_group: dict) -> None:
            """The base's checks, then the projection's options; sharded tensors are refused (whole-tensor norms)."""
            defaults = {k: self.defaults[k] for k in PROJECTION_OPTIONS if k in self.defaults}
            super().add_param_group({**defaults, **param_group})
            with kept_if_valid(self.param_groups) as (added, index):
                check_projection(added, "projection_eps")
                reject_sharded(added["params"], type(self).__name__, param_names(added, index))

        def step(self, closure=None):
            """The closure (if any), Base's step, then the projection of that step (see `with_projection`)."""
            loss = run_closure(closure)
            work = stepped(self.param_groups)
            previous = [[p.detach().clone() if p.ndim > 1 else p for p in params] for _, params in work]
            step_of_base(self)
            with torch.no_grad():
                for (group, params), before in zip(work, previous, strict=True):
                    lr, wd = group["lr"], decoupled_decay(group)
                    project_step_(
                        params, before, [p.grad for p in params], keep=1 - lr * wd,
                        keep_projected=1 - lr * (wd * group["wd_ratio"]), delta=group["delta"],
                        eps=group["projection_eps"], channel_dim=group["channel_dim"],
                        foreach=resolve_foreach(group, params),
                    )  # fmt: skip
            return loss

    Projected.__name__ = Projected.__qualname__ = f"{base.__name__}P"
    Projected.__doc__ = f"``{base.__name__}`` with the radial projection: ``regkit.optim.with_projection({base.__name__})``."
    return Projected
