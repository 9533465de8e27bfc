"""SGD with (Nesterov) momentum and coupled L2 or decoupled weight decay; SGDW."""

import torch
from torch import Tensor

from regkit._validate import check_flag, check_number
from regkit.optim._base import FunctionalOptimizer, check_decay_options, decay_options
from regkit.optim._functional import (
    add_l2,
    decoupled_decay_,
    descent_grads,
    device_dtype_buckets,
    each,
    momentum_update_,
    nesterov_direction,
)
from regkit.optim.fused import fused_sgd_, sgd_fusable


def sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    first_steps: list[bool],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
    foreach: bool,
    corrected: bool = False,
    cautious: bool = False,
    lr_max: float | None = None,
    fused: bool = False,
) -> None:
    """The functional SGD update over parallel lists (``momentum_buffers`` unused when ``momentum == 0``).

    ``first_steps[i]``: ``momentum_buffers[i]`` is fresh and is set to the gradient. The
    arithmetic and its order are torch.optim.SGD's, so float64 results agree bit for bit.
    ``corrected`` / ``cautious`` (decoupled decay only; ``lr_max`` a host float): see `SGD`. ``fused``:
    torch's fused kernel (`regkit.optim.fused.fused_sgd_`; ``cautious`` and bf16/fp16 keep this path).
    """
    if fused and not cautious and sgd_fusable(params):
        fused_sgd_(
            params, grads, momentum_buffers, first_steps, lr=lr, momentum=momentum, dampening=dampening,
            nesterov=nesterov, weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize, corrected=corrected, lr_max=lr_max,
        )  # fmt: skip
        return
    for p, g, bufs, first in device_dtype_buckets(
        params, grads, momentum_buffers, first_steps, foreach=foreach
    ):
        d = descent_grads(g, maximize=maximize, foreach=foreach)
        if weight_decay != 0 and not decoupled_weight_decay:
            d = add_l2(d, p, weight_decay, foreach=foreach)  # coupled: the decay enters the momentum
        if momentum != 0:
            momentum_update_(bufs, d, momentum, dampening, first, foreach=foreach)
            d = nesterov_direction(d, bufs, momentum, foreach=foreach) if nesterov else bufs
        if weight_decay != 0 and decoupled_weight_decay:  # decoupled: w *= 1 - lr * wd (* lr/lr_max) (* mask)
            decoupled_decay_(p, d, lr, weight_decay, corrected=corrected, cautious=cautious, lr_max=lr_max,
                             foreach=foreach)
        each("add_", p, d, alpha=-lr, foreach=foreach)


class SGD(FunctionalOptimizer):
    r"""Stochastic gradient descent with optional (Nesterov) momentum and weight decay.

    Per step, for each parameter ``w`` with gradient ``g`` (``t`` counts this buffer's steps)::

        g <- -g                                   if maximize
        g <- g + wd * w                           coupled L2 (decoupled_weight_decay=False)
        b <- g                 if t == 1          momentum != 0
        b <- mu * b + (1 - dampening) * g   otherwise
        d <- g + mu * b if nesterov else b        (d = g when momentum == 0)
        w <- w * (1 - lr * wd)                    decoupled decay (decoupled_weight_decay=True)
        w <- w - lr * d

    Two options change the decoupled decay line (both need ``decoupled_weight_decay=True``):

    - ``corrected=True`` (schedule-corrected decay, Defazio 2025's AdamC rule):
      ``wd`` becomes ``wd * lr / lr_max``, so ``w <- w * (1 - lr^2 * wd / lr_max)``: the decay
      follows the lr schedule and the equilibrium ``||g|| / ||w||`` of normalized layers stays
      put as the lr decays. ``lr_max`` is the group's ``max_lr``, else ``initial_lr`` (torch's
      schedulers set it to the peak/base lr), else its lr at the first step (see
      `regkit.optim._base.peak_lr`). Meant for groups of normalized (scale-invariant) weights.
    - ``cautious=True`` (cautious weight decay, Chen et al. 2025): decay only the coordinates where
      the update ``d`` and ``w`` have the same sign (``d * w >= 0``):
      ``w <- w - lr * wd * 1[d * w >= 0] * w``.

    This is torch.optim.SGD's algorithm and arithmetic (buffer set to the gradient on its
    first step; lr multiplies the buffer, not the gradient) with one more line: decoupled
    weight decay in torch's convention, scaled by the scheduled ``lr`` (Loshchilov &
    Hutter scale by a schedule multiplier instead). Without momentum, L2 and decoupled
    decay with the same ``wd`` give the same update; with momentum they differ.

    Args:
        params: parameters or param-group dicts (e.g. from ``regkit.param_groups``).
        lr: learning rate, default 1e-3 (torch.optim.SGD's default). momentum: ``mu`` in [0, 1), default 0. dampening:
        in [0, 1], default 0. weight_decay: ``wd >= 0``, default 0. nesterov: default
        False (needs momentum > 0 and dampening 0). decoupled_weight_decay: default False.
        maximize: ascend the objective, default False. corrected, cautious: default False
        (above). foreach: one ``torch._foreach_*``
        call per operation; default None = True when every parameter is on CUDA. fused: default
        False; True runs torch's fused SGD kernel (float32/float64 groups, see `regkit.optim.fused`).
        The positional order ``(lr, momentum, dampening, weight_decay, nesterov)`` is
        torch.optim.SGD's; the other options are keyword-only.

    Example::

        >>> model = torch.nn.Linear(3, 1)
        >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        >>> model(torch.randn(8, 3)).square().mean().backward()
        >>> opt.step()

    References: Polyak (1964) heavy ball; Sutskever et al., "On the importance of
    initialization and momentum in deep learning" (ICML 2013) for the Nesterov form;
    Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019); Defazio, "Why
    Gradients Rapidly Increase Near the End of Training" (arXiv:2506.02285, 2025); Chen et al.,
    "Cautious Weight Decay" (arXiv:2510.12402, 2025).
    """

    functional_update = staticmethod(sgd)
    fusable = True

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        corrected: bool = False,
        cautious: bool = False,
        fused: bool | None = None,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
            corrected=corrected,
            cautious=cautious,
        )
        super().__init__(params, defaults, fused=fused)

    def check_hyperparameters(self, group: dict) -> None:
        check_number("lr", group["lr"], 0.0)
        check_number("momentum", group["momentum"], 0.0, 1.0, high_open=True)
        check_number("dampening", group["dampening"], 0.0, 1.0)
        check_number("weight_decay", group["weight_decay"], 0.0)
        for flag in ("nesterov", "decoupled_weight_decay", "maximize", "corrected", "cautious"):
            check_flag(flag, group[flag])
        check_flag("foreach", group["foreach"], allow_none=True)
        check_decay_options(group)
        if group["nesterov"] and (group["momentum"] == 0 or group["dampening"] != 0):
            raise ValueError(
                "nesterov=True needs momentum > 0 and dampening == 0, "
                f"got momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def required_state(self, group: dict) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def prepare_update(self, group: dict, params: list[Tensor]) -> tuple[tuple, dict]:
        buffers, first_steps = [], []
        if group["momentum"] != 0:
            for p in params:
                state = self.state[p]
                first_steps.append("momentum_buffer" not in state)
                if first_steps[-1]:
                    state["momentum_buffer"] = torch.empty_like(p, memory_format=torch.preserve_format)
                buffers.append(state["momentum_buffer"])
        names = (
            "lr",
            "momentum",
            "dampening",
            "nesterov",
            "weight_decay",
            "decoupled_weight_decay",
            "maximize",
        )
        hyper = {k: group[k] for k in names}
        hyper.update(decay_options(group))
        foreach = self.resolve_foreach(group["foreach"], params)
        return (params, [p.grad for p in params], buffers, first_steps), dict(hyper, foreach=foreach)


class SGDW(SGD):
    """SGD with decoupled weight decay ``w <- w * (1 - lr * wd)`` (torch's convention, see `SGD`).

    ``SGDW(params, lr=1e-3, ...)`` is ``SGD(params, lr, ..., decoupled_weight_decay=True)``;
    loading a state dict keeps the decay decoupled (like torch.optim.AdamW).
    Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019).
    """

    fixed_hyperparameters = {"decoupled_weight_decay": True}

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        corrected: bool = False,
        cautious: bool = False,
        fused: bool | None = None,
    ):
        super().__init__(
            params, lr, momentum, dampening, weight_decay, nesterov,
            decoupled_weight_decay=True, maximize=maximize, foreach=foreach, corrected=corrected, cautious=cautious,
            fused=fused,
        )  # fmt: skip
