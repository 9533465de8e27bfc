"""Optimizer scalar state that stays float32 through ``load_state_dict`` whatever the parameter dtype."""

from __future__ import annotations

import torch


class Float32State:
    """Mixin for a ``torch.optim.Optimizer``: the state keys in ``float32_state`` keep float32 after loading.

    torch's ``load_state_dict`` casts every floating-point state tensor except ``step`` to its
    parameter's dtype. For scalars such as a constraint bound or a Lagrange multiplier that
    rounds a float16/bfloat16 model's values (a large bound even becomes ``inf`` in float16).
    This mixin loads as torch does, then puts the saved float32 values back.
    """

    float32_state: tuple[str, ...] = ()

    def load_state_dict(self, state_dict: dict) -> None:
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        saved = {i: dict(state_dict["state"].get(i, {})) for i in saved_ids}
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for i, p in zip(saved_ids, params, strict=True):
            for key in self.float32_state:
                if key in saved[i]:
                    self.state[p][key] = saved[i][key].to(device=p.device, dtype=torch.float32)
