"""Fast grokking runs: modular addition with the whole table on the device, one History per method.

`run(method, ...)` trains one model on ``(a + b) mod p`` (`regkit.data.modular_arithmetic`)
through `regkit.train.train`, with full-batch steps (or on-device mini-batches, ``batch_size``): the
whole table stays on the device, and the loop does not synchronise with the host between the
evaluation steps of `eval_steps` (a regular grid plus a log-spaced one, so that curves on a log step
axis are resolved early and late). At each evaluation step a hook gives the History ``train_loss``,
``train_acc``, ``val_loss``, ``val_acc`` (on the whole splits, after the step), ``weight_norm`` (the
joint L2 norm of all parameters), ``time`` (seconds since the run started, after a device sync) and,
for AdamCPR, ``R/<tensor>``, ``kappa/<tensor>``, ``lambda/<tensor>`` of every regularized tensor
(`regkit.optim.ConstraintRecorder`, read at the evaluation steps). `steps_to(history, "val_acc", 0.99)`
reads off when a threshold was first reached.

The methods (`METHODS`) are the runs of the CPR paper's grokking example (Franke et al.,
NeurIPS 2024, arXiv:2311.09058) plus Adam without weight decay and a stronger decay; decay,
rescaling and the bounds act on every matrix including the embeddings (Omnigrok's weight norm
is the norm of all weights, Liu et al., ICLR 2023, arXiv:2210.01117).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from regkit._validate import check_betas, check_int, check_number
from regkit.data import modular_arithmetic
from regkit.device import resolve_device
from regkit.history import History
from regkit.models import build_model
from regkit.optim import Adam, AdamCPR, AdamW, ConstraintRecorder, JointNormRescaler
from regkit.optim.measures import joint_norm
from regkit.param_groups import param_groups
from regkit.train import StopTraining, train

METHODS = {
    "adam": "Adam (no weight decay)",
    "adamw_wd0.1": "AdamW (wd 0.1)",
    "adamw_wd1": "AdamW (wd 1.0)",
    "rescale_0.8": "AdamW (wd 0) + rescaling 0.8",
    "cpr_l2": "AdamCPR (dependent 0.8, l2)",
    "cpr_std": "AdamCPR (dependent 0.8, std)",
}
REGULARIZED = tuple(m for m in METHODS if m != "adam")
HISTORIES_FORMAT = "regkit.grokking.histories/1"  # a file format's name: kept when the module moved

# The notebook's profiles (arguments of `run`, plus methods / seeds / stop_after_grokking).
# quick: a bias-free one-hot MLP at p = 59 on one CPU core, weights initialized 4x larger than
# torch's default (Omnigrok's large-init regime: at the default scale the 0.8x bounds of
# rescaling and CPR leave too little norm to fit the training set; measured). full: the CPR
# paper's transformer setting (METHODS.md section 3), on a GPU. quick runs four of the six methods
# to stay within CI's minutes (wd 0.1 and std-CPR took 20 s and 35 s more here without grokking).
PROFILES = {
    "quick": {"model": "onehot_mlp", "model_kw": {"hidden": 128}, "p": 59, "train_fraction": 0.5,
              "init_scale": 4.0, "steps": 1500, "lr": 5e-3, "betas": (0.9, 0.99), "warmup": 10,
              "batch_size": 0, "eval_every": 25, "log_points": 40, "stop_after_grokking": True,
              "methods": ["adam", "adamw_wd1", "rescale_0.8", "cpr_l2"], "seeds": 1},
    "full": {"model": "grok_transformer", "model_kw": {}, "p": 113, "train_fraction": 0.3,
             "init_scale": 1.0, "steps": 8000, "lr": 1e-3, "betas": (0.9, 0.98), "warmup": 0,
             "batch_size": 512, "eval_every": 100, "log_points": 40, "stop_after_grokking": False,
             "methods": list(METHODS), "seeds": 1},
}  # fmt: skip


def check_method(method: str) -> str:
    """``method`` if it is a key of `METHODS`, else ValueError listing them."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got method={method!r}")
    return method


def make_optimizer(method: str, model: torch.nn.Module, *, lr: float, betas: tuple[float, float],
                   weight_decay: float | None = None):
    """The optimizer of ``method`` for ``model`` (`METHODS`); matrices and embeddings are regularized.

    ``adam``: `Adam`, no decay. ``adamw_wd0.1`` / ``adamw_wd1``: `AdamW` with that decoupled decay
    on every tensor with ``ndim >= 2`` (embeddings included; ``weight_decay``, when given, replaces
    the decay their names carry). ``rescale_0.8``: `AdamW` with decay 0
    and a `JointNormRescaler` (``alpha=0.8``; it scales the model's matrices once, here, and
    restores their joint norm after every step). ``cpr_l2`` / ``cpr_std``: `AdamCPR` with
    ``kappa_init_method="dependent"``, ``kappa_init_param=0.8`` (the bound is 0.8 times the
    measure at initialization) and ``reg_embedding=True``.
    """
    check_method(method)
    if method == "adam":
        return Adam(model.parameters(), lr=lr, betas=betas)
    if method.startswith("adamw_wd"):
        decay = {"adamw_wd0.1": 0.1, "adamw_wd1": 1.0}[method] if weight_decay is None else weight_decay
        return AdamW(param_groups(model, decay, decay_embeddings=True, verbose=False), lr=lr, betas=betas)
    if method == "rescale_0.8":
        optimizer = AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=0.0)
        JointNormRescaler(model, alpha=0.8).attach(optimizer)
        return optimizer
    return AdamCPR(model, lr=lr, betas=betas, kappa_init_method="dependent", kappa_init_param=0.8,
                   reg_function=method.removeprefix("cpr_"), reg_embedding=True, verbose=False)  # fmt: skip


def eval_steps(steps: int, every: int, log_points: int = 40) -> list[int]:
    """Evaluation steps: every ``every``-th step, ``log_points`` log-spaced steps in [1, steps], and ``steps``."""
    for name, value in (("steps", steps), ("every", every), ("log_points", log_points)):
        check_int(name, value)
    regular = range(every, steps + 1, every)
    spaced = np.unique(np.geomspace(1, steps, log_points).round().astype(int))
    return sorted({*regular, *spaced.tolist(), steps})


def steps_to(history: History, key: str, threshold: float = 0.99) -> int | None:
    """The first logged step where ``key`` is at least ``threshold``; None if it never was."""
    if key not in history.columns:
        raise KeyError(f"{key!r} was never logged; logged: {', '.join(history.columns)}")
    for row in history.rows:
        value = row.get(key)
        if value is not None and not math.isnan(value) and value >= threshold:
            return row["step"]
    return None


def _metrics(model: torch.nn.Module, splits: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """[loss, accuracy] of each split (0-dim tensors on the device) and the joint norm of all parameters."""
    values = []
    with torch.no_grad():
        for x, y in splits:
            logits = model(x).float()
            values += [F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()]
        values.append(joint_norm([p.detach() for p in model.parameters()], foreach=False))
    return values


def run(
    method: str,
    *,
    model: str = "onehot_mlp",
    model_kw: Mapping[str, Any] | None = None,
    p: int = 113,
    train_fraction: float = 0.4,
    steps: int = 1500,
    lr: float = 5e-3,
    betas: tuple[float, float] = (0.9, 0.99),
    warmup: int = 10,
    init_scale: float = 1.0,
    batch_size: int | None = None,
    seed: int = 0,
    eval_every: int = 25,
    log_points: int = 40,
    stop_at: float | None = None,
    device: str | torch.device | None = None,
    weight_decay: float | None = None,
) -> History:
    """Train ``model`` (``onehot_mlp`` or ``grok_transformer``, `regkit.models.build_model`) on
    ``(a + b) mod p`` with ``method`` (`METHODS`) and return its History (see the module doc).

    ``seed`` fixes the train/validation split, the initialization and the mini-batches. The lr
    rises linearly over ``warmup`` steps, then stays constant. ``batch_size=None``: full-batch
    steps; otherwise each step takes the next ``batch_size`` examples of an on-device permutation
    (a fresh one per epoch). ``stop_at``: stop at the first evaluation where both train and
    validation accuracy are at least this value (None: run all ``steps``). ``init_scale``
    multiplies every initial parameter (Omnigrok's initialization scale). ``weight_decay``: the
    decay of the ``adamw_wd*`` methods (None: the one their name carries; ignored by the others). Defaults: the
    one-hot MLP setting of NOTES.md (p = 113, train fraction 0.4, lr 5e-3, betas (0.9, 0.99));
    `PROFILES` holds the notebook's quick setting and the paper's transformer setting
    (``profile_run_kwargs(PROFILES["full"])``).
    The run is `regkit.train.train` with the whole training split as its one batch (or `_MiniBatches`), a
    linear-warmup ``LambdaLR`` and the hooks of `_evaluation_hooks` at the steps of `eval_steps`.
    """
    _check_arguments(method, model, lr=lr, init_scale=init_scale, weight_decay=weight_decay, betas=betas,
                     warmup=warmup, seed=seed, batch_size=batch_size, stop_at=stop_at)
    grid = eval_steps(steps, eval_every, log_points)
    device = resolve_device(device)

    data = modular_arithmetic(p, "add", train_fraction, seed=seed)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    torch.manual_seed(seed)
    net = build_model(model, p, **dict(model_kw or {})).to(device)
    with torch.no_grad():
        for param in net.parameters():
            param.mul_(init_scale)
    optimizer = make_optimizer(method, net, lr=lr, betas=betas, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(warmup, 1)))
    recorder = ConstraintRecorder(optimizer) if isinstance(optimizer, AdamCPR) else None
    if recorder is not None:
        recorder.remove()  # no per-step hook: it records at the evaluation steps below
    full_batch = batch_size is None or batch_size >= len(y_train)
    loader = [(x_train, y_train)] if full_batch else _MiniBatches(x_train, y_train, batch_size, seed)
    meta = {"method": method, "label": METHODS[method], "model": model, "model_kw": dict(model_kw or {}), "p": p,
            "train_fraction": train_fraction, "steps": steps, "lr": lr, "betas": list(betas), "warmup": warmup,
            "init_scale": init_scale, "batch_size": None if full_batch else batch_size, "seed": seed, "device": str(device),
            "weight_decay": weight_decay}  # fmt: skip
    hooks = _evaluation_hooks([(x_train, y_train), (x_val, y_val)], recorder, stop_at)
    history = train(net, optimizer, loader, steps=steps, eval_every=grid, log_every=steps, scheduler=schedule,
                    hooks=hooks, grad_fn=_loss_and_gradients, device=device, progress=False, meta=meta)
    for key in ("lr", "epoch"):  # the loop's running metrics of the last step; the evaluation's numbers replace them
        history.rows[-1].pop(key, None)
    if recorder is not None:
        _merge_constraints(history, recorder.frame())
    return history


def _check_arguments(method: str, model: str, *, lr, init_scale, weight_decay, betas, warmup, seed, batch_size,
                     stop_at) -> None:
    """`run`'s checks: ValueError naming the argument and its value."""
    check_method(method)
    if model not in ("onehot_mlp", "grok_transformer"):
        raise ValueError(f"model must be one of onehot_mlp, grok_transformer; got model={model!r}")
    check_number("lr", lr, 0.0)
    check_number("init_scale", init_scale, 0.0)
    if weight_decay is not None:
        check_number("weight_decay", weight_decay, 0.0)
    check_betas(betas)
    check_int("warmup", warmup, 0, note="steps of linear lr warmup")
    check_int("seed", seed, 0)
    if batch_size is not None:
        check_int("batch_size", batch_size, note="or None for full-batch steps")
    if stop_at is not None:
        check_number("stop_at", stop_at, 0.0, 1.0)


def _loss_and_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The step's loss and its gradients, without the logits: `regkit.train.train` then keeps no running
    training accuracy (an argmax per step, ~6% of a CPU step here), which the evaluation hook measures anyway."""
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss


class _MiniBatches:
    """Endless on-device mini-batches: every pass over ``(x, y)`` draws a fresh permutation (a generator seeded
    with ``seed``) and yields its ``len(y) // batch_size`` consecutive slices."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator = torch.Generator(y.device).manual_seed(seed)

    def __len__(self) -> int:
        return len(self.y) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.y), device=self.y.device, generator=self.generator)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.x[index], self.y[index]


METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "weight_norm")


def _evaluation_hooks(splits: Sequence[tuple[torch.Tensor, torch.Tensor]], recorder: ConstraintRecorder | None,
                      stop_at: float | None) -> list:
    """A grokking run's evaluation as `regkit.train` hooks: `METRICS` on the whole train and validation splits
    (one host sync) and ``time``; the CPR state (``recorder``); then `StopTraining` once both accuracies reach
    ``stop_at``."""
    start, last = time.perf_counter(), {}

    def measure(step: int, model: torch.nn.Module, optimizer) -> dict[str, float]:
        last.update(zip(METRICS, torch.stack(_metrics(model, splits)).tolist(), strict=True))
        if recorder is not None:
            recorder.record()
        return {**last, "time": time.perf_counter() - start}

    def stop(step: int, model: torch.nn.Module, optimizer) -> dict[str, float]:
        if stop_at is not None and min(last["train_acc"], last["val_acc"]) >= stop_at:
            raise StopTraining
        return {}

    return [measure, stop]


def run_methods(methods: Sequence[str], seeds: int = 1, **kw: Any) -> dict[str, History]:
    """``{"<method>/seed<s>": run(method, seed=s, **kw)}`` for every method and seeds ``0 .. seeds-1``."""
    for method in methods:
        check_method(method)
    check_int("seeds", seeds, note="the number of seeds 0 .. seeds - 1")
    return {f"{m}/seed{s}": run(m, seed=s, **kw) for m in methods for s in range(seeds)}


def profile_run_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The `run` keyword arguments of a `PROFILES` row (other keys are ignored; ``batch_size`` 0 = full
    batch, ``stop_after_grokking`` sets ``stop_at=0.99``)."""
    accepted = set(inspect.signature(run).parameters) - {"method", "seed", "batch_size", "stop_at"}
    kw = {k: v for k, v in cfg.items() if k in accepted}
    kw["betas"] = tuple(kw["betas"])
    kw["batch_size"] = cfg["batch_size"] or None
    kw["stop_at"] = 0.99 if cfg["stop_after_grokking"] else None
    return kw


def results_table(histories: Mapping[str, History], threshold: float = 0.99):
    """A DataFrame, one row per run: steps to ``threshold`` train / validation accuracy ("not reached"
    where it was not), the seconds to that validation accuracy, and the final accuracies and weight norm."""
    import pandas as pd

    rows = []
    for name, h in histories.items():
        train, val = steps_to(h, "train_acc", threshold), steps_to(h, "val_acc", threshold)
        seconds = next((row["time"] for row in h.rows if row["step"] == val), None)
        rows.append({"run": name, "method": h.meta.get("label", name),
                     f"steps to {threshold:.0%} train": train if train is not None else "not reached",
                     f"steps to {threshold:.0%} val": val if val is not None else "not reached",
                     f"seconds to {threshold:.0%} val": round(seconds, 1) if seconds is not None else "not reached",
                     "last step": h.rows[-1]["step"], "final train acc": round(h.last("train_acc"), 4),
                     "final val acc": round(h.last("val_acc"), 4),
                     "final weight norm": round(h.last("weight_norm"), 2)})  # fmt: skip
    return pd.DataFrame(rows).set_index("run")


def _merge_constraints(history: History, frame) -> None:
    """Add ``R/<name>``, ``kappa/<name>``, ``lambda/<name>`` of the recorder's frame to the rows of the same step."""
    rows = {row["step"]: row for row in history.rows}
    for record in frame.to_dict("records"):
        if record["step"] in rows:
            rows[record["step"]].update({f"{key}/{record['name']}": record[key] for key in ("R", "kappa", "lambda")})


def save_histories(histories: Mapping[str, History], path: str | os.PathLike, **info: Any) -> Path:
    """Write ``{run name: History}`` and ``info`` (e.g. ``profile="quick"``) as one JSON file
    (`load_histories` reads the runs back, `read_histories_info` the info)."""
    data = {"format": HISTORIES_FORMAT, "info": info, "runs": {name: h.to_dict() for name, h in histories.items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, separators=(",", ":")))
    return path


def _read(path: str | os.PathLike) -> dict:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or data.get("format") != HISTORIES_FORMAT:
        raise ValueError(f"{path} is not a grokking histories file (format {HISTORIES_FORMAT!r})")
    return data


def load_histories(path: str | os.PathLike) -> dict[str, History]:
    """``{run name: History}`` from a file written by `save_histories`."""
    return {name: History.from_dict(h) for name, h in _read(path)["runs"].items()}


def read_histories_info(path: str | os.PathLike) -> dict[str, Any]:
    """The ``info`` a histories file was saved with."""
    return dict(_read(path).get("info", {}))


def record_histories(histories: Mapping[str, History], name: str, **info: Any) -> Path:
    """Save the histories as ``<name>.histories.json`` beside the course runner's results file
    (``runs/<profile>/`` under the runner), else in ``runs/interactive/``; returns the path."""
    from regkit.course.recording import RESULTS_FILE_ENV
    from regkit.course.runner import RUNS_DIR

    target = os.environ.get(RESULTS_FILE_ENV)
    folder = Path(target).parent if target else RUNS_DIR / "interactive"
    return save_histories(histories, folder / f"{name}.histories.json", **info)
