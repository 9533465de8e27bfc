"""Record CPR's constraint state (R(w), kappa, lambda, the detector's smoothed norm) during training."""

from __future__ import annotations

import torch
from torch.optim import Optimizer

from regkit._validate import check_int
from regkit.optim.measures import evaluate
from regkit.optim.with_cpr import COUNTER


class ConstraintRecorder:
    """After every ``every``-th step of an AdamCPR or ``with_cpr(Base)`` optimizer, keep ``R(w)``, ``kappa``,
    ``lambda`` and ``norm_ema`` of each regularized tensor (a step post-hook; values stay on the device until
    `frame`).

    ``R`` is evaluated on the weights after the step (after the constraint step in the
    default post-step order); ``norm_ema`` is NaN unless the tensor's bounds come from the
    inflection-point rule; ``kappa`` is ``inf`` while not set. Tensors are named by the
    group's ``names`` (an optimizer built from a model) or ``"<group>.<index>"``.

    Example::

        >>> recorder = ConstraintRecorder(opt)
        >>> train(model, opt, loader, steps=300)
        >>> recorder.frame()          # columns step, name, R, kappa, lambda, norm_ema
    """

    def __init__(self, optimizer: Optimizer, every: int = 1):
        if not (isinstance(optimizer, Optimizer) and all(key in group for group in optimizer.param_groups
                                                         for key in ("regularize", "kappa_init_method"))):
            raise TypeError(f"optimizer must be a regkit.optim.AdamCPR or a regkit.optim.with_cpr(...) optimizer, "
                            f"got {type(optimizer).__name__}")
        self.optimizer, self.every = optimizer, check_int("every", every, note="record every n-th step")
        self.records: list[tuple[float, list[str], torch.Tensor]] = []
        self.handle = optimizer.register_step_post_hook(lambda opt, args, kwargs: self.record())

    def _tensors(self):
        for g, group in enumerate(self.optimizer.param_groups):
            if not group["regularize"]:
                continue
            names = group.get("names") or [f"{g}.{i}" for i in range(len(group["params"]))]
            chosen = [(n, p) for n, p in zip(names, group["params"], strict=True) if "kappa" in self.optimizer.state[p]]
            if chosen:
                yield group, chosen

    @torch.no_grad()
    def record(self) -> None:
        """Store the current values (called by the hook; the step count is read from the CPU counters)."""
        for group, chosen in self._tensors():
            state = self.optimizer.state
            buffers = state[chosen[0][1]]
            step = buffers[COUNTER if COUNTER in buffers else "step"].item()  # with_cpr's own count, else AdamCPR's
            if step % self.every:
                continue
            params = [p for _, p in chosen]
            values, _ = evaluate(group["reg_function"], [p.detach() for p in params], foreach=False)
            nan = torch.full((), float("nan"), device=params[0].device)
            rows = [
                torch.stack([v.float(), state[p]["kappa"], state[p]["lagmul"], state[p].get("norm_ema", nan)])
                for v, p in zip(values, params, strict=True)
            ]
            self.records.append((step, [n for n, _ in chosen], torch.stack(rows)))

    def frame(self):
        """A pandas DataFrame with one row per (step, tensor): ``step, name, R, kappa, lambda, norm_ema``."""
        import pandas as pd

        rows = []
        for step, names, values in self.records:
            for name, (r, kappa, lam, ema) in zip(names, values.cpu().tolist(), strict=True):
                rows.append({"step": int(step), "name": name, "R": r, "kappa": kappa, "lambda": lam, "norm_ema": ema})
        return pd.DataFrame(rows, columns=["step", "name", "R", "kappa", "lambda", "norm_ema"])

    def remove(self) -> None:
        """Stop recording (remove the hook)."""
        self.handle.remove()
