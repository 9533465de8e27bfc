"""AdamCPR: Adam with constrained parameter regularization (Franke et al., NeurIPS 2024, arXiv:2311.09058)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from regkit._validate import check_betas, check_flag, check_int, check_number
from regkit.optim import cpu_kernels
from regkit.optim._base import FunctionalOptimizer, kept_if_valid, param_names
from regkit.optim._float32_state import Float32State
from regkit.optim._functional import device_dtype_buckets, each
from regkit.optim.adam import ADAM_STATE, FLOAT16_ADVICE, adam, adam_state
from regkit.optim.measures import (
    MEASURES,
    descend_,
    descend_by_kernel_,
    evaluate,
    from_sums,
    lengths_from_sums,
    norms,
)

KAPPA_INIT_METHODS = ("uniform", "warm_start", "dependent", "inflection_point")
REG_ORDERS = ("post_step", "pre_step")
INFLECTION_SLOPE = 0.01  # the detector fires while the relative norm growth per check is still above 1%


def _scalar(value: float, device: torch.device) -> Tensor:
    """A 0-dim float32 state tensor on ``device`` (a fill kernel: no host-to-device copy)."""
    return torch.full((), value, dtype=torch.float32, device=device)


def initial_kappa(method: str, kappa_init_param: float, measure: str, param: Tensor) -> Tensor:
    """The bound ``kappa`` of a tensor at its first step, before any update; ``inf`` means "not set yet".

    ``uniform``: ``kappa_init_param``. ``dependent``: ``kappa_init_param * R(w_0)``, except
    that a tensor with ``R(w_0) = 0`` (zero or constant initialisation) gets ``inf``: a bound
    of 0 would pin it at zero for the whole run. ``warm_start`` and ``inflection_point``:
    ``inf`` until their rule sets it (see `AdamCPR`).
    """
    if method == "uniform":
        return _scalar(kappa_init_param, param.device)
    kappa = _scalar(math.inf, param.device)
    if method == "dependent":
        value = evaluate(measure, [param.detach()], foreach=False)[0][0].to(torch.float32)
        kappa = torch.where(value > 0, value * kappa_init_param, kappa)
    return kappa


def detect_inflection_(
    kappas: list[Tensor],
    values: list[Tensor],
    lengths: list[Tensor],
    emas: list[Tensor],
    ema_prevs: list[Tensor],
    slope_prevs: list[Tensor],
    age: float,
    *,
    reg_step_size: int,
    reg_ema_decay: float,
    foreach: bool,
) -> None:
    """One step of the inflection-point rule (no hyperparameter): set ``kappa = R(w)`` where norm growth slows.

    With ``E = ||w||`` (``lengths``) and ``k = reg_step_size``, for weights that have taken
    ``age`` optimizer steps: ``ema <- E`` while ``age < k``, then ``ema <- d ema + (1 - d) E``
    (``d = reg_ema_decay``). At every ``age > k`` that is a multiple of ``k``: the relative
    slope ``g = (ema - ema_prev) / ema``, ``ema_prev <- ema``; from ``age > 3k`` on, a tensor
    whose ``kappa`` is not set yet (``inf``) gets ``kappa <- R(w)`` (``values``) when
    ``g_prev > g > 0.01`` (growth still positive but slowing); from ``age > 2k`` on,
    ``g_prev <- g``. A set ``kappa`` is never changed again. All on the device.
    """
    if age < reg_step_size:
        each("copy_", emas, lengths, foreach=foreach)
    else:
        each("mul_", emas, reg_ema_decay, foreach=foreach)
        each("add_", emas, lengths, alpha=1 - reg_ema_decay, foreach=foreach)
    if not (age > reg_step_size and age % reg_step_size == 0):
        return
    slopes = each("sub", emas, ema_prevs, foreach=foreach)
    each("div_", slopes, each("clamp_min", emas, 1e-30, foreach=foreach), foreach=foreach)
    each("copy_", ema_prevs, emas, foreach=foreach)
    if age > 3 * reg_step_size:
        for kappa, value, slope, slope_prev in zip(kappas, values, slopes, slope_prevs, strict=True):
            fire = (slope_prev > slope) & (slope > INFLECTION_SLOPE) & kappa.isinf()
            kappa.copy_(torch.where(fire, value, kappa))
    if age > 2 * reg_step_size:
        each("copy_", slope_prevs, slopes, foreach=foreach)


def adapt_bounds_(kappas: list[Tensor], multipliers: list[Tensor], values: list[Tensor],
                  prev_multipliers: list[Tensor]) -> None:
    """AdaCPR (the paper's appendix): ``kappa <- R(w)`` at the step where ``lambda`` falls from > 0 to 0.

    ``values``: ``R(w)`` of this step (with ``lambda = 0`` the constraint step leaves ``w`` as it
    was). ``prev_multipliers``: ``lambda`` of the previous step (float32 state), updated here.
    Only that transition moves the bound; in between it stays put, so after the constraint
    releases the norm may keep shrinking below ``kappa`` (and grow back to it) freely. The
    authors' early code (automl/CPR ``optim_cpr.py``, ``kappa_adapt``, 2023-24) clamped instead,
    ``kappa <- min(kappa, R(w))`` at every ``lambda = 0`` step after the first activation, which
    drags the bound down with the norm: not the paper's rule. On the device, no host sync.
    """
    for kappa, lagmul, value, prev in zip(kappas, multipliers, values, prev_multipliers, strict=True):
        released = (prev > 0) & (lagmul == 0)
        kappa.copy_(torch.where(released, value.to(kappa.dtype), kappa))
        prev.copy_(lagmul)


def constrain_(
    params: list[Tensor],
    lagmuls: list[Tensor],
    kappas: list[Tensor],
    norm_emas: list[Tensor],
    norm_ema_prevs: list[Tensor],
    norm_slope_prevs: list[Tensor],
    prev_lagmuls: list[Tensor],
    ages: list[float],
    *,
    lr: float,
    reg_function: str,
    kappa_init_method: str,
    kappa_init_param: float,
    kappa_update: float,
    reg_step_size: int,
    reg_ema_decay: float,
    reg_by_lr: bool,
    adaptive_bounds: bool,
    foreach: bool,
    sums: list[list[float]] | None = None,
) -> None:
    """The CPR step on weights that have taken ``ages[i]`` optimizer steps (host floats).

    Per tensor, once its bound applies (always, or after ``s`` steps for ``warm_start``)::

        lambda <- max(0, lambda + mu * (R(w) - kappa))     mu = kappa_update / numel(w) (std: kappa_update)
        w      <- w - c * lambda * grad R(w)               c = lr if reg_by_lr else 1

    ``kappa = inf`` (not set) leaves ``lambda`` at 0 and ``w`` unchanged. ``warm_start``
    sets ``kappa = R(w)`` when ``age == s``; ``inflection_point`` runs `detect_inflection_`;
    ``adaptive_bounds`` runs `adapt_bounds_`. Lists hold the regularized tensors only; the
    IP lists (``norm_*``) are empty unless ``kappa_init_method == "inflection_point"`` and
    ``prev_lagmuls`` unless ``adaptive_bounds``. ``sums``: the CPU kernels' sums of each tensor's
    current ``w`` (`regkit.optim.cpu_kernels`); ``R`` then comes from them and the step is a kernel pass.
    """
    inflection = kappa_init_method == "inflection_point"
    warm_steps = kappa_init_param if kappa_init_method == "warm_start" else None
    step_size = lr if reg_by_lr else 1.0
    mus = [kappa_update if reg_function == "std" else kappa_update / p.numel() for p in params]
    lists = (params, lagmuls, kappas, norm_emas, norm_ema_prevs, norm_slope_prevs, prev_lagmuls, mus, sums or [])
    for age in sorted(set(ages)):  # normally one age: the tensors of a group step together
        index = [i for i, a in enumerate(ages) if a == age]
        chosen = [[seq[i] for i in index] if len(seq) else [] for seq in lists]
        if foreach:
            buckets = device_dtype_buckets(*chosen, foreach=True)
        else:  # one tensor at a time: its temporaries are freed before the next tensor's are made
            buckets = [tuple([seq[i]] if len(seq) else [] for seq in chosen) for i in range(len(index))]
        for p, lam, kappa, ema, ema_prev, slope_prev, prev_lam, mu, rows in buckets:
            if warm_steps is not None and age <= warm_steps:
                if age == warm_steps:
                    each("copy_", kappa, _measure(reg_function, p, rows, foreach)[0], foreach=foreach)
                continue
            values, aux = _measure(reg_function, p, rows, foreach)
            violations = each("sub", values, kappa, foreach=foreach)
            each("mul_", violations, mu, foreach=foreach)
            each("add_", lam, violations, foreach=foreach)
            each("clamp_min_", lam, 0.0, foreach=foreach)
            if inflection:  # ||w|| before the constraint step: w only moves once kappa is set
                lengths = _lengths(reg_function, p, rows, aux, foreach)
            if rows:
                descend_by_kernel_(reg_function, p, lam, step_size, rows)
            else:
                descend_(reg_function, p, lam, step_size, aux, foreach=foreach)
            if adaptive_bounds:
                adapt_bounds_(kappa, lam, values, prev_lam)
            if inflection:
                detect_inflection_(
                    kappa, values, lengths, ema, ema_prev, slope_prev, age,
                    reg_step_size=reg_step_size, reg_ema_decay=reg_ema_decay, foreach=foreach,
                )  # fmt: skip


def _lengths(measure: str, params: list[Tensor], rows: list, aux: list | None, foreach: bool) -> list[Tensor]:
    """``||w||`` per tensor: from the kernels' sums, from `evaluate`'s aux (l2), or a norm."""
    if rows:
        return lengths_from_sums(rows, params)
    return aux if measure == "l2" else norms(params, 2, foreach=foreach)


def _measure(measure: str, params: list[Tensor], rows: list, foreach: bool) -> tuple[list[Tensor], list | None]:
    """``(R(w), aux)``: from the CPU kernels' sums when ``rows`` holds them (aux None), else `evaluate`."""
    return (from_sums(measure, rows, params), None) if rows else evaluate(measure, params, foreach=foreach)


def adam_cpr(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    steps: list[float],
    lagmuls: list[Tensor],
    kappas: list[Tensor],
    norm_emas: list[Tensor],
    norm_ema_prevs: list[Tensor],
    norm_slope_prevs: list[Tensor],
    prev_lagmuls: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    amsgrad: bool,
    maximize: bool,
    regularize: bool,
    reg_function: str,
    kappa_init_method: str,
    kappa_init_param: float,
    kappa_update: float,
    reg_step_size: int,
    reg_ema_decay: float,
    reg_by_lr: bool,
    adaptive_bounds: bool,
    reg_order: str,
    foreach: bool,
    fused: bool = False,
) -> None:
    """The functional AdamCPR update: `regkit.optim.adam.adam` without weight decay, and `constrain_`
    after it (``reg_order="post_step"``) or before it (``"pre_step"``). A group with
    ``regularize=False`` takes the Adam step only (its CPR lists are empty). ``fused`` on float32/float64 CPU
    tensors (no amsgrad): regkit's CPU kernels (`regkit.optim.cpu_kernels`), whose Adam pass also measures
    ``R``; elsewhere torch's fused Adam kernel and the constraint step on the foreach path."""
    post_step = reg_order == "post_step"
    compiled = fused and not amsgrad and cpu_kernels.usable(params, grads, exp_avgs, exp_avg_sqs)

    def adam_step() -> list[list[float]] | None:
        if compiled:  # the sums of the new weights, when the constraint step comes next
            return cpu_kernels.adam_step_(
                params, grads, exp_avgs, exp_avg_sqs, steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                maximize=maximize, stats=regularize and post_step,
            )  # fmt: skip
        adam(
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, lr=lr, beta1=beta1, beta2=beta2,
            eps=eps, weight_decay=0.0, decoupled_weight_decay=False, amsgrad=amsgrad, maximize=maximize,
            foreach=foreach, fused=fused,
        )  # fmt: skip
        return None

    sums = adam_step() if post_step or not regularize else None
    if regularize:
        if compiled and not post_step:
            sums = cpu_kernels.sums(params)
        constrain_(
            params, lagmuls, kappas, norm_emas, norm_ema_prevs, norm_slope_prevs, prev_lagmuls,
            steps if post_step else [t - 1 for t in steps],  # how many Adam steps the weights have taken
            lr=lr, reg_function=reg_function, kappa_init_method=kappa_init_method,
            kappa_init_param=kappa_init_param, kappa_update=kappa_update, reg_step_size=reg_step_size,
            reg_ema_decay=reg_ema_decay, reg_by_lr=reg_by_lr, adaptive_bounds=adaptive_bounds, foreach=foreach,
            sums=sums,
        )  # fmt: skip
    if regularize and not post_step:
        adam_step()


def _is_embedding_name(name: str) -> bool:
    return "embed" in name.lower()


def model_param_groups(model: nn.Module, reg_embedding: bool = False) -> list[dict]:
    """``[{"params", "names", "regularize": True}, {..., "regularize": False}]`` for a model.

    Regularized: trainable tensors with ``ndim >= 2`` (weight matrices, conv kernels), except
    normalization weights and embeddings (``nn.Embedding``/``nn.EmbeddingBag`` modules and
    parameters whose name contains ``embed``, e.g. a ViT's ``pos_embedding``) unless
    ``reg_embedding``. Not regularized: biases and every other 1-D tensor, normalization
    weights, embeddings. Built on `regkit.param_groups`; empty groups are dropped.
    """
    import regkit

    names = [name for name, p in model.named_parameters() if p.requires_grad]
    skip = [] if reg_embedding else [name for name in names if _is_embedding_name(name)]
    groups = regkit.param_groups(model, 1.0, decay_embeddings=reg_embedding, skip=skip, verbose=False)
    return [
        {"params": g["params"], "names": g["names"], "regularize": g["weight_decay"] > 0} for g in groups
    ]


def _split_by_ndim(params: list[Tensor]) -> list[dict]:
    regularized = [p for p in params if p.ndim >= 2 and p.numel() > 0]  # an empty tensor has nothing to bound
    rest = [p for p in params if p.ndim < 2 or p.numel() == 0]
    return [
        {"params": ps, "regularize": flag} for ps, flag in ((regularized, True), (rest, False)) if ps
    ]


def _describe(groups: list[dict]) -> str:
    def count(flag: bool) -> str:
        ps = [p for g in groups if g["regularize"] is flag for p in g["params"]]
        return f"{len(ps)} tensors ({sum(p.numel() for p in ps):,} values)"

    return f"regularized {count(True)}; not regularized {count(False)}"


CONSTRAINT_LISTS = {"lagmuls": "lagmul", "kappas": "kappa", "norm_emas": "norm_ema", "norm_ema_prevs": "norm_ema_prev",
                    "norm_slope_prevs": "norm_slope_prev", "prev_lagmuls": "lagmul_prev"}
"""The tensor-list arguments of `constrain_` and `adam_cpr` -> the state key each list holds."""
CONSTRAINT_STATE = tuple(CONSTRAINT_LISTS.values())
CONSTRAINT_OPTIONS = ("lr", "reg_function", "kappa_init_method", "kappa_init_param", "kappa_update", "reg_step_size",
                      "reg_ema_decay", "reg_by_lr", "adaptive_bounds")
"""The keyword arguments of `constrain_` that a param group holds under the same names."""


def constraint_groups(params, reg_embedding: bool, verbose: bool, name: str) -> list[dict]:
    """The param groups of a constrained optimizer called ``name``, each saying whether it is regularized.

    A model: `model_param_groups`. Param groups (dicts): as given (each must say ``regularize``).
    A plain iterable of tensors: those with ``ndim >= 2`` are regularized, the split is printed
    (``verbose``). One tensor: TypeError.
    """
    if isinstance(params, nn.Module):
        return model_param_groups(params, reg_embedding)
    if isinstance(params, Tensor):
        raise TypeError("params must be a model, param groups or an iterable of tensors, not one tensor")
    params = list(params)
    if not (params and all(isinstance(p, Tensor) for p in params)):
        return params
    groups = _split_by_ndim(params)
    if verbose:
        print(f"{name}: {_describe(groups)} (a plain iterable: tensors with ndim >= 2 are regularized; "
              "pass the model, or param groups with regularize=True/False, to choose)")
    return groups


def check_constraint(group: dict) -> None:
    """ValueError naming the first bad constraint hyperparameter of ``group`` (CPR's keys, ``regularize`` included)."""
    if group["regularize"] is None:
        raise ValueError(
            "each param group must say regularize=True or regularize=False, got a group without it; "
            "e.g. AdamCPR([{'params': matrices, 'regularize': True}, {'params': others, 'regularize': False}]), "
            "or pass the model: AdamCPR(model) groups it itself"
        )
    check_flag("regularize", group["regularize"])
    method, measure, order = group["kappa_init_method"], group["reg_function"], group["reg_order"]
    for name, value, choices in (
        ("kappa_init_method", method, KAPPA_INIT_METHODS),
        ("reg_function", measure, MEASURES),
        ("reg_order", order, REG_ORDERS),
    ):
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    param = group["kappa_init_param"]
    if method == "warm_start":
        check_number("kappa_init_param", param, 1.0)
        if param != int(param):
            raise ValueError(f"kappa_init_param (warm start steps) must be a whole number >= 1, got {param!r}")
    elif method in ("uniform", "dependent"):
        check_number("kappa_init_param", param, 0.0, high=math.inf, high_open=True)
    else:
        check_number("kappa_init_param", param)  # ignored by inflection_point
    check_number("kappa_update", group["kappa_update"], 0.0, high=math.inf, high_open=True)
    if group["kappa_update"] == 0:
        raise ValueError("kappa_update must be > 0 (with 0 the multiplier never moves: use regkit.optim.Adam)")
    check_int("reg_step_size", group["reg_step_size"], note="steps between inflection-point checks")
    check_number("reg_ema_decay", group["reg_ema_decay"], 0.0, 1.0, high_open=True)
    for flag in ("reg_by_lr", "adaptive_bounds"):
        check_flag(flag, group[flag])


def check_constrained_tensors(name: str, group: dict, index: int) -> None:
    """ValueError if regularized group ``index`` holds an empty tensor (``mu = 1 / numel``, no norm to bound)."""
    names = param_names(group, index)
    empty = [f"{n} (shape {tuple(p.shape)})" for n, p in zip(names, group["params"], strict=True) if p.numel() == 0]
    if group["regularize"] and empty:
        raise ValueError(f"{name} cannot constrain an empty tensor: {', '.join(empty)}; put it in a group "
                         "with regularize=False (an empty tensor has no norm to bound)")


def constraint_state_(buffers: dict, group: dict, p: Tensor) -> dict:
    """Add to ``buffers`` (a ``state[p]``) the CPR scalars ``group`` needs and it lacks (float32, on ``p``'s device).

    Call it before ``p``'s first update: a ``dependent`` bound is measured on the initial weights.
    """
    if "kappa" not in buffers:
        buffers["lagmul"] = _scalar(0.0, p.device)
        buffers["kappa"] = initial_kappa(group["kappa_init_method"], group["kappa_init_param"], group["reg_function"], p)
    if group["kappa_init_method"] == "inflection_point" and "norm_ema" not in buffers:
        for key in ("norm_ema", "norm_ema_prev", "norm_slope_prev"):
            buffers[key] = _scalar(0.0, p.device)
    if group["adaptive_bounds"] and "lagmul_prev" not in buffers:
        buffers["lagmul_prev"] = _scalar(0.0, p.device)
    return buffers


def constraint_lists(states: list[dict], group: dict) -> dict[str, list[Tensor]]:
    """The CPR lists of `constrain_` by argument name (`CONSTRAINT_LISTS`: ``lagmuls``, ``kappas``, ...) from
    the states of the stepped tensors; all empty for a group with ``regularize=False``, and the ones the
    group's options do not use stay empty."""
    keys = ["lagmul", "kappa"]
    if group["kappa_init_method"] == "inflection_point":
        keys += ["norm_ema", "norm_ema_prev", "norm_slope_prev"]
    if group["adaptive_bounds"]:
        keys.append("lagmul_prev")
    chosen = keys if group["regularize"] else []
    return {arg: [state[key] for state in states] if key in chosen else [] for arg, key in CONSTRAINT_LISTS.items()}


class AdamCPR(Float32State, FunctionalOptimizer):
    r"""Adam with constrained parameter regularization (CPR): one bound ``R(w) <= kappa`` per weight matrix.

    Training becomes ``min L(w)`` subject to ``R(w_j) <= kappa_j`` for every regularized
    tensor ``j``, solved with one Lagrange multiplier ``lambda_j`` per tensor updated every
    step. With ``t`` the step count and ``c = lr`` if ``reg_by_lr`` else 1, each step is::

        w <- Adam step of w, no weight decay (exp_avg, exp_avg_sq, bias correction, amsgrad)
        for each regularized tensor (once its bound applies):
            lambda <- max(0, lambda + mu * (R(w) - kappa))   mu = kappa_update / numel(w) (std: kappa_update)
            w      <- w - c * lambda * grad R(w)

    This is pytorch-cpr 0.3.1's order (``reg_order="post_step"``, the default, so results
    match the package): ``R`` and ``grad R`` are evaluated on the weights after the Adam
    step. ``reg_order="pre_step"`` is the paper's Algorithm 1: ``R`` and ``grad R`` at the
    weights before the step, i.e. the constraint step first, then the Adam step (Adam's
    update does not depend on ``w``). Both see the same sequence of weights; they differ in
    where the correction lands. While ``R(w) <= kappa`` the multiplier falls to 0 and the
    step is plain Adam; a violation accumulates in ``lambda`` until the shrinking along
    ``grad R`` balances the loss gradient (the KKT condition ``grad L + lambda grad R = 0``:
    weight decay with a per-tensor, self-tuned coefficient).

    ``reg_function`` (the measure ``R``, see `regkit.optim.measures`): ``"l2"`` (sum of
    squares), ``"l1"`` (sum of absolute values, a proximal step), ``"std"`` (unbiased
    standard deviation), ``"huber"`` (Huber loss with delta 1, summed).

    ``kappa_init_method`` (the bound; ``kappa_init_param`` is its only hyperparameter):

    - ``"uniform"``: ``kappa = kappa_init_param`` for every tensor, from the first step.
    - ``"dependent"``: ``kappa = kappa_init_param * R(w_0)``, ``w_0`` the initial weights
      (a tensor with ``R(w_0) = 0`` stays unconstrained: a bound of 0 would pin it at zero).
    - ``"warm_start"``: plain Adam for ``s = kappa_init_param`` steps (an integer >= 1), then
      ``kappa = R(w)`` of the weights after step ``s``; the bound applies from step ``s + 1``.
    - ``"inflection_point"`` (no hyperparameter): ``kappa = R(w)`` at the first check where
      the growth of the smoothed norm ``||w||`` slows down (`detect_inflection_`, with
      ``reg_step_size`` and ``reg_ema_decay``); pytorch-cpr 0.3.1's rule (its foreach path).

    ``adaptive_bounds=True`` is AdaCPR (the paper's appendix, `adapt_bounds_`): at the step where
    a tensor's ``lambda`` falls from > 0 to 0, ``kappa <- R(w)``; at no other step.

    Which tensors (``params``):

    - an ``nn.Module``: the optimizer groups it itself (`model_param_groups`): weight matrices
      and conv kernels are regularized; biases, normalization weights and embeddings are not
      (``reg_embedding=True`` regularizes embeddings). Groups carry the parameter ``names``.
    - param groups (dicts): each must say ``regularize=True`` or ``False``.
    - a plain iterable of tensors: those with ``ndim >= 2`` are regularized, the others not
      (it cannot see which are normalization weights or embeddings), and the split is
      printed (``verbose``). pytorch-cpr 0.3.1 silently regularizes nothing in this case.

    If nothing ends up regularized a warning says so. Every hyperparameter is in the param
    groups (per-group values work and survive ``state_dict``). ``state[p]``: ``step``,
    ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad), and for regularized tensors
    ``lagmul`` (lambda) and ``kappa`` (``inf`` = not set), ``norm_ema``, ``norm_ema_prev``,
    ``norm_slope_prev`` (inflection point) and ``lagmul_prev`` (adaptive bounds). The scalars
    stay float32 on the parameter's device for every parameter dtype (also after
    ``load_state_dict``, which would cast them to float16 otherwise); ``R`` is computed in
    float32 for float16/bfloat16 weights. ``step`` reads the host step counters only: no
    device synchronisation, on the for-loop and the foreach path alike.

    Args:
        params: a model, param groups with ``regularize``, or an iterable of tensors (above).
        lr: default 1e-3. betas: default (0.9, 0.999). eps: default 1e-8.
        kappa_init_method: default ``"inflection_point"``. kappa_init_param: default 1000
            (ignored by ``inflection_point``). reg_function: default ``"l2"``.
        kappa_update: the multiplier's step size ``> 0``, default 1.0.
        reg_step_size: the detector's sampling interval in steps, default 200.
        reg_ema_decay: the detector's EMA decay in [0, 1), default 0.99.
        reg_embedding: regularize embeddings when grouping a model, default False.
        reg_by_lr: scale the constraint step by the lr, default False.
        amsgrad: default False. Keyword-only: adaptive_bounds (default False), reg_order
        (default ``"post_step"``), maximize (default False), foreach (default None = True
        when every parameter is on CUDA), verbose (print the split of a plain iterable,
        default True), fused (default False; True: regkit's CPU kernels on float32/float64 CPU tensors,
        elsewhere torch's fused Adam kernel and the constraint step on the foreach path; see
        `regkit.optim.fused`).

    Example::

        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
        >>> opt = AdamCPR(model, lr=1e-3, kappa_init_method="dependent", kappa_init_param=1.0)
        >>> [g["names"] for g in opt.param_groups]
        [['0.weight', '2.weight'], ['0.bias', '1.weight', '1.bias', '2.bias']]
        >>> model(torch.randn(16, 4)).square().mean().backward()
        >>> opt.step()

    Reference: Franke, Hefenbrock, Koehler & Hutter, "Improving Deep Learning Optimization
    through Constrained Parameter Regularization", NeurIPS 2024 (arXiv:2311.09058); the
    package ``pytorch-cpr`` 0.3.1 (tests pin agreement and the deviations).
    """

    functional_update = staticmethod(adam_cpr)
    fusable = True
    whole_tensor_norms = True  # R(w) of whole tensors: sharded (FSDP) params are refused
    refused_dtypes = {torch.float16: FLOAT16_ADVICE}
    float32_state = CONSTRAINT_STATE

    def __init__(
        self,
        params: nn.Module | Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        kappa_init_method: str = "inflection_point",
        kappa_init_param: float = 1000.0,
        reg_function: str = "l2",
        kappa_update: float = 1.0,
        reg_step_size: int = 200,
        reg_ema_decay: float = 0.99,
        reg_embedding: bool = False,
        reg_by_lr: bool = False,
        amsgrad: bool = False,
        *,
        adaptive_bounds: bool = False,
        reg_order: str = "post_step",
        maximize: bool = False,
        foreach: bool | None = None,
        verbose: bool = True,
        fused: bool | None = None,
    ):
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            regularize=None,
            kappa_init_method=kappa_init_method,
            kappa_init_param=kappa_init_param,
            reg_function=reg_function,
            kappa_update=kappa_update,
            reg_step_size=reg_step_size,
            reg_ema_decay=reg_ema_decay,
            reg_by_lr=reg_by_lr,
            adaptive_bounds=adaptive_bounds,
            reg_order=reg_order,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
        )
        self.check_defaults(defaults)  # before params are looked at (torch.optim's order)
        check_flag("reg_embedding", reg_embedding)
        check_flag("verbose", verbose)
        super().__init__(constraint_groups(params, reg_embedding, verbose, "AdamCPR"), defaults, fused=fused)
        if not any(g["regularize"] for g in self.param_groups if g["params"]):
            warnings.warn("AdamCPR regularizes no tensor: it is plain Adam", stacklevel=2)

    def check_defaults(self, defaults: dict) -> None:
        self.check_hyperparameters({**defaults, "regularize": False})  # each group says whether it is regularized

    def required_state(self, group: dict) -> tuple[str, ...]:
        return ADAM_STATE

    def add_param_group(self, param_group: dict) -> None:
        """As `FunctionalOptimizer`, and a regularized group must not hold an empty tensor (``mu = 1 / numel``)."""
        super().add_param_group(param_group)
        with kept_if_valid(self.param_groups) as (group, index):
            check_constrained_tensors("AdamCPR", group, index)

    def check_hyperparameters(self, group: dict) -> None:
        check_constraint(group)
        check_number("lr", group["lr"], 0.0)
        check_betas(group["betas"])
        check_number("eps", group["eps"], 0.0)
        for flag in ("amsgrad", "maximize"):
            check_flag(flag, group[flag])
        check_flag("foreach", group["foreach"], allow_none=True)

    def prepare_update(self, group: dict, params: list[Tensor]) -> tuple[tuple, dict]:
        exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = adam_state(self.state, params, amsgrad=group["amsgrad"])
        if group["regularize"]:  # no step has run yet: a dependent bound is measured on the initial weights
            for p in params:
                constraint_state_(self.state[p], group, p)
        beta1, beta2 = group["betas"]
        hyper = {k: group[k] for k in (*CONSTRAINT_OPTIONS, "eps", "amsgrad", "maximize", "regularize", "reg_order")}
        return (), dict(
            params=params, grads=[p.grad for p in params], exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs,
            max_exp_avg_sqs=max_exp_avg_sqs, steps=steps, **constraint_lists([self.state[p] for p in params], group),
            **hyper, beta1=beta1, beta2=beta2, foreach=self.resolve_foreach(group["foreach"], params),
        )
