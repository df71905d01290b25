"""Inference measurements: batch-1 latency, throughput per batch size, concurrent callers. Each runs
in rounds that interleave the runtimes (A B C D, then B C D A, ...), so that drift on the machine hits
all alike; every latency round starts each runtime afresh (a new load and warm-up; a new process for
the executable), so that the rounds also sample what changes between processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from resx import stats
from resx.bench.config import BenchConfig
from resx.bench.runners import Runner

Notify = Callable[[str], None]


def rotations(items: list, rounds: int) -> Iterator[tuple[int, list]]:
    for r in range(rounds):
        k = r % len(items)
        yield r, items[k:] + items[:k]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if r < total % parts else 0) for r in range(parts)]


def _summary(rounds_ns: list[list[int]]) -> dict:
    return stats.summarize(stats.pooled(rounds_ns)) | {"rounds_ns": rounds_ns}


def latency(runners: list[Runner], cfg: BenchConfig, notify: Notify) -> dict:
    """Batch-1 latency: cfg.rounds rounds of cfg.latency_calls calls, each on a fresh runtime state."""
    rule = cfg.warmup.for_batch(1)
    rounds: dict[str, list[list[int]]] = {r.name: [] for r in runners}
    warmups: dict[str, list[int]] = {r.name: [] for r in runners}
    for rnd, order in rotations(runners, cfg.rounds):
        for r in order:
            notify(f"latency round {rnd + 1}/{cfg.rounds}: {r.name} (fresh start)")
            if rnd:  # round 1 runs on the processes the gate started
                r.restart()
            r.set_threads(cfg.threads)
            warmups[r.name].append(r.warm_up(1, cfg.seed, rule))
            rounds[r.name].append(r.time(1, cfg.seed, cfg.latency_calls))
    return {name: _summary(rounds[name]) | {"warmup_calls": warmups[name]} for name in rounds}


def throughput(runners: list[Runner], cfg: BenchConfig, notify: Notify, batch_1: dict) -> dict:
    """Images/s per batch size: throughput_calls calls per runtime (more for small batches), split over
    up to cfg.rounds interleaved rounds on the last latency round's state. Batch 1 is the latency."""
    out: dict[str, dict] = {r.name: {} for r in runners}
    for batch in cfg.batch_sizes:
        if batch == 1:
            per = {name: entry["rounds_ns"] for name, entry in batch_1.items()}
        else:
            rule = cfg.warmup.for_batch(batch)
            for r in runners:
                notify(f"warm-up {r.name} batch {batch}")
                r.warm_up(batch, cfg.seed, rule)
            calls = max(1, round(cfg.throughput_calls * max(1.0, 32 / batch)))  # small batches are cheap
            parts = split(calls, min(cfg.rounds, calls))
            per = {r.name: [] for r in runners}
            for rnd, order in rotations(runners, len(parts)):
                for r in order:
                    notify(f"throughput batch {batch} round {rnd + 1}/{len(parts)}: {r.name}")
                    per[r.name].append(r.time(batch, cfg.seed, parts[rnd]))
        for name, rounds_ns in per.items():
            out[name][batch] = {"images_per_s": stats.throughput(stats.pooled(rounds_ns), batch)} | _summary(rounds_ns)
    return out


def concurrency(runners: list[Runner], cfg: BenchConfig, notify: Notify) -> dict:
    """Concurrent batch-1 inference with one intra-op thread per caller: the GIL question."""
    out: dict[str, dict] = {r.name: {} for r in runners}
    for r in runners:
        r.set_threads(1)
    for r in runners:
        r.warm_up(1, cfg.seed, cfg.warmup)
    rounds = min(cfg.rounds, 2)
    for threads in cfg.thread_counts:
        rates: dict[str, list[float]] = {r.name: [] for r in runners}
        for rnd, order in rotations(runners, rounds):
            for r in order:
                notify(f"{threads} concurrent caller(s), round {rnd + 1}/{rounds}: {r.name}")
                calls, wall = r.threads_run(threads, cfg.thread_seconds / rounds, cfg.seed)
                rates[r.name].append(calls / (wall / 1e9))
        for name, values in rates.items():
            out[name][threads] = {"images_per_s": float(np.mean(values)), "rounds": values}
    for r in runners:
        r.set_threads(cfg.threads)
    return out


def inference(runners: list[Runner], cfg: BenchConfig, notify: Notify) -> dict:
    lat = latency(runners, cfg, notify)
    return {"latency": lat, "throughput": throughput(runners, cfg, notify, lat),
            "threads": concurrency(runners, cfg, notify) if cfg.thread_counts else {}}  # fmt: skip
