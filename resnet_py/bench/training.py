"""The training measurement: `resx train` in each runtime that trains (rounds interleaved), read back
through the run directory's owner by record field, never by column position."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from resx import data as D
from resx import stats
from resx import train as T
from resx.bench.config import BenchConfig, BenchError
from resx.bench.measure import Notify, rotations
from resx.bench.runners import RUNTIMES
from resx.recipe import TrainConfig
from resx.rundir import RunDir

SPLIT = ("data_s", "forward_s", "backward_s", "optimizer_s")
FULL_EPOCH = 50_000  # CIFAR-10's training images, for the extrapolated epoch time


def synthetic_cifar(root: Path, n_train: int, n_test: int, seed: int) -> Path:
    """Random images in the binary layout: timing does not depend on pixel values."""
    g = torch.Generator().manual_seed(seed)
    out = root / D.BINARY_DIR
    sizes = [n_train // 5 + (1 if i < n_train % 5 else 0) for i in range(5)]
    for name, n in [(f"data_batch_{i + 1}.bin", s) for i, s in enumerate(sizes)] + [("test_batch.bin", n_test)]:
        D.write_binary(out / name, torch.randint(0, 256, (max(n, 1), 3, 32, 32), dtype=torch.uint8, generator=g),
                       torch.randint(0, 10, (max(n, 1),), generator=g))  # fmt: skip
    return root


def training(model: str, cfg: BenchConfig, work: Path, model_file: Path, notify: Notify) -> dict:
    """`resx train` for every path that trains (py-eager, py-script, py-compile, cpp-script, exe-script, at
    each dtype), rounds interleaved; steps read back as records. torch.compile's compile time is its own
    (run.json's final.compile_seconds), apart from the steps."""
    full = cfg.epochs > 0
    steps, batch = cfg.train_steps, cfg.train_batch
    data = Path(cfg.data) if cfg.data else synthetic_cifar(work / "synthetic", steps * batch, batch, cfg.seed)
    paths = [(p.label, RUNTIMES[p.runtime].train, p.dtype) for p in cfg.paths()
             if RUNTIMES[p.runtime].train and not p.cuda_graphs]  # fmt: skip
    per: dict[str, dict] = {label: {"rounds_ns": [], "split_ns": {k: [] for k in SPLIT}, "epochs": [],
                                    "compile_s": []} for label, _, _ in paths}  # fmt: skip
    for rnd, order in rotations(paths, cfg.train_rounds):
        for label, spec, dtype in order:
            notify(f"training round {rnd + 1}/{cfg.train_rounds}: {label}")
            tc = TrainConfig(model=model, stem=cfg.stem, layers=cfg.layers, width=cfg.width,
                             epochs=max(1, cfg.epochs), batch_size=batch, seed=cfg.seed, threads=cfg.threads,
                             device=cfg.device, subset=0 if full else steps * batch,
                             test_subset=0 if full else batch, dtype=dtype, channels_last=cfg.channels_last,
                             compile=spec.get("compile", False), deterministic=cfg.deterministic)  # fmt: skip
            with RunDir.create(work / f"train-{model}-{label}-{rnd}") as rd:
                job = T.prepare(tc, spec["runtime"], data, rd, model_file=model_file, py_module=spec["py_module"])
                if not T.train(job):
                    raise BenchError(f"training {label} was stopped")
                records, epochs = rd.read_steps(), rd.read_epochs()
                final = rd.read_run_json()["final"]
            timed = records[1:] or records  # the first step of a run pays one-off costs (profiling, allocator)
            entry = per[label]
            entry["rounds_ns"].append([int(s.seconds * 1e9) for s in timed])
            for k in SPLIT:
                entry["split_ns"][k] += [int(getattr(s, k) * 1e9) for s in timed]
            entry["epochs"], entry["fingerprint"] = epochs, job.fingerprint
            entry["compile_s"].append(final.get("compile_seconds") or 0.0)
    return {label: _summary(e, cfg, full) for label, e in per.items()}


def _summary(e: dict, cfg: BenchConfig, full: bool) -> dict:
    step, last = stats.summarize(stats.pooled(e["rounds_ns"])), e["epochs"][-1]
    result = {
        "step": step, "rounds_ns": e["rounds_ns"],
        "split_ms": {k.removesuffix("_s"): float(np.median(v)) / 1e6 for k, v in e["split_ns"].items()},
        "images_per_s": cfg.train_batch / (step["p50_ms"] / 1e3), "fingerprint": e["fingerprint"],
        "compile_seconds": float(np.mean(e["compile_s"])),
        "data": "CIFAR-10" if cfg.data else "synthetic (random images, timing only)",
    }  # fmt: skip
    if full:
        times = [r.epoch_time for r in e["epochs"]]
        result |= {"epoch_time_s": float(np.mean(times)), "epoch_time_kind": f"measured over {len(times)} epoch(s)",
                   "total_time_s": last.wall_time, "train_loss": last.train_loss, "train_top_1": last.train_top_1,
                   "test_loss": last.test_loss, "test_top_1": last.test_top_1}  # fmt: skip
    else:
        n_full = FULL_EPOCH // cfg.train_batch
        result |= {"epoch_time_s": step["p50_ms"] / 1e3 * n_full,
                   "epoch_time_kind": f"extrapolated from {step['n']} step(s) to {n_full} steps"}  # fmt: skip
    return result
