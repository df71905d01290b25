"""Writing `resx bench` results: results.json, results.csv, report.md and PNG plots."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from resx.files import atomic_write

SEED_COLUMNS = [
    "Runtime",
    "Model",
    "Total time",
    "Time per epoch",
    "Latency p50 (ms)",
    "Train loss",
    "Train top-1",
    "Test loss",
    "Test top-1",
]
CSV_COLUMNS = [
    "model",
    "runtime",
    "measurement",
    "batch",
    "threads",
    "value",
    "unit",
    "n",
    "mean_ms",
    "std_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "ratio_vs_py_eager",
    "ci_low",
    "ci_high",
    "note",
]


def _fmt_time(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s"


def _ratio(entry: dict, measure: str, runtime: str) -> dict | None:
    return next((r for r in entry.get("ratios", []) if r["measure"] == measure and r["runtime"] == runtime), None)


def seed_table(results: dict) -> list[list[str]]:
    """The well-known table: per runtime and model, total time, time per epoch, latency, losses."""
    rows = []
    for model, entry in results["models"].items():
        inf, tr = entry.get("inference", {}), entry.get("training", {})
        for runtime in results["config"]["runtimes"]:
            t = tr.get(runtime, {})
            lat = inf.get("latency", {}).get(runtime)
            epochs = max(1, results["config"]["epochs"])
            epoch = t.get("epoch_time_s")
            total = t.get("total_time_s", epoch * epochs if epoch is not None else None)
            extrapolated = "extrapolated" in t.get("epoch_time_kind", "")
            rows.append(
                [
                    runtime,
                    model,
                    "—" if total is None else _fmt_time(total) + (" *" if extrapolated else ""),
                    "—" if epoch is None else _fmt_time(epoch) + (" *" if extrapolated else ""),
                    "—" if lat is None else f"{lat['p50_ms']:.2f}",
                    *(f"{t[k]:.4f}" if k in t else "—" for k in ("train_loss",)),
                    *(f"{t[k]:.2f}%" if k in t else "—" for k in ("train_top_1",)),
                    *(f"{t[k]:.4f}" if k in t else "—" for k in ("test_loss",)),
                    *(f"{t[k]:.2f}%" if k in t else "—" for k in ("test_top_1",)),
                ]
            )
    return rows


def csv_rows(results: dict) -> list[dict]:
    rows = []
    for model, entry in results["models"].items():
        inf, tr = entry.get("inference", {}), entry.get("training", {})

        def row(runtime, measurement, value, unit, batch="", threads="", summary=None, ratio=None, note=""):
            s = summary or {}
            rows.append(
                {
                    "model": model,
                    "runtime": runtime,
                    "measurement": measurement,
                    "batch": batch,
                    "threads": threads,
                    "value": value,
                    "unit": unit,
                    "n": s.get("n", ""),
                    "mean_ms": s.get("mean_ms", ""),
                    "std_ms": s.get("std_ms", ""),
                    "p50_ms": s.get("p50_ms", ""),
                    "p90_ms": s.get("p90_ms", ""),
                    "p99_ms": s.get("p99_ms", ""),
                    "ratio_vs_py_eager": ratio["ratio"] if ratio else "",
                    "ci_low": ratio["ci_low"] if ratio else "",
                    "ci_high": ratio["ci_high"] if ratio else "",
                    "note": note,
                }
            )

        for runtime, s in inf.get("latency", {}).items():
            row(
                runtime,
                "latency",
                s["p50_ms"],
                "ms (p50)",
                1,
                results["config"]["threads"],
                s,
                _ratio(entry, "latency batch 1", runtime),
            )
        for runtime, per in inf.get("throughput", {}).items():
            for batch, s in per.items():
                row(
                    runtime,
                    "throughput",
                    s["images_per_s"],
                    "images/s",
                    batch,
                    results["config"]["threads"],
                    s,
                    _ratio(entry, f"time per call, batch {batch}", runtime),
                )
        for runtime, per in inf.get("threads", {}).items():
            for threads, s in per.items():
                row(
                    runtime,
                    "concurrent throughput",
                    s["images_per_s"],
                    "images/s",
                    1,
                    threads,
                    None,
                    _ratio(entry, f"images/s with {threads} thread(s)", runtime),
                    "intra-op threads 1 per caller",
                )
        for runtime, t in tr.items():
            row(
                runtime,
                "training step",
                t["step"]["p50_ms"],
                "ms (p50)",
                results["config"]["train_batch"],
                results["config"]["threads"],
                t["step"],
                _ratio(entry, "training step", runtime),
                t["data"],
            )
            row(
                runtime,
                "training epoch",
                t["epoch_time_s"],
                "s",
                results["config"]["train_batch"],
                results["config"]["threads"],
                note=t["epoch_time_kind"],
            )
            for key in ("train_loss", "train_top_1", "test_loss", "test_top_1"):
                if key in t:
                    row(runtime, key, t[key], "%" if "top" in key else "", note=t["data"])
    return rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def markdown(results: dict, plots: list[str]) -> str:
    cfg, env = results["config"], results["env"]["python"]
    out = [
        f"# resx bench ({cfg['preset']})\n\n",
        f"Created {results['created']} on {env['cpu_model']} ({env['cpu_cores']} cores), torch {env['torch_version']}, "
        f"device {cfg['device']}, intra-op threads {cfg['threads']}.\n",
    ]
    if results.get("loaded"):
        out.append(
            "> **Machine loaded**: the load average was above the threshold when timing started; "
            "treat absolute figures with care (ratios are interleaved and hold up better).\n"
        )
    if results.get("forced"):
        out.append("> **--force**: the fairness gate was overridden; see the gate section.\n")
    out.append("\n## Comparison\n\n")
    out.append(_md_table(SEED_COLUMNS, seed_table(results)))
    out.append(
        "\n`*` time extrapolated from the measured steps to a full 50,000-image epoch; losses and accuracies "
        "appear only when full epochs were trained on CIFAR-10.\n"
    )
    for model, entry in results["models"].items():
        inf, tr = entry.get("inference", {}), entry.get("training", {})
        m = entry["manifest"]
        out.append(
            f"\n## {model}: {m['model']['stem']} stem, layers {m['model']['layers']}, {m['parameters']:,} "
            f"parameters, {m['flops_per_image']['forward'] / 1e9:.3f} GFLOP/img forward, fingerprint "
            f"`{m['fingerprint'][:12]}`\n\n"
        )
        gate = entry["gate"]
        out.append("\n### Fairness gate\n\n")
        out.append(
            _md_table(
                ["check", "ok", "detail"],
                [
                    [c["check"], "yes" if c["ok"] else "**NO**", ", ".join(f"{k}={v}" for k, v in c["detail"].items())]
                    for c in gate["checks"]
                ],
            )
        )
        other = gate.get("other_cpu_load")
        out.append(
            f"\nLoad average {gate['load_average'][0]:.2f} on {gate['cores']} cores; other processes kept "
            f"{'unknown' if other is None else f'{other:.2f}'} cores busy just before timing"
            f"{' (loaded)' if gate['loaded'] else ''}.\n"
        )
        if inf:
            out.append("\n### Batch-1 latency (ms)\n\n")
            out.append(
                _md_table(
                    ["runtime", "n", "warm-up calls", "mean", "std", "p50", "p90", "p99", "vs py-eager (95% CI)"],
                    [
                        [
                            name,
                            s["n"],
                            inf["warmup_calls"][name][1],
                            f"{s['mean_ms']:.3f}",
                            f"{s['std_ms']:.3f}",
                            f"{s['p50_ms']:.3f}",
                            f"{s['p90_ms']:.3f}",
                            f"{s['p99_ms']:.3f}",
                            _ci(_ratio(entry, "latency batch 1", name)),
                        ]
                        for name, s in inf["latency"].items()
                    ],
                )
            )
            batches = list(next(iter(inf["throughput"].values())).keys()) if inf["throughput"] else []
            out.append("\n### Throughput (images/s)\n\n")
            out.append(
                _md_table(
                    ["runtime", *(f"batch {b}" for b in batches)],
                    [
                        [
                            name,
                            *(
                                f"{per[b]['images_per_s']:,.0f} {_relative_rate(_ratio(entry, f'time per call, batch {b}', name))}"
                                for b in batches
                            ),
                        ]
                        for name, per in inf["throughput"].items()
                    ],
                )
            )
            out.append("\nIn brackets: images/s relative to py-eager (above 1: more).\n")
            if inf["threads"]:
                counts = list(next(iter(inf["threads"].values())).keys())
                out.append("\n### Concurrent batch-1 inference, one intra-op thread per caller (total images/s)\n\n")
                out.append(
                    _md_table(
                        ["runtime", *(f"{t} thread(s)" for t in counts)],
                        [
                            [name, *(f"{per[t]['images_per_s']:,.1f}" for t in counts)]
                            for name, per in inf["threads"].items()
                        ],
                    )
                )
        if tr:
            out.append("\n### Training step (median ms) and its split\n\n")
            out.append(
                _md_table(
                    [
                        "runtime",
                        "step p50",
                        "data",
                        "forward",
                        "backward",
                        "optimizer",
                        "images/s",
                        "epoch",
                        "vs py-eager (95% CI)",
                        "data source",
                    ],
                    [
                        [
                            name,
                            f"{t['step']['p50_ms']:.1f}",
                            *(f"{t['split_ms'][k]:.1f}" for k in ("data", "forward", "backward", "optimizer")),
                            f"{t['images_per_s']:.1f}",
                            f"{_fmt_time(t['epoch_time_s'])} ({t['epoch_time_kind']})",
                            _ci(_ratio(entry, "training step", name)),
                            t["data"],
                        ]
                        for name, t in tr.items()
                    ],
                )
            )
        out.append(
            "\nRatios are time ratios (below 1: faster than py-eager) except for concurrent throughput "
            "(above 1: more images/s); 95% percentile-bootstrap intervals.\n"
        )
    for plot in plots:
        out.append(f"\n![{plot}]({plot})\n")
    return "".join(out)


def _ci(r: dict | None) -> str:
    return "baseline" if not r else f"{r['ratio']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"


def _relative_rate(time_ratio: dict | None) -> str:
    return "" if not time_ratio else f"({1 / time_ratio['ratio']:.2f}×)"


def plots(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    for model, entry in results["models"].items():
        inf, tr = entry.get("inference", {}), entry.get("training", {})

        def save(fig, name):
            path = out / f"{model}-{name}.png"
            buf = io.BytesIO()
            fig.tight_layout()
            fig.savefig(buf, format="png", dpi=110)
            plt.close(fig)
            atomic_write(path, buf.getvalue())
            written.append(path.name)

        if inf.get("latency"):
            fig, ax = plt.subplots(figsize=(7, 4))
            names = list(inf["latency"])
            data = [np.asarray(inf["latency"][n]["samples_ns"]) / 1e6 for n in names]
            ax.violinplot(data, showmedians=True)
            ax.set_xticks(range(1, len(names) + 1), names)
            ax.set_ylabel("ms per call")
            ax.set_title(f"{model}: batch-1 latency distribution")
            save(fig, "latency")
        if inf.get("throughput"):
            fig, ax = plt.subplots(figsize=(7, 4))
            for name, per in inf["throughput"].items():
                ax.plot(list(per), [v["images_per_s"] for v in per.values()], marker="o", label=name)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch size")
            ax.set_ylabel("images/s")
            ax.set_title(f"{model}: throughput vs batch size")
            ax.legend()
            save(fig, "throughput-batch")
        if inf.get("threads"):
            fig, ax = plt.subplots(figsize=(7, 4))
            for name, per in inf["threads"].items():
                ax.plot(list(per), [v["images_per_s"] for v in per.values()], marker="o", label=name)
            ax.set_xlabel("concurrent callers (1 intra-op thread each)")
            ax.set_ylabel("total images/s")
            ax.set_title(f"{model}: throughput vs threads")
            ax.legend()
            save(fig, "throughput-threads")
        if tr:
            fig, ax = plt.subplots(figsize=(7, 4))
            names = list(tr)
            bottom = np.zeros(len(names))
            for part in ("data", "forward", "backward", "optimizer"):
                values = np.array([tr[n]["split_ms"][part] for n in names])
                ax.bar(names, values, bottom=bottom, label=part)
                bottom += values
            ax.set_ylabel("ms per step (median)")
            ax.set_title(f"{model}: training step split")
            ax.legend()
            save(fig, "train-split")
    return written


def write(results: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    images = plots(results, out)
    atomic_write(out / "results.json", json.dumps(results, indent=1, default=str).encode())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(csv_rows(results))
    atomic_write(out / "results.csv", buf.getvalue().encode())
    atomic_write(out / "report.md", markdown(results, images).encode())
    return [out / "results.json", out / "results.csv", out / "report.md", *(out / i for i in images)]
