"""`resx bench` as one function: export, gate, measure in adaptive rounds, compare."""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from resx import env
from resx.bench import language
from resx.bench.config import BenchConfig
from resx.bench.config import Path as BenchPath
from resx.bench.gate import GateReport, fairness_gate
from resx.bench.measure import Notify, Rounds, inference_rounds, serve_plan, serving_rounds
from resx.bench.monitor import TreeMemory
from resx.bench.registry import RUNTIMES, baseline_of, language_counterpart, runs, script_counterpart, why_not
from resx.bench.results import ModelResults, Ratio, Results
from resx.bench.runners import Identity, make_runner
from resx.bench.training import training
from resx.errors import BenchError
from resx.export import aoti, prepared, save, save_weights
from resx.export.aoti import CompileSettings
from resx.export.foreign import derive
from resx.sources import Source

EAGER = ("eager", "compile")  # the engines that build the module from the weights export


def ratios(entry: ModelResults) -> list[Ratio]:
    """Every path against the baseline (py-eager at fp32), every C++ path against Python on the same engine
    and dtype (the language's own share: cpp-eager / py-eager is the C++ API against the Python API), and
    C++ TorchScript against the C++ module (TorchScript's own share), per scenario, over the rounds both
    ran."""
    out = []
    for scenario in entry.scenarios() + entry.scenarios(steady=False):
        names = entry.paths(scenario)
        pairs = [(n, entry.baseline) for n in names if n != entry.baseline]
        pairs += [(n, language_counterpart(n)) for n in names if language_counterpart(n) in names]
        pairs += [(n, script_counterpart(n)) for n in names if script_counterpart(n) in names]
        for name, base in dict.fromkeys(pairs):  # cpp-eager / py-eager is both the baseline's and the language's
            a, b = entry.measurement(scenario, name), entry.measurement(scenario, base)
            # A Server round with no rate within the bound has no ratio (the report shows it as none).
            if a is not None and b is not None and min(a.per_round + b.per_round) > 0:
                out.append(Ratio.of(a, b))
    return out


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


def prepare_files(source: Source, cfg: BenchConfig, work: Path, notify: Notify) -> tuple[dict, dict, dict]:
    """The files the model's paths open: the weights export of the eager engines (the module in each
    language), the TorchScript graph of script and frozen (scripted, or traced where the model does not
    script), an AOTInductor package per dtype (cached across runs: keyed by manifest and compile settings);
    for a model file resx did not write, the file itself and a manifest derived from it.
    (manifest, files, packages)."""
    paths = cfg.paths(source)
    if source.kind == "file":
        manifest = derive(Path(source.name), source.shape)
        engine = "aoti" if source.name.endswith(".pt2") else "script"
        return (
            manifest,
            {("aoti", d) if engine == "aoti" else "script": Path(source.name) for d in {p.dtype for p in paths}},
            {},
        )
    model_file, weights_file = work / f"{source.label}.pt", work / f"{source.label}.pth"
    notify(f"exporting {source.spec}")
    scripts = any(RUNTIMES[p.runtime].engine in ("script", "frozen") for p in paths)
    module, graph, manifest = prepared(source, cfg.seed, need_script=scripts)  # once, for every file
    if graph is not None:
        save(graph, model_file, manifest)
    save_weights(module, weights_file, manifest)
    files, packages = {"script": model_file, "eager": weights_file}, {}
    for dtype in dict.fromkeys(p.dtype for p in paths if RUNTIMES[p.runtime].engine == "aoti"):
        notify(f"AOTInductor package for {source.spec} {dtype} (compiled once, then cached)")
        files[("aoti", dtype)], packages[dtype] = aoti_package(source, cfg, dtype, manifest, notify)
    return manifest, files, packages


def aoti_package(source: Source, cfg: BenchConfig, dtype: str, manifest: dict, notify: Notify) -> tuple[Path, dict]:
    """The AOTInductor package of a dtype (compiled once, then cached) and what the report says of it. With
    --aoti-freezing auto (the default) it is compiled with and without Inductor's freezing, and the one
    faster at batch 1 in a fresh exe-aoti process is kept: freezing prepacks the weights for oneDNN, which
    pays on wide layers, but each prepacked convolution has a fixed cost per call that dominates narrow
    ones (ResNet18 at width 4, 1 thread: 650 us a call frozen, 373 us not)."""
    tried = {}  # "on" / "off": (path, manifest, cached)
    for freezing in ("on", "off") if cfg.aoti_freezing == "auto" else (cfg.aoti_freezing,):
        settings = CompileSettings(cfg.device, dtype, 0, freezing == "on", cfg.channels_last)
        tried[freezing] = aoti.cached(source, cfg.seed, settings, manifest)
    batch1 = {}
    if len(tried) > 1:
        notify(f"AOTInductor package for {source.spec} {dtype}: with or without freezing, timed at batch 1")
        label = "exe-aoti" + ("" if dtype == "fp32" else f"@{dtype}")
        options = cfg.engine_options(BenchPath(label, "exe-aoti", dtype), source.shape)
        for freezing, (path, _, _) in tried.items():
            with make_runner("exe-aoti", path, options, label) as runner:
                runner.set_threads(cfg.threads)
                runner.warm_up(1, cfg.seed, cfg.warmup.for_batch(1))
                batch1[freezing] = float(np.median(runner.time(1, cfg.seed, 30))) * 1e-9
    freezing = min(batch1, key=batch1.get) if batch1 else next(iter(tried))
    path, m, was_cached = tried[freezing]
    return path, {
        "path": str(path),
        "cached": was_cached,
        "compile_seconds": m["compile_seconds"],
        "compile": m["compile"],
        "freezing": freezing == "on",
        "freezing_batch1_s": batch1,  # the choice's evidence with --aoti-freezing auto
    }


def _gate(cfg: BenchConfig, source: Source, manifest: dict, before: float | None):
    """The check run as each path's identity arrives: a path that fails it is refused before it times."""
    opts = {
        p.label: replace(cfg.engine_options(p, source.shape), engine=RUNTIMES[p.runtime].engine)
        for p in cfg.paths(source)
    }
    state: dict = {}

    def check(ids: dict[str, Identity]) -> None:
        gate = fairness_gate(ids, opts, manifest, cfg.threads, baseline_of(source))
        gate.other_cpu_load, gate.forced = before, cfg.force
        state["gate"] = gate
        if gate.failures and not cfg.force:
            failed = "; ".join(f"{c['check']}: {c['detail']}" for c in gate.failures)
            raise BenchError(f"fairness gate refused {source.label}: {failed} (--force runs anyway and records it)")

    return state, check


def run(cfg: BenchConfig, notify: Notify = lambda _: None, warn: Notify = lambda _: None) -> Results:
    """The whole benchmark; returns the results (resx.bench.report writes them)."""
    cfg.validate()
    began = time.monotonic()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.threads = torch.get_num_threads()
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    results = Results(created, asdict(cfg), env.collect(cfg.threads))
    cores = os.cpu_count() or 1
    if cfg.inference and max(cfg.thread_counts, default=0) > cores:
        warn(
            f"--thread-counts {max(cfg.thread_counts)}: more callers than this machine's {cores} cores; "
            "beyond them the figures time the oversubscription"
        )
    with TreeMemory() as memory, tempfile.TemporaryDirectory(prefix="resx-bench-") as tmp:
        notify("the machine's floor: a GEMM at fp32 and bf16")
        results.floor_gflops = gemm_floor(cfg.threads)
        work = Path(tmp)
        for spec in cfg.models:
            source = cfg.source(spec)
            results.models[source.label] = _model(source, cfg, work, notify, warn, results)
        if cfg.language_map:
            _language_map(cfg, work, notify, warn, results)
    results.memory = memory.report()
    results.loaded = any(m.gate.get("loaded") for m in results.models.values())
    results.forced = cfg.force
    results.seconds = time.monotonic() - began
    return results


def _model(
    source: Source, cfg: BenchConfig, work: Path, notify: Notify, warn: Notify, results: Results
) -> ModelResults:
    manifest, files, packages = prepare_files(source, cfg, work, notify)
    source = Source.from_manifest(manifest)  # with its classes and shape, as recorded
    entry = ModelResults(source.label, manifest, packages=packages, baseline=baseline_of(source))
    entry.skipped = {
        r: why_not(r, source) for r in dict.fromkeys(x.partition("@")[0] for x in cfg.runtimes) if not runs(r, source)
    }
    notify("the machine's load, just before timing")
    before = env.other_cpu_load(1.0)
    cores = os.cpu_count() or 1
    state, check = _gate(cfg, source, manifest, before)

    def make(p: BenchPath):
        engine = RUNTIMES[p.runtime].engine
        file = files[("aoti", p.dtype)] if engine == "aoti" else files["eager" if engine in EAGER else "script"]
        return make_runner(p.runtime, file, cfg.engine_options(p, source.shape), p.label, p.env)

    rounds = inference_rounds(cfg, cfg.paths(source), make, notify, check, entry.baseline)
    gate: GateReport = state["gate"]
    loads = [x for x in (before, *rounds.loads) if x is not None]
    gate.loaded = bool(loads) and max(loads) > cfg.max_load * cores
    if gate.loaded:
        warn(
            f"machine is loaded: other processes kept up to {max(loads):.2f} of {cores} cores busy (above "
            f"{cfg.max_load} per core); timings are marked as taken under load"
        )
    entry.gate = gate.to_dict()
    _collect(entry, rounds, results, "inference")
    if cfg.serve:
        plan = serve_plan(cfg, rounds)
        entry.serve_plan = plan.to_dict()
        logs = work / "loadgen" / source.label.replace(":", "_")
        _collect(entry, serving_rounds(cfg, cfg.paths(source), make, plan, logs, notify), results, "serving")
    if cfg.training and cfg.train_paths(source):
        train_rounds, entry.training = training(source, cfg, work, notify, entry.baseline)
        _collect(entry, train_rounds, results, "training")
    entry.ratios = ratios(entry)
    return entry


def _language_map(cfg: BenchConfig, work: Path, notify: Notify, warn: Notify, results: Results) -> None:
    """The sweep's graphs, each measured as a model is (fresh processes, interleaved rounds, the gate),
    then the map fitted on them and checked on the rest (resx.bench.language)."""
    fitted = []
    for i, (label, point, fit) in enumerate(cfg.sweep()):
        notify(f"language map: {label}")
        files = work / f"map-{i}"  # each graph's own exports and training runs (their names are the model's)
        files.mkdir()
        entry = _model(point.source(point.models[0]), point, files, notify, warn, results)
        entry.name = label
        results.sweep[label] = entry
        fitted += [label] if fit else []
    results.language = language.analyse(results.sweep, fitted, results.models, os.cpu_count() or 1).to_dict()


def _collect(entry: ModelResults, rounds: Rounds, results: Results, phase: str) -> None:
    entry.measurements += list(rounds.measurements.values())
    entry.footprint |= rounds.footprints
    entry.drift |= rounds.drift
    entry.serving |= rounds.serving
    entry.profiles |= rounds.profiles
    for path, stopped in rounds.stopping.items():
        entry.stopping.setdefault(path, {})[phase] = stopped
    results.load += rounds.loads
