"""Writing `resx bench` results: results.json, results.csv, report.md and PNG plots."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from resx import stats
from resx.errors import ResxError
from resx.files import atomic_write

SEED_COLUMNS = ["Runtime", "Model", "Total time", "Time per epoch", "Latency p50 (ms)", "Train loss", "Train top-1",
                "Test loss", "Test top-1"]  # fmt: skip
CSV_COLUMNS = ["model", "runtime", "measurement", "batch", "threads", "value", "unit", "n", "mean_ms", "std_ms",
               "p50_ms", "p90_ms", "p99_ms", "ratio_vs_baseline", "ci_low", "ci_high", "rounds", "round_q25",
               "round_q75", "note"]  # fmt: skip
SPLIT = ("data", "forward", "backward", "optimizer")


def _fmt_time(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s"


def _ratio(entry: dict, measure: str, runtime: str) -> dict | None:
    return next((r for r in entry.get("ratios", []) if r["measure"] == measure and r["runtime"] == runtime), None)


def _ci(r: dict | None) -> str:
    return "baseline" if not r else f"{r['ratio']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"


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
        for runtime in results["config"]["runtimes"]:
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
    """The ratios a person reads first: batch-1 latency, training step, concurrent callers."""
    lines = []
    for model, entry in results["models"].items():
        for r in entry["ratios"]:
            if r["measure"] in ("latency batch 1", "training step") or r["measure"].startswith("images/s with"):
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


def markdown(results: dict, plots: list[str]) -> str:
    from resx.bench.runners import BASELINE

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
        out.append(_gate_section(entry["gate"]))
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
