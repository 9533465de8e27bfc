"""The course papers' training recipes: their published settings as data, their compared methods as
``regkit.course.experiments.Method`` factories.

A notebook's full profile runs these settings (its quick profile shrinks them); the published
results are in ``regkit.course.references`` under the keys that ``*_REFERENCES`` map each method to.
Sources: the project's METHODS.md and the papers' public code, named at each recipe.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer

from regkit.course.experiments import Method
from regkit.course.grokking import steps_to
from regkit.course.references import REFERENCES
from regkit.history import History
from regkit.optim import (
    NGD,
    SGD,
    SGDP,
    AdamAdaDecay,
    AdamAWD,
    AdamCPR,
    AdamP,
    AdamW,
    ConstraintRecorder,
    Graft,
    GraftingSchedule,
    JointNormRescaler,
    with_cpr,
)
from regkit.param_groups import param_groups
from regkit.penalties import GNP, SAM, MicroBatchStats, microbatch_grad_fn

# --- Franke et al., Constrained Parameter Regularization (NeurIPS 2024): CIFAR-100 ResNet-18 ---------------

CPR_CIFAR100: dict[str, Any] = {
    "dataset": "cifar100", "model": "resnet18", "width": 64, "steps": 20_000, "batch_size": 128, "lr": 1e-3,
    "betas": (0.9, 0.98), "warmup": 500, "final_fraction": 0.1, "label_smoothing": 0.1, "augment": True,
    "seeds": 3, "reg_step_size": 200, "reg_ema_decay": 0.99,
}
"""The paper's recipe (METHODS.md section 3): batch 128, 20k steps, Adam lr 1e-3 with betas (0.9, 0.98),
500-step linear warmup then cosine to 10% of the lr, label smoothing 0.1, crop+flip; best test accuracy,
mean of 3 seeds. ``reg_step_size``/``reg_ema_decay``: pytorch-cpr 0.3.1's inflection-point defaults, which
the authors' own CIFAR-100 script (github.com/automl/CPR ``examples/train_cifar100_task.py``, 500 warmup
steps) leaves unchanged. That detector is not the paper's rule (first negative second difference of R,
sampled every 10% of the warmup: every 50 steps here): `regkit.optim.AdamCPR` implements the package's
detector, whose sampling interval is not tied to the warmup, so its package default is kept."""

CPR_REFERENCES = {key: f"cpr.cifar100.resnet18.{key}.acc" for key in ("adamw", "cpr_ip", "cpr_warm_start")}
"""Method key -> the published (approximate, ~) CIFAR-100 accuracy it is compared with."""


def cpr_methods(*, lr: float, warmup: int, betas: tuple[float, float] = (0.9, 0.98), reg_function: str = "l2",
                reg_step_size: int = 200, reg_ema_decay: float = 0.99, weight_decay: float = 0.1,
                awd_weight_decay: float = 0.02, adadecay_weight_decay: float = 0.1, adadecay_alpha: float = 4.0,
                rescale_alpha: float = 0.8, dependent_factor: float = 1.0,
                warm_start_init: tuple[str, float] | None = None) -> list[Method]:
    """The CPR paper's CIFAR comparison: AdamW, AdamCPR with three bounds, and its three baselines.

    * ``AdamW``: decoupled decay ``weight_decay`` on matrices (biases and norms exempt, `param_groups`).
    * ``AdamCPR`` (bounds on ``reg_function``, the paper's l2, of every matrix): inflection point (no
      hyperparameter); warm start after ``2 * warmup`` steps (the paper's best CIFAR-100 run: s = 1k = 2x the
      warmup), or ``warm_start_init = (kappa_init_method, kappa_init_param)`` in its place (notebook 03's
      tuned row); dependent ``kappa = dependent_factor * R(w_0)``.
    * ``AdamAWD`` (``awd_weight_decay``), ``AdamAdaDecay`` (``adadecay_weight_decay``, ``adadecay_alpha``).
    * ``AdamW + rescaling``: weight 0, matrices scaled by ``rescale_alpha`` at the start and their joint
      norm held there (`JointNormRescaler`).

    The decay coefficients are the course's choices (notebook 03), not tuned per run.
    """
    cpr = dict(lr=lr, betas=betas, reg_function=reg_function, reg_step_size=reg_step_size,
               reg_ema_decay=reg_ema_decay, verbose=False)
    tuned_init, tuned_param = warm_start_init or ("warm_start", 2 * warmup)

    def rescaled(model: nn.Module) -> Optimizer:
        optimizer = AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=0.0)
        JointNormRescaler(model, alpha=rescale_alpha).attach(optimizer)
        return optimizer

    return [
        Method("AdamW", "adamw", lambda m: AdamW(param_groups(m, weight_decay, verbose=False), lr=lr, betas=betas)),
        Method("AdamCPR (inflection point)", "cpr_ip",
               lambda m: AdamCPR(m, kappa_init_method="inflection_point", **cpr)),
        Method("AdamCPR (warm start)", "cpr_warm_start",
               lambda m: AdamCPR(m, kappa_init_method=tuned_init, kappa_init_param=tuned_param, **cpr)),
        Method("AdamCPR (dependent)", "cpr_dependent",
               lambda m: AdamCPR(m, kappa_init_method="dependent", kappa_init_param=dependent_factor, **cpr)),
        Method("AdamAWD", "awd",
               lambda m: AdamAWD(param_groups(m, awd_weight_decay, verbose=False), lr=lr, betas=betas)),
        Method("AdamAdaDecay", "adadecay",
               lambda m: AdamAdaDecay(param_groups(m, adadecay_weight_decay, verbose=False), lr=lr, betas=betas,
                                      alpha=adadecay_alpha)),
        Method("AdamW + rescaling", "adamw_rescaling", rescaled),
    ]  # fmt: skip


# --- Novack et al., implicit regularization of SGD (ICLR 2023): ResNet-18 on CIFAR-10/100 -------------------

NOVACK_SETTING: dict[str, Any] = {
    "model": "resnet18", "width": 64, "train_size": 40_000, "batch_size": 5120, "micro_batch_size": 128,
    "steps": 5000, "augment": True,
}
"""Plain SGD (no momentum, no weight decay, constant lr) on the first 40k training images; a large batch
of 5120 = 40 micro-batches of 128 (ghost BatchNorm). The paper does not state the training length: 5000
steps is the authors' code's default (``src/train.py``: every run stops at the last of ``--log-steps``,
default ``1000,2000,3000,4000,5000``)."""

NOVACK_RESNET18: dict[str, dict[str, Any]] = {
    "cifar10": {"lr": {"sb": 0.1, "lb": 0.1, "reg": 0.1, "graft": 0.1, "ngd": 0.2626},
                "lam": {"gn": 0.01, "fisher": 0.01, "avg_jacobian": 1e-3, "unit_jacobian": 1e-3},
                "sweep": [(2560, "gn", 0.5, 0.0025)]},
    "cifar100": {"lr": {"sb": 0.1, "lb": 0.5, "reg": 0.1, "graft": 0.1, "ngd": 0.3951},
                 "lam": {"gn": 0.01, "fisher": 0.01, "avg_jacobian": 5e-5, "unit_jacobian": 1e-3},
                 "sweep": [(2560, "fisher", 0.1, 0.01)]},
}  # fmt: skip
"""Learning rates (small batch, large batch, penalized, grafting, NGD), penalty weights and the
micro-batch sweep ``(micro-batch, penalty, lr, lambda)`` of the authors' README
(github.com/acmi-lab/imp-regularizers)."""

PENALTY_KEYS = {None: "", "gn": "gn", "fisher": "ft", "avg_jacobian": "aj", "unit_jacobian": "uj"}
PENALTY_LABELS = {"gn": "GN", "fisher": "FT", "avg_jacobian": "AJ", "unit_jacobian": "UJ"}


def novack_reference(dataset: str, key: str, model: str = "resnet18") -> str | None:
    """The key of Novack et al.'s published accuracy for ``dataset`` ("cifar10"/"cifar100") and method
    ``key`` (e.g. "lb_gn"), or None when the paper has none."""
    name = f"novack.{dataset}.{model}.{key}.acc"
    return name if name in REFERENCES else None


def microbatch_sgd_method(name: str, key: str, *, lr: float, batch_size: int, micro_batch_size: int,
                          penalty: str | None = None, lam: float = 0.0,
                          optimizer: Callable[[Sequence[nn.Parameter], float], Optimizer] | None = None,
                          on_stats: Callable[[MicroBatchStats, nn.Module, Optimizer], None] | None = None,
                          loss_fn: Callable = F.cross_entropy) -> Method:
    """A batch of ``batch_size`` as micro-batches of ``micro_batch_size`` (ghost BatchNorm), with an
    optional per-micro-batch ``penalty`` of weight ``lam`` (`regkit.penalties.microbatch_grad_fn`).

    ``optimizer(params, lr)``: default plain SGD (no momentum, no weight decay). ``on_stats(stats,
    model, optimizer)``: called with each step's micro-batch statistics (e.g. iterative grafting).
    """
    make = optimizer or (lambda params, lr: SGD(params, lr=lr))

    def grad_fn(model: nn.Module, opt: Optimizer):
        callback = None if on_stats is None else (lambda stats: on_stats(stats, model, opt))
        return microbatch_grad_fn(loss_fn, micro_batch_size, penalty, lam, on_stats=callback)

    return Method(name, key, lambda m: make(m.parameters(), lr), batch_size=batch_size, grad_fn=grad_fn)


def _check_penalties(penalties: Sequence[str]) -> None:
    unknown = [p for p in penalties if p not in PENALTY_LABELS]
    if unknown:
        raise ValueError(f"unknown penalties {unknown}; choose from {list(PENALTY_LABELS)}")


def implicit_sgd_methods(*, lr: Mapping[str, float], lam: Mapping[str, float], batch_size: int,
                         micro_batch_size: int, penalties: Sequence[str] = ("gn", "fisher"),
                         sb_schedule: GraftingSchedule | None = None) -> list[Method]:
    """Novack et al.'s comparison: small-batch SGD (batch = micro-batch, ``lr["sb"]``), large-batch SGD
    (``lr["lb"]``) and large-batch SGD with each micro-batch penalty in ``penalties`` (``lr["reg"]``,
    weight ``lam[penalty]``); keys ``sb_sgd``, ``lb_sgd``, ``lb_gn``, ``lb_ft``, ``lb_aj``, ``lb_uj``.
    ``sb_schedule``: the small-batch run records its gradient norm of every step there (the step lengths
    that external grafting replays, `grafting_methods`)."""
    _check_penalties(penalties)
    micro = dict(micro_batch_size=micro_batch_size)
    record = None if sb_schedule is None else (lambda stats, model, opt: sb_schedule.record(model.parameters()))
    methods = [
        microbatch_sgd_method("SB SGD", "sb_sgd", lr=lr["sb"], batch_size=micro_batch_size, on_stats=record, **micro),
        microbatch_sgd_method("LB SGD", "lb_sgd", lr=lr["lb"], batch_size=batch_size, **micro),
    ]
    for penalty in penalties:
        methods.append(microbatch_sgd_method(
            f"LB+{PENALTY_LABELS[penalty]}", f"lb_{PENALTY_KEYS[penalty]}", lr=lr["reg"], batch_size=batch_size,
            penalty=penalty, lam=lam[penalty], **micro))
    return methods


def microbatch_sweep_methods(sweep: Sequence[tuple[int, str, float, float]], *, batch_size: int) -> list[Method]:
    """Large-batch SGD with a penalty on micro-batches of other sizes: one method per ``(micro_batch_size,
    penalty, lr, lam)`` of ``sweep`` (``NOVACK_RESNET18[...]["sweep"]``), named ``LB+GN b=2560`` and keyed
    ``lb_gn_micro2560``."""
    _check_penalties([penalty for _, penalty, _, _ in sweep])
    return [microbatch_sgd_method(f"LB+{PENALTY_LABELS[penalty]} b={micro}", f"lb_{PENALTY_KEYS[penalty]}_micro{micro}",
                                  lr=lr, batch_size=batch_size, micro_batch_size=micro, penalty=penalty, lam=lam)
            for micro, penalty, lr, lam in sweep]


def grafting_methods(*, lr: float, ngd_lr: float, batch_size: int, micro_batch_size: int,
                     schedule: GraftingSchedule) -> list[Method]:
    """Novack et al.'s grafting rows: the large batch's direction with a small batch's step length.

    ``iterative grafting`` (``graft_iterative``): each step takes the gradient norm of one micro-batch of
    ``micro_batch_size`` at the current weights (`Graft` without a schedule, magnitude set per step);
    ``external grafting`` (``graft_external``): the norms that the small-batch run recorded in ``schedule``
    (`implicit_sgd_methods`' ``sb_schedule``); ``NGD`` (``ngd``): normalized gradient descent at ``ngd_lr``.
    """
    micro = dict(batch_size=batch_size, micro_batch_size=micro_batch_size)
    return [
        microbatch_sgd_method("iterative grafting", "graft_iterative", lr=lr,
                              optimizer=lambda params, lr: Graft(params, lr=lr),
                              on_stats=lambda stats, model, opt: opt.set_magnitude(stats.grad_norm[0]), **micro),
        microbatch_sgd_method("external grafting", "graft_external", lr=lr,
                              optimizer=lambda params, lr: Graft(params, lr=lr, schedule=schedule), **micro),
        microbatch_sgd_method("NGD", "ngd", lr=ngd_lr, optimizer=lambda params, lr: NGD(params, lr=lr), **micro),
    ]


CPU_BATCH: dict[str, Any] = {
    "train_size": 4096, "hidden": (256, 256), "epochs": 30, "batch_size": 1024, "micro_batch_size": 32,
    "lr": {"sb": 0.1, "lb": 0.3, "reg": 0.3}, "lam": {"gn": 0.01, "fisher": 0.01}, "seeds": [0, 1, 2],
}
"""Notebook 05's cpu-profile design (evidence/DESIGN.md "05"): ``mlp`` 256x256 on the first 4,096 Fashion-MNIST
training images, plain SGD on a cosine schedule to 0 at **equal epochs**: small batch ``micro_batch_size`` (lr
``lr["sb"]``) vs the large batch ``batch_size`` as micro-batches of ``micro_batch_size`` (``lr["lb"]``), alone or
with each micro-batch penalty of ``lam`` (``lr["reg"]``), for ``seeds`` (``implicit_sgd_methods``)."""


# --- Zhao, Zhang & Hu, gradient-norm penalty (ICML 2022): CIFAR ResNet -------------------------------------

GNP_CIFAR: dict[str, Any] = {
    "dataset": "cifar10", "model": "resnet18", "width": 64, "batch_size": 256, "epochs": 200, "lr": 0.1,
    "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3, "warmup": 0, "r": 0.1, "alpha": 0.8,
    "augment": True,
}
"""The official code's CIFAR ResNet training settings (github.com/zhaoyang-0204/gnp: ``recipes/resnet-cifar.sh``,
``config/base_config.py``, ``training/training_core.py``) on a ResNet-18: that script sets ResNet-50
(``MODEL_NAME=ResNet50``); the ResNet-18 is the course's choice, not the authors' recipe. Batch 256, 200
epochs, SGD with Nesterov momentum 0.9, lr 0.1 on a cosine schedule without warmup, L2 1e-3 added to the
loss on every parameter (biases and BatchNorm included: ``weight_decay`` of ``SGD``), crop+flip,
``r = 0.1``, ``alpha = 0.8``. Not reproduced here: their global gradient clipping at norm 5
(``config.gradient_clipping``)."""


CPU_SAM_NOISE: dict[str, Any] = {
    "dataset": "fashion_mnist", "train_size": 5000, "label_noise": 0.4, "hidden": (256, 256), "batch_size": 128,
    "epochs": 40, "lr": 0.05, "weight_decay": {"sgd": 2e-2, "sam": 5e-4, "gnp": 5e-4}, "rho": 0.3, "alpha": 0.8,
    "r": 0.3, "methods": ("sgd", "sam", "gnp"),
}
"""Notebook 04's cpu-profile design (evidence/DESIGN.md): 5,000 Fashion-MNIST training images with 40%
symmetric label noise (fixed per seed; clean test labels), ``mlp`` 256x256, batch 128, 40 epochs of SGD
momentum 0.9 on a cosine schedule to 0. Plain SGD memorizes the wrong labels; SAM and GNP resist it. Each
method's weight decay is its best of {5e-4, 5e-3, 2e-2, 5e-2} on a validation split (SGD: 2e-2)."""

SAM_GNP_NAMES = {"sgd": "SGD", "sam": "SAM", "gnp": "GNP"}


def sam_gnp_methods(*, lr: float, weight_decay: float | Mapping[str, float], rho: float, alpha: float, r: float,
                    momentum: float = 0.9, methods: Sequence[str] = ("sgd", "sam", "gnp")) -> list[Method]:
    """SGD (momentum, L2 ``weight_decay``), SAM (radius ``rho``) and GNP (``alpha``, ``r``) around that same
    SGD, as ``Method``s with keys ``sgd``, ``sam``, ``gnp`` (``methods`` picks and orders them).
    ``weight_decay``: one value, or ``{key: value}`` per method."""
    unknown = [m for m in methods if m not in SAM_GNP_NAMES]
    if unknown or not methods:
        raise ValueError(f"methods={methods!r}: choose a non-empty subset of {list(SAM_GNP_NAMES)}")
    decay = weight_decay if isinstance(weight_decay, Mapping) else dict.fromkeys(methods, weight_decay)
    missing = [m for m in methods if m not in decay]
    if missing:
        raise ValueError(f"weight_decay={weight_decay!r} has no value for {missing}")

    def sgd(key: str) -> dict[str, float]:
        return dict(lr=lr, momentum=momentum, weight_decay=decay[key])

    build = {
        "sgd": lambda m: SGD(m.parameters(), **sgd("sgd")),
        "sam": lambda m: SAM(m.parameters(), SGD, rho=rho, model=m, **sgd("sam")),
        "gnp": lambda m: GNP(m.parameters(), SGD, alpha=alpha, r=r, model=m, **sgd("gnp")),
    }
    return [Method(SAM_GNP_NAMES[key], key, build[key]) for key in methods]


def _decades(low: float, high: float, per_decade: int = 2) -> tuple[float, ...]:
    """``10**e`` for ``e`` from ``log10(low)`` to ``log10(high)`` in steps of ``1 / per_decade``, 3 digits."""
    first, last = round(math.log10(low) * per_decade), round(math.log10(high) * per_decade)
    return tuple(float(f"{10 ** (e / per_decade):.3g}") for e in range(first, last + 1))


CPU_SMALL_CNN: dict[str, Any] = {
    "dataset": "fashion_mnist", "image_size": 14, "train_size": 5000, "model": "small_cnn", "width": 8,
    "batch_size": 64, "steps": 400,
}
"""The data, model and run length that notebooks 01-03's cpu-profile designs share (evidence/DESIGN.md):
Fashion-MNIST pooled to 14x14, the first 5,000 training images, ``small_cnn`` width 8 (BatchNorm:
scale-invariant layers, where decay sets the effective lr), batch 64, 400 steps, no augmentation."""

CPU_DECAY_GRID: dict[str, Any] = {
    **CPU_SMALL_CNN, "lr": _decades(1e-2, 1e-1), "adam_l2_wd": _decades(1e-3, 3e-1),
    "adamw_lr_wd": _decades(1e-4, 3e-2), "best_cells": {"adam_l2": (0.01, 0.0316), "adamw": (0.01, 0.01)},
}
"""Notebook 01's cpu-profile design (evidence/DESIGN.md) on ``CPU_SMALL_CNN``, cosine to 0. Half-decade grids,
each rectangular in its paper's coordinates: Adam + L2 over (lr, L2 coefficient ``adam_l2_wd``); AdamW over
(lr, ``lr * wd``), the decay per step at the schedule's peak (Loshchilov & Hutter's normalized decay: torch's
``weight_decay = adamw_lr_wd / lr``). ``best_cells``: each grid's (lr, decay) cell best on the seed-mean
validation grid, chosen before any test run. The validated lr 0.00316 column (flat on validation) is left out:
2 x 18 cells x 5 seeds fit the 10-minute budget of a 2-core CPU, 2 x 24 cells do not on a busy one."""


def grokking_delay(history: History, steps: int) -> int:
    """Steps from 99% training to 99% validation accuracy; a run that never reaches 99% validation counts
    as reaching it at ``steps`` (a lower bound on its delay)."""
    train = steps_to(history, "train_acc")
    if train is None:
        raise ValueError(f"the run never reached 99% training accuracy in {steps} steps: no grokking delay")
    val = steps_to(history, "val_acc")
    return (steps if val is None else val) - train


CPU_CPR: dict[str, Any] = {
    "lr": 0.01, "warmup": 20, "adamw_wd": _decades(1e-2, 3.16), "cpr": ("cpr_ip", "cpr_warm_start"),
    "reg_step_size": 20, "adamw_best_wd": 0.316, "claimed_cpr": "cpr_warm_start",
}
"""Notebook 03's cpu-profile design (evidence/DESIGN.md), on notebook 01's data and model (``CPU_SMALL_CNN``):
Adam lr and linear warmup, the AdamW weight decays swept, the AdamCPR bounds compared (no decay to tune), the
inflection-point rule's ``reg_step_size`` scaled to the 400-step run (pytorch-cpr's 200 is for 20k steps: the
rule looks at ages > 3 ``reg_step_size`` only, so 200 would never set a bound here). ``adamw_best_wd`` and
``claimed_cpr``: the AdamW decay and the AdamCPR bound best on the validation split, the two sides of the claim."""


def max_constraint_violation(recorder: ConstraintRecorder) -> float:
    """The largest ``R(W) / kappa - 1`` over the recorded steps and tensors once kappa was set (<= 0: every
    constraint held at every step)."""
    frame = recorder.frame()
    frame = frame[frame["kappa"] < math.inf]
    if frame.empty:
        raise ValueError("no bound was set during the run (kappa stayed inf): nothing to check")
    return float((frame["R"] / frame["kappa"] - 1).max())


CPU_NORMS: dict[str, Any] = {"sgd_lr": 0.1, "adam_lr": 3e-3, "weight_decay": 0.0, "steps": 400, "eval_every": 20,
                             "target_acc": 82.0}
"""Notebook 02's cpu-profile design (evidence/DESIGN.md), on notebook 01's data and model (``CPU_SMALL_CNN``):
SGD (Nesterov momentum 0.9) / SGDP and Adam / AdamP without weight decay, evaluated every ``eval_every`` steps;
speed = the first evaluated step with ``target_acc`` (%) accuracy (``regkit.course.grokking.steps_to``)."""


def norm_methods(*, sgd_lr: float, adam_lr: float, weight_decay: float = 0.0) -> list[Method]:
    """SGD, SGDP (Nesterov momentum 0.9) and Adam, AdamP with ``weight_decay`` on every parameter; keys ``sgd``,
    ``sgdp``, ``adam``, ``adamp``."""
    sgd = dict(lr=sgd_lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    return [Method("SGD", "sgd", lambda m: SGD(m.parameters(), **sgd)),
            Method("SGDP", "sgdp", lambda m: SGDP(m.parameters(), **sgd)),
            Method("Adam", "adam", lambda m: AdamW(m.parameters(), lr=adam_lr, weight_decay=weight_decay)),
            Method("AdamP", "adamp", lambda m: AdamP(m.parameters(), lr=adam_lr, weight_decay=weight_decay))]


def scale_invariant_norm(model: nn.Module) -> float:
    """The joint L2 norm of the weights that feed a normalization layer (every conv/linear weight followed by
    BatchNorm in ``small_cnn``: those with 4 dimensions)."""
    return float(torch.linalg.vector_norm(torch.cat([p.detach().flatten() for p in model.parameters()
                                                     if p.dim() == 4])))


CPU_GR: dict[str, Any] = {
    "train_size": 5000, "vit_kwargs": {"dim": 64, "depth": 2, "heads": 2, "mlp_ratio": 2, "patch": 7},
    "batch_size": 32, "steps": 1500, "warmup": 150, "lr": 1e-3, "weight_decay": 0.3, "r": 0.1,
    "methods": ("adam", "adam_gr", "adam_gr_zero_warmup"),
}
"""Notebook 04's Adam+GR cpu-profile design (evidence/DESIGN.md): the quick profile's 2-layer ViT (dim 64,
4x4 patches of 7x7) on 5,000 Fashion-MNIST images, AdamW lr 1e-3 wd 0.3 with a linear lr warmup then cosine
to 0, gradient regularization GR = GNP(alpha=1, r) from step 0 or with the zero-warmup schedule."""

GR_NAMES = {"adam": "Adam", "adam_gr": "Adam+GR", "adam_gr_lambda_warmup": "Adam+GR lambda-warmup",
            "adam_gr_r_warmup": "Adam+GR r-warmup", "adam_gr_zero_warmup": "Adam+GR zero-warmup"}


def gr_methods(*, lr: float, weight_decay: float, r: float, warmup: int,
               methods: Sequence[str] = tuple(GR_NAMES)) -> list[Method]:
    """AdamW and AdamW + gradient regularization (``GNP(alpha=1, r)``, Zhao et al. 2024) without a GR warmup
    or with the lambda-, r- or zero-warmup over ``warmup`` steps; keys as in ``GR_NAMES``."""
    unknown = [m for m in methods if m not in GR_NAMES]
    if unknown or not methods:
        raise ValueError(f"methods={methods!r}: choose a non-empty subset of {list(GR_NAMES)}")
    adamw = dict(lr=lr, weight_decay=weight_decay)

    def build(key: str) -> Callable[[nn.Module], Optimizer]:
        if key == "adam":
            return lambda m: AdamW(m.parameters(), **adamw)
        schedule = None if key == "adam_gr" else key.removeprefix("adam_gr_").removesuffix("_warmup")
        steps = None if schedule is None else warmup
        return lambda m: GNP(m.parameters(), AdamW, alpha=1.0, r=r, warmup=schedule, warmup_steps=steps, model=m,
                             **adamw)

    return [Method(GR_NAMES[key], key, build(key)) for key in methods]


# --- Composed regularizers (issue 24): SGD + CPR vs tuned SGD, SAM over AdamCPR vs AdamCPR -------------------

def composition_methods(*, sgd_lr: float, weight_decays: Sequence[float], adam_lr: float, warmup: int,
                        rho: float, momentum: float = 0.9) -> list[Method]:
    """Notebook 10's comparison of composed optimizers, all with CPR's warm-start bounds after ``2 * warmup`` steps
    (the CPR paper's rule; l2 bounds on every matrix, no weight decay):

    * ``sgd_wd_<wd>``: SGD (Nesterov ``momentum``, lr ``sgd_lr``) with coupled L2 ``wd`` on the matrices
      (`param_groups`), one method per value of ``weight_decays``;
    * ``sgd_cpr``: ``with_cpr(SGD)`` with the same SGD settings;
    * ``adamcpr``: AdamCPR (lr ``adam_lr``); ``sam_adamcpr``: SAM of radius ``rho`` over that AdamCPR
      (``model=``: BatchNorm statistics from the first pass only).
    """
    sgd = dict(lr=sgd_lr, momentum=momentum, nesterov=True)
    bound = dict(kappa_init_method="warm_start", kappa_init_param=2 * warmup, verbose=False)
    methods = [Method(f"SGD wd {wd:g}", f"sgd_wd_{wd:g}",
                      lambda m, wd=wd: SGD(param_groups(m, wd, verbose=False), **sgd)) for wd in weight_decays]
    return methods + [
        Method("SGD+CPR", "sgd_cpr", lambda m: with_cpr(SGD)(m, **sgd, **bound)),
        Method("AdamCPR", "adamcpr", lambda m: AdamCPR(m.parameters(), lr=adam_lr, **bound)),
        Method("SAM over AdamCPR", "sam_adamcpr",
               lambda m: SAM(m.parameters(), AdamCPR, rho=rho, model=m, lr=adam_lr, **bound)),
    ]  # fmt: skip


CPU_COMPOSE: dict[str, Any] = {
    "sgd": {**CPU_SMALL_CNN, "label_noise": 0.0, "hidden": None, "augment": False, "warmup": 20, "sgd_lr": 0.1,
            "weight_decays": (0.0, 1e-3, 3.16e-3, 1e-2, 3.16e-2, 0.1), "best_wd": 1e-2, "adam_lr": 0.01, "rho": 0.0,
            "seeds": [0, 1, 2, 3, 4]},
    "sam": {"dataset": "fashion_mnist", "image_size": 28, "train_size": 5000, "label_noise": 0.4, "model": "mlp",
            "hidden": (256, 256), "width": None, "batch_size": 128, "steps": 1560, "augment": False, "warmup": 50,
            "adam_lr": 1e-3, "rho": 0.3, "sgd_lr": 0.1, "weight_decays": (), "seeds": [0, 1, 2, 3, 4]},
}
"""Notebook 10's cpu-profile design (evidence/DESIGN.md "10"), one design per claim, each where its phenomenon
shows at cpu scale. ``sgd``: notebook 01's data and model (``CPU_SMALL_CNN``), SGD Nesterov momentum 0.9 lr 0.1
(notebook 02's), 20-step linear warmup then cosine to 0; SGD's L2 swept over ``weight_decays``, ``best_wd`` the
one best on validation; SGD+CPR with warm-start bounds after 40 steps. ``sam``: notebook 04's label-noise task
(5,000 images, 40% symmetric noise, ``mlp`` 256x256, batch 128, 40 epochs), AdamCPR lr 1e-3 with a 50-step
warmup (bounds after 100 steps), SAM radius ``rho`` best on validation of {0.05, 0.1, 0.3, 0.5, 1}."""
