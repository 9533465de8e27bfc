"""Exercises that answer back: ``check("01.4", answer)`` says right or wrong, with a hint, never the answer.

Every exercise of a notebook with a computable answer has an entry in `EXERCISES` (its id is
``"NN.K"``: notebook NN, exercise K): what the answer is (``asks``), how it is judged (a function
returning True when the answer is right, computing the expected value from a closed form or from
regkit's library code) and a hint. ``check`` prints "not answered yet" for ``answer = None``, so an
executed student notebook runs clean. The reference solutions live in ``regkit.course.solutions``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Exercise:
    """One computable exercise: the answer it asks for, its judge and a hint that does not give it away."""

    id: str
    asks: str
    judge: Callable[[Any], bool]
    hint: str


def close_to(expected: Callable[[], Any], rtol: float = 1e-6, atol: float = 1e-9) -> Callable[[Any], bool]:
    """A judge: the answer, as an array of numbers, has the expected shape and is close to ``expected()``."""

    def judge(answer) -> bool:
        want = np.asarray(expected(), dtype=np.float64)
        got = np.asarray(answer, dtype=np.float64)
        return got.shape == want.shape and bool(np.allclose(got, want, rtol=rtol, atol=atol))

    return judge


def equal_to(expected: Callable[[], Any]) -> Callable[[Any], bool]:
    """A judge: the answer has the type of ``expected()`` and equals it (ints, strings, tuples)."""

    def judge(answer) -> bool:
        want = expected()
        return type(answer) is type(want) and answer == want

    return judge


def _quadratic_fixed_point(effective_decay: float) -> np.ndarray:
    from regkit.widgets.weight_decay import CURVATURES, TARGET

    h, c = np.asarray(CURVATURES), np.asarray(TARGET)
    return h * c / (h + effective_decay)


def _exempt_tensors() -> int:
    from regkit.models import build_model

    return sum(p.ndim < 2 for p in build_model("small_cnn", 10, 1, 28, width=16).parameters())


def _mix_difference() -> np.ndarray:
    g0 = np.array([1.0, 2.0, 3.0])  # the gradient of 1/2 theta^T diag(1, 2, 3) theta at theta = 1
    return 0.5 * (g0 / np.linalg.norm(g0) - g0)  # (1 - alpha)(v - g0): the g+ terms cancel


def _linear_microbatch_norms() -> float:
    x = np.linspace(-1.0, 1.0, 24).reshape(8, 3)
    y = np.cos(np.arange(8.0))
    residual, b = x @ np.array([0.5, -0.2, 0.1]) - y, 2
    grads = [2 / b * x[i : i + b].T @ residual[i : i + b] for i in range(0, 8, b)]  # mse_loss: (2/b) X^T r
    return float(np.mean([g @ g for g in grads]))


def _equilibrium_norm(lr: float = 0.01, wd: float = 1.0, d: int = 1000) -> float:
    # E||w||^2 at rest: (1 - lr wd)^2 E||w||^2 + lr^2 d = E||w||^2
    return math.sqrt(lr**2 * d / (1 - (1 - lr * wd) ** 2))


def _time_to_equilibrium() -> float:
    """``t90 * lr * wd`` of the random walk: E||w_t||^2 = a (1 - (1 - lr wd)^(2t)), 90% of the norm at 81% of a."""
    return math.log(1 / 0.19) / 2


def _sam_step(lr: float = 0.1, rho: float = 0.05) -> np.ndarray:
    a, theta = np.array([1.0, 2.0, 3.0]), np.ones(3)
    g = a * theta
    return theta - lr * a * (theta + rho * g / np.linalg.norm(g))


def _cpr_sgd_multiplier(lr: float, ratio: float) -> float:
    """SGD + CPR at rest on 0.5 ||W - W*||^2 with ratio = ||W*|| / sqrt(kappa): lr (r - 1) / (2 (1 - lr))."""
    return lr * (ratio - 1) / (2 * (1 - lr))


EXERCISES = {e.id: e for e in (
    Exercise("00.3", "an int: the number of parameter tensors in the no-decay group",
             equal_to(_exempt_tensors),
             "count the tensors of the group whose weight_decay is 0.0 (its 'params' list), not their values"),
    Exercise("00.4", "a float: the factor that multiplies a weight after one AdamW step with a zero gradient",
             close_to(lambda: 1 - 0.1 * 0.05, rtol=1e-6),
             "with a zero gradient Adam's direction is 0; only the decoupled decay acts (torch's convention)"),
    Exercise("01.4", "an array of 2 numbers: where SGDW with dampening 0.5 settles",
             close_to(lambda: _quadratic_fixed_point((1 - 0.9) / (1 - 0.5) * 0.5), rtol=1e-4),
             "run enough steps (thousands) for the momentum buffer to settle; take the last iterate"),
    Exercise("01.5", "an int, 0 or 1: the coordinate that AdamW clips at 1/wd", equal_to(lambda: 1),
             "compare where the decoupled path ends with the minimizer c = TARGET; which |c_i| exceeds 1/wd?"),
    Exercise("02.1", "a float: the late-window growth of ||w||^2 over eta^2 ||p_t||^2 at momentum 0.5",
             close_to(lambda: (1 + 0.5) / (1 - 0.5), rtol=0.05),
             "use norm_growth's 'norm' and 'update_norm' (||p_t||, already divided by lr) over the same steps"),
    Exercise("02.5", "a pair of strings: the view found with channel_dim=0 and with channel_dim=1",
             equal_to(lambda: ("layer", "channel")),
             "a ConvTranspose2d weight has shape (in, out, k, k): BatchNorm normalizes the out channels"),
    Exercise("03.1", "a float: the bound kappa set by kappa_init_method='dependent' with kappa_init_param 0.8",
             close_to(lambda: 0.8 * float(np.sum((np.arange(1.0, 7.0) / 10) ** 2)), rtol=1e-5),
             "the bound is set at the first step, from R(w_0); read optimizer.state[w]['kappa'] after it"),
    Exercise("04.4", "an array of 3 numbers: d(official mix) - d(paper's mix)",
             close_to(_mix_difference, rtol=1e-6),
             "with lr=0 the base optimizer does not move theta; after step(closure) theta.grad holds d"),
    Exercise("05.3", "a float: the mean over micro-batches of ||g_M||^2",
             close_to(_linear_microbatch_norms, rtol=1e-6),
             "micro_batch_grad_norms returns the norms ||g_M||, not their squares; use float64"),
    Exercise("06.1", "a float: the norm ||w|| where decoupled decay and random-sign steps balance",
             close_to(_equilibrium_norm, rtol=0.05),
             "average the norm over the last few hundred steps, long after the 1/(lr wd) time scale"),
    Exercise("07.4", "an array of 3 numbers: theta after one SAM step",
             close_to(_sam_step, rtol=1e-6),
             "SAM takes the gradient at theta + rho g/||g|| and applies it at theta; use float64"),
    Exercise("08.1", "a float: the L2 coefficient for SGD + L2",
             close_to(lambda: (1 - 0.9) * 0.5, rtol=1e-3),
             "SGD + L2 settles at h c / (h + wd) whatever the momentum; read where SGDW settles"),
    Exercise("09.3", "a float: the mean over the runs of t90 * lr * weight_decay",
             close_to(_time_to_equilibrium, rtol=0.1),
             "average the step counts of several runs; E||w_t||^2 approaches its limit like 1 - (1 - lr wd)^(2t)"),
    Exercise("10.1", "a float: the multiplier lambda that SGD + CPR settles at",
             close_to(lambda: _cpr_sgd_multiplier(lr=0.05, ratio=3.0), rtol=1e-4),
             "run until lambda stops changing (thousands of steps) and read opt.state[W]['lagmul'] as a float"),
)}


def exercise(exercise_id: str) -> Exercise:
    """The exercise ``"NN.K"``; KeyError naming the known ids otherwise."""
    if exercise_id not in EXERCISES:
        raise KeyError(f"no computable exercise {exercise_id!r}; known: {', '.join(EXERCISES)}")
    return EXERCISES[exercise_id]


def judge(exercise_id: str, answer) -> bool:
    """True when ``answer`` is right (silent; an answer of the wrong type or shape is wrong)."""
    try:
        return bool(exercise(exercise_id).judge(answer))
    except (TypeError, ValueError):
        return False


def check(exercise_id: str, answer) -> bool | None:
    """Print whether ``answer`` to exercise ``"NN.K"`` is right (with a hint if not); None if not answered yet."""
    item = exercise(exercise_id)
    if answer is None:
        print(f"Exercise {exercise_id}: not answered yet (expects {item.asks}).")
        return None
    if judge(exercise_id, answer):
        print(f"Exercise {exercise_id}: right.")
        return True
    print(f"Exercise {exercise_id}: not right yet (expects {item.asks}). Hint: {item.hint}.")
    return False
