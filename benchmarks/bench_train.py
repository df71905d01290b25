"""Training step time of each runtime against a bare loop, on CIFAR ResNet18.

The bare loop is forward, loss, backward and SGD step on one pre-made batch, nothing else; the
runtimes are `resx train` (data pipeline, timing, bookkeeping). Rounds interleave the four variants
(bare C++, cpp runtime, bare Python, py runtime) so that drift hits all alike. The first step of every
run is dropped (one-off costs).

    .venv/bin/python benchmarks/bench_train.py --data DIR [--batch-size 128] [--steps 4] [--rounds 3]
    .venv/bin/python benchmarks/bench_train.py --data DIR --epoch-subset 5000 --test-subset 1000

The second form trains one epoch on the first N images in both runtimes and prints step time and
train/test accuracy side by side.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from resx import _cpp, stats
from resx import data as D
from resx import train as T
from resx.export import export, load
from resx.models import build
from resx.recipe import TrainConfig
from resx.rundir import RunDir


def bare_py(model_file: Path, x: torch.Tensor, y: torch.Tensor, steps: int, cfg: TrainConfig) -> list[int]:
    import time

    scripted, _ = load(model_file)
    model = build(cfg.model_config())
    model.load_state_dict(scripted.state_dict())
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter_ns()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter_ns() - t0)
    return times


def train_run(cfg: TrainConfig, runtime: str, data: Path, run_dir: Path, model_file: Path | None = None) -> RunDir:
    if not T.start(cfg, run_dir, runtime=runtime, data=data, model_file=model_file).complete:
        raise SystemExit(f"{runtime} training was stopped")
    return RunDir(run_dir)


def runtime_steps(run_dir: RunDir) -> list[int]:
    return [int(s.seconds * 1e9) for s in run_dir.read_steps()]


def one_epoch(args, threads: int, tmp: Path) -> None:
    """One epoch on the first N images in both runtimes: step time, losses and accuracies side by side."""
    cfg = TrainConfig(
        batch_size=args.batch_size, subset=args.epoch_subset, test_subset=args.test_subset, threads=threads, epochs=1
    )
    results = {}
    for runtime in ("py", "cpp"):
        rd = train_run(cfg, runtime, Path(args.data), tmp / runtime)
        results[runtime] = (rd.read_epochs()[0], runtime_steps(rd))
    print(
        f"1 epoch on the first {args.epoch_subset} CIFAR-10 images, test on {args.test_subset}, "
        f"batch {args.batch_size}, cosine LR from 0.1"
    )
    print(
        f"{'runtime':8} {'step p50 (s)':>12} {'epoch (s)':>10} {'train loss':>11} {'train top-1':>11} "
        f"{'test loss':>10} {'test top-1':>10}"
    )
    for runtime, (e, steps) in results.items():
        print(
            f"{runtime:8} {np.median(steps[1:]) / 1e9:12.3f} {e.epoch_time:10.1f} {e.train_loss:11.4f} "
            f"{e.train_top_1:10.2f}% {e.test_loss:10.4f} {e.test_top_1:9.2f}%"
        )
    same = results["py"][0].test_loss == results["cpp"][0].test_loss
    print(f"identical losses and accuracies in both runtimes: {same}")


def against_bare_loops(args, threads: int, tmp: Path) -> None:
    """Rounds interleave bare C++, the cpp runtime, bare Python and the py runtime."""
    cfg = TrainConfig(
        batch_size=args.batch_size,
        subset=args.batch_size * args.steps,
        test_subset=args.batch_size,
        threads=threads,
        epochs=1,
    )
    model_file = tmp / "model.pt"
    export(cfg.model_config(), model_file, seed=cfg.seed)
    images, labels = D.load_split(args.data, "train")
    n = args.batch_size
    batch = next(D.CifarLoader(images[:n], labels[:n], n, train=True).batches(0))
    rounds: dict[str, list[list[int]]] = {"bare C++": [], "cpp runtime": [], "bare Python": [], "py runtime": []}
    for rnd in range(args.rounds):
        model = _cpp.Model(str(model_file))
        rounds["bare C++"].append(
            _cpp.bare_train_steps(
                model, batch.inputs, batch.labels, args.steps, cfg.lr, cfg.momentum, cfg.weight_decay
            )[1:]
        )
        for runtime, key in (("cpp", "cpp runtime"), ("py", "py runtime")):
            rd = train_run(cfg, runtime, Path(args.data), tmp / f"{runtime}-{rnd}", model_file)
            rounds[key].append(runtime_steps(rd)[1:])
            if runtime == "cpp":
                rounds["bare Python"].append(bare_py(model_file, batch.inputs, batch.labels, args.steps, cfg)[1:])
        print(f"round {rnd + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}")
    for name, r in rounds.items():
        s = stats.summarize(np.concatenate(r))
        print(f"{name:12} step p50 {s['p50_ms']:8.1f} ms  mean {s['mean_ms']:8.1f}  std {s['std_ms']:6.1f}  n {s['n']}")
    for runtime, bare in (("cpp runtime", "bare C++"), ("py runtime", "bare Python"), ("cpp runtime", "py runtime")):
        r = stats.ratio_interval([np.median(x) for x in rounds[runtime]], [np.median(x) for x in rounds[bare]])
        print(f"{runtime} / {bare}: {r.value:.3f} (95% CI {r.low:.3f}-{r.high:.3f}, t over {r.rounds} rounds)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="CIFAR-10 directory (binary layout)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4, help="steps per run (the first is dropped)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--epoch-subset", type=int, default=0, help="train one epoch on the first N images instead")
    ap.add_argument("--test-subset", type=int, default=1000)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"load average {os.getloadavg()}, intra-op threads {threads}, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        (one_epoch if args.epoch_subset else against_bare_loops)(args, threads, Path(tmp))


if __name__ == "__main__":
    main()
