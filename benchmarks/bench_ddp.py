"""Data-parallel scaling: `resx train` at 1 and 2 processes x 1 thread, py (DistributedDataParallel) and
cpp (DDP's Reducer driven from C++), plus 1 process x 2 threads (the same cores without DDP).

Images/s is rank 0's: the global batch over its step time (steps.csv, the first step of each run
dropped), median over rounds whose order rotates. The all-reduce time per step is DDP's own timer
(c10d::Logger, every step), from run.json's "world"; "overlap" is the part of it spent while backward
still computed.

    .venv/bin/python benchmarks/bench_ddp.py [--width 64] [--batch-size 32] [--steps 12] [--rounds 3]
        [--data DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

from resx.bench.rounds import rotations
from resx.bench.training import synthetic_cifar
from resx.rundir import RunDir

MEDIANS = ("images_per_s", "step_ms", "allreduce_ms", "overlap_ms", "allreduce_share")
CONFIGS = [("py", 1, 1), ("py", 2, 1), ("cpp", 1, 1), ("cpp", 2, 1), ("py", 1, 2), ("cpp", 1, 2)]


def one_run(run: Path, data: Path, runtime: str, procs: int, threads: int, args) -> dict:
    # The same global batch and the same images per run whatever the number of processes.
    per_rank, images = args.batch_size // procs, args.batch_size * args.steps
    cmd = [
        sys.executable,
        "-m",
        "resx",
        "train",
        "-o",
        str(run),
        "--data",
        str(data),
        "--runtime",
        runtime,
        "--width",
        str(args.width),
        "--batch-size",
        str(per_rank),
        "--subset",
        str(images),
        "--device",
        args.device,
        "--test-subset",
        "32",
        "--epochs",
        "1",
        "--threads",
        str(threads),
        "--nproc-per-node",
        str(procs),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    rd = RunDir(run)
    steps = rd.read_steps()[1:]
    world = rd.read_run_json()["world"]
    ranks = world["ranks"] or [{}]
    return {
        "images_per_s": sum(s.batch_size for s in steps) / sum(s.seconds for s in steps),
        "step_ms": 1e3 * sum(s.seconds for s in steps) / len(steps),
        "allreduce_ms": 1e3 * max(r.get("allreduce_s", 0.0) for r in ranks),
        "overlap_ms": 1e3 * max(r.get("allreduce_overlap_s", 0.0) for r in ranks),
        "allreduce_share": max(r.get("allreduce_share", 0.0) for r in ranks),
        "bucket_sizes": world["bucket_sizes"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=64, help="channels of the first stage (64: ResNet18)")
    ap.add_argument("--batch-size", type=int, default=32, help="global batch (split over the processes)")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", type=Path, help="CIFAR-10 (default: random images, timing only)")
    ap.add_argument(
        "--device",
        default="cpu",
        help="cpu, or cuda (2 processes share one GPU over gloo "
        "when there are fewer GPUs than processes: a correctness run, not a scaling one)",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    print(
        f"load average {os.getloadavg()}, {os.cpu_count()} cores, {args.device}; ResNet18 width {args.width}, "
        f"global batch {args.batch_size}, {args.steps} steps per run, {args.rounds} rounds"
    )
    results: dict[tuple, list[dict]] = {c: [] for c in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = args.data or synthetic_cifar(work / "data", args.batch_size * args.steps, 32, 0)
        for rnd in range(args.rounds):
            for runtime, procs, threads in rotations(CONFIGS, rnd):
                run = work / f"{runtime}-{procs}x{threads}-{rnd}"
                results[(runtime, procs, threads)].append(one_run(run, data, runtime, procs, threads, args))
                print(
                    f"  round {rnd + 1}: {runtime} {procs}x{threads}: "
                    f"{results[(runtime, procs, threads)][-1]['images_per_s']:.1f} img/s",
                    flush=True,
                )
    rows = {}
    for (runtime, procs, threads), runs in results.items():
        row = {k: median(r[k] for r in runs) for k in MEDIANS}
        row |= {"bucket_sizes": runs[0]["bucket_sizes"], "rounds": [r["images_per_s"] for r in runs]}
        rows[f"{runtime} {procs}x{threads}"] = row
    print(
        f"\n{'runtime procs x threads':24} {'img/s':>8} {'step ms':>8} {'allreduce ms':>13} {'overlap ms':>11} "
        f"{'share':>6}"
    )
    for name, r in rows.items():
        print(
            f"{name:24} {r['images_per_s']:8.1f} {r['step_ms']:8.1f} {r['allreduce_ms']:13.2f} "
            f"{r['overlap_ms']:11.2f} {r['allreduce_share']:6.1%}"
        )
    print()
    for runtime in ("py", "cpp"):
        one, two, threads2 = (rows[f"{runtime} {c}"]["images_per_s"] for c in ("1x1", "2x1", "1x2"))
        print(
            f"{runtime}: 2 processes / 1 = {two / one:.2f}x; 2 processes x 1 thread / 1 process x 2 threads = "
            f"{two / threads2:.2f}x"
        )
    py2, cpp2 = (rows[f"{r} 2x1"]["bucket_sizes"] for r in ("py", "cpp"))
    print(f"DDP buckets (bytes): py {py2}, cpp {cpp2}")
    for c in ("1x1", "2x1", "1x2"):
        print(f"cpp / py at {c}: {rows[f'cpp {c}']['images_per_s'] / rows[f'py {c}']['images_per_s']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
