"""`resx bench` as one function: export, start the runtimes, gate, measure, compare."""

from __future__ import annotations

import datetime as _dt
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from resx import envinfo, stats
from resx.bench.config import BenchConfig, BenchError
from resx.bench.gate import fairness_gate
from resx.bench.measure import Notify, inference
from resx.bench.runners import BASELINE, RUNTIMES, Runner, make_runner
from resx.bench.training import training
from resx.export import aoti, export
from resx.export.aoti import CompileSettings


def language_counterpart(label: str) -> str | None:
    """The same engine and dtype driven from Python, for a path of another language: cpp-frozen@bf16 ->
    py-frozen@bf16. Their ratio is the language's own share."""
    name, _, dtype = label.partition("@")
    runtime = RUNTIMES.get(name)
    if runtime is None or runtime.language == "py":
        return None
    return f"py-{runtime.engine}" + (f"@{dtype}" if dtype else "")


def ratios(entry: dict) -> list[dict]:
    """Every path against py-eager (fp32), and every C++ path against Python on the same engine and
    dtype (the language's share), with the rounds' hierarchical-bootstrap 95% CI: time ratios (< 1:
    faster than the baseline) for latency, calls and training steps; rate ratios for threads."""
    out = []
    inf, tr = entry.get("inference", {}), entry.get("training", {})
    names = list(inf.get("latency", {})) or list(tr)
    pairs = [(n, BASELINE) for n in names if n != BASELINE] + [
        (n, language_counterpart(n)) for n in names if language_counterpart(n) in names]  # fmt: skip

    def add(measure: str, name: str, baseline: str, a, b, kind: str = "time") -> None:
        r = stats.bootstrap_ratio(a, b, "median" if kind == "time" else "mean")
        out.append({"measure": measure, "runtime": name, "baseline": baseline, "kind": kind} | r)

    for name, base in pairs:
        if name in inf.get("latency", {}) and base in inf["latency"]:
            add("latency batch 1", name, base, inf["latency"][name]["rounds_ns"], inf["latency"][base]["rounds_ns"])
        for batch, e in inf.get("throughput", {}).get(name, {}).items():
            if base in inf["throughput"]:
                add(f"time per call, batch {batch}", name, base, e["rounds_ns"],
                    inf["throughput"][base][batch]["rounds_ns"])  # fmt: skip
        for t, e in inf.get("threads", {}).get(name, {}).items():
            if base in inf["threads"]:
                add(f"images/s with {t} thread(s)", name, base, [[v] for v in e["rounds"]],
                    [[v] for v in inf["threads"][base][t]["rounds"]], "rate")  # fmt: skip
        if name in tr and base in tr and len(tr[name]["rounds_ns"]) == len(tr[base]["rounds_ns"]):
            add("training step", name, base, tr[name]["rounds_ns"], tr[base]["rounds_ns"])
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


def prepare_files(model: str, cfg: BenchConfig, work: Path, notify: Notify) -> tuple[dict, dict, dict]:
    """The TorchScript export every engine but aoti opens, and an AOTInductor package per dtype (cached
    across runs: keyed by graph, weights and compile settings). (manifest, files, packages)."""
    model_file = work / f"{model}.pt"
    notify(f"exporting {model}")
    manifest = export(cfg.model_config(model), model_file, seed=cfg.seed)
    files, packages = {"script": model_file}, {}
    if any(RUNTIMES[r].engine == "aoti" for r in cfg.runtimes):
        for dtype in cfg.dtypes:
            notify(f"AOTInductor package for {model} {dtype} (compiled once, then cached)")
            settings = CompileSettings(cfg.device, dtype, 0, True, cfg.channels_last)
            path, m, was_cached = aoti.cached(cfg.model_config(model), cfg.seed, settings)
            files[("aoti", dtype)] = path
            packages[dtype] = {"path": str(path), "cached": was_cached, "compile_seconds": m["compile_seconds"],
                               "compile": m["compile"]}  # fmt: skip
    return manifest, files, packages


def runners_for(cfg: BenchConfig, files: dict) -> list[Runner]:
    runners = []
    for path in cfg.paths():
        engine = RUNTIMES[path.runtime].engine
        file = files[("aoti", path.dtype)] if engine == "aoti" else files["script"]
        runners.append(make_runner(path.runtime, file, cfg.engine_options(path), path.label))
    return runners


def run(cfg: BenchConfig, notify: Notify = lambda _: None, warn: Notify = lambda _: None) -> dict:
    """The whole benchmark; returns the results (resx.bench.report writes them)."""
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.threads = torch.get_num_threads()
    results: dict = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": asdict(cfg), "env": envinfo.collect(cfg.threads), "models": {},
    }  # fmt: skip
    notify("the machine's floor: a GEMM at fp32 and bf16")
    results["floor_gflops"] = gemm_floor(cfg.threads)
    with tempfile.TemporaryDirectory(prefix="resx-bench-") as tmp:
        work = Path(tmp)
        for model in cfg.models:
            manifest, files, packages = prepare_files(model, cfg, work, notify)
            entry: dict = {"manifest": manifest, "packages": packages}
            runners = runners_for(cfg, files)
            try:
                for r in runners:
                    notify(f"starting {r.name}")
                    r.start()
                    r.set_threads(cfg.threads)
                notify("fairness gate")
                gate = fairness_gate(runners, manifest, cfg.threads, cfg.seed, cfg.max_load)
                gate.forced = cfg.force
                entry["gate"] = gate.to_dict()
                if gate.failures and not cfg.force:
                    failed = "; ".join(f"{c['check']}: {c['detail']}" for c in gate.failures)
                    raise BenchError(f"fairness gate refused {model}: {failed} (--force runs anyway and records it)")
                if gate.loaded:
                    busy = gate.other_cpu_load if gate.other_cpu_load is not None else gate.load_average[0]
                    warn(f"machine is loaded: other processes keep {busy:.2f} of {gate.cores} cores busy "
                         f"(above {cfg.max_load} per core); timings are marked as taken under load")  # fmt: skip
                if cfg.inference:
                    entry["inference"] = inference(runners, cfg, notify)
            finally:
                for r in runners:
                    r.stop()
            if cfg.training:
                entry["training"] = training(model, cfg, work, files["script"], notify)
            entry["ratios"] = ratios(entry)
            results["models"][model] = entry
    results["loaded"] = any(m["gate"]["loaded"] for m in results["models"].values())
    results["forced"] = cfg.force
    return results
