"""Hyperparameter checks: each raises ValueError naming the argument, its value and the valid choices."""

import math
from numbers import Real


def check_number(
    name: str, value, low: float = -math.inf, high: float = math.inf, *, high_open: bool = False
):
    """``low <= value <= high`` (``< high`` with ``high_open``) for a real Python number (bools and tensors rejected)."""
    interval = f"[{low}, {high}{')' if high_open else ']'}"
    if not isinstance(value, Real) or isinstance(value, bool):
        raise ValueError(f"{name} must be a real number in {interval}, got {value!r}")
    if not (low <= value and (value < high if high_open else value <= high)):
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def check_int(name: str, value, low: int = 1, high: int | None = None, *, note: str = "",
              error: type[ValueError] = ValueError) -> int:
    """``value`` if it is a Python int (bools rejected) with ``low <= value <= high`` (``high=None``: no upper
    bound), else ``error`` (a ValueError) naming ``name``, the valid range, ``note`` (what the number counts,
    in parentheses) and the value; e.g. ``steps must be a positive int, got 0``."""
    if high is not None:
        want = f"an int in [{low}, {high}]"
    else:
        want = "a positive int" if low == 1 else f"an int >= {low}"
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise error(f"{name} must be {want}{f' ({note})' if note else ''}, got {value!r}")
    return value


def check_choice(name: str, value, choices):
    """``value`` if it is one of ``choices``, else ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_flag(name: str, value, *, allow_none: bool = False):
    """``value`` is True or False (or None with ``allow_none``)."""
    choices = (True, False, None) if allow_none else (True, False)
    if not any(value is choice for choice in choices):
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def check_betas(betas):
    """``betas = (beta1, beta2)`` with each in [0, 1)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2) of numbers in [0, 1), got {betas!r}")
    for i, beta in enumerate(betas):
        check_number(f"betas[{i}]", beta, 0.0, 1.0, high_open=True)
