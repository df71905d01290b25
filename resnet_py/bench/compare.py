"""`resx bench` as one function: export, start the runtimes, gate, measure, compare."""

from __future__ import annotations

import datetime as _dt
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from resx import envinfo, stats
from resx.bench.config import BenchConfig, BenchError
from resx.bench.gate import fairness_gate
from resx.bench.measure import Notify, inference
from resx.bench.runners import BASELINE, make_runner
from resx.bench.training import training
from resx.export import export


def ratios(entry: dict, baseline: str = BASELINE) -> list[dict]:
    """Every runtime against the baseline, with the rounds' hierarchical-bootstrap 95% CI: time ratios
    (< 1: faster than the baseline) for latency, calls and training steps; rate ratios for threads."""
    out = []
    inf, tr = entry.get("inference", {}), entry.get("training", {})

    def add(measure: str, name: str, a, b, kind: str = "time") -> None:
        r = stats.bootstrap_ratio(a, b, "median" if kind == "time" else "mean")
        out.append({"measure": measure, "runtime": name, "baseline": baseline, "kind": kind} | r)

    for name, e in inf.get("latency", {}).items():
        if name != baseline and baseline in inf["latency"]:
            add("latency batch 1", name, e["rounds_ns"], inf["latency"][baseline]["rounds_ns"])
    for name, per in inf.get("throughput", {}).items():
        if name != baseline and baseline in inf["throughput"]:
            for batch, e in per.items():
                base = inf["throughput"][baseline][batch]["rounds_ns"]
                add(f"time per call, batch {batch}", name, e["rounds_ns"], base)
    for name, per in inf.get("threads", {}).items():
        if name != baseline and baseline in inf["threads"]:
            for t, e in per.items():
                add(f"images/s with {t} thread(s)", name, [[v] for v in e["rounds"]],
                    [[v] for v in inf["threads"][baseline][t]["rounds"]], "rate")  # fmt: skip
    for name, e in tr.items():
        if name != baseline and baseline in tr and len(e["rounds_ns"]) == len(tr[baseline]["rounds_ns"]):
            add("training step", name, e["rounds_ns"], tr[baseline]["rounds_ns"])
    return out


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
    with tempfile.TemporaryDirectory(prefix="resx-bench-") as tmp:
        work = Path(tmp)
        for model in cfg.models:
            model_file = work / f"{model}.pt"
            notify(f"exporting {model}")
            manifest = export(cfg.model_config(model), model_file, seed=cfg.seed)
            entry: dict = {"manifest": manifest}
            runners = [make_runner(name, model_file, cfg.device) for name in cfg.runtimes]
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
                entry["training"] = training(model, cfg, work, model_file, notify)
            entry["ratios"] = ratios(entry)
            results["models"][model] = entry
    results["loaded"] = any(m["gate"]["loaded"] for m in results["models"].values())
    results["forced"] = cfg.force
    return results
