"""Every statistic of resx, in one place, with numpy. Runtimes hand in raw times; the bench compares
paths by their per-round statistics (a fresh process each round), with intervals that stay honest for a
few rounds: Student's t on the logarithm of the per-round ratios."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

NS_PER_MS = 1e6
CONFIDENCE = 0.95
# Student's t, 97.5% quantile, for 1..30 degrees of freedom (a two-sided 95% interval).
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with df degrees of freedom (beyond 30: the Cornish-Fisher
    expansion around the normal's, within 1e-4 there)."""
    if df < 1:
        raise ValueError("a t quantile needs at least 1 degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    z = NormalDist().inv_cdf(0.975)
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def summarize(ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Per-call times (ns) -> n, mean, std, min, p50, p90, p99, max in milliseconds."""
    x = np.asarray(ns, dtype=np.float64) / NS_PER_MS
    if x.size == 0:
        raise ValueError("no samples to summarize")
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {
        "n": int(x.size),
        "mean_ms": float(x.mean()),
        "std_ms": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "min_ms": float(x.min()),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "max_ms": float(x.max()),
    }


def throughput(ns: Sequence[int] | np.ndarray, batch: int) -> float:
    """Images per second from per-call times: batch / median call time (robust to stray slow calls)."""
    return batch / (float(np.median(np.asarray(ns, dtype=np.float64))) / 1e9)


@dataclass(frozen=True)
class Interval:
    """A ratio of two paths over the rounds both ran: the geometric mean of the per-round ratios, its 95%
    interval (t with rounds - 1 degrees of freedom, on the log scale), the relative half-width of that
    interval, and the quartiles of the per-round ratios (the spread between rounds)."""

    value: float
    low: float
    high: float
    rounds: int
    half_width: float  # (high / value - 1), the same as 1 - low / value on the log scale; inf for 1 round
    q25: float
    q75: float


def ratio_interval(a: Sequence[float], b: Sequence[float]) -> Interval:
    """a[i] / b[i] for rounds i (the same round of both ran in one interleaved pass), with Student's t on
    the logs: honest with 3 rounds, where a bootstrap over rounds has only 10 distinct resamples."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0 or a.shape != b.shape or np.any(a <= 0) or np.any(b <= 0):
        raise ValueError("a ratio needs the same number of positive per-round values on both sides")
    logs = np.log(a / b)
    mean, n = float(logs.mean()), int(logs.size)
    q25, q75 = np.exp(np.quantile(logs, [0.25, 0.75]))
    if n == 1:
        v = math.exp(mean)
        return Interval(v, math.nan, math.nan, 1, math.inf, float(q25), float(q75))
    h = t_quantile(n - 1) * float(logs.std(ddof=1)) / math.sqrt(n)
    return Interval(math.exp(mean), math.exp(mean - h), math.exp(mean + h), n, math.expm1(h), float(q25), float(q75))


def drift(calls: Sequence[float], values: Sequence[float]) -> dict[str, float]:
    """Growth over a long run from samples (calls done, resident bytes): the least-squares slope per
    1,000 calls and the growth from the first sample to the last. A leak, or a cache that keeps
    growing, shows as a positive slope; a process that only settles shows growth early and a flat end,
    so the slope is fitted over the second half of the samples as well."""
    x, y = np.asarray(calls, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if x.size < 4 or x.shape != y.shape or np.ptp(x) == 0:
        raise ValueError("drift needs at least 4 samples at different call counts")
    half = x.size // 2
    return {
        "calls": float(x[-1]),
        "growth_bytes": float(y[-1] - y[0]),
        "bytes_per_1000_calls": float(np.polyfit(x, y, 1)[0] * 1000),
        "late_bytes_per_1000_calls": float(np.polyfit(x[half:], y[half:], 1)[0] * 1000),
    }


def stable(window_before: Sequence[float], window_last: Sequence[float], tolerance: float) -> bool:
    """The warm-up rule: the last window's median is within `tolerance` of the one before
    (resx::warm_up applies the same rule in C++)."""
    before, last = float(np.median(window_before)), float(np.median(window_last))
    return abs(last - before) <= tolerance * before
