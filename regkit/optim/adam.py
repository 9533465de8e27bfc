"""Adam with coupled L2 or decoupled weight decay (AdamW), AMSGrad."""

import torch
from torch import Tensor

from regkit._validate import check_betas, check_flag, check_number
from regkit.optim._base import (
    FunctionalOptimizer,
    check_decay_options,
    decay_options,
    increment_steps,
    step_counter,
)
from regkit.optim._functional import (
    adam_bias_corrections,
    adam_denominator,
    adam_moments_,
    adam_step_,
    add_l2,
    amsgrad_max_,
    decoupled_decay_,
    descent_grads,
    device_dtype_buckets,
)
from regkit.optim.fused import fused_adam_

ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")  # what every stepped parameter's state holds (torch's keys)
# float16 has no room for Adam's statistics: (1 - beta2) g^2 underflows to 0 for |g| < ~1e-3 and eps = 1e-8
# rounds to 0, so m / (sqrt(v) + eps) becomes inf/NaN within a few steps.
FLOAT16_ADVICE = (
    "Adam's second moment underflows and eps=1e-8 rounds to 0 in float16 (inf/NaN within steps); keep float32 "
    "params and train under torch.autocast(dtype=torch.float16) with a GradScaler, or use bfloat16 params"
)


def adam(
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
    decoupled_weight_decay: bool,
    amsgrad: bool,
    maximize: bool,
    foreach: bool,
    corrected: bool = False,
    cautious: bool = False,
    lr_max: float | None = None,
    fused: bool = False,
) -> None:
    """The functional Adam update over parallel lists (``max_exp_avg_sqs`` empty unless ``amsgrad``).

    ``steps[i]`` is parameter ``i``'s step count including this step, a host float. The
    arithmetic and its order are torch.optim.Adam's, so float64 results agree bit for bit.
    ``corrected`` / ``cautious`` (decoupled decay only; ``lr_max`` a host float): see `Adam`. ``fused``:
    torch's fused kernel (`regkit.optim.fused.fused_adam_`; ``cautious`` keeps this path).
    """
    if fused and not cautious:
        fused_adam_(
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
            weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay, amsgrad=amsgrad,
            maximize=maximize, corrected=corrected, lr_max=lr_max,
        )  # fmt: skip
        return
    bias_correction1, bias_correction2_sqrt = adam_bias_corrections(steps, beta1, beta2)
    buckets = device_dtype_buckets(
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, bias_correction1, bias_correction2_sqrt,
        foreach=foreach,
    )  # fmt: skip
    for p, g, m, v, v_max, bc1, bc2_sqrt in buckets:
        d = descent_grads(g, maximize=maximize, foreach=foreach)
        if weight_decay != 0 and not decoupled_weight_decay:
            d = add_l2(d, p, weight_decay, foreach=foreach)  # coupled: the decay enters both moments
        adam_moments_(m, v, d, beta1, beta2, foreach=foreach)
        if amsgrad:
            v = amsgrad_max_(v_max, v, foreach=foreach)
        denominators = adam_denominator(v, bc2_sqrt, eps, foreach=foreach)
        if weight_decay != 0 and decoupled_weight_decay:  # decoupled: w *= 1 - lr * wd (* lr/lr_max) (* mask)
            # the update m_hat / (sqrt(v_hat) + eps) has the signs of m: the cautious mask reads m
            decoupled_decay_(p, m, lr, weight_decay, corrected=corrected, cautious=cautious, lr_max=lr_max,
                             foreach=foreach)
        adam_step_(p, m, denominators, lr, bc1, foreach=foreach)


class Adam(FunctionalOptimizer):
    r"""Adam with coupled L2 (default) or decoupled weight decay; AMSGrad.

    Per step, for each parameter ``w`` with gradient ``g`` (``t`` counts its steps from 1)::

        g <- -g                                       if maximize
        g <- g + wd * w                               coupled L2 (decoupled_weight_decay=False)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        v_max <- max(v_max, v); use v_max for v       if amsgrad
        w <- w * (1 - lr * wd)                        decoupled decay (decoupled_weight_decay=True)
        w <- w - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    Two options change the decoupled decay line (both need ``decoupled_weight_decay=True``):
    ``corrected=True`` (AdamC, Defazio 2025) uses ``wd * lr / lr_max`` for ``wd``, so the decay
    follows the lr schedule (``lr_max``: the group's ``max_lr``, else ``initial_lr`` as torch's
    schedulers set it, else its first lr; see `regkit.optim._base.peak_lr`); ``cautious=True``
    (Chen et al. 2025) decays only the coordinates where the update ``m_hat / (sqrt(v_hat) + eps)``
    and ``w`` have the same sign: ``w <- w - lr * wd * 1[m * w >= 0] * w``. See `regkit.optim.SGD`.

    This is torch.optim.Adam's algorithm and arithmetic. With coupled L2 the decay term
    passes through ``1 / (sqrt(v_hat) + eps)``: coordinates with large gradients are
    decayed less. Decoupled decay (AdamW) scales every weight by the same ``1 - lr * wd``
    (torch's convention, scaled by the scheduled ``lr``; Loshchilov & Hutter scale by a
    schedule multiplier instead).

    ``state[p]``: ``step`` (CPU float tensor, as in torch.optim), ``exp_avg``,
    ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad); a state dict loads into torch.optim.Adam
    and back (a Python-number ``step`` is turned into a tensor; a state without ``exp_avg``
    etc., saved by another optimizer, is refused on load). float16 params are refused
    (ValueError: the statistics underflow; use float32 params with autocast, or bfloat16).
    Non-finite gradients are not detected (no host sync): a NaN/inf entry makes its own
    tensor NaN, the other tensors step normally (as torch.optim.Adam). ``step`` turns the step counts into host floats (a CPU ``.item()``, no
    device sync) and the functional update receives them, so the update has no host
    sync and compiles with ``fullgraph=True``.

    Args:
        params: parameters or param-group dicts (e.g. from ``regkit.param_groups``).
        lr: default 1e-3. betas: ``(beta1, beta2)`` each in [0, 1), default (0.9, 0.999).
        eps: default 1e-8. weight_decay: ``wd >= 0``, default 0. Keyword-only:
        decoupled_weight_decay (default False), amsgrad (default False), maximize
        (default False), corrected and cautious (default False), foreach (default None = True when every parameter is on CUDA),
        fused (default False; True: torch's fused kernel, see `regkit.optim.fused`).

    Example::

        >>> model = torch.nn.Linear(3, 1)
        >>> opt = Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
        >>> model(torch.randn(8, 3)).square().mean().backward()
        >>> opt.step()

    References: Kingma & Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015);
    Reddi et al., "On the Convergence of Adam and Beyond" (ICLR 2018);
    Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019); Defazio (arXiv:2506.02285,
    2025); Chen et al., "Cautious Weight Decay" (arXiv:2510.12402, 2025).
    """

    functional_update = staticmethod(adam)
    fusable = True
    refused_dtypes = {torch.float16: FLOAT16_ADVICE}

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        decoupled_weight_decay: bool = False,
        amsgrad: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        corrected: bool = False,
        cautious: bool = False,
        fused: bool | None = None,
    ):
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            corrected=corrected,
            cautious=cautious,
        )
        super().__init__(params, defaults, fused=fused)

    def check_hyperparameters(self, group: dict) -> None:
        check_number("lr", group["lr"], 0.0)
        check_betas(group["betas"])
        check_number("eps", group["eps"], 0.0)
        check_number("weight_decay", group["weight_decay"], 0.0)
        for flag in ("decoupled_weight_decay", "amsgrad", "maximize"):
            check_flag(flag, group[flag])
        for flag in ("corrected", "cautious"):  # AdamAdaDecay's groups have neither
            check_flag(flag, group.get(flag, False))
        check_flag("foreach", group["foreach"], allow_none=True)
        check_decay_options(group)

    def required_state(self, group: dict) -> tuple[str, ...]:
        return ADAM_STATE

    def prepare_update(self, group: dict, params: list[Tensor]) -> tuple[tuple, dict]:
        exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = adam_state(self.state, params, amsgrad=group["amsgrad"])
        beta1, beta2 = group["betas"]
        hyper = {
            k: group[k]
            for k in ("lr", "eps", "weight_decay", "decoupled_weight_decay", "amsgrad", "maximize")
        }
        hyper.update(decay_options(group))
        foreach = self.resolve_foreach(group["foreach"], params)
        args = (params, [p.grad for p in params], exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps)
        return args, dict(hyper, beta1=beta1, beta2=beta2, foreach=foreach)


def adam_state(state: dict, params: list[Tensor], *, amsgrad: bool = False) -> tuple[list, list, list, list[float]]:
    """Adam's buffers for ``params`` (created on first use with torch's keys) and the step counts after this step.

    Returns ``(exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps)``: ``state[p]`` holds ``step`` (a
    CPU float tensor, incremented here), ``exp_avg``, ``exp_avg_sq`` and, with ``amsgrad``,
    ``max_exp_avg_sq`` (``max_exp_avg_sqs`` is empty otherwise). Shared by Adam and AdamP.
    """
    exp_avgs, exp_avg_sqs, max_exp_avg_sqs, counters = [], [], [], []
    for p in params:
        buffers = state[p]
        if not buffers:
            buffers["step"] = step_counter()
            buffers["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            buffers["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if amsgrad:
            if "max_exp_avg_sq" not in buffers:
                buffers["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            max_exp_avg_sqs.append(buffers["max_exp_avg_sq"])
        exp_avgs.append(buffers["exp_avg"])
        exp_avg_sqs.append(buffers["exp_avg_sq"])
        counters.append(buffers["step"])
    return exp_avgs, exp_avg_sqs, max_exp_avg_sqs, increment_steps(counters)


class AdamW(Adam):
    """Adam with decoupled weight decay ``w <- w * (1 - lr * wd)`` (torch's convention, see `Adam`).

    ``AdamW(params, ...)`` is ``Adam(params, ..., decoupled_weight_decay=True)`` with
    torch.optim.AdamW's default ``weight_decay=1e-2``; loading a state dict keeps the decay
    decoupled. Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization"
    (ICLR 2019).
    """

    fixed_hyperparameters = {"decoupled_weight_decay": True}

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        amsgrad: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        corrected: bool = False,
        cautious: bool = False,
        fused: bool | None = None,
    ):
        super().__init__(
            params, lr, betas, eps, weight_decay, decoupled_weight_decay=True, amsgrad=amsgrad,
            maximize=maximize, foreach=foreach, corrected=corrected, cautious=cautious, fused=fused,
        )  # fmt: skip
