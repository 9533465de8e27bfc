r"""Adaptive weight decay baselines of the CPR paper: AdamAWD (Ghiasi et al.) and AdamAdaDecay (Nakamura & Hong).

Both are Adam with decoupled weight decay (as `regkit.optim.AdamW`, torch's convention:
scaled by the scheduled ``lr``) whose coefficient is computed from the gradient every step,
before the Adam step::

    AdamAWD       lambda_bar <- 0.1 lambda_bar + 0.9 wd ||g|| / ||w||    norms over the whole param group
                  w <- w - lr * lambda_bar * w
    AdamAdaDecay  z <- (|g| - mean |g|) / std |g|                         per coordinate, within each tensor
                  w <- w - lr * wd * 2 sigmoid(alpha z) * w
    then          w <- Adam step of w on g (no weight decay)

AWD keeps the decay term's size at ``wd`` times the gradient's: ``||lambda_bar w|| / ||g|| ->
wd`` when ``||g|| / ||w||`` changes slowly. AdaDecay decays coordinates whose gradient is
large relative to the rest of their layer more (up to ``2 wd``) and quiet ones less (down to
0); ``2 sigmoid(0) = 1`` gives the plain rate at the layer's mean gradient magnitude. A tensor
whose gradient magnitudes are all equal (or that has one element) has ``z = 0``; ``||w|| = 0``
gives ``lambda_bar`` no new contribution. Decay is decoupled here (the CPR paper runs both
baselines on Adam); the source papers add the decay to an SGD gradient. Exempt biases and
normalization weights by passing groups from `regkit.param_groups` (a group with ``wd = 0``
is plain Adam).

Sources checked: the papers' abstracts state the rules (AWD: the decay coefficient follows the
ratio of the cross-entropy gradient to the weight norm; AdaDecay: gradient magnitudes
normalized within each layer, mapped through a sigmoid). The constants (the 0.1/0.9 smoothing,
``2 sigmoid(alpha z)``, ``alpha`` in {1, 2, 4, 8}) follow the project's METHODS.md; public
reimplementations of AWD use the same 0.1/0.9 smoothing, but the full texts were not
available to check them line by line.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from regkit._validate import check_number
from regkit.optim import cpu_kernels
from regkit.optim._base import FunctionalOptimizer
from regkit.optim._float32_state import Float32State
from regkit.optim._functional import each
from regkit.optim.adam import Adam, adam
from regkit.optim.measures import joint_norm

AWD_MEMORY = 0.1  # lambda_bar <- AWD_MEMORY * lambda_bar + (1 - AWD_MEMORY) * new (Ghiasi et al.'s Algorithm 1)


def awd_coefficients_(
    lambdas: list[Tensor],
    grads: list[Tensor],
    params: list[Tensor],
    weight_decay: float,
    *,
    foreach: bool,
    norms: tuple[Tensor, Tensor] | None = None,
) -> list[Tensor]:
    """``lambda_bar <- 0.1 lambda_bar + 0.9 wd ||g|| / ||w||`` (joint norms over the lists) in each tensor's copy.

    ``norms``: ``(||w||, ||g||)`` when the caller has them (the CPU kernels' sums). A non-finite ratio (a
    NaN/inf gradient or weight entry) leaves ``lambda_bar`` unchanged: one bad entry must not decay every
    tensor of the group to NaN. A device mask, no host sync.
    """
    w_norm, g_norm = norms or (joint_norm(params, foreach=foreach), joint_norm(grads, foreach=foreach))
    ratio = torch.where(w_norm > 0, g_norm / w_norm.clamp_min(1e-30), 0.0)
    finite = ratio.isfinite()
    memory = torch.where(finite, AWD_MEMORY, 1.0).to(lambdas[0].dtype)
    ratio = torch.where(finite, ratio, 0.0)
    each("mul_", lambdas, [memory.to(lam.device) for lam in lambdas], foreach=foreach)
    each("add_", lambdas, [ratio.to(lam.device) for lam in lambdas], alpha=(1 - AWD_MEMORY) * weight_decay,
         foreach=foreach)  # fmt: skip
    return lambdas


def joint_norms_by_kernel(params: list[Tensor], grads: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``(||w||, ||g||)`` over all tensors (as `joint_norm`: float64 for float64 tensors, else float32) from
    the CPU kernels' sums: one read of each tensor."""
    dtype = torch.float64 if params[0].dtype == torch.float64 else torch.float32
    w_squares, g_squares = (sum(column) for column in zip(*cpu_kernels.squares(params, grads), strict=True))
    return torch.tensor(w_squares, dtype=dtype).sqrt(), torch.tensor(g_squares, dtype=dtype).sqrt()


def adadecay_arguments(grads: list[Tensor], alpha: float) -> tuple[list[float], list[float]]:
    """``alpha z = a |g| + b`` per tensor (AdaDecay's sigmoid argument, `adadecay_rates`) from the CPU kernels' sums
    of the gradients: ``a = alpha / std``, ``b = -alpha mean / std`` of ``|g|`` (both 0 where ``std = 0``, NaN
    where a gradient entry is NaN/inf, which spoils that tensor as `adadecay_rates` does)."""
    slopes, offsets = [], []
    for row, g in zip(cpu_kernels.sums(grads, magnitudes=True), grads, strict=True):
        mean = row[cpu_kernels.COLUMNS["absolute"]] / g.numel()
        std = (cpu_kernels.spread(row, g.numel())[1] / g.numel()) ** 0.5
        if not (math.isfinite(mean) and math.isfinite(std)):  # as on the foreach path: NaN over the whole tensor
            slopes.append(math.nan)
            offsets.append(math.nan)
            continue
        slopes.append(alpha / std if std > 0 else 0.0)
        offsets.append(-alpha * mean / std if std > 0 else 0.0)
    return slopes, offsets


def adadecay_rates(grads: list[Tensor], weight_decay: float, alpha: float, *, foreach: bool) -> list[Tensor]:
    """``wd * 2 sigmoid(alpha z)`` per coordinate, ``z`` the gradient magnitude standardized within its tensor."""
    magnitudes = each("abs", grads, foreach=foreach)
    stats = [torch.std_mean(a, correction=0) for a in magnitudes]  # a reduction per tensor on both paths
    each("sub_", magnitudes, [mean for _, mean in stats], foreach=foreach)
    each("mul_", magnitudes, [torch.where(std > 0, alpha / std, 0.0) for std, _ in stats], foreach=foreach)
    each("sigmoid_", magnitudes, foreach=foreach)
    return each("mul_", magnitudes, 2 * weight_decay, foreach=foreach)


def adam_awd(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    steps: list[float],
    awd_lambdas: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    foreach: bool,
    fused: bool = False,
) -> None:
    """The functional AdamAWD update: `awd_coefficients_`, ``w <- w - lr * lambda_bar * w``, then Adam.

    ``fused``: on float32/float64 CPU tensors (no amsgrad) regkit's CPU kernels (one read for the norms, the
    decay inside the Adam pass); on other CPU tensors the fused AdamW kernel's own decay (it takes ``lambda_bar``
    as a float, and reading a CPU tensor waits for no device); elsewhere the decay on the foreach path first.
    """
    lists = (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps)
    adam_kw = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, decoupled_weight_decay=True, amsgrad=amsgrad,
                   maximize=maximize, foreach=foreach, fused=fused)  # fmt: skip
    if weight_decay != 0:
        compiled = fused and not amsgrad and cpu_kernels.usable(params, grads, exp_avgs, exp_avg_sqs)
        norms = joint_norms_by_kernel(params, grads) if compiled else None
        awd_coefficients_(awd_lambdas, grads, params, weight_decay, foreach=foreach, norms=norms)
        if compiled:
            cpu_kernels.adam_step_(
                params, grads, exp_avgs, exp_avg_sqs, steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                maximize=maximize, keeps=[1 - lr * lam for lam in torch.stack(awd_lambdas).tolist()],
            )  # fmt: skip
            return
        if fused and all(p.device.type == "cpu" for p in params):
            for decay, index in _indices_by_value(awd_lambdas):  # one value: the group's lambda_bar
                adam(*([seq[i] for i in index] if seq else seq for seq in lists), weight_decay=decay, **adam_kw)
            return
        each("addcmul_", params, params, awd_lambdas, value=-lr, foreach=foreach)
    adam(*lists, weight_decay=0.0, **adam_kw)


def _indices_by_value(values: list[Tensor]) -> list[tuple[float, list[int]]]:
    """``[(value, indices of the 0-dim tensors holding it)]`` (CPU tensors, read in one go)."""
    groups: dict[float, list[int]] = {}
    for i, value in enumerate(torch.stack(values).tolist()):
        groups.setdefault(value, []).append(i)
    return list(groups.items())


def adam_adadecay(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    steps: list[float],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    alpha: float,
    amsgrad: bool,
    maximize: bool,
    foreach: bool,
    fused: bool = False,
) -> None:
    """The functional AdamAdaDecay update: ``w <- w - lr * adadecay_rates(g) * w``, then Adam.

    ``fused`` on float32/float64 CPU tensors (no amsgrad): regkit's CPU kernels (one read of the gradients for
    their statistics, the decay inside the Adam pass); elsewhere the decay on the foreach path, then torch's
    fused Adam kernel.
    """
    if weight_decay != 0 and fused and not amsgrad and cpu_kernels.usable(params, grads, exp_avgs, exp_avg_sqs):
        slopes, offsets = adadecay_arguments(grads, alpha)
        cpu_kernels.adam_step_(
            params, grads, exp_avgs, exp_avg_sqs, steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps, maximize=maximize,
            rates=[2 * lr * weight_decay] * len(params), slopes=slopes, offsets=offsets,
        )  # fmt: skip
        return
    if weight_decay != 0:
        each("addcmul_", params, params, adadecay_rates(grads, weight_decay, alpha, foreach=foreach), value=-lr,
             foreach=foreach)  # fmt: skip
    adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
         weight_decay=0.0, decoupled_weight_decay=True, amsgrad=amsgrad, maximize=maximize, foreach=foreach,
         fused=fused)  # fmt: skip


class AdamAWD(Float32State, Adam):
    """Adam with adaptive weight decay (AWD): the decay coefficient tracks ``wd * ||g|| / ||w||``.

    Per step, per param group (norms over all its tensors that have a gradient)::

        lambda_bar <- 0.1 * lambda_bar + 0.9 * wd * ||g|| / ||w||
        w <- w - lr * lambda_bar * w
        w <- Adam step (no weight decay)

    ``wd`` (``weight_decay``, Ghiasi et al.'s ``lambda_awd``) is the target ratio of the decay
    term ``lambda_bar ||w||`` to the gradient norm ``||g||``. A step whose ``||g|| / ||w||`` is
    not finite (a NaN/inf gradient entry) keeps ``lambda_bar``: the bad entry then spoils only its
    own tensor (through Adam), as with `regkit.optim.Adam`, not the whole group. ``state[p]``: Adam's keys and
    ``awd_lambda`` (the group's ``lambda_bar``, one float32 copy per tensor). Args as
    `regkit.optim.AdamW` (default ``weight_decay=1e-2``; the paper tunes ``lambda_awd`` per
    dataset). See `regkit.optim.decay` for the conventions.

    Reference: Ghiasi, Shafahi & Ardekani, "Improving Robustness with Adaptive Weight Decay",
    NeurIPS 2023 (arXiv:2210.00094); used as a baseline by Franke et al., NeurIPS 2024.
    """

    functional_update = staticmethod(adam_awd)
    whole_tensor_norms = True  # norms of whole tensors: sharded (FSDP) params are refused
    # its decay is its own (lambda_bar): the schedule-corrected and cautious options do not apply
    fixed_hyperparameters = {"decoupled_weight_decay": True, "corrected": False, "cautious": False}
    float32_state = ("awd_lambda",)

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, *, amsgrad: bool = False, maximize: bool = False,
                 foreach: bool | None = None, fused: bool | None = None):  # fmt: skip
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay=True, amsgrad=amsgrad,
                         maximize=maximize, foreach=foreach, fused=fused)  # fmt: skip

    def prepare_update(self, group: dict, params: list[Tensor]) -> tuple[tuple, dict]:
        args, kwargs = super().prepare_update(group, params)
        del kwargs["decoupled_weight_decay"]
        lambdas = []
        for p in params:
            if "awd_lambda" not in self.state[p]:
                self.state[p]["awd_lambda"] = torch.zeros((), dtype=torch.float32, device=p.device)
            lambdas.append(self.state[p]["awd_lambda"])
        return (*args, lambdas), kwargs


class AdamAdaDecay(Adam):
    """Adam with AdaDecay: each coordinate decays at ``wd * 2 sigmoid(alpha z)``, ``z`` its standardized |gradient|.

    Per step, for each tensor ``w`` with gradient ``g``::

        z <- (|g| - mean(|g|)) / std(|g|)            over the tensor's coordinates (z = 0 if std = 0)
        w <- w - lr * wd * 2 sigmoid(alpha * z) * w
        w <- Adam step (no weight decay)

    ``alpha > 0`` (default 4; Nakamura & Hong's scale of the sigmoid) sets how strongly the
    rate follows the gradient: ``alpha -> 0`` is AdamW. Args as `regkit.optim.AdamW`
    (default ``weight_decay=1e-2``) plus ``alpha``. See `regkit.optim.decay`.

    Reference: Nakamura & Hong, "Adaptive Weight Decay for Deep Neural Networks", IEEE Access 7,
    2019 (arXiv:1907.08931); used as a baseline by Franke et al., NeurIPS 2024.
    """

    functional_update = staticmethod(adam_adadecay)
    whole_tensor_norms = True  # per-tensor gradient statistics: sharded (FSDP) params are refused
    fixed_hyperparameters = {"decoupled_weight_decay": True}

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, alpha: float = 4.0, *, amsgrad: bool = False, maximize: bool = False,
                 foreach: bool | None = None, fused: bool | None = None):  # fmt: skip
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, alpha=alpha,
                        decoupled_weight_decay=True, amsgrad=amsgrad, maximize=maximize, foreach=foreach)  # fmt: skip
        FunctionalOptimizer.__init__(self, params, defaults, fused=fused)  # Adam's checks and state, plus alpha

    def check_hyperparameters(self, group: dict) -> None:
        super().check_hyperparameters(group)
        check_number("alpha", group["alpha"], 0.0)

    def prepare_update(self, group: dict, params: list[Tensor]) -> tuple[tuple, dict]:
        args, kwargs = super().prepare_update(group, params)
        del kwargs["decoupled_weight_decay"]
        return args, dict(kwargs, alpha=group["alpha"])
