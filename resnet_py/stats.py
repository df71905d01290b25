"""Every statistic of resx, in one place, with numpy. Runtimes hand in raw nanoseconds."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

NS_PER_MS = 1e6


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


def bootstrap_ratio(
    a: Sequence[float],
    b: Sequence[float],
    statistic: Callable[[np.ndarray], float] = np.median,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """statistic(a) / statistic(b) with a percentile-bootstrap confidence interval, resampling each
    sample independently."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("bootstrap needs two non-empty samples")
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, a.size, (n_boot, a.size))
    ib = rng.integers(0, b.size, (n_boot, b.size))
    if statistic is np.median:
        ratios = np.median(a[ia], axis=1) / np.median(b[ib], axis=1)
    elif statistic is np.mean:
        ratios = a[ia].mean(axis=1) / b[ib].mean(axis=1)
    else:
        ratios = np.array([statistic(a[i]) / statistic(b[j]) for i, j in zip(ia, ib)])
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(ratios, [alpha, 1 - alpha])
    return {
        "ratio": float(statistic(a) / statistic(b)),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "confidence": confidence,
    }


def stable(window_before: Sequence[float], window_last: Sequence[float], tolerance: float) -> bool:
    """The warm-up rule: the last window's median is within `tolerance` of the one before
    (resx::warm_up applies the same rule in C++)."""
    before, last = float(np.median(window_before)), float(np.median(window_last))
    return abs(last - before) <= tolerance * before
