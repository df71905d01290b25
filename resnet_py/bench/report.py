"""Writing `resx bench` results: results.json, results.csv, report.md and PNG plots."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from resx import stats
from resx.bench.runners import BASELINE
from resx.errors import ResxError
from resx.files import atomic_write

SEED_COLUMNS = ["Runtime", "Model", "Total time", "Time per epoch", "Latency p50 (ms)", "Train loss", "Train top-1",
                "Test loss", "Test top-1"]  # fmt: skip
CSV_COLUMNS = ["model", "runtime", "measurement", "batch", "threads", "value", "unit", "n", "mean_ms", "std_ms",
               "p50_ms", "p90_ms", "p99_ms", "ratio_vs_baseline", "ci_low", "ci_high", "rounds", "round_q25",
               "round_q75", "note"]  # fmt: skip
SPLIT = ("data", "forward", "backward", "optimizer")
SHIP_COLUMNS = ["scenario", "fastest path", "its figure", "vs py-eager (95% CI)"]


def _fmt_time(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s"


def _ratio(entry: dict, measure: str, runtime: str, baseline: str = BASELINE) -> dict | None:
    return next((r for r in entry.get("ratios", []) if r["measure"] == measure and r["runtime"] == runtime
                 and r["baseline"] == baseline), None)  # fmt: skip


def labels(entry: dict) -> list[str]:
    """The paths measured (runtime, or runtime@dtype), in the order they ran."""
    return list(dict.fromkeys([*entry.get("inference", {}).get("latency", {}), *entry.get("training", {})]))


def _ci(r: dict | None, invert: bool = False) -> str:
    """A ratio with its interval; invert: a time ratio read as a rate ratio (above 1: more)."""
    if not r:
        return "baseline"
    if invert:
        return f"{1 / r['ratio']:.3f} [{1 / r['ci_high']:.3f}, {1 / r['ci_low']:.3f}]"
    return f"{r['ratio']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"


def _spread(r: dict | None) -> str:
    return "" if not r else f"{r['round_q25']:.3f}–{r['round_q75']:.3f}"


def _relative_rate(time_ratio: dict | None) -> str:
    return "" if not time_ratio else f"({1 / time_ratio['ratio']:.2f}×)"


def _md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ tables


def seed_table(results: dict) -> list[list[str]]:
    """The well-known table: per runtime and model, total time, time per epoch, latency, losses."""
    rows = []
    for model, entry in results["models"].items():
        inf, tr = entry.get("inference", {}), entry.get("training", {})
        for runtime in labels(entry):
            t, lat = tr.get(runtime, {}), inf.get("latency", {}).get(runtime)
            epoch = t.get("epoch_time_s")
            total = t.get("total_time_s", epoch * max(1, results["config"]["epochs"]) if epoch is not None else None)
            star = " *" if "extrapolated" in t.get("epoch_time_kind", "") else ""
            number = lambda key, fmt, t=t: fmt.format(t[key]) if t.get(key) is not None else "—"
            rows.append([
                runtime, model, "—" if total is None else _fmt_time(total) + star,
                "—" if epoch is None else _fmt_time(epoch) + star, "—" if lat is None else f"{lat['p50_ms']:.2f}",
                number("train_loss", "{:.4f}"), number("train_top_1", "{:.2f}%"), number("test_loss", "{:.4f}"),
                number("test_top_1", "{:.2f}%"),
            ])  # fmt: skip
    return rows


def headline(results: dict) -> list[str]:
    """The ratios a person reads first: batch-1 latency and training step against py-eager."""
    lines = []
    for model, entry in results["models"].items():
        for r in entry["ratios"]:
            if r["baseline"] == BASELINE and r["measure"] in ("latency batch 1", "training step"):
                lines.append(f"{model} {r['measure']}: {r['runtime']} / {r['baseline']} = {r['ratio']:.3f} "
                             f"(95% CI {r['ci_low']:.3f}-{r['ci_high']:.3f}, {r['rounds']} rounds, between rounds "
                             f"{r['round_q25']:.3f}-{r['round_q75']:.3f})")  # fmt: skip
    return lines


def _csv_row(model, runtime, measurement, value, unit, batch="", threads="", summary=None, ratio=None, note=""):
    s, r = summary or {}, ratio or {}
    return {
        "model": model, "runtime": runtime, "measurement": measurement, "batch": batch, "threads": threads,
        "value": value, "unit": unit, "note": note,
        **{k: s.get(k, "") for k in ("n", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p99_ms")},
        "ratio_vs_baseline": r.get("ratio", ""),
        **{k: r.get(k, "") for k in ("ci_low", "ci_high", "rounds", "round_q25", "round_q75")},
    }  # fmt: skip


def csv_rows(results: dict) -> list[dict]:
    rows, threads, batch = [], results["config"]["threads"], results["config"]["train_batch"]
    for model, entry in results["models"].items():
        inf, tr = entry.get("inference", {}), entry.get("training", {})
        for runtime, s in inf.get("latency", {}).items():
            rows.append(_csv_row(model, runtime, "latency", s["p50_ms"], "ms (p50)", 1, threads, s,
                                 _ratio(entry, "latency batch 1", runtime)))  # fmt: skip
        for runtime, per in inf.get("throughput", {}).items():
            for b, s in per.items():
                rows.append(_csv_row(model, runtime, "throughput", s["images_per_s"], "images/s", b, threads, s,
                                     _ratio(entry, f"time per call, batch {b}", runtime)))  # fmt: skip
        for runtime, per in inf.get("threads", {}).items():
            for n, s in per.items():
                rows.append(_csv_row(model, runtime, "concurrent throughput", s["images_per_s"], "images/s", 1, n,
                                     None, _ratio(entry, f"images/s with {n} thread(s)", runtime),
                                     "intra-op threads 1 per caller"))  # fmt: skip
        for runtime, t in tr.items():
            rows.append(_csv_row(model, runtime, "training step", t["step"]["p50_ms"], "ms (p50)", batch, threads,
                                 t["step"], _ratio(entry, "training step", runtime), t["data"]))  # fmt: skip
            rows.append(_csv_row(model, runtime, "training epoch", t["epoch_time_s"], "s", batch, threads,
                                 note=t["epoch_time_kind"]))  # fmt: skip
            for key in ("train_loss", "train_top_1", "test_loss", "test_top_1"):
                if t.get(key) is not None:
                    rows.append(_csv_row(model, runtime, key, t[key], "%" if "top" in key else "", note=t["data"]))
    return rows


# ---------------------------------------------------------------------------------------- markdown


def _gate_section(gate: dict) -> str:
    rows = [[c["check"], "yes" if c["ok"] else "**NO**", ", ".join(f"{k}={v}" for k, v in c["detail"].items())]
            for c in gate["checks"]]  # fmt: skip
    other = gate.get("other_cpu_load")
    return ("\n### Fairness gate\n\nEvery row below was computed inside each runtime.\n\n"
            + _md_table(["check", "ok", "detail"], rows)
            + f"\nLoad average {gate['load_average'][0]:.2f} on {gate['cores']} cores; other processes kept "
            f"{'unknown' if other is None else f'{other:.2f}'} cores busy just before timing"
            f"{' (loaded)' if gate['loaded'] else ''}.\n")  # fmt: skip


def _latency_section(entry: dict, baseline: str) -> str:
    rows = []
    for name, s in entry["inference"]["latency"].items():
        r = _ratio(entry, "latency batch 1", name)
        medians = [float(np.median(x)) / 1e6 for x in s["rounds_ns"]]
        rows.append([name, f"{len(s['rounds_ns'])} × {len(s['rounds_ns'][0])}",
                     f"{min(s['warmup_calls'])}–{max(s['warmup_calls'])}", f"{s['mean_ms']:.3f}", f"{s['p50_ms']:.3f}",
                     f"{s['p90_ms']:.3f}", f"{s['p99_ms']:.3f}", f"{min(medians):.2f}–{max(medians):.2f}", _ci(r),
                     _spread(r)])  # fmt: skip
    header = ["runtime", "rounds × calls", "warm-up calls", "mean", "p50", "p90", "p99", "round medians",
              f"vs {baseline} (95% CI)", "between rounds (IQR)"]  # fmt: skip
    return ("\n### Batch-1 latency (ms)\n\nEach round starts every runtime afresh, in a new process of its own (a "
            "new load and warm-up). The interval resamples rounds, then calls within them.\n\n"
            + _md_table(header, rows))  # fmt: skip


def _throughput_section(entry: dict, baseline: str) -> str:
    per_runtime = entry["inference"]["throughput"]
    batches = list(next(iter(per_runtime.values())))

    def cell(name: str, per: dict, b: int) -> str:
        return f"{per[b]['images_per_s']:,.0f} {_relative_rate(_ratio(entry, f'time per call, batch {b}', name))}"

    rows = [[name, *(cell(name, per, b) for b in batches)] for name, per in per_runtime.items()]
    return ("\n### Throughput (images/s)\n\n" + _md_table(["runtime", *(f"batch {b}" for b in batches)], rows)
            + f"\nIn brackets: images/s relative to {baseline} (above 1: more).\n")  # fmt: skip


def _threads_section(entry: dict) -> str:
    per_runtime = entry["inference"]["threads"]
    counts = list(next(iter(per_runtime.values())))
    rows = [[name, *(f"{per[t]['images_per_s']:,.1f}" for t in counts)] for name, per in per_runtime.items()]
    return ("\n### Concurrent batch-1 inference, one intra-op thread per caller (total images/s)\n\n"
            + _md_table(["runtime", *(f"{t} thread(s)" for t in counts)], rows))  # fmt: skip


def _training_section(entry: dict, baseline: str) -> str:
    rows = [[name, f"{t['step']['p50_ms']:.1f}", *(f"{t['split_ms'][k]:.1f}" for k in SPLIT),
             f"{t['images_per_s']:.1f}", f"{_fmt_time(t['epoch_time_s'])} ({t['epoch_time_kind']})",
             _ci(_ratio(entry, "training step", name)), t["data"]]
            for name, t in entry["training"].items()]  # fmt: skip
    header = ["runtime", "step p50", *SPLIT, "images/s", "epoch", f"vs {baseline} (95% CI)", "data source"]
    return "\n### Training step (median ms) and its split\n\n" + _md_table(header, rows)


def _best(values: dict[str, float], higher: bool) -> str:
    return (max if higher else min)(values, key=values.get)


def ship(results: dict, model: str, entry: dict) -> list[list[str]]:
    """What should I ship? Per scenario, the fastest path, its figure and its ratio to py-eager."""
    inf, tr, rows = entry.get("inference", {}), entry.get("training", {}), []
    if inf.get("latency"):
        lat = {n: s["p50_ms"] for n, s in inf["latency"].items()}
        best = _best(lat, higher=False)
        rows.append(["batch-1 latency", best, f"{lat[best]:.2f} ms (p50)", _ci(_ratio(entry, "latency batch 1", best))])
    if inf.get("throughput"):
        batch = max(next(iter(inf["throughput"].values())))
        rate = {n: per[batch]["images_per_s"] for n, per in inf["throughput"].items()}
        best = _best(rate, higher=True)
        ratio = _ratio(entry, f"time per call, batch {batch}", best)
        rows.append([f"throughput at batch {batch}", best, f"{rate[best]:,.0f} img/s", _ci(ratio, invert=True)])
    if inf.get("threads"):
        t = max(next(iter(inf["threads"].values())))
        rate = {n: per[t]["images_per_s"] for n, per in inf["threads"].items()}
        best = _best(rate, higher=True)
        rows.append([f"{t} concurrent callers", best, f"{rate[best]:,.0f} img/s",
                     _ci(_ratio(entry, f"images/s with {t} thread(s)", best))])  # fmt: skip
    if tr:
        step = {n: t["step"]["p50_ms"] for n, t in tr.items()}
        best = _best(step, higher=False)
        rows.append(["training step", best, f"{step[best]:.1f} ms (p50)", _ci(_ratio(entry, "training step", best))])
    return rows


def language_share(entry: dict) -> list[list[str]]:
    """C++ against Python on the same engine and dtype: the language's own share of the time."""
    return [
        [r["measure"], f"{r['runtime']} / {r['baseline']}", _ci(r)]
        for r in entry.get("ratios", [])
        if r["baseline"] != BASELINE and r["kind"] == "time" and r["measure"] != "time per call, batch 1"
    ]  # fmt: skip  (the latency, again)


def floor_rows(results: dict, entry: dict) -> list[list[str]]:
    """Each path's batch-1 latency against the floor: the network's FLOPs at the GEMM's rate."""
    flops, rows = entry["manifest"]["flops_per_image"]["forward"], []
    for name, s in entry.get("inference", {}).get("latency", {}).items():
        dtype = name.partition("@")[2] or "fp32"
        floor_ms = flops / (results["floor_gflops"][dtype] * 1e9) * 1e3
        rows.append([name, f"{s['p50_ms']:.2f}", f"{floor_ms:.2f} ({dtype})", f"{floor_ms / s['p50_ms']:.0%}"])
    return rows


def costs(entry: dict) -> list[list]:
    """Compile and load times, apart from the timed calls."""
    rows = [[name, c["threads"] if c["threads"] >= 0 else "—", f"{c['load_seconds']:.2f}",
             f"{c['compile_seconds']:.1f}" if c["compile_seconds"] else "—"]
            for name, c in entry["gate"]["compiled"].items()]  # fmt: skip
    for dtype, p in entry.get("packages", {}).items():
        cached = "cached" if p["cached"] else "compiled now"
        rows.append([f"AOTInductor package {dtype}", p["compile"]["threads"], "—",
                     f"{p['compile_seconds']:.1f} ({cached})"])  # fmt: skip
    for name, t in entry.get("training", {}).items():
        if t.get("compile_seconds"):
            rows.append([f"{name} training", "—", "—", f"{t['compile_seconds']:.1f}"])
    return rows


def _ship_section(results: dict, model: str, entry: dict) -> str:
    out = ("\n### What should I ship?\n\nThe fastest path per scenario against py-eager (times: below 1 is "
           "faster; rates: above 1 is more), 95% CI over rounds.\n\n"
           + _md_table(SHIP_COLUMNS, ship(results, model, entry)))  # fmt: skip
    share = language_share(entry)
    if share:
        out += ("\nThe language's own share: C++ against Python on the same engine and dtype (time ratios).\n\n"
                + _md_table(["measure", "ratio", "95% CI"], share))  # fmt: skip
    return out


def _floor_section(results: dict, entry: dict) -> str:
    g = results["floor_gflops"]
    return (f"\n### Against the machine's floor\n\nA 2048² GEMM here: {g['fp32']:.0f} GFLOP/s at fp32, "
            f"{g['bf16']:.0f} at bf16. The floor of batch-1 latency is the network's forward FLOPs at that rate; "
            "each path's fraction of it:\n\n" + _md_table(["path", "p50 (ms)", "floor (ms)", "fraction"],
                                                            floor_rows(results, entry)))  # fmt: skip


def markdown(results: dict, plots: list[str]) -> str:
    cfg, env = results["config"], results["env"]["python"]
    out = [f"# resx bench ({cfg['preset']})\n\n",
           f"Created {results['created']} on {env['cpu_model']} ({env['cpu_cores']} cores), torch "
           f"{env['torch_version']}, device {cfg['device']}, intra-op threads {cfg['threads']}.\n"]  # fmt: skip
    if results.get("loaded"):
        out.append("> **Machine loaded**: other processes were busy when timing started; treat absolute figures "
                   "with care (ratios are interleaved and hold up better).\n")  # fmt: skip
    if results.get("forced"):
        out.append("> **--force**: the fairness gate was overridden; see the gate section.\n")
    out += ["\n## Comparison\n\n", _md_table(SEED_COLUMNS, seed_table(results)),
            "\n`*` time extrapolated from the measured steps to a full 50,000-image epoch; losses and accuracies "
            "appear only when full epochs were trained on CIFAR-10.\n"]  # fmt: skip
    for model, entry in results["models"].items():
        m = entry["manifest"]
        out.append(f"\n## {model}: {m['model']['stem']} stem, layers {m['model']['layers']}, width "
                   f"{m['model']['width']}, {m['parameters']:,} parameters, "
                   f"{m['flops_per_image']['forward'] / 1e9:.3f} GFLOP/img forward, fingerprint "
                   f"`{m['fingerprint'][:12]}`\n")  # fmt: skip
        if entry.get("inference") or entry.get("training"):
            out.append(_ship_section(results, model, entry))
        out.append(_gate_section(entry["gate"]))
        out += [
            "\n### Compile and load times (apart from the timed calls)\n\n",
            _md_table(["path", "threads compiled in (0: dynamic)", "load s", "compile s"], costs(entry)),
        ]
        if entry.get("inference"):
            out.append(_floor_section(results, entry))
        if entry.get("inference"):
            out.append(_latency_section(entry, BASELINE))
            out.append(_throughput_section(entry, BASELINE))
            if entry["inference"]["threads"]:
                out.append(_threads_section(entry))
        if entry.get("training"):
            out.append(_training_section(entry, BASELINE))
        out.append(f"\nRatios are time ratios (below 1: faster than {BASELINE}) except for concurrent throughput "
                   "(above 1: more images/s); 95% intervals from a hierarchical bootstrap over rounds.\n")  # fmt: skip
    out += [f"\n![{plot}]({plot})\n" for plot in plots]
    return "".join(out)


# ------------------------------------------------------------------------------------------- plots


def plots(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name: str) -> None:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write(out / name, buf.getvalue())
        written.append(name)

    def lines(model: str, per_runtime: dict, xlabel: str, ylabel: str, title: str, name: str, log2: bool) -> None:
        fig, ax = plt.subplots(figsize=(7, 4))
        for runtime, per in per_runtime.items():
            ax.plot(list(per), [v["images_per_s"] for v in per.values()], marker="o", label=runtime)
        if log2:
            ax.set_xscale("log", base=2)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{model}: {title}")
        ax.legend()
        save(fig, f"{model}-{name}.png")

    for model, entry in results["models"].items():
        inf, tr = entry.get("inference", {}), entry.get("training", {})
        if inf.get("latency"):
            fig, ax = plt.subplots(figsize=(7, 4))
            names = list(inf["latency"])
            ax.violinplot([stats.pooled(inf["latency"][n]["rounds_ns"]) / 1e6 for n in names], showmedians=True)
            ax.set_xticks(range(1, len(names) + 1), names)
            ax.set(ylabel="ms per call", title=f"{model}: batch-1 latency distribution")
            save(fig, f"{model}-latency.png")
        if inf.get("throughput"):
            lines(model, inf["throughput"], "batch size", "images/s", "throughput vs batch size", "throughput-batch",
                  True)  # fmt: skip
        if inf.get("threads"):
            lines(model, inf["threads"], "concurrent callers (1 intra-op thread each)", "total images/s",
                  "throughput vs threads", "throughput-threads", False)  # fmt: skip
        if tr:
            fig, ax = plt.subplots(figsize=(7, 4))
            names, bottom = list(tr), np.zeros(len(tr))
            for part in SPLIT:
                values = np.array([tr[n]["split_ms"][part] for n in names])
                ax.bar(names, values, bottom=bottom, label=part)
                bottom += values
            ax.set(ylabel="ms per step (median)", title=f"{model}: training step split")
            ax.legend()
            save(fig, f"{model}-train-split.png")
    return written


def write(results: dict, out: Path) -> list[Path]:
    if out.exists() and not out.is_dir():
        raise ResxError(f"{out}: exists and is not a directory; choose another -o")
    images = plots(results, out)
    atomic_write(out / "results.json", json.dumps(results, indent=1, default=str))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(csv_rows(results))
    atomic_write(out / "results.csv", buf.getvalue())
    atomic_write(out / "report.md", markdown(results, images))
    return [out / "results.json", out / "results.csv", out / "report.md", *(out / i for i in images)]
