"""Confidence intervals over seeds: Student's t quantile (exact, no scipy) and the 95% t-interval of a mean."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from regkit._validate import check_int


def _t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3-4, finite series in
    ``theta = atan(t / sqrt(df))``)."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for k in range(1, df // 2):  # products (1*3*..*(2k-1)) / (2*4*..*2k) * cos^(2k)
            term *= (2 * k - 1) / (2 * k) * c2
            total += term
        return math.sin(theta) * total
    term, total = 1.0, 1.0 if df > 1 else 0.0
    for k in range(1, (df - 1) // 2):  # products (2*4*..*2k) / (3*5*..*(2k+1)) * cos^(2k)
        term *= (2 * k) / (2 * k + 1) * c2
        total += term
    return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)


def t_quantile(df: int, confidence: float = 0.95) -> float:
    """The two-sided ``confidence`` critical value of Student's t with ``df`` degrees of freedom
    (``t_quantile(4) = 2.776...``), by bisection on the exact distribution function."""
    check_int("df", df, note="seeds - 1")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    lo, hi = 0.0, 1.0
    while _t_two_sided_mass(hi, df) < confidence:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_two_sided_mass(mid, df) < confidence else (lo, mid)
        if hi - lo < 1e-12 * hi:
            break
    return (lo + hi) / 2


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values and the half-width of its 95% t-interval (NaN for one value)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def __str__(self) -> str:
        spread = "" if math.isnan(self.half_width) else f" ± {self.half_width:.3g}"
        return f"{self.mean:.4g}{spread} (n={self.n})"


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and ``t_quantile(n - 1) * s / sqrt(n)`` (``s``: sample standard deviation) of ``values``."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("t_interval needs at least one value")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, math.nan, 1)
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Interval(mean, t_quantile(n - 1, confidence) * s / math.sqrt(n), n)
