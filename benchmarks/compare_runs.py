"""Do reruns agree? Reads the results.json of several `resx bench` runs and prints, per scenario and
path, each run's ratio to the baseline with its 95% interval, and whether every pair of intervals
overlaps; then each run's time, peak memory and rounds.

    .venv/bin/python benchmarks/compare_runs.py REPORT_DIR [REPORT_DIR ...] [--markdown]
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

from resx.bench.registry import BASELINE
from resx.bench.results import read_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", type=Path)
    ap.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = ap.parse_args()
    runs = [read_json(d / "results.json") for d in args.reports]
    model = next(iter(runs[0].models))
    rows, all_overlap = [], True
    keys = [(r.scenario, r.path) for r in runs[0].models[model].ratios if r.baseline == BASELINE]
    for scenario, path in keys:
        ratios = [run.models[model].ratio(scenario, path, BASELINE) for run in runs]
        if any(r is None or not math.isfinite(r.low) for r in ratios):
            continue
        overlap = all(a.low <= b.high and b.low <= a.high for a, b in itertools.combinations(ratios, 2))
        all_overlap &= overlap
        cells = [f"{r.value:.3f} [{r.low:.3f}, {r.high:.3f}]" for r in ratios]
        rows.append([scenario.title, path, *cells, "yes" if overlap else "**no**"])
    header = ["scenario", f"path / {BASELINE}", *(f"run {i + 1}" for i in range(len(runs))), "pairwise overlap"]
    sep = " | "
    if args.markdown:
        print("| " + sep.join(header) + " |\n|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            print("| " + sep.join(r) + " |")
    else:
        for r in [header, *rows]:
            print(sep.join(r))
    print(f"\nevery pair of intervals overlaps: {all_overlap}")
    for i, run in enumerate(runs, 1):
        e = run.models[model]
        rounds = sorted({s["inference"].rounds for s in e.stopping.values() if "inference" in s})
        print(
            f"run {i}: {run.seconds:.0f} s, peak {run.memory.peak_rss_bytes / 2**30:.2f} GB resident, "
            f"inference rounds {rounds}, other load {min(run.load):.2f}-{max(run.load):.2f} cores"
        )


if __name__ == "__main__":
    main()
