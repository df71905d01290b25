"""Writing `resx bench` results: results.json (resx.bench.results), config.toml, results.csv, report.md and
PNG plots, one function per section, formatting only what the typed results and resx.bench.analysis say.
`resx report` re-renders a run's report from its results.json alone, byte for byte; `resx compare` sets two
runs side by side (compare())."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from resx.bench import analysis
from resx.bench.config import write as config_toml
from resx.bench.language import SHARES, extra, same_kernels
from resx.bench.plan import Estimate as Expected
from resx.bench.plan import Plan
from resx.bench.results import (
    LATENCY,
    MEMORY,
    STARTUP_PHASES,
    STEP_PARTS,
    Counts,
    Drift,
    Estimate,
    GateReport,
    ModelResults,
    Ratio,
    Results,
    Scenario,
    write_json,
)
from resx.bench.serving import CONFIRM, ServeResult
from resx.console import fmt_time
from resx.errors import ResxError
from resx.files import atomic_write

CSV_COLUMNS = [
    "model",
    "path",
    "scenario",
    "kind",
    "batch",
    "callers",
    "value",
    "unit",
    "images_per_s",
    "calls",
    "rounds",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "baseline",
    "ratio",
    "ci_low",
    "ci_high",
    "half_width",
    "round_q25",
    "round_q75",
    "note",
]
PHASE_NAMES = ("interpreter and libraries", "model load", "first batch-1 call")
SHIP_COLUMNS = ["scenario", "fastest path", "its figure", "vs py-eager (95% CI)"]


def ship_columns(entry: ModelResults) -> list[str]:
    return [*SHIP_COLUMNS[:3], f"vs {entry.baseline} (95% CI)"]


def describe_model(m: dict) -> str:
    """The model in one line: where it comes from, its input, its size, its fingerprint."""
    source, model = m.get("source") or {"kind": "builtin"}, m["model"]
    if "block" in model:
        what = f"{model['stem']} stem, layers {model['layers']}, width {model['width']}"
    elif source["kind"] == "torchvision":
        kwargs = ", ".join(f"{k}={v}" for k, v in (source.get("kwargs") or {}).items())
        what = f"torchvision:{source['name']}({kwargs}) of torchvision {source.get('torchvision_version')}"
    elif source["kind"] == "factory":
        what = f"factory {source['name']}" + (f" (file sha1 {source['sha1'][:12]})" if source.get("sha1") else "")
    else:
        what = f"file {source['name']}, a model resx did not write"
    shape = "x".join(map(str, m["input"]["shape"][1:]))
    flops = m.get("flops_per_image")
    size = f"{m['parameters']:,} parameters, " if m.get("parameters") is not None else ""
    cost = f"{flops['forward'] / 1e9:.3f} GFLOP/img forward, " if flops else ""
    how = (m.get("export") or {}).get("note")
    return f"{what}, input {shape}, {size}{cost}fingerprint `{m['fingerprint'][:12]}`" + (f" ({how})" if how else "")


def ci(r: Ratio | None, as_speedup: bool = False) -> str:
    """A ratio with its 95% interval; with fewer than FEW_ROUNDS rounds, the range of its per-round ratios
    instead, said so. as_speedup: read as 'times faster or more' (above 1: better)."""
    if r is None:
        return "baseline"
    value, low, high = r.speedup if as_speedup else (r.value, r.low, r.high)
    if r.rounds < analysis.FEW_ROUNDS:
        lo, hi = sorted((1 / r.highest, 1 / r.lowest)) if as_speedup and not r.scenario.rate else (r.lowest, r.highest)
        if r.rounds == 1:
            return f"{value:.3f} (1 round: no interval)"
        return f"{value:.3f} (rounds {lo:.3f}–{hi:.3f}; {r.rounds} rounds, too few for an interval)"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def figure(m, scenario: Scenario) -> str:
    if scenario.kind in MEMORY:
        return f"{m.value / 2**20:,.0f} MB"
    if scenario.kind == "startup":
        return f"{m.value:.2f} s" if m.value >= 1 else f"{m.value * 1e3:.1f} ms"
    if scenario.kind == "server":
        return f"{m.value:,.0f} queries/s"
    if scenario.kind == "singlestream":
        return f"{m.value * 1e3:.2f} ms (p90)"
    if scenario.rate:
        return f"{m.value:,.0f} img/s"
    if scenario.kind == "throughput":
        return f"{m.images_per_s:,.0f} img/s"
    return f"{m.value * 1e3:.2f} ms (p50)"


def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def drop_empty(header: list[str], rows: list[list[str]], keep: int = 2) -> tuple[list[str], list[list[str]]]:
    """Without the columns (after the first `keep`) that hold nothing in any row."""
    used = [i for i in range(len(header)) if i < keep or any(r[i] not in ("", "—") for r in rows)]
    return [header[i] for i in used], [[r[i] for i in used] for r in rows]


# ------------------------------------------------------------------------------------------ tables


def comparison(results: Results) -> tuple[list[str], list[list[str]]]:
    """The well-known table: per path and model, total time, time per epoch, latency, losses; columns
    that no path has (no training, say) are left out."""
    header = [
        "Path",
        "Model",
        "Total time",
        "Time per epoch",
        "Latency p50 (ms)",
        "Train loss",
        "Train top-1",
        "Test loss",
        "Test top-1",
    ]
    rows = []
    for model, entry in results.models.items():
        for path in entry.paths():
            t, lat = entry.training.get(path), entry.measurement(LATENCY, path)
            e = analysis.epoch(entry, path, results.config.training.epochs)
            star = " *" if e.extrapolated else ""
            number = lambda key, f, t=t: f.format(getattr(t, key)) if t and getattr(t, key) is not None else "—"
            rows.append(
                [
                    path,
                    model,
                    "—" if e.total_s is None else fmt_time(e.total_s) + star,
                    "—" if e.epoch_s is None else fmt_time(e.epoch_s) + star,
                    "—" if lat is None else f"{lat.value * 1e3:.2f}",
                    number("train_loss", "{:.4f}"),
                    number("train_top_1", "{:.2f}%"),
                    number("test_loss", "{:.4f}"),
                    number("test_top_1", "{:.2f}%"),
                ]
            )
    return drop_empty(header, rows)


def summary(results: Results, plan: Plan, where: str) -> list[str | tuple[str, list[str], list[list[str]]]]:
    """What `resx bench` prints when it ends: lines, and tables as (title, header, rows)."""
    cfg = results.config
    title = f"resx bench ({cfg.preset}): {', '.join(m.label for m in plan.models)}, {cfg.paths.device}, "
    title += f"{plan.threads} intra-op threads" + (" [LOADED]" if results.loaded else "")
    out: list = [(title, *comparison(results)), *(f"  {line}" for line in headline(results))]
    for name, entry in results.models.items():
        out.append((f"{name}: what should I ship?", ship_columns(entry), ship(entry)))
        short = analysis.missed(entry)
        if short:
            out.append(f"  not within ±{cfg.rounds.target:.0%} when the budget ended: {', '.join(short)}")
    gb = results.memory.peak_rss_bytes / 2**30
    return [*out, f"took {fmt_time(results.seconds)}, at most {gb:.2f} GB resident; {where}"]


def plan_lines(plan: Plan, estimate: Expected) -> list[str]:
    """What a run will do, before it starts: the models, paths, scenarios, rounds and budgets, and how long
    it should take, with the options that shorten it."""
    cfg = plan.config
    low, high = cfg.rounds.span
    lines = [f"resx bench ({cfg.preset}): {len(plan.models)} model(s), {plan.threads} intra-op thread(s)"]
    for m in plan.models:
        scenarios = ", ".join(s.key for s in m.scenarios) or "none (the gate alone)"
        lines.append(f"  {m.label}: {len(m.paths)} paths ({', '.join(p.label for p in m.paths)})")
        lines.append(f"    inference: {scenarios}; {low}-{high} rounds, at most {fmt_time(cfg.rounds.budget)}")
        if m.train_paths:
            t = cfg.training
            what = f"{t.epochs} epochs" if t.epochs else f"{t.steps} steps at batch {t.batch}"
            lines.append(
                f"    training: {', '.join(p.label for p in m.train_paths)}; {what}, up to {t.rounds} runs each, "
                f"at most {fmt_time(t.budget)}"
            )
        if cfg.serving.scenarios:
            lines.append(f"    serving (LoadGen): {', '.join(cfg.serving.scenarios)}; {cfg.serving.rounds} rounds")
        if cfg.counts.enabled:
            lines.append(f"    instruction counts: {cfg.counts.calls} calls per path under callgrind")
    if plan.sweep:
        lines.append(f"  the language map: {len(plan.sweep)} graphs, {cfg.map.rounds} rounds each")
    bound = fmt_time(estimate.at_most_s)
    first = (
        f", plus up to {fmt_time(estimate.first_s)} compiling the packages and programs not cached yet"
        if estimate.first_s
        else ""
    )
    lines.append(
        f"expected to take about {fmt_time(estimate.expected_s)} (at most about {bound} by the budgets{first}); "
        "--quick, --budget S, --train-budget S or fewer --runtime shorten it"
    )
    return lines


def headline(results: Results) -> list[str]:
    """The ratios a person reads first: batch-1 latency and the training step against py-eager."""
    lines = []
    for model, entry in results.models.items():
        for r in entry.ratios:
            if r.baseline == entry.baseline and r.scenario.kind in ("latency", "training"):
                lines.append(
                    f"{model} {r.scenario.title}: {r.path} / {r.baseline} = {ci(r)} ({r.rounds} "
                    f"rounds; between rounds {r.q25:.3f}-{r.q75:.3f})"
                )
    return lines


def ship(entry: ModelResults) -> list[list[str]]:
    """What should I ship? Per scenario, the fastest path, its figure and its ratio to the baseline; where
    no path beats the baseline beyond the run's noise, it says so instead of naming one."""
    rows = []
    for s in analysis.ship(entry):
        shown = ci(s.ratio, as_speedup=s.scenario.kind == "throughput") if s.ratio or s.path == entry.baseline else "—"
        path = s.path
        if not s.beyond_noise and s.scenario.steady:
            path = f"none beyond the noise (fastest: {s.path})"
        rows.append([s.scenario.title, path, figure(s.measurement, s.scenario), shown])
    return rows


def shares(ratios: list[Ratio]) -> list[list[str]]:
    return [[r.scenario.title, f"{r.path} / {r.baseline}", ci(r)] for r in ratios]


def quality(entry: ModelResults) -> list[list[str]]:
    """Per path: the rounds it ran, the calls it took, the widest interval it reached, and why it stopped."""
    rows = []
    for path in entry.paths():
        for phase, s in entry.stopping.get(path, {}).items():
            calls = sum(
                m.calls
                for m in entry.measurements
                if m.path == path and (m.scenario.kind == "training") == (phase == "training")
            )
            widths = s.half_width
            widest = max(widths.items(), key=lambda kv: kv[1]) if widths else None
            reached = "baseline" if not widths else ("yes" if s.reached else "**no**")
            shown = (
                ""
                if widest is None
                else (f"±{widest[1]:.1%} ({widest[0]})" if math.isfinite(widest[1]) else f"none ({widest[0]}, 1 round)")
            )
            rows.append([path, phase, str(s.rounds), f"{calls:,}", shown, reached, s.reason])
    return rows


def floor_rows(results: Results, entry: ModelResults) -> list[list[str]]:
    """Each path's batch-1 latency against the floor: the network's FLOPs at the GEMM's rate."""
    rows = []
    for path in entry.paths(LATENCY):
        p50, floor, dtype = analysis.floor_fraction(results, entry, path)
        rows.append([path, f"{p50 * 1e3:.2f}", f"{floor * 1e3:.2f} ({dtype})", f"{floor / p50:.0%}"])
    return rows


def costs(entry: ModelResults) -> list[list]:
    """Compile and load times, apart from the timed calls."""
    rows = [
        [
            name,
            c.threads if c.threads >= 0 else "—",
            f"{c.load_seconds:.2f}",
            f"{c.compile_seconds:.1f}" if c.compile_seconds else "—",
        ]
        for name, c in entry.gate.compiled.items()
    ]
    for dtype, p in entry.packages.items():
        cached = "cached" if p.cached else "compiled now"
        tried = p.freezing_batch1_s
        frozen = ", frozen" if p.freezing else ", not frozen"
        chose = (
            f": the faster at batch 1 ({', '.join(f'{k} {v * 1e3:.3f} ms' for k, v in tried.items())})" if tried else ""
        )
        rows.append(
            [
                f"AOTInductor package {dtype}{frozen}{chose}",
                p.compile["threads"],
                "—",
                f"{p.compile_seconds:.1f} ({cached})",
            ]
        )
    for name, t in entry.training.items():
        if t.compile_seconds:
            rows.append([f"{name} training", "—", "—", f"{t.compile_seconds:.1f}"])
    return rows


def csv_rows(results: Results) -> list[dict]:
    rows = []
    for model, entry in results.models.items():
        for m in entry.measurements:
            s = m.scenario
            r = entry.ratio(s, m.path, entry.baseline)
            per_call = s.steady and not s.rate
            times = {f"p{q}_ms": m.percentile(q) * 1e3 for q in (50, 90, 99)} if per_call else {}
            rows.append(
                {
                    "model": model,
                    "path": m.path,
                    "scenario": s.key,
                    "kind": s.kind,
                    "batch": s.batch,
                    "callers": s.callers if s.kind == "concurrency" else "",
                    "value": m.value,
                    "unit": s.unit,
                    "images_per_s": m.images_per_s if s.steady else "",
                    "calls": m.calls,
                    "rounds": len(m.rounds),
                    **times,
                    "baseline": r.baseline if r else "",
                    "ratio": r.value if r else "",
                    "ci_low": r.low if r else "",
                    "ci_high": r.high if r else "",
                    "half_width": r.half_width if r else "",
                    "round_q25": r.q25 if r else "",
                    "round_q75": r.q75 if r else "",
                    "note": entry.training[m.path].data if s.kind == "training" and m.path in entry.training else "",
                }
            )
    return rows


# ---------------------------------------------------------------------------------------- markdown


def _gate_section(gate: GateReport) -> str:
    rows = [
        [c.check, "yes" if c.ok else "**NO**", ", ".join(f"{k}={v}" for k, v in c.detail.items())] for c in gate.checks
    ]
    other = gate.other_cpu_load
    return (
        "\n### Fairness gate\n\nEvery row was computed inside each runtime, in its first process, before "
        "it timed anything.\n\n"
        + md_table(["check", "ok", "detail"], rows)
        + f"\nLoad average {gate.load_average[0]:.2f} on {gate.cores} cores; other processes kept "
        f"{'unknown' if other is None else f'{other:.2f}'} cores busy just before timing"
        f"{' (loaded)' if gate.loaded else ''}.\n"
    )


def _scenario_section(entry: ModelResults, scenario: Scenario) -> str:
    rows = []
    for path in entry.paths(scenario):
        m, r = entry.measurement(scenario, path), entry.ratio(scenario, path, entry.baseline)
        lo, hi = m.spread
        if scenario.rate:
            value, spread = f"{m.value:,.1f}", f"{lo:,.1f}–{hi:,.1f}"
            extra = []
        else:
            value, spread = f"{m.value * 1e3:.3f}", f"{lo * 1e3:.3f}–{hi * 1e3:.3f}"
            extra = [f"{m.percentile(90) * 1e3:.3f}", f"{m.percentile(99) * 1e3:.3f}", f"{m.images_per_s:,.1f}"]
        warm = f"{min(m.warmup_calls)}–{max(m.warmup_calls)}" if m.warmup_calls else "—"
        rows.append(
            [
                path,
                f"{len(m.rounds)} × {m.calls // max(1, len(m.rounds))}",
                warm,
                value,
                *extra,
                spread,
                ci(r),
                "" if r is None else f"{r.q25:.3f}–{r.q75:.3f}",
            ]
        )
    if scenario.rate:
        header, unit = ["path", "rounds × values", "warm-up calls", "images/s"], "total images/s"
    else:
        header, unit = ["path", "rounds × calls", "warm-up calls", "p50", "p90", "p99", "images/s"], "ms per call"
    header += ["round medians", f"vs {entry.baseline} (95% CI)", "between rounds (IQR)"]
    note = {
        "concurrency": " (batch 1, one intra-op thread per caller: Python threads for py, std::threads for "
        "cpp and exe)",
        "training": " (the first step of each run dropped)",
    }.get(scenario.kind, "")
    return f"\n### {scenario.title[0].upper()}{scenario.title[1:]}: {unit}{note}\n\n" + md_table(header, rows)


def _drift(d: Drift | None) -> str:
    if not d:
        return "—"
    mb = 2**20
    return (
        f"{d.growth_bytes / mb:+,.1f} MB; {d.bytes_per_1000_calls / mb:+.2f} ({d.late_bytes_per_1000_calls / mb:+.2f})"
    )


def _shipping_section(entry: ModelResults) -> str:
    """What shipping costs, per path: its fresh process's start, its memory, what it maps."""
    startup = {s.phase: s for s in entry.scenarios(steady=False) if s.kind == "startup"}
    memory = sorted((s for s in entry.scenarios(steady=False) if s.kind == "memory"), key=lambda s: s.batch)
    allocator = sorted(
        (s for s in entry.scenarios(steady=False) if s.kind in ("cuda_allocated", "cuda_reserved")),
        key=lambda s: (s.batch, s.kind),
    )
    if "ready" not in startup:
        return ""
    rows = []
    for path in entry.paths(startup["ready"]):
        ready, load = entry.measurement(startup["ready"], path), entry.measurement(startup["load"], path)
        first = entry.measurement(startup["first"], path) if "first" in startup else None
        held = [entry.measurement(s, path) for s in memory]
        lo, hi = ready.spread
        parts = {
            "process and libraries": ready.value - load.value,
            "model load": load.value,
            "first call": first.value if first else 0.0,
        }
        latency = entry.measurement(LATENCY, path)
        foot = entry.footprint.get(path)
        rows.append(
            [
                path,
                f"{ready.value:.2f} ({lo:.2f}–{hi:.2f})",
                f"{load.value:.2f}",
                f"{first.value * 1e3:.1f}" if first else "—",
                f"{min(latency.warmup_calls)}–{max(latency.warmup_calls)}" if latency and latency.warmup_calls else "—",
                max(parts, key=parts.get),
                *(f"{m.value / 2**20:,.0f}" if m else "—" for m in held),
                *(f"{m.value / 2**20:,.0f}" if m else "—" for m in (entry.measurement(a, path) for a in allocator)),
                f"{foot.model_file_bytes / 2**20:,.1f}" if foot else "—",
                f"{foot.libraries} ({foot.library_bytes / 2**20:,.0f} MB)" if foot else "—",
                ci(entry.ratio(startup["ready"], path, entry.baseline)),
                ci(entry.ratio(memory[0], path, entry.baseline)) if memory else "—",
                *([_drift(entry.drift.get(path))] if entry.drift else []),
            ]
        )
    header = ["path", "spawn to ready, s (rounds' range)", "of which load, s", "first call, ms", "warm-up calls"]
    header += [
        "dominated by",
        *(f"RSS {'after load' if s.batch == 0 else f'peak through batch {s.batch}'}, MB" for s in memory),
        *(f"CUDA peak {s.kind.removeprefix('cuda_')} through batch {s.batch}, MB" for s in allocator),
    ]
    header += ["model file, MB", "shared libraries mapped", f"ready vs {entry.baseline}", f"RSS vs {entry.baseline}"]
    if entry.drift:
        calls = max(int(d.calls) for d in entry.drift.values())
        header.append(f"RSS over {calls:,} calls: growth; MB per 1,000 calls (all; second half)")
    return (
        "\n### What shipping costs: start-up and memory\n\nA fresh process per path and round: from spawn to its first "
        "answer (the interpreter, the libraries, the model's load), then the first batch-1 call before any "
        "warm-up; its resident memory once loaded and its peak (VmHWM) after each batch size; the model file "
        "and the shared libraries the process mapped (what shipping it takes; the CUDA build's among them). "
        "Medians over rounds, ratios with 95% intervals; the rounds adapt to the per-call figures, not to "
        "these.\n\n" + md_table(header, rows)
    )


def _vs(entry: ModelResults, scenario: Scenario, path: str) -> str:
    r = entry.ratio(scenario, path, entry.baseline)
    return ci(r) if r or path == entry.baseline else "— (no rate within the bound in some round)"


def _serving_curve(entry: ModelResults) -> dict[tuple[str, int, float], list[ServeResult]]:
    """The Server tests by (path, workers, offered rate), over the rounds."""
    curve: dict[tuple[str, int, float], list[ServeResult]] = {}
    for path, tests in entry.serving.items():
        for t in tests:
            if t.run.scenario == "server":
                curve.setdefault((path, t.run.workers, t.run.rate), []).append(t)
    return dict(sorted(curve.items(), key=lambda kv: (entry.paths().index(kv[0][0]), kv[0][1], kv[0][2])))


def _serving_section(entry: ModelResults) -> str:
    """Serving under LoadGen's load: the plan, the peak rates within the bound, SingleStream and Offline,
    and the Server curve (p50 and p99 from arrival, so queueing counts, against the offered rate)."""
    plan = entry.serve_plan
    scenarios = [s for s in entry.scenarios(steady=False) if s.serving]
    if not plan or not scenarios:
        return ""
    tests = [t for ts in entry.serving.values() for t in ts]
    versions = sorted({t.loadgen for t in tests if t.loadgen})
    valid = sum(t.valid for t in tests)
    rows = []
    for s in scenarios:
        for path in entry.paths(s):
            m = entry.measurement(s, path)
            lo, hi = m.spread
            per_round = m.per_round
            shown = figure(m, s) if min(per_round) > 0 else "none within the bound in some round"
            scale = 1e3 if s.kind == "singlestream" else 1.0  # ms, or a rate
            rows.append(
                [s.title, path, shown, f"{lo * scale:,.4g}–{hi * scale:,.4g}", _vs(entry, s, path), len(m.rounds)]
            )
    curve = []
    for (path, workers, rate), ts in _serving_curve(entry).items():
        p50 = float(np.median([t.p50_s for t in ts])) * 1e3
        p99 = [t.p99_s * 1e3 for t in ts]
        within = sum(t.within_bound for t in ts)
        verdict = f"{sum(t.valid for t in ts)}/{len(ts)} VALID"
        reasons = sorted({why for t in ts for why in t.why.split("; ") if why})
        curve.append(
            [
                path,
                workers,
                f"{rate:,.4g}",
                f"{np.median([t.scheduled_per_s for t in ts]):,.4g}",
                f"{p50:.2f}",
                f"{np.median(p99):.2f} ({min(p99):.2f}–{max(p99):.2f})",
                f"{within}/{len(ts)}",
                verdict + (f" ({'; '.join(reasons)})" if reasons else ""),
            ]
        )
    bound = plan.bound_s * 1e3
    threads = ", ".join(f"{w} worker{'s' if w > 1 else ''}: {plan.threads(w)}" for w in plan.workers)
    rounds = max(len(entry.measurement(s, p).rounds) for s in scenarios for p in entry.paths(s))
    text = (
        "\n### Serving under load: MLPerf LoadGen\n\n"
        f"LoadGen {', '.join(versions) or '(version not logged)'} in each runtime's own process: the Python wheel "
        "with Python threads answering for the py runtimes, LoadGen's C++ sources compiled into the C++ runtime "
        "with std::threads for cpp and exe (no Python in the executable's path). Every path ran the same "
        f"settings and seeds (seed {plan.seed}, {plan.duration_s:g} s minimum per test, at least "
        f"{plan.min_queries} queries; MLPerf's own minimum is 600 s, so LoadGen's early stopping often cannot "
        "yet claim the percentile and calls a run INVALID for that alone). Latency runs from each query's "
        f"scheduled arrival to its completion, so queueing counts. The Server bound: p99 ≤ {bound:.2f} ms; the "
        "peak is the highest offered rate whose p99 stayed within it (the curve's steps, then "
        f"{plan.refine} bisections; a step whose p99 passed the bound was run {CONFIRM} more time(s) and ended the "
        "climb only if every run of it did, so that one stalled step cannot halve a peak). Intra-op threads per "
        "worker: the cores less one (LoadGen's issuing thread "
        f"keeps one busy) shared out: {threads}. {valid} of "
        f"{len(tests)} tests LoadGen called VALID. Ratios with 95% intervals over {rounds} rounds; LoadGen's "
        "summaries are in loadgen/.\n\n"
        + md_table(["scenario", "path", "median over rounds", "rounds' range", f"vs {entry.baseline}", "rounds"], rows)
    )
    if curve:
        header = ["path", "workers", "offered queries/s", "scheduled /s", "p50 ms", "p99 ms (rounds' range)"]
        header += ["p99 within bound", "LoadGen's verdict"]
        text += "\nThe Server curve (medians over the rounds that ran each rate):\n\n" + md_table(header, curve)
    return text


def _training_split(entry: ModelResults) -> str:
    rows = [
        [
            name,
            *(f"{t.split_ms[k]:.1f}" for k in STEP_PARTS),
            f"{t.peak_rss_bytes / 2**20:,.0f}" if t.peak_rss_bytes else "—",
            t.data,
        ]
        for name, t in entry.training.items()
    ]
    header = ["path", *STEP_PARTS, "peak RSS, largest process of the run, MB", "data source"]
    return (
        "\n### Training step split (median ms), and the peak memory of the run's largest process\n\n"
        "For exe paths that is the Python launcher's when it exceeds resx-cpp's.\n\n" + md_table(header, rows)
    )


def _header(results: Results) -> str:
    cfg, env, mem = results.config, results.env["python"], results.memory
    out = [
        f"# resx bench ({cfg.preset})\n\n",
        f"Created {results.created} on {env['cpu_model']} ({env['cpu_cores']} cores), torch "
        f"{env['torch_version']}, device {cfg.paths.device}, intra-op threads {results.threads}. The run took "
        f"{fmt_time(results.seconds)}; its processes together held at most "
        f"{mem.peak_rss_bytes / 2**30:.2f} GB resident (the machine's used memory peaked at "
        f"{mem.machine_used_peak_bytes / 2**30:.2f} GB, from "
        f"{mem.machine_used_before_bytes / 2**30:.2f} GB before). `resx bench --config config.toml` measures the "
        "same again.\n",
    ]
    if results.load:
        out.append(
            f"Other processes kept {min(results.load):.2f}–{max(results.load):.2f} cores busy during the rounds.\n"
        )
    if results.loaded:
        out.append(
            "\n> **Machine loaded**: other processes were busy while timing; treat absolute figures with "
            "care (ratios are interleaved and hold up better).\n"
        )
    if results.forced:
        out.append("\n> **--force**: the fairness gate was overridden; see the gate section.\n")
    return "".join(out)


def _comparison_section(results: Results) -> str:
    header, rows = comparison(results)
    out = "\n## Comparison\n\n" + md_table(header, rows)
    if any("*" in c for r in rows for c in r):
        out += f"\n`*` time extrapolated from the measured steps to a full {analysis.TRAIN_IMAGES:,}-image epoch.\n"
    return out


def _ship_section(entry: ModelResults) -> str:
    out = (
        f"\n### What should I ship?\n\nThe fastest path per scenario against {entry.baseline} (times: "
        "below 1 is faster; throughput and rates: above 1 is more), 95% interval over rounds. A per-call "
        f"scenario names its fastest path only where that path beats {entry.baseline} beyond the run's noise "
        f"(its interval past the noise floor's).\n\n" + md_table(ship_columns(entry), ship(entry))
    )
    share = shares(analysis.language_share(entry))
    if share:
        out += (
            "\nThe language's own share: C++ against Python on the same engine and dtype (times "
            "below 1, rates above 1: C++ better); cpp-eager / py-eager is LibTorch's C++ API against "
            "PyTorch's Python API, the same module in each.\n\n" + md_table(["scenario", "ratio", "95% CI"], share)
        )
    scripted = shares(analysis.script_share(entry))
    if scripted:
        out += (
            "\nTorchScript's own share, apart: the TorchScript file against the C++ module, both driven "
            "from C++.\n\n" + md_table(["scenario", "ratio", "95% CI"], scripted)
        )
    return out


def _noise_section(entry: ModelResults) -> str:
    """The baseline against itself in a second process per round, and the ratios narrower than that."""
    floors = [r for r in entry.ratios if r.path == analysis.noise_path(entry.baseline) and r.baseline == entry.baseline]
    if not floors:
        return ""
    rows = []
    for f in floors:
        narrower = [
            r.path if r.baseline == entry.baseline else f"{r.path} / {r.baseline}"  # a language's own ratio
            for r in entry.ratios
            if r.scenario == f.scenario and analysis.within_noise(entry, r)
        ]
        half = f"±{f.half_width:.1%}" if math.isfinite(f.half_width) else "—"
        rows.append([f.scenario.title, ci(f), half, ", ".join(narrower) or "none"])
    return (
        f"\n### The run's noise floor\n\n{entry.baseline} timed twice, as two paths (two processes per round, "
        f"interleaved like the others): its ratio to itself is what the machine's noise alone makes of a ratio of "
        "1. A ratio whose interval is narrower than this floor is listed: its rounds agreed more than the "
        "baseline agreed with itself, so read it with the floor's width.\n\n"
        + md_table(
            [
                "scenario",
                f"{entry.baseline}{analysis.AGAIN} / {entry.baseline}",
                "half-width",
                "narrower than the floor",
            ],
            rows,
        )
    )


def _rounds_section(entry: ModelResults, target: float) -> str:
    out = (
        f"\n### How far the rounds went\n\nEach path ran until each of its ratios to {entry.baseline} had a "
        f"95% interval within ±{target:.0%} (t on the log of the per-round ratios), or the "
        "budget or the most rounds ended it.\n\n"
        + md_table(
            ["path", "phase", "rounds", "calls", "widest interval", "within target", "stopped because"], quality(entry)
        )
    )
    short = analysis.missed(entry)
    if short:
        out += f"\nNot brought within ±{target:.0%} by the budget: {', '.join(short)}.\n"
    return out


def _costs_section(entry: ModelResults) -> str:
    return "\n### Compile and load times (apart from the timed calls)\n\n" + md_table(
        ["path", "threads compiled in (0: dynamic)", "load s", "compile s"], costs(entry)
    )


def _floor_section(results: Results, entry: ModelResults) -> str:
    if not entry.paths(LATENCY) or not entry.manifest.get("flops_per_image"):
        return ""
    g = results.floor_gflops
    return (
        f"\n### Against the machine's floor\n\nA 2048² GEMM here: {g['fp32']:.0f} GFLOP/s at fp32, "
        f"{g['bf16']:.0f} at bf16. The floor of batch-1 latency is the network's forward FLOPs at that "
        "rate; each path's fraction of it:\n\n"
        + md_table(["path", "p50 (ms)", "floor (ms)", "fraction"], floor_rows(results, entry))
    )


def _model_section(results: Results, model: str, entry: ModelResults) -> str:
    out = [f"\n## {model}: {describe_model(entry.manifest)}\n"]
    if entry.skipped:
        out.append("\nNot measured: " + "; ".join(f"{r} ({why})" for r, why in entry.skipped.items()) + ".\n")
    if entry.measurements:
        out += [_ship_section(entry), _noise_section(entry), _rounds_section(entry, results.config.rounds.target)]
    out += [
        _gate_section(entry.gate),
        _costs_section(entry),
        _floor_section(results, entry),
        _shipping_section(entry),
        _serving_section(entry),
        *(_scenario_section(entry, s) for s in entry.scenarios()),
        _training_split(entry) if entry.training else "",
        _counts_section(entry),
    ]
    return "".join(out)


def markdown(results: Results, plots: list[str]) -> str:
    out = [_header(results), _comparison_section(results)]
    out += [_model_section(results, model, entry) for model, entry in results.models.items()]
    if results.language:
        out.append(_language_section(results))
    out += [f"\n![{plot}]({plot})\n" for plot in plots]
    return "".join(out)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def _estimate(e: Estimate, scale: float, digits: int = 1) -> str:
    lo, hi = ("–", "–") if not math.isfinite(e.low) else (f"{e.low * scale:.{digits}f}", f"{e.high * scale:.{digits}f}")
    width = f" (±{e.half_width:.0%})" if math.isfinite(e.half_width) else ""
    return f"{e.value * scale:.{digits}f} [{lo}, {hi}]{width}"


def _language_section(results: Results) -> str:
    """Where the language matters (resx.bench.language): the call taken apart, the crossover, the GIL under
    contention, the predictions."""
    lm = results.language
    cfg, ref, base = results.config, lm.reference, lm.baseline
    out = [
        "\n## Where the language matters for this model\n\n",
        f"A sweep of one ResNet over depth (operators per call) and width (the kernels' time), batch 1, "
        f"{results.threads} intra-op thread(s), {cfg.map.rounds} rounds of fresh processes per graph; fitted on "
        f"{', '.join(lm.fit_points)}, held out {', '.join(lm.held_out) or 'none'} and the run's models. Each "
        f"runtime's call is taken apart against {ref} (C++): what it adds per call and per operator it calls "
        "(latency − reference = fixed + per operator × the top-level operators of the baseline's profile; one fit "
        "per round, Student's t over rounds).\n\n",
    ]
    bound = lm.profiles.get(lm.contention_graph, {})
    rows = []
    for path in [ref, *lm.costs]:
        c, prof = lm.costs.get(path), bound.get(path)
        rows.append(
            [
                path,
                "reference" if c is None else _estimate(c.fixed, 1e6),
                "reference" if c is None else _estimate(c.per_op, 1e9, 0),
                "" if c is None else f"{c.residual:.1%}",
                "" if prof is None else f"{prof.ops:.0f} ({prof.top_ops:.0f})",
                "" if prof is None else _us(prof.outside_s),
                "" if prof is None else _us(prof.op_s),
            ]
        )
    out.append(
        md_table(
            [
                "path",
                f"fixed beyond {ref}, µs",
                "per operator called, ns",
                "fit's error",
                f"operators per call (top) at {lm.contention_graph}",
                "outside operators, µs (profiled)",
                "inside, µs (profiled)",
            ],
            rows,
        )
    )
    out.append(
        f"\nThe profile (torch.profiler in Python, a RecordFunction callback in C++) costs "
        f"{_estimate(lm.profiler, 1e9, 0)} ns per operator it records (the baseline's, over the fitted graphs); "
        "the time outside operators is each runtime's own (the interpreter, its arguments, its result; a "
        "compiled engine's own kernels too). "
        + (
            f"{', '.join(compiled)} run other kernels than the profiled ones (Inductor's, fused): their extra is "
            "also the difference of kernels, so their row describes rather than decomposes (see the fit's error), "
            "and the map does not predict them. "
            if (compiled := [p for p in lm.costs if not same_kernels(p)])
            else ""
        )
        + ("Not fitted: " + "; ".join(f"{p} ({why})" for p, why in lm.skipped.items()) + "." if lm.skipped else "")
        + "\n"
    )
    graphs = list(results.sweep)
    paths = [p for p in results.sweep[graphs[0]].paths(LATENCY)]
    grid = []
    for g in graphs:
        entry = results.sweep[g]
        prof = lm.profiles.get(g, {}).get(base)
        flops = entry.manifest.get("flops_per_image", {}).get("forward", 0) / 1e9
        cells = [g + ("" if g in lm.fit_points else " (held out)"), f"{flops:.3f}"]
        cells.append(f"{prof.ops:.0f} ({prof.top_ops:.0f})" if prof else "")
        for p in paths:
            m = entry.measurement(LATENCY, p)
            cells.append(f"{m.value * 1e3:.3f}" if m else "")
        r = entry.ratio(LATENCY, ref, base)
        cells.append(ci(r))
        grid.append(cells)
    out.append(
        "\n### The sweep: batch-1 p50 (ms)\n\n"
        + md_table(["graph", "GFLOP", "operators (top)", *paths, f"{ref} / {base}"], grid)
    )
    rows = _crossover_rows(lm.crossovers, lm.costs, base, lm.reference_ops, _us, lambda v: f"{v * 1e3:.3f}")
    out.append(
        f"\n### The crossover\n\nAt this model's {lm.reference_ops:.0f} top-level operators per call, what each "
        f"path saves per call against {base}, and its own batch-1 latency below which that is ≥10% and ≥2× "
        f"({base} / path ≥ 1.1 and ≥ 2); above it the kernels' time dominates.\n\n"
        + md_table(["path", "saves per call, µs", "≥10% below (ms)", "≥2× below (ms)"], rows)
    )
    if lm.contention:
        ks = sorted({k for c in lm.contention.values() for k in c})
        rows = [
            [
                p,
                *(f"{c.get(k, math.nan):.2f}" for k in ks),
                _estimate(lm.handoffs[p], 1e9, 0) if p in lm.handoffs else "",
            ]
            for p, c in lm.contention.items()
        ]
        out.append(
            f"\n### The GIL under contention\n\nAt {lm.contention_graph} (the least time per operator): the images/s "
            "of k concurrent callers (one intra-op thread each) over min(k, cores) × one caller's. 1: they scale "
            "with the cores; below 1: they wait for each other (Python threads hold the GIL outside the "
            "operators; C++ threads and TorchScript's graph do not). The last column is what each operator adds "
            "to a call per extra caller, over the fitted graphs (k / rate_k − 1 / rate_1, per operator and extra "
            "caller).\n\n"
            + md_table(
                ["path", *(f"{k} caller{'s' if k > 1 else ''}" for k in ks), "per operator per extra caller, ns"], rows
            )
        )
    if lm.train_split:
        rows = []
        for path, split in lm.train_split.items():
            c = lm.train_costs.get(path)
            rows.append(
                [
                    path,
                    *(f"{split.get(k, math.nan):.2f}" for k in STEP_PARTS),
                    "reference" if path == lm.train_reference else (_estimate(c.fixed, 1e6) if c else "not fitted"),
                    "reference" if path == lm.train_reference else (_estimate(c.per_op, 1e9, 0) if c else ""),
                ]
            )
        out.append(
            f"\n### Training: what a step adds\n\nThe training step (batch {cfg.training.batch}) of the sweep's "
            f"graphs at its smallest width: the split at {lm.train_graph} (medians, ms), and each path's step "
            f"beyond {lm.train_reference + chr(39) + 's' if lm.train_reference else 'a C++ path (none trained here)'}, "
            "fixed + per forward operator (autograd records and replays every "
            "operator, and the optimizer dispatches per parameter).\n\n"
            + md_table(
                ["path", *(f"{k}, ms" for k in STEP_PARTS), "fixed beyond, µs", "per forward operator, ns"],
                rows,
            )
        )
    if lm.predictions:
        rows = [
            [
                p.model,
                p.path,
                p.scenario,
                f"{p.predicted:.3f}",
                f"{p.measured:.3f} [{p.low:.3f}, {p.high:.3f}]",
                "yes" if p.within else f"no, by {p.miss:+.0%}" if p.made else "no prediction",
            ]
            for p in lm.predictions
        ]
        held, unmade = sum(p.within for p in lm.predictions), sum(not p.made for p in lm.predictions)
        none = (
            f" {unmade} made no prediction: the fitted extras exceed the call (too few graphs or rounds for the "
            "machine's noise; more --map-rounds or --map-layers)."
            if unmade
            else ""
        )
        out.append(
            f"\n### Predictions for what the fit did not use\n\nFrom each model's {base} profile at batch 1 (its "
            "operators and its profiled call, less the profiler's cost per operator): the ratio to "
            f"{base} of every path that runs the same operators, and with as many callers as cores (each call "
            f"longer by its path's cost per operator per extra caller). {held} of {len(lm.predictions)} within the "
            f"measured 95% interval.{none}\n\n"
            + md_table(["model", "path", "scenario", "predicted", "measured [95% CI]", "within"], rows)
        )
    if lm.count_costs:
        ref = next(iter(lm.count_costs.values())).reference
        rows = [
            [path, _estimate(c.fixed, 1e-3), _estimate(c.per_op, 1.0, 0), f"{c.residual:.2%}", str(len(c.points))]
            for path, c in lm.count_costs.items()
        ]
        out.append(
            f"\n### The call taken apart in instructions\n\nThe same decomposition on callgrind's counts (each "
            f"path's instructions per call beyond {ref}'s = fixed + per operator × the top-level operators; "
            "one count per graph, deterministic, so the interval is the line's, Student's t on its residuals over "
            "the graphs).\n\n"
            + md_table(
                [
                    "path",
                    f"fixed beyond {ref}, k instructions",
                    "per operator called",
                    "fit's error",
                    "graphs",
                ],
                rows,
            )
        )
        if lm.count_crossovers:
            rows = _crossover_rows(
                lm.count_crossovers,
                lm.count_costs,
                base,
                lm.reference_ops,
                "{:,.0f}".format,
                lambda v: f"{v / 1e6:,.1f}",
            )
            out.append(
                f"\nThe crossover in instructions: at this model's {lm.reference_ops:.0f} top-level operators per "
                f"call, what each path saves per call against {base}, and its own count per call below which "
                f"that is ≥10% and ≥2× fewer instructions ({base} / path ≥ 1.1 and ≥ 2).\n\n"
                + md_table(["path", "saves per call, instructions", "≥10% below (M)", "≥2× below (M)"], rows)
            )
        if lm.count_predictions:
            rows = [
                [p.model, p.path, f"{p.predicted:,.0f}", f"{p.measured:,.0f}", f"{p.predicted / p.measured - 1:+.2%}"]
                for p in lm.count_predictions
            ]
            out.append(
                "\nPredicted from the reference's count and each graph's operators, for the graphs and models the fit "
                "did not use:\n\n" + md_table(["model", "path", "predicted instructions", "counted", "off by"], rows)
            )
    fastest = min(
        ((p, results.sweep[lm.contention_graph].measurement(LATENCY, p)) for p in paths),
        key=lambda pm: pm[1].value if pm[1] else math.inf,
    )
    prof = bound.get(fastest[0])
    if fastest[1] is not None and prof is not None and prof.leaf_s > 0:
        out.append(
            f"\nAt {lm.contention_graph} the fastest path, {fastest[0]}, takes {fastest[1].value * 1e6:.0f} µs "
            "per call; "
            f"its profile spends {_us(prof.leaf_s)} µs in the innermost operators and {_us(prof.op_s)} µs inside "
            f"operators altogether ({fastest[1].value / prof.leaf_s:.1f}× and {fastest[1].value / prof.op_s:.2f}× "
            "of them; the profiled figures include the recorder's own cost).\n"
        )
    return "".join(out)


# ------------------------------------------------------------------------------------------- plots


def plots(results: Results, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    written = []

    def save(fig, name: str) -> None:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write(out / name, buf.getvalue())
        written.append(name)

    def bars(model: str, entry: ModelResults, scenario: Scenario, name: str) -> None:
        """Each path's figure with the spread of its rounds (lowest to highest round) as error bars."""
        paths = entry.paths(scenario)
        ms = [entry.measurement(scenario, p) for p in paths]
        rate = scenario.rate or scenario.kind == "throughput"
        scale = (lambda v: scenario.batch / v) if scenario.kind == "throughput" else (lambda v: v * 1e3)
        scale = (lambda v: v) if scenario.rate else scale
        values = [scale(m.value) for m in ms]
        ends = [sorted(scale(x) for x in m.spread) for m in ms]
        err = np.array(
            [
                [v - lo for v, (lo, _) in zip(values, ends, strict=True)],
                [hi - v for v, (_, hi) in zip(values, ends, strict=True)],
            ]
        ).clip(min=0)
        fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(paths) + 2), 4))
        ax.bar(range(len(paths)), values, yerr=err, capsize=3, color="tab:blue")
        ax.set_xticks(range(len(paths)), paths, rotation=35, ha="right")
        unit = "images/s" if rate else "ms per call (p50)"
        ax.set(ylabel=unit, title=f"{model}: {scenario.title} (bars: lowest to highest round)")
        save(fig, f"{model}-{name}.png")

    def timeline(model: str, entry: ModelResults) -> None:
        """Each path's fresh process from spawn to its first answer, phase by phase (medians over rounds):
        the interpreter and libraries, the model's load, the first batch-1 call; then its steady call."""
        phases = {p: Scenario("startup", phase=p) for p in STARTUP_PHASES}
        paths = entry.paths(phases["ready"])
        if not paths:
            return
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(paths) + 1.5))
        for i, path in enumerate(paths):
            ready, load, first = (entry.measurement(phases[p], path) for p in ("ready", "load", "first"))
            parts = [ready.value - load.value, load.value, first.value if first else 0.0]
            left = 0.0
            for part, name, color in zip(parts, PHASE_NAMES, ("tab:grey", "tab:blue", "tab:orange"), strict=True):
                ax.barh(i, part, left=left, color=color, label=name if i == 0 else None)
                left += part
            steady = entry.measurement(LATENCY, path)
            if steady:
                ax.annotate(f" steady call {steady.value * 1e3:.2f} ms", (left, i), va="center", fontsize="small")
        ax.set_yticks(range(len(paths)), paths)
        ax.invert_yaxis()
        ax.set(xlabel="seconds from spawn", title=f"{model}: a fresh process's start (medians over rounds)")
        ax.legend(fontsize="small", loc="lower right")
        save(fig, f"{model}-startup.png")

    def language_map() -> None:
        """Each path's batch-1 latency against the reference's (the C++ call: the kernels' time as C++ sees
        it), log-log: the sweep's graphs as points, the fit at this model's operators as lines (the paths
        that run the same operators); the language's share shaded between the reference and the baseline."""
        lm = results.language
        ref, n = lm.reference, lm.reference_ops
        fig, ax = plt.subplots(figsize=(8, 5.5))
        xs = [e.measurement(LATENCY, ref).value for e in results.sweep.values() if e.measurement(LATENCY, ref)]
        line = np.geomspace(min(xs) * 0.8, max(xs) * 1.25, 100)
        for i, path in enumerate([ref, *lm.costs]):
            color = f"C{i}"
            pts = [
                (e.measurement(LATENCY, ref).value, e.measurement(LATENCY, path).value)
                for e in results.sweep.values()
                if e.measurement(LATENCY, ref) and e.measurement(LATENCY, path)
            ]
            if same_kernels(path):  # a compiled engine's kernels differ: its points alone
                ax.scatter([x * 1e3 for x, _ in pts], [y * 1e3 for _, y in pts], color=color, s=18)
                ax.plot(line * 1e3, (line + extra(lm.costs, path, n)) * 1e3, color=color, label=path)
            else:
                ax.scatter(
                    [x * 1e3 for x, _ in pts],
                    [y * 1e3 for _, y in pts],
                    color=color,
                    s=24,
                    marker="x",
                    label=f"{path} (other kernels: points only)",
                )
        base = (line + extra(lm.costs, lm.baseline, n)) * 1e3
        ax.fill_between(line * 1e3, line * 1e3, base, color="grey", alpha=0.2, label=f"{lm.baseline} beyond {ref}")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel=f"{ref} batch-1 latency, ms (the kernels' time as C++ sees it)",
            ylabel="batch-1 latency, ms (p50)",
            title=f"Where the language matters (lines: the fit at {n:.0f} top-level operators per call)",
        )
        ax.legend(fontsize="small")
        save(fig, "language-map.png")

    if results.language:
        language_map()
    for model, entry in results.models.items():
        scenarios = entry.scenarios()
        for s in scenarios:
            if s.kind in ("latency", "throughput", "training"):
                bars(model, entry, s, s.key.replace("/", "-"))
        timeline(model, entry)
        callers = sorted([s for s in scenarios if s.kind == "concurrency"], key=lambda s: s.callers)
        if callers:
            fig, ax = plt.subplots(figsize=(7, 4))
            for path in entry.paths(callers[0]):
                ms = [entry.measurement(s, path) for s in callers]
                xs = [s.callers for s, m in zip(callers, ms, strict=True) if m]
                vs = [m.value for m in ms if m]
                lo = [v - m.spread[0] for v, m in zip(vs, [m for m in ms if m], strict=True)]
                hi = [m.spread[1] - v for v, m in zip(vs, [m for m in ms if m], strict=True)]
                ax.errorbar(xs, vs, yerr=[lo, hi], marker="o", capsize=3, label=path)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xticks([s.callers for s in callers])
            ax.set(
                xlabel="concurrent callers (1 intra-op thread each)",
                ylabel="total images/s",
                title=f"{model}: throughput against callers (bars: lowest to highest round)",
            )
            ax.legend(fontsize="small")
            save(fig, f"{model}-concurrency.png")
        curve = _serving_curve(entry)
        if curve:
            workers = sorted({w for _, w, _ in curve})
            fig, axes = plt.subplots(1, len(workers), figsize=(6 * len(workers), 4), squeeze=False)
            for ax, w in zip(axes[0], workers, strict=True):
                for path in dict.fromkeys(p for p, pw, _ in curve if pw == w):
                    points = [(rate, ts) for (p, pw, rate), ts in curve.items() if p == path and pw == w]
                    xs = [rate for rate, _ in points]
                    ys = [float(np.median([t.p99_s for t in ts])) * 1e3 for _, ts in points]
                    ax.plot(xs, ys, marker="o", label=path)
                ax.axhline(entry.serve_plan.bound_s * 1e3, color="grey", linestyle="--", label="p99 bound")
                ax.set(
                    xscale="log",
                    yscale="log",
                    xlabel="offered queries/s (Poisson)",
                    ylabel="p99 latency from arrival, ms",
                    title=f"{model}: LoadGen Server, {w} worker{'s' if w > 1 else ''}",
                )
                ax.legend(fontsize="small")
            save(fig, f"{model}-server.png")
        if entry.training:
            fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(entry.training) + 2), 4))
            names, bottom = list(entry.training), np.zeros(len(entry.training))
            for part in STEP_PARTS:
                values = np.array([entry.training[n].split_ms[part] for n in names])
                ax.bar(names, values, bottom=bottom, label=part)
                bottom += values
            ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
            ax.set(ylabel="ms per step (median)", title=f"{model}: training step split")
            ax.legend()
            save(fig, f"{model}-train-split.png")
        if entry.counts:
            names = list(entry.counts)
            layers = [layer.name for layer in entry.counts[names[0]].layers]
            fig, ax = plt.subplots(figsize=(9, 0.5 * len(names) + 2))
            left = np.zeros(len(names))
            for k, name in enumerate(layers):
                values = np.array([entry.counts[n].layers[k].instructions / 1e6 for n in names])
                ax.barh(names, values, left=left, label=name, color=f"C{k}")
                left += values
            ax.invert_yaxis()
            ax.set(xlabel="million instructions per call (callgrind)", title=f"{model}: where the instructions go")
            ax.legend(fontsize="small", loc="lower right")
            save(fig, f"{model}-instructions.png")
    return written


def write(results: Results, out: Path) -> list[Path]:
    """Every file of a run's report: results.json and config.toml (what `resx report` and `resx bench
    --config` read back), results.csv, report.md, the plots and LoadGen's summaries."""
    if out.exists() and not out.is_dir():
        raise ResxError(f"{out}: exists and is not a directory; choose another -o")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.json", write_json(results))
    atomic_write(out / "config.toml", config_toml(results.config))
    return [out / "results.json", out / "config.toml", *render(results, out)]


def write_plan(config, lines: list[str], out: Path) -> None:
    """What `resx bench --dry-run` leaves: the plan as printed, and the config that measures it."""
    if out.exists() and not out.is_dir():
        raise ResxError(f"{out}: exists and is not a directory; choose another -o")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "plan.txt", "\n".join(lines) + "\n")
    atomic_write(out / "config.toml", config_toml(config))


def render(results: Results, out: Path) -> list[Path]:
    """The report of a run, from its results alone (`resx report` calls this on a results.json)."""
    images = plots(results, out)
    summaries = _loadgen_summaries(results, out)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(results))
    atomic_write(out / "results.csv", buf.getvalue())
    atomic_write(out / "report.md", markdown(results, images))
    return [out / "results.csv", out / "report.md", *(out / i for i in images), *summaries]


def _loadgen_summaries(results: Results, out: Path) -> list[Path]:
    """LoadGen's own summary of every test: loadgen/MODEL/PATH/roundN-SCENARIO-wW[-qRATE][-tryK].txt."""
    written = []
    for model, entry in results.models.items():
        for path, tests in entry.serving.items():
            seen: dict[tuple, int] = {}
            for t in tests:
                tries = seen[(t.round, t.run)] = seen.get((t.round, t.run), 0) + 1
                name = f"round{t.round}-{t.run.key}" + (f"-try{tries}" if tries > 1 else "") + ".txt"
                file = out / "loadgen" / model.replace(":", "_") / path.replace("@", "_") / name
                file.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(file, t.summary.encode())
                written.append(file)
    return written


def _crossover_rows(crossovers: dict, costs: dict, base: str, ops: float, saved: Callable, below: Callable) -> list:
    """The crossover table's rows, in time or in instructions: each path, what it saves per call against
    the baseline at `ops` operators, and its own figure below which that is each share of SHARES."""
    rows = []
    for path, by in crossovers.items():
        cells = [path, saved(extra(costs, base, ops) - extra(costs, path, ops))]
        rows.append(cells + ["never" if by.get(f"{f:g}") is None else below(by[f"{f:g}"]) for f in SHARES])
    return rows


# What the kernels counted are (Counts.kernels, --count-kernels), as the report says it.
_KERNELS = {
    "avx2": "valgrind presents a CPU without AVX-512 or AMX, so the kernels counted are the AVX2 ones",
    "avx": "The kernels counted are oneDNN's AVX and MKL's SSE4.2 ones (--count-kernels avx: valgrind emulates "
    "AVX2's FMA slowly; --count-kernels avx2 counts those)",
}


def _hash_seed(c: Counts) -> str:
    if not c.hash_seed:
        return ""
    return (
        f" Python's string hashing fixed (PYTHONHASHSEED={c.hash_seed}): random, the interpreter's count of a call "
        "moves by 1-2% between processes."
    )


def _counts_section(entry: ModelResults) -> str:
    """Instructions per call (and per training step) under callgrind, by layer, and what each language adds
    to the same engine."""
    if not entry.counts and not entry.training_counts:
        return ""
    out = ""
    if entry.counts:
        c0 = next(iter(entry.counts.values()))
        out += (
            f"\n### Instructions per call (callgrind)\n\n{c0.calls} batch-1 calls per path at one intra-op thread, "
            f"counted by {c0.valgrind or 'valgrind'} with collection on around those calls alone (after warm-up), "
            "one valgrind process per path: deterministic, whatever the machine's load. The split is by where the "
            "instructions ran (callgrind's per-function output: each function's shared object and name); it sums "
            f"to the total. {_KERNELS[c0.kernels]}: the framework's and the language's counts do not depend on "
            f"that, the kernels' do.{_hash_seed(c0)} ns per instruction: the path's timed batch-1 p50 over its "
            "count.\n\n" + _counts_tables(entry, entry.counts, "call", LATENCY)
        )
    if entry.training_counts:
        c0 = next(iter(entry.training_counts.values()))
        step = next((s for s in entry.scenarios() if s.kind == "training"), None)
        out += (
            f"\n### Instructions per training step (callgrind)\n\n{c0.calls} training step(s) per path at the "
            "training batch and one intra-op thread, counted in a `resx train` under callgrind with collection on "
            "around those steps alone (after two uncounted): the batch's loading, forward, loss, backward and the "
            "optimizer's step. ns per instruction: the path's timed step (at the run's threads) over its count.\n\n"
            + _counts_tables(entry, entry.training_counts, "step", step)
        )
    return out


def _counts_tables(entry: ModelResults, counts: dict[str, Counts], per: str, timed: Scenario | None) -> str:
    """Each path's count by layer, then Python's path less C++'s on the same engine."""
    layers = [layer.name for layer in next(iter(counts.values())).layers]
    base = counts.get(entry.baseline)
    rows = []
    for path, c in counts.items():
        measured = entry.measurement(timed, path) if timed else None
        ns = f"{measured.value * 1e9 / c.instructions:.3f}" if measured else "—"
        vs = f"{c.instructions / base.instructions:.4f}" if base else "—"
        by = {layer.name: layer.instructions for layer in c.layers}
        rows.append([path, f"{c.instructions:,.0f}", vs, ns, *(f"{by[name] / 1e3:,.1f}" for name in layers)])
    header = ["path", f"instructions per {per}", f"vs {entry.baseline}", "ns per instruction"]
    out = md_table([*header, *(f"{n}, k" for n in layers)], rows)
    pairs = [(p, analysis.language_counterpart(p)) for p in counts]
    pairs = [(a, b) for a, b in pairs if b in counts]
    if pairs:
        rows = []
        for cpp, py in pairs:
            a = {layer.name: layer.instructions for layer in counts[py].layers}
            b = {layer.name: layer.instructions for layer in counts[cpp].layers}
            diff = counts[py].instructions - counts[cpp].instructions
            rows.append([f"{py} − {cpp}", f"{diff:+,.0f}", *(f"{(a[n] - b[n]) / 1e3:+,.1f}" for n in layers)])
        out += (
            f"\nWhat the language costs, in instructions per {per}: Python's path less C++'s on the same engine, "
            f"by layer (k).\n\n" + md_table(["paths", f"instructions per {per}", *layers], rows)
        )
    return out


# ------------------------------------------------------------------------------------ resx compare


def compare(a: Results, b: Results, names: tuple[str, str] = ("A", "B")) -> tuple[list[str], list[list[str]]]:
    """Two runs side by side: every ratio of each (95% interval), how it moved, and whether it changed
    beyond both intervals."""
    header = [
        "model",
        "scenario",
        "ratio",
        f"{names[0]} (95% CI)",
        f"{names[1]} (95% CI)",
        f"{names[1]} / {names[0]}",
        "changed",
    ]
    rows = []
    for c in analysis.compare(a, b):
        moved = "—" if c.factor is None else f"{c.factor:.3f}"
        verdict = "**yes**" if c.changed else ("—" if c.a is None or c.b is None else "no")
        rows.append(
            [
                c.model,
                c.scenario.title,
                f"{c.path} / {c.baseline}",
                ci(c.a) if c.a else "—",
                ci(c.b) if c.b else "—",
                moved,
                verdict,
            ]
        )
    return header, rows
