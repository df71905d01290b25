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
import csv
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


def runtime_steps(run_dir: Path) -> list[int]:
    with open(run_dir / "steps.csv") as f:
        rows = list(csv.DictReader(f))
    return [int(sum(float(r[k]) for k in ("data_s", "forward_s", "backward_s", "optimizer_s")) * 1e9) for r in rows]


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
        tmp = Path(tmp)
        if args.epoch_subset:
            cfg = TrainConfig(
                batch_size=args.batch_size,
                subset=args.epoch_subset,
                test_subset=args.test_subset,
                threads=threads,
                epochs=1,
            )
            results = {}
            for runtime in ("py", "cpp"):
                run_dir = tmp / runtime
                T.train(T.prepare(cfg, runtime, Path(args.data), run_dir))
                with open(run_dir / "metrics.csv") as f:
                    results[runtime] = next(csv.DictReader(f)) | {"steps": runtime_steps(run_dir)}
            print(
                f"1 epoch on the first {args.epoch_subset} CIFAR-10 images, test on {args.test_subset}, "
                f"batch {args.batch_size}, cosine LR from 0.1"
            )
            print(
                f"{'runtime':8} {'step p50 (s)':>12} {'epoch (s)':>10} {'train loss':>11} {'train top-1':>11} "
                f"{'test loss':>10} {'test top-1':>10}"
            )
            for runtime, m in results.items():
                print(
                    f"{runtime:8} {np.median(m['steps'][1:]) / 1e9:12.3f} {float(m['Epoch time']):10.1f} "
                    f"{float(m['Train_loss']):11.4f} {float(m['Train_top_1']):10.2f}% {float(m['Test_loss']):10.4f} "
                    f"{float(m['Test_top_1']):9.2f}%"
                )
            same = results["py"]["Test_loss"] == results["cpp"]["Test_loss"]
            print(f"identical losses and accuracies in both runtimes: {same}")
            return

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
        batch = next(
            D.CifarLoader(images[: args.batch_size], labels[: args.batch_size], args.batch_size, train=True).batches(0)
        )
        samples: dict[str, list[int]] = {"bare C++": [], "cpp runtime": [], "bare Python": [], "py runtime": []}
        for rnd in range(args.rounds):
            model = _cpp.Model(str(model_file))
            samples["bare C++"] += _cpp.bare_train_steps(
                model, batch.inputs, batch.labels, args.steps, cfg.lr, cfg.momentum, cfg.weight_decay
            )[1:]
            for runtime, key in (("cpp", "cpp runtime"), ("py", "py runtime")):
                run_dir = tmp / f"{runtime}-{rnd}"
                T.train(T.prepare(cfg, runtime, Path(args.data), run_dir, model_file=model_file))
                samples[key] += runtime_steps(run_dir)[1:]
                if runtime == "cpp":
                    samples["bare Python"] += bare_py(model_file, batch.inputs, batch.labels, args.steps, cfg)[1:]
            print(f"round {rnd + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}")
        for name, ns in samples.items():
            s = stats.summarize(ns)
            print(
                f"{name:12} step p50 {s['p50_ms']:8.1f} ms  mean {s['mean_ms']:8.1f}  std {s['std_ms']:6.1f}  n {s['n']}"
            )
        for runtime, bare in (
            ("cpp runtime", "bare C++"),
            ("py runtime", "bare Python"),
            ("cpp runtime", "py runtime"),
        ):
            r = stats.bootstrap_ratio(samples[runtime], samples[bare])
            print(f"{runtime} / {bare}: {r['ratio']:.3f} (95% CI {r['ci_low']:.3f}-{r['ci_high']:.3f})")


if __name__ == "__main__":
    main()
