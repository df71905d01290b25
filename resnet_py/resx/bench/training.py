"""The training measurement: `resx train` for every path that trains, each run in a fresh process (the
command itself), in adaptive rounds like inference's, read back through the run directory's owner by
record field, never by column position."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resx import data as D
from resx import options as O
from resx.bench.monitor import OtherLoad
from resx.bench.plan import ModelPlan
from resx.bench.registry import RUNTIMES
from resx.bench.results import STEP_PARTS, Scenario, TrainingDetail
from resx.bench.rounds import Notify, Rounds, rotations
from resx.errors import BenchError
from resx.recipe import TrainConfig
from resx.rundir import RunDir

SPLIT = tuple(f"{part}_s" for part in STEP_PARTS)  # resx.rundir.StepRecord's fields of a step's parts


def synthetic_cifar(root: Path, n_train: int, n_test: int, seed: int) -> Path:
    """Random images in the binary layout: timing does not depend on pixel values."""
    g = torch.Generator().manual_seed(seed)
    out = root / D.BINARY_DIR
    sizes = [n_train // 5 + (1 if i < n_train % 5 else 0) for i in range(5)]
    for name, n in [(f"data_batch_{i + 1}.bin", s) for i, s in enumerate(sizes)] + [("test_batch.bin", n_test)]:
        D.write_binary(
            out / name,
            torch.randint(0, 256, (max(n, 1), 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (max(n, 1),), generator=g),
        )
    return root


def train_config(
    model: ModelPlan, spec: dict, dtype: str, steps: int | None = None, threads: int | None = None
) -> dict[str, Any]:
    """The training config ({TrainConfig field: value}) that trains this path: the run's, or `steps` steps
    at `threads` threads (the counts: a few steps at one thread)."""
    cfg, source, t = model.config, model.source, model.config.training
    full = t.epochs > 0 and steps is None
    fields = dict(model=source.spec, epochs=max(1, t.epochs) if full else 1, batch_size=t.batch)
    fields |= dict(seed=cfg.model.seed, threads=cfg.paths.threads if threads is None else threads)
    fields |= dict(device=cfg.paths.device, dtype=dtype, subset=0 if full else (steps or t.steps) * t.batch)
    fields |= dict(test_subset=0 if full else t.batch)
    if source.kind == "builtin":
        fields |= dict(stem=cfg.model.stem, width=cfg.model.width)
        fields |= dict(layers=list(cfg.model.layers)) if cfg.model.layers else {}
    elif source.kwargs:
        fields["model_kwargs"] = source.kwargs
    switches = dict(
        compile=bool(spec.get("compile")), channels_last=cfg.paths.channels_last, deterministic=cfg.paths.deterministic
    )
    return fields | {k: True for k, on in switches.items() if on}  # given when on, as a user would


def train_command(model: ModelPlan, spec: dict, dtype: str, data: Path, out: Path) -> list[str]:
    """The `resx train` that trains this path (a new process: the language's own start-up included)."""
    args = ["-o", str(out), "--runtime", spec["runtime"], "--module", spec["module"], "--data", str(data)]
    args += O.argv(TrainConfig, train_config(model, spec, dtype))
    return [sys.executable, "-m", "resx", "train", *args]


def training(model: ModelPlan, work: Path, notify: Notify) -> tuple[Rounds, dict[str, TrainingDetail]]:
    """Every path that trains (py-eager, py-script, py-compile, cpp-eager, cpp-script, exe-eager, exe-script,
    at each dtype), in rounds, on CIFAR-10's 3x32x32 images; returns the rounds and, per path, the step's
    split, compile time and (full epochs) accuracy."""
    cfg, t = model.config, model.config.training
    full = t.epochs > 0
    data = Path(t.data) if t.data else synthetic_cifar(work / "synthetic", t.steps * t.batch, t.batch, cfg.model.seed)
    paths = model.train_paths
    by_label = {p.label: p for p in paths}
    scenario = Scenario("training", batch=t.batch)
    # Whole epochs: as many runs as asked, no adaptive stop; steps: up to the training rounds, adaptively.
    fewest = t.rounds if full else min(cfg.rounds.span[0], t.rounds)
    rounds = Rounds([p.label for p in paths], t.budget, fewest, t.rounds, cfg.rounds.target, model.baseline)
    detail: dict[str, dict] = {
        p.label: {"split_ns": {k: [] for k in SPLIT}, "compile_s": [], "peak_rss": []} for p in paths
    }
    while rounds.active:
        meter = OtherLoad()
        meter.start()
        for label in rotations(rounds.active, rounds.done):
            p = by_label[label]
            notify(f"training round {rounds.done + 1}: {label} (fresh process)")
            out = work / f"train-{model.label}-{label}-{rounds.done}"
            started = time.monotonic()
            code, stderr, peak = _run(train_command(model, RUNTIMES[p.runtime].train, p.dtype, data, out))
            if code != 0:
                lines = [line for line in stderr.splitlines() if line.strip()]
                raise BenchError(f"training {label} failed: {lines[-1] if lines else f'exit {code}'}")
            rounds.last_seconds[label] = time.monotonic() - started
            rd = RunDir(out)
            records, epochs, final = rd.read_steps(), rd.read_epochs(), rd.read_run_json()["final"]
            timed = records[1:] or records  # the first step of a run pays one-off costs (profiling, allocator)
            rounds.add(scenario, label, [s.seconds for s in timed])
            d = detail[label]
            for k in SPLIT:
                d["split_ns"][k] += [getattr(s, k) for s in timed]
            d["compile_s"].append(final.get("compile_seconds") or 0.0)
            d["peak_rss"].append(peak)
            d["epochs"], d["fingerprint"] = epochs, rd.read_run_json()["fingerprint"]
        if not rounds.close_round(meter.stop()):
            break
    return rounds, {label: _detail(d, t.data, full) for label, d in detail.items() if d.get("epochs")}


def _run(command: list[str]) -> tuple[int, str, int]:
    """A `resx train` process to its end: (exit status, stderr, the peak resident bytes of the largest
    process in it: the trainer; for cpp-exe, resx-cpp or the Python launcher above it, whichever is larger)."""
    with tempfile.TemporaryFile(mode="w+") as err:  # a file: no amount of output can stall it
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # its rusage: the max over it and its waited-for children
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, err.read(), usage.ru_maxrss * 1024  # Linux: kilobytes


def _detail(d: dict, data: str | None, full: bool) -> TrainingDetail:
    last = d["epochs"][-1]
    base = dict(
        split_ms={k.removesuffix("_s"): float(np.median(v)) * 1e3 for k, v in d["split_ns"].items()},
        compile_seconds=float(np.mean(d["compile_s"])),
        peak_rss_bytes=int(np.median(d["peak_rss"])),
        fingerprint=d["fingerprint"],
        data="CIFAR-10" if data else "synthetic (random images, timing only)",
    )
    if not full:
        return TrainingDetail(**base)
    times = [r.epoch_time for r in d["epochs"]]
    return TrainingDetail(
        **base,
        epoch_time_s=float(np.mean(times)),
        epoch_time_kind=f"measured over {len(times)} epoch(s)",
        total_time_s=last.wall_time,
        train_loss=last.train_loss,
        train_top_1=last.train_top_1,
        test_loss=last.test_loss,
        test_top_1=last.test_top_1,
    )
