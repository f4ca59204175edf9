"""Paired comparisons over seeds: is a config better than the default recipe, beyond the seed-to-seed noise?

`confirm` and `bench-search` run each config with the same seeds. Seed i of a config and seed i of the default
share the seed, so their difference d_i drops what the seed does to both. The mean of the d_i gets a 95 %
Student t interval, mean ± t(0.975, n - 1) · sd / √n; "better" only when it excludes 0. A target (e.g. +3 points)
is met only when the interval's lower bound reaches it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95  # the intervals' confidence

BETTER, WORSE, WITHIN_NOISE, TOO_WIDE, NO_INTERVAL = (
    "better",
    "worse",
    "within noise",
    "too wide to decide",
    "one seed: no interval",
)


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with `df` (a positive integer) degrees of freedom, in closed form (Abramowitz and
    Stegun 26.7.3-4: a finite series in cos θ, θ = atan(|t| / √df)).

    >>> round(t_cdf(2.776445, 4), 6)
    0.975
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be a positive integer, not {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2:  # odd: (2/π)(θ + sin θ (cos θ + 2/3 cos³θ + ... up to cos^(df-2) θ))
        term, series = math.cos(theta), 0.0
        for k in range((df - 1) // 2):
            series += term
            term *= c2 * (2 * k + 2) / (2 * k + 3)
        inside = 2 / math.pi * (theta + s * series)
    else:  # even: sin θ (1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + ... up to cos^(df-2) θ)
        term, series = 1.0, 0.0
        for k in range(df // 2):
            series += term
            term *= c2 * (2 * k + 1) / (2 * k + 2)
        inside = s * series
    return 0.5 + math.copysign(0.5 * inside, t)  # `inside` is P(|T| < |t|)


def t_quantile(p: float, df: int) -> float:
    """The t with P(T <= t) = p (0 < p < 1), by bisection on `t_cdf` (to 1e-12 relative).

    >>> round(t_quantile(0.975, 2), 4), round(t_quantile(0.975, 9), 4)
    (4.3027, 2.2622)
    """
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), not {p}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    while high - low > 1e-12 * high:
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


@dataclass(frozen=True)
class PairedDifference:
    """The per-seed differences config − default, their mean and its 95 % paired t interval (None with one seed)."""

    differences: tuple[float, ...]
    mean: float
    low: float | None
    high: float | None

    @property
    def seeds(self) -> int:
        return len(self.differences)

    @property
    def verdict(self) -> str:
        """better / worse (the interval excludes 0), within noise (it holds 0), or one seed: no interval."""
        if self.low is None or self.high is None:
            return NO_INTERVAL
        if self.low > 0:
            return BETTER
        return WORSE if self.high < 0 else WITHIN_NOISE

    def target(self, gain: float) -> str:
        """Whether a gain of at least `gain` is shown: met (the lower bound reaches it), not met (the upper bound is
        below it), else too wide to decide (more seeds narrow the interval)."""
        if self.low is None or self.high is None:
            return NO_INTERVAL
        if self.low >= gain:
            return "met"
        return "not met" if self.high < gain else TOO_WIDE

    def describe(self, scale: float = 100.0, unit: str = " points") -> str:
        """'+4.10 points, 95 % CI [-1.20, +9.40] over 3 paired seeds: within noise'.

        >>> paired_difference([0.30, 0.32, 0.34], [0.28, 0.29, 0.30]).describe()
        '+3.00 points, 95 % CI [+0.52, +5.48] over 3 paired seeds: better'
        """
        mean = f"{scale * self.mean:+.2f}{unit}"
        if self.low is None or self.high is None:
            return f"{mean} ({NO_INTERVAL}: give --seeds 2 or more)"
        interval = f"95 % CI [{scale * self.low:+.2f}, {scale * self.high:+.2f}]"
        return f"{mean}, {interval} over {self.seeds} paired seeds: {self.verdict}"


def paired_difference(config: Sequence[float], default: Sequence[float]) -> PairedDifference:
    """Seed i of `config` against seed i of `default` (same length, same seed order): the mean difference and its
    95 % paired t interval, mean ± t(0.975, n-1) · sd(d) / √n.

    >>> d = paired_difference([0.30, 0.32, 0.34], [0.28, 0.29, 0.30])
    >>> [round(x, 4) for x in d.differences], round(d.mean, 4), round(d.low, 4), round(d.high, 4)
    ([0.02, 0.03, 0.04], 0.03, 0.0052, 0.0548)
    """
    if len(config) != len(default) or not config:
        raise ValueError(f"paired runs need the same seeds on both sides (got {len(config)} and {len(default)})")
    differences = tuple(a - b for a, b in zip(config, default, strict=True))
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return PairedDifference(differences, mean, None, None)
    half = (
        t_quantile(0.5 + LEVEL / 2, len(differences) - 1) * statistics.stdev(differences) / math.sqrt(len(differences))
    )
    return PairedDifference(differences, mean, mean - half, mean + half)
