"""Gradient-norm penalty (GR): exact by double backprop, Hessian-free by a two-pass wrapper.

Objective ``L(theta) + lam * ||g(theta)||`` with ``g = grad L``; its gradient is
``g + lam * H g / ||g|| = g + lam * H v`` with ``v = g / ||g||``.

Zhao, Zhang, Hu, "Penalizing Gradient Norm for Efficiently Improving Generalization in Deep
Learning", ICML 2022 (arXiv:2202.03599). GR warmups: Zhao, Zhang, Hu, "When Will Gradient
Regularization Be Harmful?", ICML 2024 (arXiv:2406.09723). SAM: Foret et al., ICLR 2021.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from regkit._validate import check_int
from regkit.distributed import reject_sharded
from regkit.optim._base import KeepsOwnAttributes, kept_if_valid
from regkit.optim._functional import each
from regkit.train.seeding import set_rng_state, torch_rng_state

DIFFERENCES = ("forward", "central", "exact")
NORMALIZATIONS = ("global", "layer")
MIXES = ("paper", "official")
WARMUPS = (None, "lambda", "r", "zero")


def gradient_norm(loss: Tensor, params, *, squared: bool = False, create_graph: bool = True) -> Tensor:
    """``||grad_params loss||`` (or its square) as a differentiable scalar, for use as a loss term.

    ``(loss + lam * gradient_norm(loss, params)).backward()`` leaves ``g + lam * H g / ||g||`` in
    ``.grad`` (``g + 2 lam H g`` with ``squared=True``): double backprop, about 3x a plain step.
    Parameters the loss does not reach count as zero gradient. At ``g = 0`` the norm's gradient is
    0, not NaN (``torch.linalg.vector_norm``'s backward masks the zero norm).

    >>> w = torch.tensor([3.0, 4.0], requires_grad=True)
    >>> float(gradient_norm((w ** 2).sum() / 2, [w]))
    5.0
    """
    grads = [g for g in torch.autograd.grad(loss, list(params), create_graph=create_graph, allow_unused=True)
             if g is not None]
    if not grads:
        raise ValueError("gradient_norm: the loss does not depend on any of the given params")
    if squared:
        return sum(g.square().sum() for g in grads)
    return _penalty(grads, layerwise=False)


def _penalty(grads: list[Tensor], layerwise: bool) -> Tensor:
    """Differentiable ``||g||`` (global) or ``sum_i ||g_i||`` (layerwise): their gradients are ``H v``."""
    norms = [torch.linalg.vector_norm(g) for g in grads]
    if layerwise:
        return sum(norms)
    dtype = functools.reduce(torch.promote_types, [n.dtype for n in norms])
    return torch.linalg.vector_norm(torch.stack([n.to(dtype) for n in norms]))


def gr_warmup(warmup: str | None, step: int, warmup_steps: int | None) -> tuple[float, float]:
    """Multipliers ``(alpha_t / alpha, r_t / r)`` at optimizer step ``t = step`` (counted from 1).

    ``None``: ``(1, 1)``. ``"lambda"``: ``alpha_t = alpha * min(1, t/T)``. ``"r"``:
    ``r_t = r * min(1, t/T)``. ``"zero"``: ``(0, 0)`` while ``t <= T`` (plain one-pass steps during
    the T warmup steps), then ``(1, 1)``. ``T = warmup_steps``; Zhao et al., ICML 2024.
    """
    if warmup is None:
        return 1.0, 1.0
    ramp = min(1.0, step / warmup_steps)
    if warmup == "lambda":
        return ramp, 1.0
    if warmup == "r":
        return 1.0, ramp
    if warmup == "zero":
        return (0.0, 0.0) if step <= warmup_steps else (1.0, 1.0)
    raise ValueError(f"warmup={warmup!r}; valid choices: {WARMUPS}")


# Tensor-list steps of the finite-difference pass, built on `regkit.optim._functional.each` (a foreach path,
# default on CUDA, and a for-loop reference path of one definition). No host syncs.


def inverse_norms(grads: list[Tensor], normalize: str = "global", foreach: bool = False) -> list[Tensor]:
    """``1 / ||g||`` for each tensor: one global norm over all tensors (``"global"``) or each tensor's
    own (``"layer"``). Norms stay device tensors, accumulated in at least float32 and clamped at
    ``finfo.tiny`` so that ``g = 0`` gives ``v = 0`` (no perturbation) instead of NaN. A non-finite
    norm (a NaN/inf gradient entry) gives 0 too: `perturb_` then leaves those weights unperturbed."""
    dtype = functools.reduce(torch.promote_types, [g.dtype for g in grads], torch.float32)
    norms = each("norm", grads, 2, dtype=dtype, foreach=foreach)
    tiny = torch.finfo(dtype).tiny
    if normalize == "global":
        norms = [torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]))] * len(grads)
    return [torch.where(n.isfinite(), n.clamp_min(tiny).reciprocal(), 0.0) for n in norms]


def perturb_(params: list[Tensor], origin: list[Tensor], grads: list[Tensor], inv_norms: list[Tensor],
             step: float, foreach: bool = False) -> None:
    """``theta <- theta_0 + step * g / ||g||`` in place, from the saved copy ``origin = theta_0``
    (``step = +r`` or ``-r``), so every perturbation starts from the exact same weights. Where
    ``1 / ||g||`` is 0 (``||g||`` not finite, see `inverse_norms`) the weights stay ``theta_0``: a
    device mask, so a NaN gradient entry cannot spread NaN into the other tensors' weights."""
    each("copy_", params, origin, foreach=foreach)
    each("addcmul_", params, grads, inv_norms, value=step, foreach=foreach)
    for p, o, s in zip(params, origin, inv_norms, strict=True):
        torch.where(s > 0, p, o, out=p)


def combine_(g0: list[Tensor], perturbed: list[tuple[float, list[Tensor]]], alpha: float,
             foreach: bool = False) -> list[Tensor]:
    """``g0 <- g0 + (alpha / n) * sum_s s * (g_s - g0)`` in place over the ``n`` perturbed passes
    ``(s, g_s = g(theta + s r v))``, i.e. ``g0 + lam * (finite-difference H v)`` with ``lam = alpha r``.

    forward (``s = +1``): ``(1 - alpha) g0 + alpha g+``; central (``s = +1, -1``):
    ``g0 + (alpha / 2) (g+ - g-)``; no perturbed pass: ``g0``. Returns ``g0``."""
    if not perturbed:
        return g0
    weight = alpha / len(perturbed)
    keep = 1.0 - weight * sum(sign for sign, _ in perturbed)
    each("mul_", g0, keep, foreach=foreach)
    for sign, grads in perturbed:
        each("add_", g0, grads, alpha=weight * sign, foreach=foreach)
    return g0


@dataclass
class _Pending:
    """Scratch of one GNP step, alive from ``first_pass`` to ``restore_and_step`` (not state)."""

    params: list[list[Tensor]]  # per group: the params that received a gradient in pass 1
    grads: list[list[Tensor]]  # per group: g(theta), then the combined gradient
    alphas: list[float]  # per group alpha_t (after warmup)
    rs: list[float]  # per group r_t (after warmup)
    rng: dict  # torch's generators at pass 1 (regkit.train.seeding.torch_rng_state)
    signs: tuple[float, ...]  # the perturbations step() makes: (), (+1,) forward, (+1, -1) central
    foreach: bool
    inv_norms: list[list[Tensor]] | None = None
    origin: list[list[Tensor]] | None = None  # copy of theta_0, made by the first perturb()
    running_stats: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    sign: float | None = None  # sign of the perturbation in place now
    perturbed: list[tuple[float, list[list[Tensor]]]] = field(default_factory=list)


def _running_stats(model: nn.Module) -> list[Tensor]:
    """Running-statistics buffers of every norm layer that tracks them (BatchNorm, InstanceNorm)."""
    names = ("running_mean", "running_var", "num_batches_tracked")
    return [b for m in model.modules() if getattr(m, "track_running_stats", False)
            for b in (getattr(m, n, None) for n in names) if b is not None]


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {choices}")


SETTINGS = ("gnp_alpha", "gnp_r", "gnp_difference", "gnp_normalize", "gnp_mix", "gnp_warmup", "gnp_warmup_steps",
            "gnp_foreach")  # in every param group; all but alpha and r are the same in every group


def _check_settings(group: dict, where: str = "") -> None:
    """ValueError naming the first invalid ``gnp_*`` setting of ``group`` (a param group or the arguments)."""
    name = (lambda key: f"{where}[{key!r}]") if where else (lambda key: key.removeprefix("gnp_"))
    _check_nonnegative(name("gnp_alpha"), group["gnp_alpha"])
    _check_nonnegative(name("gnp_r"), group["gnp_r"])
    for key, choices in (("gnp_difference", DIFFERENCES), ("gnp_normalize", NORMALIZATIONS), ("gnp_mix", MIXES),
                         ("gnp_warmup", WARMUPS), ("gnp_foreach", (None, True, False))):
        _check_choice(name(key), group[key], choices)
    difference, warmup, steps = group["gnp_difference"], group["gnp_warmup"], group["gnp_warmup_steps"]
    if group["gnp_mix"] == "official" and difference != "forward":
        raise ValueError(f"mix='official' is defined for difference='forward' only, got difference={difference!r}")
    if warmup is None and steps is not None:
        raise ValueError(f"warmup_steps={steps!r} given without a warmup; choose warmup from {WARMUPS[1:]}")
    if warmup is not None:
        check_int("warmup_steps", steps, note=f"the length of warmup={warmup!r}, which needs it")


def _check_nonnegative(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < float("inf"):
        raise ValueError(f"{name}={value!r} is not valid; it must be a finite number >= 0")


class GNP(KeepsOwnAttributes, Optimizer):
    """Gradient-norm penalty by finite differences: two passes around any base optimizer.

    Per step, on the closure's batch (``lam = alpha * r``; ``v = g / ||g||`` over all params, or per
    tensor with ``normalize="layer"``)::

        g0 = g(theta)                              # pass 1 (the returned loss is L(theta))
        g+ = g(theta + r v)                        # pass 2, same batch, same dropout masks
        g- = g(theta - r v)                        # pass 3, difference="central" only
        forward: d = (1 - alpha) g0 + alpha g+     # = g0 + lam (g+ - g0) / r
        central: d = g0 + (alpha / 2) (g+ - g-)    # = g0 + lam (g+ - g-) / (2 r)
        theta <- theta_0 (bitwise); .grad <- d; base_optimizer.step()

    Taylor, with ``T`` and ``Q`` the third and fourth derivatives of the loss (the ``r^k`` term of the
    gradient needs the ``(k+1)``-th): ``g(theta +- r v) = g0 +- r Hv + (r^2/2) T[v,v] +- (r^3/6) Q[v,v,v]
    + ...``, so the forward ``d`` is ``g0 + lam Hv + lam (r/2) T[v,v] + O(lam r^2)`` and the central ``d``
    is ``g0 + lam Hv + lam (r^2/6) Q[v,v,v] + O(lam r^4)``: at fixed ``lam`` both converge to the exact
    penalty gradient ``g0 + lam H g0/||g0||`` as ``r -> 0``, at order 1 and 2 (round-off grows like
    ``eps ||g|| lam / r``). ``difference="exact"`` computes ``g0 + lam Hv`` by double backprop instead
    (then the closure must return the loss WITHOUT calling backward: the wrapper differentiates it
    twice). ``alpha=1`` is SAM with ``rho = r``; ``alpha=0`` or ``r=0`` is the base optimizer (the
    step then takes one pass). ``mix="official"`` (forward only) uses the official code's default
    (``norm_perturbations``): ``d = (1 - alpha) v + alpha g+``, mixing the unit first gradient.

    Args:
        params: parameters or param groups; a group may override ``gnp_alpha`` / ``gnp_r``.
        base_optimizer: an optimizer class (regkit or torch.optim), built as
            ``base_optimizer(params, **base_kwargs)``; its param groups and state are shared, so LR
            schedulers, ``zero_grad`` and checkpoints work on the wrapper.
        alpha: mixing weight ``lam / r`` (paper: 0.8), in group key ``gnp_alpha``; any value >= 0.
        r: finite-difference radius (paper: 0.1 CIFAR, 0.05 ImageNet), in group key ``gnp_r``.
        difference: ``"forward"`` (2 passes), ``"central"`` (3 passes) or ``"exact"`` (double backprop).
        normalize: ``"global"`` (paper) or ``"layer"`` (``v_i = g_i / ||g_i||``; the penalty becomes
            ``sum_i ||g_i||``).
        mix: ``"paper"`` or ``"official"`` (see above).
        warmup: ``None``, ``"lambda"`` (``alpha_t = alpha min(1, t/T)``), ``"r"``
            (``r_t = r min(1, t/T)``) or ``"zero"`` (plain one-pass steps for ``t <= T``), with
            ``t`` the wrapper's step count from 1 and ``T = warmup_steps`` (Zhao et al., ICML 2024).
        model: the module being trained. With it, the running statistics of its norm layers
            (BatchNorm) are restored after the later passes, so they see pass 1 only; without it,
            every pass updates them (the buffers are invisible from ``params``).
        grad_scaler: a ``torch.amp.GradScaler`` for mixed precision (see below), or None.
        foreach: use ``torch._foreach_*`` ops; default: when all params are on CUDA.

    Every setting but ``model`` and ``grad_scaler`` lives in each param group as ``gnp_<name>``
    (``gnp_alpha``, ``gnp_r``, ``gnp_difference``, ``gnp_normalize``, ``gnp_mix``, ``gnp_warmup``,
    ``gnp_warmup_steps``, ``gnp_foreach``), so ``state_dict`` saves them and schedulers can change
    ``gnp_alpha``/``gnp_r`` per group; the others are the same in every group (the passes are global)
    and read as ``opt.difference``, ``opt.mix``, ... A checkpoint restores them.

    The closure re-evaluates the SAME batch: it computes the loss, calls ``backward()`` and returns
    the loss (zeroing the gradients in it is harmless: the wrapper sets ``.grad = None`` before
    each pass). The CPU and CUDA RNG states are restored before the later passes, so dropout draws
    the same masks and the global RNG advances as by one pass. The wrapper owns ``.grad``: after
    the step it holds the combined gradient ``d`` that the base optimizer used. No host syncs: the
    norm stays a device tensor. Memory: a copy of the weights and of ``g0`` (central: and ``g+``).

    Mixed precision (``grad_scaler``): every pass runs its forward under ``torch.autocast`` and its
    backward on ``grad_scaler.scale(loss)``; the closure does that itself (``difference="exact"``:
    the closure returns the unscaled loss and the wrapper scales it). All passes of a step share
    one scale ``S``, the direction ``v = Sg / ||Sg||`` does not depend on it, and ``d`` is linear in
    the passes' gradients, so ``d`` is ``S`` times the unscaled combination. The wrapper never
    unscales between passes; it ends with ``grad_scaler.step(base_optimizer)``, which unscales ``d``
    once and skips the base step when ``d`` holds an inf/NaN (an overflow in any pass: a non-finite
    ``g0`` gives no perturbation and reaches ``d`` through its own term). Call ``grad_scaler.update()``
    after ``step`` as usual, and never ``grad_scaler.unscale_`` inside the closure. Recipe::

        scaler = torch.amp.GradScaler("cuda")
        opt = SAM(model.parameters(), torch.optim.AdamW, rho=0.05, lr=1e-3, model=model, grad_scaler=scaler)

        def closure():
            with torch.autocast("cuda", dtype=torch.float16):
                loss = F.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            return loss

        opt.step(closure)
        scaler.update()

    Data parallelism (``DistributedDataParallel``): every pass's backward all-reduces its gradients,
    so the perturbation direction comes from the all-reduced ``g0`` (the global batch's gradient,
    identical on every rank) and ``d`` combines all-reduced gradients: the step equals one process
    on the global batch (tested on 2 gloo processes), not the per-worker ("local") SAM variant,
    which this wrapper does not offer. Pass the unwrapped module as ``model`` (its BatchNorm buffers
    are restored after the later passes; DDP broadcasts rank 0's buffers at each forward).

    Faults: if a pass raises (an error in the loss, KeyboardInterrupt), ``step`` puts the weights
    and running statistics back to ``theta_0`` and does not count the step, then re-raises. A
    non-finite ``||g0||`` (a NaN/inf gradient entry) gives no perturbation (the tensors whose norm
    is not finite keep ``theta_0``; with ``normalize="global"`` all of them), so the step is the
    base optimizer's on ``g0``: the bad entry spoils its own tensor only, as without the wrapper.
    Sparse gradients are refused (ValueError).

    The passes are public for teaching; ``step(closure)`` is exactly::

        loss = opt.first_pass(closure)
        opt.perturb(+1.0); opt.second_pass(closure)    # the forward difference
        opt.perturb(-1.0); opt.second_pass(closure)    # central only
        opt.restore_and_step()

    Example::

        opt = GNP(model.parameters(), torch.optim.SGD, alpha=0.8, r=0.1, lr=0.1, momentum=0.9, model=model)

        def closure():
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        loss = opt.step(closure)
    """

    def __init__(self, params, base_optimizer: Callable[..., Optimizer], alpha: float = 0.8, r: float = 0.1,
                 difference: str = "forward", normalize: str = "global", mix: str = "paper",
                 warmup: str | None = None, warmup_steps: int | None = None, model: nn.Module | None = None,
                 grad_scaler: torch.amp.GradScaler | None = None, foreach: bool | None = None, **base_kwargs):
        settings = {"gnp_alpha": alpha, "gnp_r": r, "gnp_difference": difference, "gnp_normalize": normalize,
                    "gnp_mix": mix, "gnp_warmup": warmup, "gnp_warmup_steps": warmup_steps, "gnp_foreach": foreach}
        _check_settings(settings)
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module or None, got {type(model).__name__}")
        if grad_scaler is not None and not isinstance(grad_scaler, torch.amp.GradScaler):
            raise TypeError(f"grad_scaler must be a torch.amp.GradScaler or None, got {type(grad_scaler).__name__}")
        if isinstance(base_optimizer, Optimizer) or not callable(base_optimizer):
            raise TypeError(f"base_optimizer must be an optimizer class such as torch.optim.SGD, got {base_optimizer!r}")
        base = base_optimizer(params, **base_kwargs)
        if not isinstance(base, Optimizer):
            raise TypeError(f"base_optimizer(...) built {type(base).__name__}, not a torch.optim.Optimizer")
        self.base_optimizer = base
        super().__init__(base.param_groups, {**base.defaults, **settings})
        self._share_base()
        reject_sharded(  # ||g|| over shards is not ||g||
            [p for g in self.param_groups for p in g["params"]], type(self).__name__,
            [f"param_groups[{j}]['params'][{i}]" for j, g in enumerate(self.param_groups) for i in range(len(g["params"]))],
        )
        self._check_groups()
        self.model, self.grad_scaler = model, grad_scaler  # objects, not hyperparameters: not in the groups
        self.num_steps = 0
        self._pending: _Pending | None = None

    def _check_groups(self) -> None:
        """Every group carries valid settings, and the wrapper-wide ones (all but alpha and r) agree."""
        for i, group in enumerate(self.param_groups):
            for key in SETTINGS:
                group.setdefault(key, self.defaults[key])  # a group (or checkpoint) from before a key existed
            _check_settings(group, f"param_groups[{i}]")
        for key in SETTINGS[2:]:
            values = [group[key] for group in self.param_groups]
            if any(v != values[0] for v in values):
                raise ValueError(f"{key} must be the same in every param group (the passes are global), got {values}")

    difference = property(lambda self: self.param_groups[0]["gnp_difference"])
    normalize = property(lambda self: self.param_groups[0]["gnp_normalize"])
    mix = property(lambda self: self.param_groups[0]["gnp_mix"])
    warmup = property(lambda self: self.param_groups[0]["gnp_warmup"])
    warmup_steps = property(lambda self: self.param_groups[0]["gnp_warmup_steps"])
    foreach = property(lambda self: self.param_groups[0]["gnp_foreach"])

    def add_param_group(self, param_group: dict) -> None:
        """After construction a group goes to the base optimizer (which validates it), with the ``gnp_*`` settings."""
        if getattr(self, "base_optimizer", None) is None or self.param_groups is not self.base_optimizer.param_groups:
            super().add_param_group(param_group)  # during __init__: the base optimizer's groups are copied in
            return
        group = {**{key: self.defaults[key] for key in SETTINGS}, **param_group}
        _check_settings(group, "param_group")
        self.base_optimizer.add_param_group(group)
        with kept_if_valid(self.param_groups):
            self._check_groups()

    def _share_base(self) -> None:
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state

    def _set_grads_to_none(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def _use_foreach(self, params: list[Tensor]) -> bool:
        return self.foreach if self.foreach is not None else all(p.is_cuda for p in params)

    def _require_pending(self, name: str) -> _Pending:
        if self._pending is None:
            raise RuntimeError(f"{type(self).__name__}.{name}() needs first_pass(closure) before it")
        return self._pending

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        """One GNP step (2 passes forward, 3 central, 1 exact or while alpha_t or r_t is 0).

        If a later pass raises, the weights and running statistics are restored and the step is not counted."""
        loss = self.first_pass(closure)
        try:
            for sign in self._pending.signs:
                self.perturb(sign)
                self.second_pass(closure)
        except BaseException:
            self._abandon()
            raise
        self.restore_and_step()
        return loss

    @torch.no_grad()
    def _abandon(self) -> None:
        """Undo a step whose passes failed: ``theta <- theta_0``, running statistics back, step not counted."""
        pending, self._pending = self._pending, None
        if pending is not None:
            _restore_(pending)
            self.num_steps -= 1

    def first_pass(self, closure: Callable[[], Tensor] | None) -> Tensor:
        """Pass 1 at ``theta``: count the step (warmup), save the RNG state, ``g0 = g(theta)``."""
        if not callable(closure):
            raise ValueError(f"{type(self).__name__}.step needs a closure that re-evaluates the same batch, "
                             "calls loss.backward() and returns the loss (difference='exact': returns the "
                             f"loss without backward); got closure={closure!r}")
        alpha_factor, r_factor = gr_warmup(self.warmup, self.num_steps + 1, self.warmup_steps)
        alphas = [group["gnp_alpha"] * alpha_factor for group in self.param_groups]
        rs = [group["gnp_r"] * r_factor for group in self.param_groups]
        rng = torch_rng_state()
        self._set_grads_to_none()
        with torch.enable_grad():
            loss = closure()
        if self.difference == "exact" and not isinstance(loss, Tensor):
            raise TypeError(f"difference='exact' needs a closure that returns the loss tensor (without calling "
                            f"backward()); the closure returned {type(loss).__name__}")
        if self.difference == "exact":
            params, grads = self._exact_gradients(loss, alphas, rs)
            loss = loss.detach()
        else:
            params = [[p for p in group["params"] if p.grad is not None] for group in self.param_groups]
            if not any(params):
                raise RuntimeError("the closure left no gradients: it must call loss.backward()")
            grads = [[p.grad for p in ps] for ps in params]
            _reject_sparse(type(self).__name__, params)
        self.num_steps += 1  # only once pass 1 succeeded
        penalized = any(a != 0 and r != 0 for a, r in zip(alphas, rs, strict=True))
        signs = {"forward": (1.0,), "central": (1.0, -1.0)}.get(self.difference, ()) if penalized else ()
        foreach = self._use_foreach([p for ps in params for p in ps])
        self._pending = _Pending(params, grads, alphas, rs, rng, signs, foreach)
        return loss

    def _exact_gradients(self, loss: Tensor, alphas: list[float], rs: list[float]):
        """``d = g + lam H v`` per group by double backprop of ``||g||`` (``sum_i ||g_i||`` layerwise)."""
        if any(p.grad is not None for group in self.param_groups for p in group["params"]):
            raise RuntimeError("difference='exact' needs a closure that returns the loss WITHOUT calling "
                               "backward(): the wrapper differentiates it twice")
        flat = [(i, p) for i, group in enumerate(self.param_groups) for p in group["params"] if p.requires_grad]
        penalized = any(a * r != 0 for a, r in zip(alphas, rs, strict=True))
        if self.grad_scaler is not None:
            loss = self.grad_scaler.scale(loss)  # d = S (g + lam H v): ||S g|| has gradient S H v
        grads = torch.autograd.grad(loss, [p for _, p in flat], create_graph=penalized, allow_unused=True)
        kept = [(i, p, g) for (i, p), g in zip(flat, grads, strict=True) if g is not None]
        hvps = [None] * len(kept)
        if penalized:
            penalty = _penalty([g for _, _, g in kept], layerwise=self.normalize == "layer")
            hvps = torch.autograd.grad(penalty, [p for _, p, _ in kept], allow_unused=True)
            finite = penalty.isfinite()  # a non-finite ||g||: no penalty term (as a step without perturbation)
            hvps = [hv if hv is None else torch.where(finite, hv, 0.0) for hv in hvps]
        params = [[] for _ in self.param_groups]
        combined = [[] for _ in self.param_groups]
        for (i, p, g), hv in zip(kept, hvps, strict=True):
            d = g.detach() if hv is None else g.detach() + alphas[i] * rs[i] * hv
            params[i].append(p)
            combined[i].append(d)
            p.grad = d
        return params, combined

    @torch.no_grad()
    def perturb(self, sign: float = 1.0) -> None:
        """``theta <- theta_0 + sign * r_t * v`` in place (the first call saves ``theta_0`` and the
        BatchNorm running statistics of ``model``)."""
        pending = self._require_pending("perturb")
        if self.difference == "exact":
            raise RuntimeError("perturb() has no role with difference='exact' (the gradient is exact)")
        foreach = pending.foreach
        if pending.inv_norms is None:
            flat = inverse_norms([g for gs in pending.grads for g in gs], self.normalize, foreach)
            rest = iter(flat)
            pending.inv_norms = [[next(rest) for _ in ps] for ps in pending.params]
            pending.origin = [[p.detach().clone() for p in ps] for ps in pending.params]
            if self.model is not None:
                pending.running_stats = [(b, b.clone()) for b in _running_stats(self.model)]
        for ps, origin, grads, inv, r in zip(pending.params, pending.origin, pending.grads, pending.inv_norms,
                                             pending.rs, strict=True):
            if ps:
                perturb_(ps, origin, grads, inv, sign * r, foreach)
        pending.sign = sign

    def second_pass(self, closure: Callable[[], Tensor]) -> Tensor:
        """A later pass at the perturbed weights, with the RNG state of pass 1; returns its loss."""
        pending = self._require_pending("second_pass")
        if pending.sign is None:
            raise RuntimeError("second_pass() needs perturb() before it")
        set_rng_state(pending.rng)
        self._set_grads_to_none()
        with torch.enable_grad():
            loss = closure()
        grads = [[p.grad if p.grad is not None else torch.zeros_like(p) for p in ps] for ps in pending.params]
        pending.perturbed.append((pending.sign, grads))
        pending.sign = None
        return loss

    @torch.no_grad()
    def restore_and_step(self) -> None:
        """``theta <- theta_0`` (a copy, bit for bit), running statistics back to their pass-1
        values, ``.grad <- d`` (the combination above), then ``base_optimizer.step()`` (with a
        ``grad_scaler``: ``grad_scaler.step(base_optimizer)``)."""
        pending = self._require_pending("restore_and_step")
        self._pending = None
        foreach = pending.foreach
        _restore_(pending)
        for i, ps in enumerate(pending.params):
            if not ps:
                continue
            perturbed = [(sign, grads[i]) for sign, grads in pending.perturbed]
            if self.mix == "official" and perturbed:
                each("mul_", pending.grads[i], pending.inv_norms[i], foreach=foreach)  # g0 -> v
            combine_(pending.grads[i], perturbed, pending.alphas[i], foreach)
            for p, d in zip(ps, pending.grads[i], strict=True):
                p.grad = d
        if self.grad_scaler is None:
            self.base_optimizer.step()
        else:
            self.grad_scaler.step(self.base_optimizer)  # unscales d once; skips the step if d is not finite

    def state_dict(self) -> dict:
        """The base optimizer's state dict (param groups hold the ``gnp_*`` settings) + ``num_steps``."""
        return {**self.base_optimizer.state_dict(), "num_steps": self.num_steps}

    def load_state_dict(self, state_dict: dict) -> None:
        if "num_steps" not in state_dict:
            raise ValueError("state_dict has no 'num_steps': it was not saved by GNP/SAM.state_dict()")
        state_dict = dict(state_dict)
        num_steps = state_dict.pop("num_steps")
        self.base_optimizer.load_state_dict(state_dict)
        self._share_base()
        self._check_groups()
        self.num_steps = num_steps


def _restore_(pending: _Pending) -> None:
    """``theta <- theta_0`` (a copy, bit for bit) and the running statistics back to their pass-1 values."""
    if pending.origin is not None:
        for ps, origin in zip(pending.params, pending.origin, strict=True):
            if ps:
                each("copy_", ps, origin, foreach=pending.foreach)
    for buffer, saved in pending.running_stats:
        buffer.copy_(saved)


def _reject_sparse(name: str, params: list[list[Tensor]]) -> None:
    for j, ps in enumerate(params):
        for p in ps:
            if p.grad.is_sparse:
                raise ValueError(f"{name} does not support sparse gradients (a param of shape {tuple(p.shape)} in "
                                 f"param group {j}): its perturbation needs ||g||; use a dense nn.Embedding")


class _Hold(Optimizer):
    """A base optimizer that never moves the weights (for :func:`update_gradient`)."""

    def __init__(self, params):
        super().__init__(params, {})

    def step(self, closure=None):
        return None


def update_gradient(params, closure: Callable[[], Tensor], **gnp_kwargs) -> list[Tensor | None]:
    """The gradient ``d`` that one :class:`GNP` step hands its base optimizer, at the current weights.

    Takes the passes of a real ``GNP(params, ..., **gnp_kwargs).step(closure)`` (so ``d`` carries the
    same truncation and round-off error), with a base optimizer that does not move: the weights are
    left exactly as they were. ``params``: an iterable of tensors; ``closure`` as for :class:`GNP`.
    Returns ``d`` per parameter (None where the loss does not reach it);
    the tensors are the parameters' new ``.grad``. With ``lam = alpha r`` and ``g`` the plain gradient:
    ``alpha=0`` gives ``g``; ``alpha=1`` gives SAM's ``g(theta + r v)`` (forward); ``(d - g) / lam`` is
    the finite-difference estimate of ``H v`` (forward or central) or, with ``difference="exact"``,
    ``H v`` by double backprop. Example::

        g = update_gradient(model.parameters(), closure, alpha=0.0)
        d = update_gradient(model.parameters(), closure, alpha=1.0, r=1e-3)
        hv = [(a - b) / 1e-3 for a, b in zip(d, g)]   # (g(theta + r v) - g(theta)) / r
    """
    params = list(params)
    GNP(params, _Hold, **gnp_kwargs).step(closure)
    return [p.grad for p in params]


class SAM(GNP):
    """Sharpness-aware minimization (Foret et al., ICLR 2021) = ``GNP(alpha=1, r=rho)``.

    ``g+ = g(theta + rho g/||g||)``; ``theta <- theta``, ``.grad <- g+``, ``base_optimizer.step()``.
    ``rho`` lives in the param groups as ``gnp_r``; other keywords as in :class:`GNP`.

    Example: ``SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)``.
    """

    def __init__(self, params, base_optimizer: Callable[..., Optimizer], rho: float = 0.05, **kwargs):
        _check_nonnegative("rho", rho)
        super().__init__(params, base_optimizer, alpha=1.0, r=rho, **kwargs)
