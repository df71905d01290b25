"""Every statistic of resx, in one place, with numpy. Runtimes hand in raw nanoseconds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NS_PER_MS = 1e6
Rounds = Sequence[Sequence[float]]


def summarize(ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Per-call times (ns) -> n, mean, std, min, p50, p90, p99, max in milliseconds."""
    x = np.asarray(ns, dtype=np.float64) / NS_PER_MS
    if x.size == 0:
        raise ValueError("no samples to summarize")
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"n": int(x.size), "mean_ms": float(x.mean()), "std_ms": float(x.std(ddof=1)) if x.size > 1 else 0.0,
            "min_ms": float(x.min()), "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "max_ms": float(x.max())}  # fmt: skip


def throughput(ns: Sequence[int] | np.ndarray, batch: int) -> float:
    """Images per second from per-call times: batch / median call time (robust to stray slow calls)."""
    return batch / (float(np.median(np.asarray(ns, dtype=np.float64))) / 1e9)


def pooled(rounds: Rounds) -> np.ndarray:
    return np.concatenate([np.asarray(r, dtype=np.float64) for r in rounds])


def bootstrap_ratio(
    a_rounds: Rounds,
    b_rounds: Rounds,
    statistic: str = "median",
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """statistic(all of a) / statistic(all of b), with a two-level (hierarchical) percentile bootstrap:
    rounds are resampled, the same indices for a and b (round r of every runtime ran in one interleaved
    pass), then the values within each chosen round. The interval so carries the variation between
    rounds (fresh loads and processes, the machine's drift), not only call-to-call noise. Also the
    quartiles of the per-round ratios: the spread between rounds."""
    stat = {"median": np.median, "mean": np.mean}[statistic]
    a_rounds = [np.asarray(r, dtype=np.float64) for r in a_rounds]
    b_rounds = [np.asarray(r, dtype=np.float64) for r in b_rounds]
    if not a_rounds or len(a_rounds) != len(b_rounds) or any(r.size == 0 for r in a_rounds + b_rounds):
        raise ValueError("bootstrap needs the same number of non-empty rounds on both sides")
    n = len(a_rounds)
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, n, (n_boot, n)) if n > 1 else np.zeros((n_boot, 1), dtype=np.int64)
    # Within-round resamples, drawn once per round and bootstrap replicate.
    a_draws = [r[rng.integers(0, r.size, (n_boot, r.size))] for r in a_rounds]
    b_draws = [r[rng.integers(0, r.size, (n_boot, r.size))] for r in b_rounds]
    ratios = np.empty(n_boot)
    for i in range(n_boot):
        a = np.concatenate([a_draws[k][i] for k in chosen[i]])
        b = np.concatenate([b_draws[k][i] for k in chosen[i]])
        ratios[i] = stat(a) / stat(b)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(ratios, [alpha, 1 - alpha])
    per_round = np.array([stat(a) / stat(b) for a, b in zip(a_rounds, b_rounds, strict=True)])
    q25, q75 = np.quantile(per_round, [0.25, 0.75])
    return {"ratio": float(stat(pooled(a_rounds)) / stat(pooled(b_rounds))), "ci_low": float(lo),
            "ci_high": float(hi), "confidence": confidence, "rounds": n, "round_q25": float(q25),
            "round_q75": float(q75)}  # fmt: skip


def stable(window_before: Sequence[float], window_last: Sequence[float], tolerance: float) -> bool:
    """The warm-up rule: the last window's median is within `tolerance` of the one before
    (resx::warm_up applies the same rule in C++)."""
    before, last = float(np.median(window_before)), float(np.median(window_last))
    return abs(last - before) <= tolerance * before
