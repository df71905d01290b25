"""Preparing a run: every input checked, the model exported, train_config.json and the C++ runtime's
config.json written, before any step. In a data-parallel run every rank checks, global rank 0 writes,
the others read what it wrote."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from resx import data as D
from resx import distributed, env
from resx.device import check_device
from resx.distributed import SINGLE, World
from resx.errors import TrainError
from resx.export import export, export_weights, fingerprint, load, read_weights, state_fingerprint
from resx.files import atomic_write
from resx.models import load_state
from resx.recipe import TrainConfig
from resx.rundir import (
    CHECKPOINT,
    CPP_JOB_FILE,
    LEGACY_CPP_JOB_FILE,
    MODEL,
    WEIGHTS,
    RunDir,
    check_resumable,
    read_checkpoint,
)
from resx.sources import Source

RUNTIMES = ("py", "cpp", "cpp-exe")
# What a runtime trains: the module written in its own language (eager: the nn.Module in Python, its
# torch::nn mirror in C++, from a weights export), or the TorchScript file (scripted), which both load.
MODULES = ("eager", "scripted")
DEFAULT_MODULE = "eager"  # in both runtimes: what users of each API write, and no TorchScript needed


def default_module(runtime: str, source: Source) -> str:
    """eager, where the runtime's language has the module (Python always; C++ for the ResNets resx writes
    in its C++ frontend); else scripted, the TorchScript file."""
    return DEFAULT_MODULE if runtime == "py" or source.cpp_module else "scripted"


def saved_module(saved: dict) -> str:
    """The module a run trains, from its train_config.json; a run from before --module trained the
    eager module in Python (py_module) and the scripted file in C++."""
    if "module" in saved:
        return saved["module"]
    return saved.get("py_module", "eager") if saved.get("runtime", "py") == "py" else "scripted"


@dataclass
class Prepared:
    """A validated run: its config, runtime and the files both runtimes read."""

    config: TrainConfig
    runtime: str
    module: str
    run_dir: RunDir
    data_dir: Path  # the directory of the batch files
    layout: str
    fingerprint: str
    steps_per_epoch: int
    resume: bool
    checkpoint: dict | None = None  # the one to continue from, checked against this config (mmap)
    world: World = SINGLE  # this process's place in a data-parallel run (resx.distributed)


def _count_train(layout: str, directory: Path) -> int:
    if layout == "binary":
        files = D.split_files(layout, directory, "train")
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise TrainError(f"{missing[0]}: no such file (check the directory with `resx data check`)")
        return sum(f.stat().st_size // D.RECORD_BYTES for f in files)
    return len(D.load_split(directory, "train")[1])


def model_path(run_dir: RunDir, module: str) -> Path:
    """The file the run's module is made from: the weights export (eager) or the TorchScript file."""
    return run_dir / (WEIGHTS if module == "eager" else MODEL)


def _unchanged(config: TrainConfig, manifest: dict, run_dir: RunDir) -> None:
    """A run resumes the model it started with: its factory file as it was then (SHA-1) and the same
    builder arguments; one line naming what changed otherwise."""
    then, now = Source.from_manifest(manifest), config.source()
    where = f"--resume {run_dir.path}"
    if then.sha1 and now.sha1 and then.sha1 != now.sha1:
        file = now.name.rpartition(":")[0]
        raise TrainError(
            f"{where}: the factory file {file} changed since the run started (SHA-1 {then.sha1[:12]} then, "
            f"{now.sha1[:12]} now); restore it, or start a new run with -o"
        )
    if then.to_dict() | {"sha1": None} != now.to_dict() | {"sha1": None}:
        changed = sorted(k for k in now.to_dict() if then.to_dict().get(k) != now.to_dict().get(k))
        raise TrainError(
            f"{where}: the model changed since the run started ({', '.join(changed)}); start a new run with -o"
        )


def _model_file(config: TrainConfig, run_dir: RunDir, resume: bool, source: Path | None, module: str) -> str:
    """The run's model file (exported, or kept on resume, or the same as `source`); returns its
    fingerprint: recomputed from the graph of a TorchScript file, the manifest's for a weights export
    once its state is checked."""
    target = model_path(run_dir, module)
    if resume and target.exists():
        if module == "eager":
            state, manifest = read_weights(target)
            _unchanged(config, manifest, run_dir)
            module_ = Source.from_manifest(manifest).build(check=False)
            load_state(module_, state)
            if manifest.get("state_fingerprint") != state_fingerprint(module_):
                raise TrainError(f"{target}: its manifest does not match its state; the run directory is damaged")
            return manifest["fingerprint"]
        scripted, manifest = load(target)
        if manifest is not None:
            _unchanged(config, manifest, run_dir)
        fp = fingerprint(scripted)
        if manifest is None or manifest.get("fingerprint") != fp:
            raise TrainError(f"{target}: its manifest does not match its graph; the run directory is damaged")
        return fp
    if source is not None:
        manifest = read_weights(source)[1] if Path(source).suffix == ".pth" else load(source)[1]
        if (
            manifest is None
            or manifest.get("seed") != config.seed
            or Source.from_manifest(manifest).to_dict() != config.source().to_dict()
        ):
            raise TrainError(f"{source}: not an export of {config.model} with seed {config.seed}")
    write = export_weights if module == "eager" else export
    return write(config.source(), target, seed=config.seed)["fingerprint"]


def check_world(runtime: str, world_size: int) -> None:
    if runtime == "cpp-exe" and world_size > 1:
        raise TrainError(
            "the executable trains in one process: for data-parallel C++ use --runtime cpp, whose "
            "loop runs in C++ on the process group torch.distributed creates"
        )


def _check_inputs(
    config: TrainConfig, runtime: str, data: Path, module: str, world: World = SINGLE
) -> tuple[str, Path, int]:
    """(layout, batch-file directory, steps per epoch of this rank) of a run that can start."""
    config.validate()
    if config.world_size != world.size:
        raise TrainError(
            f"the run trains on {config.world_size} process(es), this launch has {world.size}: "
            f"use --nproc-per-node (x --nnodes) {config.world_size}"
        )
    check_world(runtime, world.size)
    if runtime not in RUNTIMES:
        raise TrainError(f"unknown runtime '{runtime}': py, cpp or cpp-exe")
    if module not in MODULES:
        raise TrainError(f"unknown --module '{module}': eager (the module in the runtime's language) or scripted")
    source = config.source()
    if runtime != "py" and module == "eager" and not source.cpp_module:
        raise TrainError(
            f"resx writes no C++ module for {source.spec} (its C++ frontend has the ResNets): train it in "
            f"C++ with --module scripted (its TorchScript file), or in Python (--runtime py)"
        )
    if config.compile and (runtime != "py" or module != "eager"):
        raise TrainError("--compile applies to the py runtime's eager module (torch.compile is Python's)")
    check_device(config.device)
    layout, directory = D.find_layout(data)
    if runtime != "py" and layout != "binary":
        raise TrainError(
            f"{data}: the C++ runtime reads the binary layout; convert it with "
            f"`resx data convert {data} DEST` and pass --data DEST"
        )
    n_train = _count_train(layout, directory)
    if config.subset:
        n_train = min(n_train, config.subset)
    steps = config.steps_per_epoch(D.shard_size(n_train, world.size))
    if steps < 1:
        raise TrainError(
            f"{n_train} training images make no batch of {config.batch_size} (drop_last); "
            f"lower --batch-size or use more images"
        )
    return layout, directory, steps


def prepare(
    config: TrainConfig,
    runtime: str,
    data: Path,
    run_dir: RunDir,
    *,
    resume: bool = False,
    model_file: Path | None = None,
    module: str = "eager",
    extended: list | None = None,
    world: World = SINGLE,
) -> Prepared:
    """Validate everything, export the model (or reuse `model_file`, an export of the same seed and
    architecture) and write both config files. No training yet. In a data-parallel run every rank
    checks its inputs, global rank 0 writes, then the others read what it wrote; all fail together."""
    together = distributed.together
    layout, directory, steps = together(world, _check_inputs, config, runtime, data, module, world)
    args = (config, runtime, module, run_dir, directory, layout, steps, resume, world)
    written = together(world, _write_run if world.writes else None, *args, data, model_file, extended)
    read = together(world, None if world.writes else _read_run, *args)
    return written or read


def _read_run(config, runtime, module, run_dir, directory, layout, steps, resume, world) -> Prepared:
    """A rank other than 0: the run directory that rank 0 has just written, on a shared file system."""
    if not (run_dir / CPP_JOB_FILE).is_file():
        raise TrainError(
            f"{run_dir.path}: rank 0's run directory is not visible on {os.uname().nodename}; every "
            f"node must see it at the same path (a shared file system)"
        )
    exists = resume and (run_dir / CHECKPOINT).exists()
    checkpoint = read_checkpoint(run_dir / CHECKPOINT, mmap=True) if exists else None
    fp = _model_file(config, run_dir, True, None, module)
    return Prepared(config, runtime, module, run_dir, directory, layout, fp, steps, resume, checkpoint, world)


def _write_run(
    config, runtime, module, run_dir, directory, layout, steps, resume, world, data, model_file, extended
) -> Prepared:
    saved = {
        "runtime": runtime,
        "module": module,
        "data": str(data),
        "config": config.to_dict(),
        "extended": extended or [],
        "world_size": world.size,
    }
    if not resume:
        run_dir.write_config(saved)  # first: a directory with it is a run (resx.rundir.RunDir.status)
    fp = _model_file(config, run_dir, resume, model_file, module)
    checkpoint = None
    if resume and (run_dir / CHECKPOINT).exists():  # refused before anything is written
        checkpoint = read_checkpoint(run_dir / CHECKPOINT, mmap=True)
        check_resumable(
            run_dir / CHECKPOINT,
            checkpoint,
            fingerprint=fp,
            config_digest=config.digest(),
            steps_per_epoch=steps,
            epochs=config.epochs,
        )
    if resume:
        run_dir.write_config(saved)  # the same, or with extended epochs
    cpp = config.cpp_config(
        runtime=runtime,
        module=module,
        model_file=model_path(run_dir, module).resolve(),
        data_dir=directory.resolve(),
        run_dir=run_dir.path.resolve(),
        steps_per_epoch=steps,
        run_files=run_dir.cpp_files(),
        saved=saved,
    )
    atomic_write(run_dir / CPP_JOB_FILE, json.dumps(cpp, indent=1))
    if resume:  # a run from before resx-config/2 kept its key = value file: config.json replaces it
        (run_dir / LEGACY_CPP_JOB_FILE).unlink(missing_ok=True)
    job = Prepared(config, runtime, module, run_dir, directory, layout, fp, steps, resume, checkpoint, world)
    if not resume:
        write_run_json(job, "started", 0, None)
    return job


def world_report(world: World, ddp: dict | None = None, rows: list[list[float]] | None = None) -> dict:
    """run.json's "world": its size and backend, DDP's bucket sizes, and per rank the mean step time,
    its parts and DDP's all-reduce time (resx.distributed.RANK_COLUMNS), and the share of the step spent
    waiting for the all-reduce once backward's compute had ended. Mirrors resx::world_json."""
    ranks = []
    for rank, row in enumerate(rows or []):
        r = dict(zip(distributed.RANK_COLUMNS, row, strict=True))
        r["steps"] = int(r["steps"])
        exposed = max(0.0, r["allreduce_s"] - r["allreduce_overlap_s"])  # after backward's compute ended
        ranks.append({"rank": rank, **r, "allreduce_share": exposed / r["step_s"] if r["step_s"] else 0.0})
    return {
        "size": world.size,
        "backend": world.backend or None,
        "bucket_sizes": (ddp or {}).get("bucket_sizes"),
        "ranks": ranks,
    }


def write_run_json(job: Prepared, status: str, epochs_done: int, final: dict | None, world: dict | None = None) -> None:
    """run.json; resx::RunDir::write_run_json writes the same keys."""
    job.run_dir.write_run_json(
        {
            "runtime": job.runtime,
            "status": status,
            "epochs_done": epochs_done,
            "config": job.run_dir.read_config(),
            "env": env.collect(executable=False),
            "fingerprint": job.fingerprint,
            "final": final,
            "world": world or world_report(job.world),
        }
    )
