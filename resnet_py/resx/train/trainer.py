"""The Python training loop. `Trainer` here and `resx::Trainer` (resnet_cpp/train.cpp) are one design in
two languages, method for method: restore, step, evaluate, save_checkpoint, write_outputs, run. Each
emits typed StepRecords and EpochRecords that the run directory's owner (resx.rundir / resx::RunDir)
writes."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from resx import callgrind, distributed
from resx import data as D
from resx.device import autocast, set_deterministic, sync, to_channels_last, to_device
from resx.errors import TrainError
from resx.export import load
from resx.rundir import (
    CHECKPOINT,
    CHECKPOINT_FORMAT,
    FINAL,
    METRICS,
    MODEL,
    STEPS,
    EpochRecord,
    StepRecord,
    check_resumable,
    check_tensors,
)
from resx.train.prepare import Prepared, world_report, write_run_json
from resx.train.progress import Progress, ProgressFn, Stop, progress_of


@dataclass
class EvalResult:
    loss: float = 0.0  # mean cross-entropy
    top_1: float = 0.0  # percent
    images: int = 0

    @classmethod
    def of(cls, loss_sum: float, correct: float, seen: float) -> EvalResult:
        """From the sums over the test images (of every rank)."""
        return cls(loss_sum / seen if seen else 0.0, 100.0 * correct / seen if seen else 0.0, int(seen))


def evaluate(
    model: torch.nn.Module,
    loader: D.CifarLoader,
    device: torch.device,
    dtype: str = "fp32",
    channels_last: bool = False,
) -> EvalResult:
    """Mean test loss, top-1 percent, images, in the run's dtype and memory format. Mirrors resx::evaluate."""
    return EvalResult.of(*evaluate_sums(model, loader, device, dtype, channels_last))


def evaluate_sums(
    model: torch.nn.Module,
    loader: D.CifarLoader,
    device: torch.device,
    dtype: str = "fp32",
    channels_last: bool = False,
) -> tuple[float, int, int]:
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
        set_deterministic(cfg.deterministic)
        model = (
            cfg.source().build(seed=cfg.seed, check=False) if job.module == "eager" else load(self.run_dir / MODEL)[0]
        )
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
        self.train_loader = D.CifarLoader(
            *train,
            cfg.batch_size,
            train=True,
            seed=cfg.seed,
            drop_last=cfg.drop_last,
            spec=cfg.augment,
            pin_memory=pin,
            rank=rank,
            world=size,
        )
        self.test_loader = D.CifarLoader(
            *test, cfg.batch_size, train=False, spec=cfg.augment, pin_memory=pin, rank=rank, world=size
        )
        self.epochs_done, self.steps_done, self.wall_time = 0, 0, 0.0
        self.steps: list[StepRecord] = []
        self.epochs: list[EpochRecord] = []
        self._batches: Iterator[D.Batch] = iter(())
        self._progress = Progress(epochs=cfg.epochs, steps=job.steps_per_epoch)
        self._taken = [0, 0.0, 0.0, 0.0, 0.0]  # steps this process took, their data/forward/backward/optimizer s
        try:
            self._counted = callgrind.counted_steps()  # the steps a bench counts under callgrind, if any
        except ValueError as e:
            raise TrainError(str(e)) from None
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
        """One optimizer step on the epoch's next batch, timed in four parts; None at the epoch's end.
        Under a bench's count (resx.callgrind.COUNT_STEPS), the counted steps run with callgrind on, whole."""
        if self._counted is not None and self.steps_done == self._counted[0]:
            callgrind.count_on()
        record = self._step(epoch)
        if self._counted is not None and record is not None and self.steps_done == sum(self._counted):
            callgrind.count_off()
            self._counted = None
        return record

    def _step(self, epoch: int) -> StepRecord | None:
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
        record = StepRecord(
            epoch + 1, self.steps_done, lr, loss_value, n, correct, t_data, t_forward, t_backward, t_optimizer
        )
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
        self.run_dir.save_checkpoint(
            name,
            {
                "format": CHECKPOINT_FORMAT,
                "fingerprint": self.job.fingerprint,
                "model_config": self.config.checkpoint_model(),
                "config_digest": self.config.digest(),
                "steps_per_epoch": self.job.steps_per_epoch,
                "epoch": self.epochs_done,
                "step": self.steps_done,
                "wall_time": self.wall_time,
                "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "momentum": momentum,
                "metrics_csv": METRICS.format(self.epochs),
                "steps_csv": STEPS.format(self.steps),
            },
        )

    def write_outputs(self, status: str) -> None:
        world = self.world_report()
        if not self.world.writes:
            return
        self.run_dir.write_history(self.steps, self.epochs)
        final = None
        if status == "complete":
            last = self.epochs[-1] if self.epochs else None
            final = {
                "epochs": self.config.epochs,
                "steps": self.steps_done,
                "wall_time": self.wall_time,
                "test_loss": last.test_loss if last else None,
                "test_top_1": last.test_top_1 if last else None,
                "train_loss": self.steps[-1].loss if self.steps else None,
                "compile_seconds": self.compile_seconds,
            }
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
        seeds = cfg.model_seeds()
        for epoch in range(self.epochs_done, cfg.epochs):
            torch.manual_seed(seeds[epoch])  # dropout's, as resx::Trainer (the data plan has its own)
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
            self.epochs.append(
                EpochRecord(
                    epoch + 1,
                    self.wall_time,
                    epoch_time,
                    loss_sum / seen,
                    100.0 * correct / seen,
                    result.loss if result else None,
                    result.top_1 if result else None,
                    eval_time,
                    *split,
                    seen / epoch_time,
                    self.steps[-1].lr,
                )
            )
            self.epochs_done = epoch + 1
            self.save_checkpoint(CHECKPOINT, with_momentum=True)
            self.write_outputs("running")
            self._report(progress, phase="train", epoch=self.epochs_done, step=0)
        self.save_checkpoint(FINAL, with_momentum=False)
        self.write_outputs("complete")
        self._report(progress, phase="done", step=self.job.steps_per_epoch)
        return True
