"""`resx bench` as one function of its plan: prepare each model's files, choose its AOTInductor packages,
gate and measure it in rounds (inference, serving, training, counts), then the language map; returns the
typed results (resx.bench.report writes them)."""

from __future__ import annotations

import datetime as _dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from resx import env
from resx.bench import analysis, language
from resx.bench.gate import Gate
from resx.bench.monitor import TreeMemory
from resx.bench.plan import BenchPath, ModelPlan, Plan
from resx.bench.prepare import prepare
from resx.bench.results import MemoryReport, ModelResults, Results
from resx.bench.rounds import Rounds, choose_packages, inference_rounds, serve_plan, serving_rounds
from resx.bench.runners import make_runner
from resx.bench.training import training

Notify = Callable[[str], None]


def gemm_floor(threads: int, size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of a size x size matrix product at fp32 and bf16 with the run's threads: what the machine
    can do at best, against which each path's time is read (the floor of batch-1 latency is the
    network's FLOPs at this rate)."""
    out = {}
    for dtype, torch_dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(size, size, generator=torch.Generator().manual_seed(0)).to(torch_dtype)
        best = float("inf")
        with torch.inference_mode():
            torch.mm(a, a)
            for _ in range(repeats):
                start = time.perf_counter()
                torch.mm(a, a)
                best = min(best, time.perf_counter() - start)
        out[dtype] = 2 * size**3 / best / 1e9
    return out


def run(plan: Plan, notify: Notify = lambda _: None, warn: Notify = lambda _: None) -> Results:
    """The whole benchmark."""
    began = time.monotonic()
    torch.set_num_threads(plan.threads)
    for w in plan.warnings:
        warn(w)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    results = Results(created, plan.config, env.collect(plan.threads), threads=plan.threads)
    with TreeMemory() as memory, tempfile.TemporaryDirectory(prefix="resx-bench-") as tmp:
        notify("the machine's floor: a GEMM at fp32 and bf16")
        results.floor_gflops = gemm_floor(plan.threads)
        work = Path(tmp)
        for model in plan.models:
            results.models[model.label] = measure_model(model, work, notify, warn, results.load)
        if plan.sweep:
            fitted = []
            for i, point in enumerate(plan.sweep):
                notify(f"language map: {point.label} ({i + 1}/{len(plan.sweep)})")
                files = work / f"map-{i}"  # each graph's own exports and training runs (their names are the model's)
                files.mkdir()
                entry = measure_model(point.model, files, notify, warn, results.load)
                entry.name = point.label
                results.sweep[point.label] = entry
                fitted += [point.label] if point.fitted else []
            results.language = language.analyse(results.sweep, fitted, results.models, plan.cores)
    report = memory.report()
    results.memory = MemoryReport(**report)
    results.loaded = any(m.gate.loaded for m in results.models.values())
    results.forced = plan.config.rounds.force
    results.seconds = time.monotonic() - began
    return results


def measure_model(model: ModelPlan, work: Path, notify: Notify, warn: Notify, loads: list[float]) -> ModelResults:
    """One model (or graph of the map), every phase; `loads` gets the other processes' load of each round."""
    cfg = model.config
    prepared = prepare(model, work, notify)
    shape = prepared.source.shape
    entry = ModelResults(model.label, prepared.manifest, baseline=model.baseline, skipped=dict(model.skipped))

    def make(p: BenchPath):
        return make_runner(
            p.runtime,
            prepared.file(p.engine, p.dtype),
            model.engine_options(p, shape),
            p.label,
            p.env,
            cfg.rounds.start_timeout,
        )

    entry.packages = choose_packages(model, prepared, make, notify)
    notify("the machine's load, just before timing")
    before = env.other_cpu_load(1.0)
    options = {p.label: model.engine_options(p, shape) for p in model.paths}
    gate = Gate(model.label, prepared.manifest, options, model.threads, model.baseline, cfg.rounds.force, before)
    rounds = inference_rounds(model, make, notify, gate)
    entry.gate = gate.report
    loads = [x for x in (before, *rounds.loads) if x is not None]
    entry.gate.loaded = bool(loads) and max(loads) > cfg.rounds.max_load * entry.gate.cores
    if entry.gate.loaded:
        warn(
            f"machine is loaded: other processes kept up to {max(loads):.2f} of {entry.gate.cores} cores busy "
            f"(above {cfg.rounds.max_load} per core); timings are marked as taken under load"
        )
    _collect(entry, rounds, "inference", loads)
    if cfg.serving.scenarios:
        entry.serve_plan = serve_plan(model, rounds)
        logs = work / "loadgen" / model.label.replace(":", "_")
        _collect(entry, serving_rounds(model, make, entry.serve_plan, logs, notify), "serving", loads)
    if model.train_paths:
        train_rounds, entry.training = training(model, work, notify)
        _collect(entry, train_rounds, "training", loads)
    if cfg.counts.enabled:
        from resx.bench.counts import count_paths, count_training

        entry.counts = count_paths(model, prepared, notify, warn)
        entry.training_counts = count_training(model, work, notify, warn)
    entry.ratios = analysis.ratios(entry)
    return entry


def _collect(entry: ModelResults, rounds: Rounds, phase: str, loads: list[float]) -> None:
    loads += rounds.loads
    entry.measurements += list(rounds.measurements.values())
    entry.footprint |= rounds.footprints
    entry.drift |= rounds.drift
    entry.serving |= rounds.serving
    entry.profiles |= rounds.profiles
    for path, stopped in rounds.stopping.items():
        entry.stopping.setdefault(path, {})[phase] = stopped
