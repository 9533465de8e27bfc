r"""`Grafted`: the step length of one optimizer with the step direction of another, over any two optimizers.

Agarwal, Anil, Hazan, Koren & Zhang, "Disentangling Adaptive Gradient Methods from Learning Rates"
(arXiv:2002.11803, 2020) define grafting ``M#D``: from the same point ``w`` and the same gradient, both
optimizers compute their step, ``Delta_M`` and ``Delta_D``, each with its own state, and the weights move by

    w <- w + ||Delta_M|| / ||Delta_D|| * Delta_D        (per tensor: "layer"; or one norm over all: "global")

so ``M`` sets the length (its learning rate and schedule, its implicit step-size adaptation) and ``D`` the
direction. Novack et al. (ICLR 2023) graft the step length of small-batch SGD onto a large-batch run
(`regkit.optim.Graft` covers their magnitude-from-a-gradient-norm case); `Grafted` is the general form,
over any regkit or torch.optim optimizer or a composed one (``with_cpr(SGD)``, ``with_projection(AdamW)``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from regkit.distributed import reject_sharded
from regkit.optim._base import KeepsOwnAttributes, kept_if_valid, param_names
from regkit.optim._functional import each
from regkit.optim.adamp import LOW_PRECISION
from regkit.optim.compose import run_closure
from regkit.optim.graft import NORMS, apply_scaled_steps, graft_scales, step_norms

SETTINGS = ("graft_norm", "graft_eps", "graft_foreach")  # the param-group keys Grafted adds


class Grafted(KeepsOwnAttributes, Optimizer):
    r"""Grafting ``M#D`` (Agarwal et al. 2020): ``M``'s step length, ``D``'s step direction.

    Each step, from the weights ``w0`` and the gradient in ``.grad`` (the closure runs once)::

        Delta_M = M.step() from w0 (then w <- w0)       M's own update, its state advanced
        Delta_D = D.step() from w0                      D's own update, its state advanced
        w <- w0 + s * Delta_D,   s = ||Delta_M|| / max(||Delta_D||, eps)

    with the norms per tensor (``norm="layer"``, the paper's layer-wise grafting) or over all tensors
    (``"global"``). ``M#M`` is ``M`` bit for bit (the ratio is exactly 1 and ``w0 + (w - w0) = w``).
    The steps are the optimizers' whole updates: decoupled decay, CPR's constraint step, AdamP's
    projection are part of them (``D = with_cpr(SGD)``: the constraint step is rescaled with the rest).

    Args:
        params: parameters, param groups or a model (as the optimizers take it); both optimizers are
            built on it and must hold the same tensors.
        magnitude, direction: optimizer factories ``make(params) -> Optimizer``, e.g. a class or
            ``functools.partial(regkit.optim.SGD, lr=0.1, momentum=0.9)``.
        norm: ``"layer"`` (default) or ``"global"``; eps: floor of ``||Delta_D||`` (a zero step stays zero);
        foreach: the ``torch._foreach_*`` path for grafting's own ops (None: when all params are on CUDA).

    ``param_groups`` and ``state`` are ``M``'s (``opt.magnitude``), so an LR scheduler drives ``M``'s lr,
    which is grafting's learning rate; ``D`` (``opt.direction``) keeps its own lr, which cancels out of
    the direction when ``D``'s update is linear in it (SGD, Adam, decoupled decay) and sets the balance
    of a step that is not (CPR's constraint step without ``reg_by_lr``). The settings live in
    every group as ``graft_norm``, ``graft_eps``, ``graft_foreach`` (the same in all groups);
    ``state_dict`` is ``M``'s plus ``D``'s under ``"direction"``. A non-finite step norm (a NaN/inf
    gradient entry) leaves the tensors it scales at ``w0``; both optimizers' states still advanced.
    Memory: the weights, ``Delta_M`` and ``Delta_D`` (float32 for float16/bfloat16 weights, whose steps
    are then the optimizers' rounded steps). Optimizers whose ``step`` needs a closure (SAM, GNP) go
    outside: ``SAM(params, lambda ps, **kw: Grafted(ps, M, D), rho=0.05)``.

    Example (Adam's per-layer step length on SGD's direction, Agarwal et al.'s ``Adam#SGD``)::

        opt = Grafted(model.parameters(), magnitude=partial(regkit.optim.Adam, lr=1e-3),
                      direction=partial(regkit.optim.SGD, lr=0.1, momentum=0.9))
    """

    def __init__(
        self,
        params,
        magnitude: Callable[..., Optimizer],
        direction: Callable[..., Optimizer],
        *,
        norm: str = "layer",
        eps: float = 1e-16,
        foreach: bool | None = None,
    ):
        settings = {"graft_norm": norm, "graft_eps": eps, "graft_foreach": foreach}
        check_settings(settings)  # before params are looked at (torch.optim's order)
        for name, make in (("magnitude", magnitude), ("direction", direction)):
            if isinstance(make, Optimizer) or not callable(make):
                raise TypeError(
                    f"{name} must be an optimizer class or factory such as "
                    f"functools.partial(regkit.optim.SGD, lr=0.1), got {make!r}"
                )
        params = reusable(params)
        self.magnitude = built(magnitude, params, "magnitude")
        self.direction = built(direction, copied(params), "direction")
        check_same_tensors(self.magnitude, self.direction)
        super().__init__(self.magnitude.param_groups, {**self.magnitude.defaults, **settings})
        self._share_magnitude()
        self._check_groups()
        for index, group in enumerate(self.param_groups):  # ||Delta|| of a shard is not ||Delta||
            reject_sharded(group["params"], type(self).__name__, param_names(group, index))

    norm = property(lambda self: self.param_groups[0]["graft_norm"])
    eps = property(lambda self: self.param_groups[0]["graft_eps"])
    foreach = property(lambda self: self.param_groups[0]["graft_foreach"])

    def _share_magnitude(self) -> None:
        self.param_groups = self.magnitude.param_groups
        self.state = self.magnitude.state

    def _check_groups(self) -> None:
        """Every group holds valid settings (a checkpoint from before a key gets its default), the same in all."""
        for i, group in enumerate(self.param_groups):
            for key in SETTINGS:
                group.setdefault(key, self.defaults[key])
            check_settings(group, f"param_groups[{i}]")
        for key in SETTINGS:
            values = [group[key] for group in self.param_groups]
            if any(v != values[0] for v in values):
                raise ValueError(
                    f"{key} must be the same in every param group (one grafting rule), got {values}"
                )

    def add_param_group(self, param_group: dict) -> None:
        """After construction: the group goes to both optimizers (each validates it); a refused group is kept by neither."""
        if getattr(self, "direction", None) is None or self.param_groups is not self.magnitude.param_groups:
            # during __init__: the magnitude optimizer's groups are copied in
            super().add_param_group(param_group)
            return
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        group = {**{key: self.defaults[key] for key in SETTINGS}, **param_group, "params": params}
        check_settings(group, "param_group")
        self.magnitude.add_param_group(group)
        with kept_if_valid(self.param_groups) as (_, index):
            self._check_groups()
            reject_sharded(params, type(self).__name__, param_names(group, index))
            own = {k: v for k, v in param_group.items() if k not in SETTINGS}
            self.direction.add_param_group({**own, "params": params})

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """The closure (if any), both optimizers' steps from the same weights, then the grafted step."""
        loss = run_closure(closure)
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return loss
        if any(p.grad.is_sparse for p in params):
            raise ValueError(
                f"{type(self).__name__} does not support sparse gradients (use a dense nn.Embedding)"
            )
        foreach = self.foreach if self.foreach is not None else all(p.is_cuda for p in params)
        with torch.no_grad():
            origin = [p.detach().to(wide(p.dtype), copy=True) for p in params]
            self.magnitude.step()
            magnitude_steps = differences(params, origin, foreach)
            each("copy_", params, origin, foreach=foreach)
            self.direction.step()
            direction_steps = differences(params, origin, foreach)
            lengths = step_norms(magnitude_steps, norm=self.norm, foreach=foreach)
            scales = graft_scales(direction_steps, lengths, norm=self.norm, eps=self.eps, foreach=foreach)
            graft_from_direction_(params, origin, direction_steps, scales, foreach=foreach)
        return loss

    def state_dict(self) -> dict:
        """``M``'s state dict (its groups hold the ``graft_*`` settings) with ``D``'s under ``"direction"``."""
        return {**self.magnitude.state_dict(), "direction": self.direction.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        if "direction" not in state_dict:
            raise ValueError("state_dict has no 'direction': it was not saved by Grafted.state_dict()")
        state_dict = dict(state_dict)
        self.direction.load_state_dict(state_dict.pop("direction"))
        self.magnitude.load_state_dict(state_dict)
        self._share_magnitude()
        self._check_groups()


def check_settings(group: dict, where: str = "") -> None:
    """ValueError naming a bad ``norm`` (global/layer), ``eps`` (a number > 0) or ``foreach`` (None/True/False)."""
    name = (lambda key: f"{where}[{key!r}]") if where else (lambda key: key.removeprefix("graft_"))
    norm, eps, foreach = (group[key] for key in SETTINGS)
    if norm not in NORMS:
        raise ValueError(f"{name('graft_norm')}={norm!r} is not one of {', '.join(map(repr, NORMS))}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(
            f"{name('graft_eps')} must be a number > 0 (the floor of the direction's step norm), got {eps!r}"
        )
    if foreach not in (None, True, False):
        raise ValueError(f"{name('graft_foreach')} must be None, True or False, got {foreach!r}")


def reusable(params):
    """``params`` in a form both optimizers can take (a one-shot iterator becomes a list; groups list their params)."""
    if params is None or isinstance(params, (Tensor, nn.Module)):
        return params
    params = list(params)
    if params and all(isinstance(g, dict) for g in params):
        return [
            {**g, "params": g["params"] if isinstance(g["params"], Tensor) else list(g["params"])}
            for g in params
        ]
    return params


def copied(params):
    """A copy of the param-group dicts for the second optimizer (torch's ``add_param_group`` fills them in place)."""
    if isinstance(params, list) and params and all(isinstance(g, dict) for g in params):
        return [dict(g) for g in params]
    return params


def built(make: Callable[..., Optimizer], params, name: str) -> Optimizer:
    optimizer = make(params)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{name}(params) built {type(optimizer).__name__}, not a torch.optim.Optimizer")
    return optimizer


def check_same_tensors(magnitude: Optimizer, direction: Optimizer) -> None:
    """ValueError unless both optimizers hold the same tensors (each step pairs them tensor by tensor)."""
    held = [{id(p) for g in opt.param_groups for p in g["params"]} for opt in (magnitude, direction)]
    if held[0] != held[1]:
        raise ValueError(
            f"the magnitude optimizer holds {len(held[0])} tensors and the direction optimizer "
            f"{len(held[1])}, {len(held[0] ^ held[1])} of them in one only: build both on the same params"
        )


def wide(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the saved weights and the steps: float32 for float16/bfloat16, else the weights' own."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def differences(params: list[Tensor], origin: list[Tensor], foreach: bool) -> list[Tensor]:
    """``w - w0`` per tensor in ``origin``'s dtype: the step an optimizer just took."""
    return each("sub", [p.to(o.dtype) for p, o in zip(params, origin, strict=True)], origin, foreach=foreach)


def graft_from_direction_(
    params: list[Tensor], origin: list[Tensor], steps: list[Tensor], scales: list[Tensor], *, foreach: bool
) -> None:
    """From ``D``'s result ``w = w0 + Delta_D`` in ``params``: ``w <- w + (s - 1) * Delta_D`` (= ``w0 + s Delta_D``,
    one rounding away from ``D``'s own ``w``, so ``s == 1`` keeps it bit for bit); ``w <- w0`` where ``s`` is not finite."""
    scales = scales * len(params) if len(scales) == 1 else scales
    apply_scaled_steps(params, steps, [s - 1 for s in scales], lr=-1.0, foreach=foreach)
    for p, o, s in zip(params, origin, scales, strict=True):
        torch.where(s.isfinite(), p, o.to(p.dtype), out=p)
