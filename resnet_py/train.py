"""Training and evaluation: the Python Trainer, and the drivers of the C++ one.

`Trainer` here and `resx::Trainer` (resnet_cpp/train.cpp) are one design in two languages, method for
method: restore, step, evaluate, save_checkpoint, write_outputs, run. Each emits typed StepRecords and
EpochRecords that the run directory's owner (resx.rundir / resx::RunDir) writes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F

from resx import data as D
from resx import distributed, envinfo
from resx.cpp import CppRuntimeError, _cpp, executable
from resx.distributed import SINGLE, World
from resx.errors import ResxError
from resx.export import export, fingerprint, load
from resx.export.aoti import to_channels_last
from resx.files import atomic_write
from resx.models import ModelConfig, build
from resx.recipe import TrainConfig
from resx.rundir import (
    CHECKPOINT,
    CHECKPOINT_FORMAT,
    CPP_CONFIG,
    FINAL,
    METRICS,
    MODEL,
    STEPS,
    EpochRecord,
    RunDir,
    StepRecord,
    check_resumable,
    check_tensors,
    read_checkpoint,
)

RUNTIMES = ("py", "cpp", "cpp-exe")
PY_MODULES = ("eager", "scripted")


class TrainError(ResxError):
    """A run cannot start or continue; the message names the input and the fix."""


@dataclass
class Progress:
    """Mirrors resx::Progress: what the one progress display shows for every runtime."""

    phase: str = "starting"  # starting, train, eval, done, stopped
    epoch: int = 0  # epochs done
    epochs: int = 0
    step: int = 0  # steps done in the current epoch
    steps: int = 0
    loss: float = 0.0  # of the last step
    images_per_s: float = 0.0  # in the current epoch so far


ProgressFn = Callable[[Progress], None]


def progress_of(source) -> Progress:
    """A Progress from anything with its fields (resx._cpp.Progress, a Progress being updated)."""
    return Progress(**{f.name: getattr(source, f.name) for f in fields(Progress)})


@dataclass
class EvalResult:
    loss: float = 0.0  # mean cross-entropy
    top_1: float = 0.0  # percent
    images: int = 0

    @classmethod
    def of(cls, loss_sum: float, correct: float, seen: float) -> EvalResult:
        """From the sums over the test images (of every rank)."""
        return cls(loss_sum / seen if seen else 0.0, 100.0 * correct / seen if seen else 0.0, int(seen))


class Stop:
    """How a run is asked to stop: SIGINT or SIGTERM alike in every runtime, or request(). The run ends
    after the current step and keeps its last complete epoch; a second signal interrupts at once."""

    def __init__(self) -> None:
        self.signal = 0
        self.listeners: list[Callable[[int], None]] = []  # the C++ trainer, a resx-cpp child
        self._saved: dict[int, object] = {}

    def request(self, signum: int = signal.SIGINT) -> bool:
        """Ask the run to stop; False when it had already been asked."""
        first = not self.signal
        self.signal = self.signal or signum
        for listener in self.listeners:
            listener(signum)
        return first

    def _handle(self, signum: int, _frame) -> None:
        if not self.request(signum):
            raise KeyboardInterrupt

    def __enter__(self) -> Stop:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._saved[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._saved.items():
            signal.signal(s, handler)
        self._saved.clear()


def sync(device: torch.device | str) -> None:
    """Wait for the device's queue, so that a clock read after it times the work (CUDA is async)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def check_device(device: str, option: str = "--device") -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError(f"{option} {device}: CUDA is not available on this machine; use {option} cpu")


def autocast(device: torch.device, dtype: str):
    """bf16 autocast around forward and loss (resx::AutocastGuard), or nothing at fp32. TorchScript's own
    autocast pass casts otherwise than eager autocast: off, a scripted graph runs exactly as the eager
    module does."""
    if dtype == "bf16":
        torch._C._jit_set_autocast_mode(False)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    x = x.to(device, non_blocking=True)  # the loader pins batches for a GPU
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def evaluate(model: torch.nn.Module, loader: D.CifarLoader, device: torch.device, dtype: str = "fp32",
             channels_last: bool = False) -> EvalResult:  # fmt: skip
    """Mean test loss, top-1 percent, images, in the run's dtype and memory format. Mirrors resx::evaluate."""
    return EvalResult.of(*evaluate_sums(model, loader, device, dtype, channels_last))


def evaluate_sums(model: torch.nn.Module, loader: D.CifarLoader, device: torch.device, dtype: str = "fp32",
                  channels_last: bool = False) -> tuple[float, int, int]:  # fmt: skip
    """(summed loss, correct, images) over the loader. Mirrors resx::evaluate_sums."""
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.inference_mode(), autocast(device, dtype):
        for batch in loader.batches(0):
            x, y = to_device(batch.inputs, device, channels_last), batch.labels.to(device)
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum().item())
            seen += len(y)
    return loss_sum, correct, seen


# --------------------------------------------------------------------------------------- preparing


@dataclass
class Prepared:
    """A validated run: its config, runtime and the files both runtimes read."""

    config: TrainConfig
    runtime: str
    py_module: str
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


def _model_file(config: TrainConfig, run_dir: RunDir, resume: bool, source: Path | None) -> str:
    """model.pt of the run (exported, copied from `source`, or kept on resume); returns its fingerprint,
    recomputed from the file."""
    target = run_dir / MODEL
    if resume and target.exists():
        module, manifest = load(target)
        fp = fingerprint(module)
        if manifest is None or manifest.get("fingerprint") != fp:
            raise TrainError(f"{target}: its manifest does not match its graph; the run directory is damaged")
        return fp
    if source is not None:
        module, manifest = load(source)
        if (
            manifest is None
            or manifest.get("seed") != config.seed
            or ModelConfig.from_dict(manifest["model"]) != config.model_config()
        ):
            raise TrainError(f"{source}: not an export of {config.model} with seed {config.seed}")
        export(config.model_config(), target, seed=config.seed)  # the same file, made here (atomically)
        return fingerprint(load(target)[0])
    return export(config.model_config(), target, seed=config.seed)["fingerprint"]


def check_world(runtime: str, world_size: int) -> None:
    if runtime == "cpp-exe" and world_size > 1:
        raise TrainError("the executable trains in one process: for data-parallel C++ use --runtime cpp, whose "
                         "loop runs in C++ on the process group torch.distributed creates")  # fmt: skip


def _check_inputs(config: TrainConfig, runtime: str, data: Path, py_module: str,
                  world: World = SINGLE) -> tuple[str, Path, int]:  # fmt: skip
    """(layout, batch-file directory, steps per epoch of this rank) of a run that can start."""
    config.validate()
    if config.world_size != world.size:
        raise TrainError(f"the run trains on {config.world_size} process(es), this launch has {world.size}: "
                         f"use --nproc-per-node (x --nnodes) {config.world_size}")  # fmt: skip
    check_world(runtime, world.size)
    if runtime not in RUNTIMES:
        raise TrainError(f"unknown runtime '{runtime}': py, cpp or cpp-exe")
    if py_module not in PY_MODULES:
        raise TrainError(f"unknown --py-module '{py_module}': eager or scripted")
    if runtime != "py" and py_module != "eager":
        raise TrainError(f"--py-module {py_module} applies to the py runtime only")
    if config.compile and (runtime != "py" or py_module != "eager"):
        raise TrainError("--compile applies to the py runtime's eager module (torch.compile is Python's)")
    check_device(config.device)
    layout, directory = D.find_layout(data)
    if runtime != "py" and layout != "binary":
        raise TrainError(f"{data}: the C++ runtime reads the binary layout; convert it with "
                         f"`resx data convert {data} DEST` and pass --data DEST")  # fmt: skip
    n_train = _count_train(layout, directory)
    if config.subset:
        n_train = min(n_train, config.subset)
    steps = config.steps_per_epoch(D.shard_size(n_train, world.size))
    if steps < 1:
        raise TrainError(f"{n_train} training images make no batch of {config.batch_size} (drop_last); "
                         f"lower --batch-size or use more images")  # fmt: skip
    return layout, directory, steps


def prepare(
    config: TrainConfig,
    runtime: str,
    data: Path,
    run_dir: RunDir,
    *,
    resume: bool = False,
    model_file: Path | None = None,
    py_module: str = "eager",
    extended: list | None = None,
    world: World = SINGLE,
) -> Prepared:
    """Validate everything, export the model (or reuse `model_file`, an export of the same seed and
    architecture) and write both config files. No training yet. In a data-parallel run every rank
    checks its inputs, global rank 0 writes, then the others read what it wrote; all fail together."""
    together = distributed.together
    layout, directory, steps = together(world, _check_inputs, config, runtime, data, py_module, world)
    args = (config, runtime, py_module, run_dir, directory, layout, steps, resume, world)
    written = together(world, _write_run if world.writes else None, *args, data, model_file, extended)
    read = together(world, None if world.writes else _read_run, *args)
    return written or read


def _read_run(config, runtime, py_module, run_dir, directory, layout, steps, resume, world) -> Prepared:
    """A rank other than 0: the run directory that rank 0 has just written, on a shared file system."""
    if not (run_dir / CPP_CONFIG).is_file():
        raise TrainError(f"{run_dir.path}: rank 0's run directory is not visible on {os.uname().nodename}; every "
                         f"node must see it at the same path (a shared file system)")  # fmt: skip
    exists = resume and (run_dir / CHECKPOINT).exists()
    checkpoint = read_checkpoint(run_dir / CHECKPOINT, mmap=True) if exists else None
    fp = fingerprint(load(run_dir / MODEL)[0])
    return Prepared(config, runtime, py_module, run_dir, directory, layout, fp, steps, resume, checkpoint, world)


def _write_run(config, runtime, py_module, run_dir, directory, layout, steps, resume, world, data, model_file,
               extended) -> Prepared:  # fmt: skip
    saved = {
        "runtime": runtime,
        "py_module": py_module,
        "data": str(data),
        "config": config.to_dict(),
        "extended": extended or [],
        "world_size": world.size,
    }
    if not resume:
        run_dir.write_config(saved)  # first: a directory with it is a run (resx.rundir.RunDir.status)
    fp = _model_file(config, run_dir, resume, model_file)
    checkpoint = None
    if resume and (run_dir / CHECKPOINT).exists():  # refused before anything is written
        checkpoint = read_checkpoint(run_dir / CHECKPOINT, mmap=True)
        check_resumable(run_dir / CHECKPOINT, checkpoint, fingerprint=fp, config_digest=config.digest(),
                        steps_per_epoch=steps, epochs=config.epochs)  # fmt: skip
    if resume:
        run_dir.write_config(saved)  # the same, or with extended epochs
    text = config.cpp_config_text(
        runtime=runtime,
        model_file=(run_dir / MODEL).resolve(),
        data_dir=directory.resolve(),
        run_dir=run_dir.path.resolve(),
        steps_per_epoch=steps,
        run_keys=run_dir.cpp_keys(),
        saved=saved,
    )
    atomic_write(run_dir / CPP_CONFIG, text)
    job = Prepared(config, runtime, py_module, run_dir, directory, layout, fp, steps, resume, checkpoint, world)
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
    return {"size": world.size, "backend": world.backend or None,
            "bucket_sizes": (ddp or {}).get("bucket_sizes"), "ranks": ranks}  # fmt: skip


def write_run_json(job: Prepared, status: str, epochs_done: int, final: dict | None, world: dict | None = None) -> None:
    """run.json; resx::RunDir::write_run_json writes the same keys."""
    job.run_dir.write_run_json({
        "runtime": job.runtime, "status": status, "epochs_done": epochs_done, "config": job.run_dir.read_config(),
        "env": envinfo.collect(executable=False), "fingerprint": job.fingerprint, "final": final,
        "world": world or world_report(job.world),
    })  # fmt: skip


# ----------------------------------------------------------------------------------------- Trainer


class Trainer:
    """The Python training loop over the eager nn.Module (or the scripted file), on one thread; in a
    data-parallel run, one rank's, through DistributedDataParallel."""

    def __init__(self, job: Prepared, stop: Stop | None = None):
        cfg = job.config
        self.job, self.config, self.run_dir, self.stop = job, cfg, job.run_dir, stop or Stop()
        self.world = job.world
        self.device = torch.device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        envinfo.set_deterministic(cfg.deterministic)
        model = build(cfg.model_config(), seed=cfg.seed) if job.py_module == "eager" else load(self.run_dir / MODEL)[0]
        self.model = model.to(self.device)
        if cfg.channels_last:
            to_channels_last(self.model)
        self.compile_seconds = 0.0
        self.params = dict(self.model.named_parameters())
        self.lrs = cfg.learning_rates(job.steps_per_epoch)
        self.optimizer = torch.optim.SGD(
            list(self.params.values()),
            lr=self.lrs[0],
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=cfg.nesterov,
        )
        train = D.first_n(D.load_split(job.data_dir, "train"), cfg.subset)
        test = D.first_n(D.load_split(job.data_dir, "test"), cfg.test_subset)
        pin = self.device.type == "cuda"
        rank, size = self.world.rank, self.world.size
        self.train_loader = D.CifarLoader(*train, cfg.batch_size, train=True, seed=cfg.seed, drop_last=cfg.drop_last,
                                          spec=cfg.augment, pin_memory=pin, rank=rank, world=size)  # fmt: skip
        self.test_loader = D.CifarLoader(*test, cfg.batch_size, train=False, spec=cfg.augment, pin_memory=pin,
                                         rank=rank, world=size)  # fmt: skip
        self.epochs_done, self.steps_done, self.wall_time = 0, 0, 0.0
        self.steps: list[StepRecord] = []
        self.epochs: list[EpochRecord] = []
        self._batches: Iterator[D.Batch] = iter(())
        self._progress = Progress(epochs=cfg.epochs, steps=job.steps_per_epoch)
        self._taken = [0, 0.0, 0.0, 0.0, 0.0]  # steps this process took, their data/forward/backward/optimizer s
        if job.checkpoint is not None:
            self.restore(job.checkpoint)
        # DDP after the restore (its construction broadcasts rank 0's parameters and buffers). What the steps
        # call: the module, DDP of it, or torch.compile of that (the module keeps the state).
        self.ddp = distributed.wrap(self.model, self.world)
        self.forward = torch.compile(self.ddp) if cfg.compile else self.ddp

    def restore(self, checkpoint: dict) -> None:
        """Continue from a checkpoint of this run: verified whole before anything is copied."""
        path, cfg = self.run_dir / CHECKPOINT, self.config
        check_resumable(
            path,
            checkpoint,
            fingerprint=self.job.fingerprint,
            config_digest=cfg.digest(),
            steps_per_epoch=self.job.steps_per_epoch,
            epochs=cfg.epochs,
        )
        state = self.model.state_dict()
        check_tensors(path, "model", state, checkpoint["model"])
        check_tensors(path, "momentum", self.params, checkpoint["momentum"], partial=True)
        steps = STEPS.parse(checkpoint["steps_csv"], path)
        epochs = METRICS.parse(checkpoint["metrics_csv"], path)
        if len(steps) != checkpoint["step"] or len(epochs) != checkpoint["epoch"]:
            raise TrainError(f"{path}: its history does not match its position; the checkpoint is damaged")
        with torch.no_grad():
            for name, t in state.items():
                t.copy_(checkpoint["model"][name])
        for name, buf in checkpoint["momentum"].items():
            self.optimizer.state[self.params[name]]["momentum_buffer"] = buf.to(self.device).clone()
        self.epochs_done, self.steps_done = checkpoint["epoch"], checkpoint["step"]
        self.wall_time, self.steps, self.epochs = checkpoint["wall_time"], steps, epochs

    def step(self, epoch: int) -> StepRecord | None:
        """One optimizer step on the epoch's next batch, timed in four parts; None at the epoch's end."""
        t0 = time.perf_counter()
        batch = next(self._batches, None)
        if batch is None:
            return None
        if self.steps_done >= len(self.lrs):
            raise TrainError(f"step {self.steps_done + 1} is past the run's {len(self.lrs)} learning rates")
        x, y = to_device(batch.inputs, self.device, self.config.channels_last), to_device(batch.labels, self.device)
        sync(self.device)
        t_data = time.perf_counter() - t0
        lr = self.lrs[self.steps_done]
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        t1 = time.perf_counter()
        with autocast(self.device, self.config.dtype):
            logits = self.forward(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)
        sync(self.device)
        t_forward = time.perf_counter() - t1
        t2 = time.perf_counter()
        loss.backward()
        sync(self.device)
        t_backward = time.perf_counter() - t2
        t3 = time.perf_counter()
        self.optimizer.step()
        sync(self.device)
        t_optimizer = time.perf_counter() - t3
        self.steps_done += 1
        loss_value, n, correct = loss.item(), len(y), int((logits.argmax(1) == y).sum().item())
        if self.world.distributed:  # the step of the global batch
            loss_sum, correct, n = distributed.sum_over_ranks([loss_value * n, correct, n])
            loss_value, correct, n = loss_sum / n, int(correct), int(n)
        for k, t in enumerate((1, t_data, t_forward, t_backward, t_optimizer)):
            self._taken[k] += t
        record = StepRecord(epoch + 1, self.steps_done, lr, loss_value, n, correct, t_data, t_forward, t_backward,
                            t_optimizer)  # fmt: skip
        self.steps.append(record)
        return record

    def evaluate(self) -> EvalResult:
        """Every rank its share of the test set, with rank 0's BatchNorm statistics; the sums over ranks."""
        # The module itself, compiled or not: evaluation would recompile for eval mode, for no gain here.
        if self.world.distributed:
            distributed.broadcast_buffers(self.model)
        cfg = self.config
        sums = evaluate_sums(self.model, self.test_loader, self.device, cfg.dtype, cfg.channels_last)
        return EvalResult.of(*distributed.sum_over_ranks(list(sums)))

    def stopping(self) -> bool:
        """Whether the run stops before the next step: asked here, or on any rank (then every rank agrees)."""
        asked = bool(self.stop.signal)
        if not self.world.distributed:
            return asked
        agreed = distributed.any_rank(asked)
        if agreed and not asked:
            self.stop.signal = signal.SIGTERM  # another rank was asked
        return agreed

    def world_report(self) -> dict:
        """run.json's "world", with every rank's times (a collective: every rank calls it)."""
        if not self.world.distributed:
            return world_report(self.world)
        n, *sums = self._taken
        means = [t / n if n else 0.0 for t in sums]
        ddp = distributed.ddp_report(self.ddp)
        row = [n, sum(means), *means, ddp.get("allreduce_s", 0.0), ddp.get("allreduce_overlap_s", 0.0)]
        return world_report(self.world, ddp, distributed.gather_rows(row))

    def compile(self) -> None:
        """torch.compile's graphs for a training step, built now so that no timed step pays for them: a
        forward and backward on a zero batch, whose effects (BatchNorm statistics, gradients) are undone."""
        if not self.config.compile:
            return
        start = time.perf_counter()
        buffers = {name: b.clone() for name, b in self.model.named_buffers()}
        x = to_device(torch.zeros(self.config.batch_size, 3, 32, 32), self.device, self.config.channels_last)
        y = torch.zeros(self.config.batch_size, dtype=torch.long, device=self.device)
        self.model.train()
        with autocast(self.device, self.config.dtype):  # through DDP too: its graphs are the ones the steps use
            loss = F.cross_entropy(self.forward(x), y, label_smoothing=self.config.label_smoothing)
        loss.backward()
        with torch.no_grad():
            for name, b in self.model.named_buffers():
                b.copy_(buffers[name])
        self.optimizer.zero_grad(set_to_none=True)
        sync(self.device)
        self.compile_seconds = time.perf_counter() - start

    def save_checkpoint(self, name: str, with_momentum: bool) -> None:
        if not self.world.writes:
            return
        momentum = {}
        if with_momentum:
            for pname, p in self.params.items():
                buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    momentum[pname] = buf.detach().cpu().clone()
        self.run_dir.save_checkpoint(name, {
            "format": CHECKPOINT_FORMAT, "fingerprint": self.job.fingerprint,
            "model_config": json.dumps(self.config.model_config().to_dict(), separators=(",", ":")),
            "config_digest": self.config.digest(), "steps_per_epoch": self.job.steps_per_epoch,
            "epoch": self.epochs_done, "step": self.steps_done, "wall_time": self.wall_time,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "momentum": momentum, "metrics_csv": METRICS.format(self.epochs), "steps_csv": STEPS.format(self.steps),
        })  # fmt: skip

    def write_outputs(self, status: str) -> None:
        world = self.world_report()
        if not self.world.writes:
            return
        self.run_dir.write_history(self.steps, self.epochs)
        final = None
        if status == "complete":
            last = self.epochs[-1] if self.epochs else None
            final = {"epochs": self.config.epochs, "steps": self.steps_done, "wall_time": self.wall_time,
                     "test_loss": last.test_loss if last else None, "test_top_1": last.test_top_1 if last else None,
                     "train_loss": self.steps[-1].loss if self.steps else None,
                     "compile_seconds": self.compile_seconds}  # fmt: skip
        write_run_json(self.job, status, self.epochs_done, final, world)

    def _report(self, progress: ProgressFn | None, **changes) -> None:
        for key, value in changes.items():
            setattr(self._progress, key, value)
        if progress is not None:
            progress(progress_of(self._progress))

    def run(self, progress: ProgressFn | None = None) -> bool:
        """Train to the last epoch (True) or until a stop is requested (False, after the current step;
        the last complete epoch's checkpoint stays)."""
        cfg = self.config
        self._report(progress, phase="compile" if cfg.compile else "train", epoch=self.epochs_done)
        self.compile()
        self._report(progress, phase="train", epoch=self.epochs_done)
        for epoch in range(self.epochs_done, cfg.epochs):
            self.model.train()
            start = time.perf_counter()
            self._batches = self.train_loader.batches(epoch)
            loss_sum, correct, seen, in_epoch, split = 0.0, 0, 0, 0, [0.0, 0.0, 0.0, 0.0]
            while True:
                if self.stopping():
                    self.write_outputs("interrupted")
                    self._report(progress, phase="stopped")
                    return False
                record = self.step(epoch)
                if record is None:
                    break
                loss_sum += record.loss * record.batch_size
                correct, seen, in_epoch = correct + record.correct, seen + record.batch_size, in_epoch + 1
                for k, t in enumerate((record.data_s, record.forward_s, record.backward_s, record.optimizer_s)):
                    split[k] += t
                self._report(
                    progress,
                    phase="train",
                    step=in_epoch,
                    loss=record.loss,
                    images_per_s=seen / (time.perf_counter() - start),
                )
            epoch_time = time.perf_counter() - start
            evaluated = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
            result, eval_time = None, 0.0
            if evaluated:
                self._report(progress, phase="eval")
                t = time.perf_counter()
                result = self.evaluate()
                eval_time = time.perf_counter() - t
            self.wall_time += epoch_time + eval_time
            self.epochs.append(EpochRecord(
                epoch + 1, self.wall_time, epoch_time, loss_sum / seen, 100.0 * correct / seen,
                result.loss if result else None, result.top_1 if result else None, eval_time, *split,
                seen / epoch_time, self.steps[-1].lr,
            ))  # fmt: skip
            self.epochs_done = epoch + 1
            self.save_checkpoint(CHECKPOINT, with_momentum=True)
            self.write_outputs("running")
            self._report(progress, phase="train", epoch=self.epochs_done, step=0)
        self.save_checkpoint(FINAL, with_momentum=False)
        self.write_outputs("complete")
        self._report(progress, phase="done", step=self.job.steps_per_epoch)
        return True


# ---------------------------------------------------------------------------------- C++ drivers


def _train_cpp(job: Prepared, progress: ProgressFn | None, stop: Stop, poll: float = 0.1) -> bool:
    """The C++ Trainer in this process, on this thread with the GIL released (a loop on another thread
    measured slower), while a Python thread polls its progress for the display. It adopts our lock and
    stops on SIGINT/SIGTERM after the current step, like the Python one."""
    w = job.world
    lock_fd = -1 if job.run_dir.lock_fd is None else job.run_dir.lock_fd
    trainer = _cpp.Trainer(str(job.run_dir / CPP_CONFIG), "cpp", lock_fd, w.rank, w.size, w.backend, w.group_name)
    finished = threading.Event()
    raised: list[BaseException] = []

    def watch() -> None:
        while not finished.wait(poll):
            q = trainer.progress()
            try:
                if progress is not None:
                    progress(progress_of(q))
            except BaseException as e:  # noqa: BLE001  (e.g. KeyboardInterrupt from the display)
                raised.append(e)
                trainer.request_stop(signal.SIGINT)
                return

    request_stop = trainer.request_stop  # one bound method, to remove the same object
    stop.listeners.append(request_stop)
    watcher = threading.Thread(target=watch, name="resx-progress", daemon=True)
    watcher.start()
    try:
        complete = trainer.run()
    finally:
        finished.set()
        watcher.join()
        stop.listeners.remove(request_stop)
    if raised:
        raise raised[0]
    if progress is not None:  # the final state, which the poll may have missed
        progress(progress_of(trainer.progress()))
    if not complete:
        stop.request(trainer.stop_signal() or signal.SIGINT)
    return complete


def parse_progress(line: str) -> Progress | None:
    """`progress phase=train epoch=0 ...` (resx-cpp train's stderr) -> Progress, by field name."""
    if not line.startswith("progress "):
        return None
    values = dict(item.split("=", 1) for item in line.split()[1:] if "=" in item)
    try:
        return Progress(**{f.name: type(getattr(Progress(), f.name))(values[f.name]) for f in fields(Progress)})
    except (KeyError, ValueError):
        return None


def _train_cpp_exe(job: Prepared, progress: ProgressFn | None, stop: Stop) -> bool:
    """resx-cpp train CONFIG: no Python in that process. It inherits the run's lock, dies with us
    (PR_SET_PDEATHSIG) and receives our SIGINT/SIGTERM."""
    fd = job.run_dir.lock_fd
    env = os.environ | {"RESX_LOCK_FD": str(fd), "RESX_PARENT_PID": str(os.getpid())}
    proc = subprocess.Popen(
        [str(executable()), "train", str(job.run_dir / CPP_CONFIG)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        pass_fds=(fd,),
        env=env,
    )
    stop.listeners.append(proc.send_signal)
    last_error = ""
    try:
        for line in proc.stderr:
            p = parse_progress(line)
            if p is None:
                last_error = line.strip() or last_error
            elif progress is not None:
                progress(p)
        code = proc.wait()
    except BaseException:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        raise
    finally:
        stop.listeners.remove(proc.send_signal)
    if code == 0:
        return True
    stopped = {128 + s: s for s in (signal.SIGINT, signal.SIGTERM)} | {-s: s for s in (signal.SIGINT, signal.SIGTERM)}
    if code in stopped:  # stopped after a step (128 + signal), or by a repeated signal while it was ending
        stop.request(stopped[code])
        return False
    if code < 0:  # killed by another signal (SIGKILL from the OOM killer, say): not an input error, not a bug
        raise TrainError(f"resx-cpp train was killed by {signal.Signals(-code).name}; the last complete epoch is "
                         f"kept: continue with `resx train --resume {job.run_dir.path}`")  # fmt: skip
    reason = last_error.removeprefix("resx-cpp train: ")
    if code == 1:
        raise TrainError(reason or "resx-cpp train failed")
    raise CppRuntimeError(f"resx-cpp train exited {code}: {reason}")


def train(job: Prepared, progress: ProgressFn | None = None, stop: Stop | None = None) -> bool:
    """Run the job in its runtime; True when complete, False when stopped (stop.signal says why)."""
    stop = stop or Stop()
    if job.runtime == "py":
        return Trainer(job, stop).run(progress)
    return (_train_cpp if job.runtime == "cpp" else _train_cpp_exe)(job, progress, stop)


# ----------------------------------------------------------------------------------- evaluation


def evaluate_checkpoint(
    weights: Path, data: Path, runtime: str = "py", batch_size: int = 128, test_subset: int = 0, device: str = "cpu"
) -> dict:
    """Test loss and top-1 of a checkpoint in either runtime."""
    if runtime not in ("py", "cpp"):
        raise TrainError(f"unknown runtime '{runtime}': py or cpp")
    if batch_size < 1:
        raise TrainError(f"--batch-size must be at least 1, got {batch_size}")
    if test_subset < 0:
        raise TrainError(f"--test-subset must be >= 0 (0: all), got {test_subset}")
    check_device(device)
    ckpt = read_checkpoint(weights)
    try:
        config = ModelConfig.from_dict(json.loads(ckpt["model_config"]))
    except json.JSONDecodeError:
        raise TrainError(f"{weights}: malformed resx checkpoint (model_config is not JSON)") from None
    layout, directory = D.find_layout(data)
    if runtime == "cpp" and layout != "binary":
        raise TrainError(f"{data}: the C++ runtime reads the binary layout; use `resx data convert`")
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / "model.pt"
        fp = export(config, model_file)["fingerprint"]
        if fp != ckpt["fingerprint"]:
            raise TrainError(
                f"{weights}: weights are for another architecture (fingerprint "
                f"{ckpt['fingerprint'][:12]} != {config.name} {fp[:12]})"
            )
        if runtime == "py":
            model = build(config)
            check_tensors(weights, "model", model.state_dict(), ckpt["model"])
            model.load_state_dict(ckpt["model"])
            model.to(device)
            split = D.first_n(D.load_split(directory, "test"), test_subset)
            result = evaluate(model, D.CifarLoader(*split, batch_size, train=False), torch.device(device))
        else:
            loss, top_1, n = _cpp.evaluate(
                str(model_file),
                str(weights),
                CHECKPOINT_FORMAT,
                str(directory),
                batch_size,
                test_subset,
                D.AUGMENT.to_cpp(),
                device,
            )
            result = EvalResult(loss, top_1, n)
    return {
        "runtime": runtime,
        "weights": str(weights),
        "model": config.name,
        "fingerprint": fp,
        "test_loss": result.loss,
        "test_top_1": result.top_1,
        "images": result.images,
    }
