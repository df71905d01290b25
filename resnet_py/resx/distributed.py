"""Data-parallel training over torch.distributed, in both runtimes, launched by torchrun.

Python trains with torch.nn.parallel.DistributedDataParallel (its defaults); the C++ runtime
(resx::DataParallel, resnet_cpp/ddp.cpp) drives DDP's own engine, c10d::Reducer and c10d::Logger, on
the process group created here and resolved by its name in C++. Each rank takes its shard of the
epoch's seeded plan by DistributedSampler's rule (resx.data.EpochPlan.shard), so py and cpp ranks see
the same batches. The global batch is world size x --batch-size; the learning rate applies to the
averaged gradient as given. Global rank 0 writes the run directory, which every node must see at the
same path (a shared file system); every rank stops after the same step.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from resx.errors import LaunchError, PeerError, ResxError
from resx.options import option

MiB = 1024 * 1024
# DistributedDataParallel's defaults, handed to the C++ runtime (config.json) rather than retyped there.
BUCKET_BYTES_CAP = 25 * MiB  # torch.nn.parallel.distributed._DEFAULT_BUCKET_CAP_MB
FIRST_BUCKET_BYTES_CAP = dist._DEFAULT_FIRST_BUCKET_BYTES if dist.is_available() else MiB
BROADCAST_BUCKET_BYTES = 250 * MiB  # DDP's broadcast_bucket_size: parameters at start, buffers per forward
# A rank that stops answering makes the others fail within this rather than hang. Long enough for the
# slowest gap between two collectives here: torch.compile's first graphs, a full evaluation by one rank.
TIMEOUT_SECONDS = 600
# Per rank, what run.json reports: this process's mean step time and its parts, and DDP's own timers
# (c10d::Logger, sampled every step), in seconds: the all-reduce from its first bucket's start to its
# last one's end, and the part of that during which backward still computed.
RANK_COLUMNS = (
    "steps",
    "step_s",
    "data_s",
    "forward_s",
    "backward_s",
    "optimizer_s",
    "allreduce_s",
    "allreduce_overlap_s",
)


@dataclass(frozen=True)
class World:
    """Where this process is in the run (resx::World)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""
    group_name: str = ""

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def writes(self) -> bool:
        """Global rank 0 owns the run directory."""
        return self.rank == 0


SINGLE = World()  # one process, rank 0 of 1: no torch.distributed


def launched() -> bool:
    """Whether torchrun started this process (it sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def from_env() -> World:
    """torchrun's RANK, WORLD_SIZE and LOCAL_RANK (one process, rank 0 of 1, without them)."""
    try:
        return World(
            int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
        )
    except ValueError:
        raise ResxError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None


def init(world: World, device: str) -> World:
    """The process group (gloo on CPU, NCCL on CUDA, a GPU per local rank) with a timeout; returns the
    world with its name."""
    if not world.distributed:
        return world
    backend = "gloo"
    if device.startswith("cuda"):
        # NCCL wants a GPU per process; fewer GPUs than processes on a node share them over gloo
        # (a correctness run, not a fast one).
        gpus, local = torch.cuda.device_count(), int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        backend = "nccl" if gpus >= local else "gloo"
        torch.cuda.set_device(world.local_rank % max(gpus, 1))
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=_dt.timedelta(seconds=TIMEOUT_SECONDS))
    return World(world.rank, world.size, world.local_rank, backend, dist.group.WORLD.group_name)


def finish(world: World) -> None:
    """The process group's end, before the process's: gloo's threads left running at exit abort it."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def agree(error: str | None, world: World) -> None:
    """Every rank learns whether any failed (its own error or None): the lowest failed rank raises with
    its message, the others raise PeerError, instead of waiting for it at the next collective."""
    if not world.distributed:
        return
    errors: list[str | None] = [None] * world.size
    dist.all_gather_object(errors, error)
    failed = [(rank, e) for rank, e in enumerate(errors) if e]
    if failed and failed[0][0] != world.rank:
        raise PeerError(f"rank {failed[0][0]}: {failed[0][1]}")


def together(world: World, step: Callable | None, *args):
    """step(*args) on this rank (None: nothing to do here); when it fails on any rank, every rank raises
    (agree) instead of waiting for it at the next collective."""
    try:
        result = step(*args) if step else None
    except ResxError as e:
        agree(str(e), world)
        raise
    agree(None, world)
    return result


def lost_contact(e: BaseException) -> str | None:
    """Why a collective failed, when it failed because another rank is gone or silent (gloo and NCCL raise
    RuntimeError, or torch.distributed.DistError, in both runtimes); None for any other error."""
    first = str(e).strip().split("\n", 1)[0]
    if not (isinstance(e, dist.DistError) or any(k in first for k in ("gloo", "NCCL", "Connection", "timed out"))):
        return None
    return re.sub(r"^\[[^]]*\]\s*", "", first).split(". ")[0][:200]  # without gloo's source line


def any_rank(mine: bool) -> bool:
    """Whether any rank asks to stop: all stop after the same step (resx::DataParallel::any)."""
    if not dist.is_initialized():
        return mine
    flag = torch.tensor([1 if mine else 0], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def sum_over_ranks(values: list[float]) -> list[float]:
    """Element-wise sums over the ranks, in float64 (resx::DataParallel::sum)."""
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def gather_rows(row: list[float]) -> list[list[float]]:
    """Every rank's row, by rank (resx::DataParallel::gather)."""
    if not dist.is_initialized():
        return [row]
    rows = [torch.empty(len(row), dtype=torch.float64) for _ in range(dist.get_world_size())]
    dist.all_gather(rows, torch.tensor(row, dtype=torch.float64))
    return [r.tolist() for r in rows]


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) to every rank, as DDP does before each forward."""
    if dist.is_initialized():
        dist._broadcast_coalesced(dist.group.WORLD, list(module.buffers()), BROADCAST_BUCKET_BYTES, 0)


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """DistributedDataParallel around the model with its defaults, its timer sampling every step."""
    if not world.distributed:
        return model
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    ddp._set_ddp_runtime_logging_sample_rate(1)
    return ddp


def ddp_report(ddp: torch.nn.Module) -> dict:
    """DDP's own record (c10d::Logger): the bucket sizes (bytes) it trains with, once rebuilt after the first
    step, and its mean all-reduce times (s)."""
    if not isinstance(ddp, torch.nn.parallel.DistributedDataParallel):
        return {}
    data = ddp._get_ddp_logging_data()
    sizes = data.get("rebuilt_bucket_sizes") or data.get("bucket_sizes", "")  # as rebuilt after the first step
    return {
        "bucket_sizes": [int(s) for s in str(sizes).split(",") if s.strip()],
        "allreduce_s": data.get("avg_backward_comm_time", 0) / 1e9,
        "allreduce_overlap_s": data.get("avg_backward_compute_comm_overlap_time", 0) / 1e9,
    }


# ---------------------------------------------------------------------------------------- launching


@dataclass(frozen=True)
class Launch:
    """torchrun's arguments for a run: processes per node, nodes, this node's rank, the rendezvous."""

    nproc_per_node: int = option(1, "Data-parallel processes on this node (DDP, launched by torchrun).")
    nnodes: int = option(1, "Nodes: run the same command on each, with its --node-rank.")
    node_rank: int = option(0, "This node's rank, 0 to --nnodes - 1.")
    rdzv_endpoint: str = option("", "HOST:PORT of node 0, on every node (--nnodes > 1).", show="none")

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def check(self) -> None:
        if self.nproc_per_node < 1 or self.nnodes < 1:
            raise ResxError("--nproc-per-node and --nnodes must be at least 1")
        if not 0 <= self.node_rank < self.nnodes:
            raise ResxError(f"--node-rank {self.node_rank}: must be in 0..{self.nnodes - 1} (--nnodes {self.nnodes})")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ResxError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT, the address of node 0, on every node")
        if self.rdzv_endpoint and ":" not in self.rdzv_endpoint:
            raise ResxError(f"--rdzv-endpoint {self.rdzv_endpoint}: give HOST:PORT")

    def torchrun_args(self, argv: list[str]) -> list[str]:
        """torchrun's command line that starts `python -m resx` with argv in every process: a standalone
        rendezvous on one node, a static one (fixed ranks, node 0 at the endpoint) across nodes."""
        args = [f"--nproc-per-node={self.nproc_per_node}", f"--nnodes={self.nnodes}"]
        if self.nnodes == 1 and not self.rdzv_endpoint:
            args.append("--standalone")
        else:
            host, port = self.rdzv_endpoint.rsplit(":", 1)
            args += [
                "--rdzv-backend=static",
                f"--node-rank={self.node_rank}",
                f"--master-addr={host}",
                f"--master-port={port}",
            ]
        return [*args, "--monitor-interval=0.1", "-m", "resx", *argv]


def launch(launch: Launch, argv: list[str]) -> None:
    """Run `resx argv` in launch.world_size processes through torchrun (torch.distributed.run), in this
    process. A rank that failed is named; one stopped by a signal (all of them, after the same step)
    raises with 128 + the signal."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default; resx sets --threads itself
    args = get_args_parser().parse_args(launch.torchrun_args(argv))
    for name in list(logging.Logger.manager.loggerDict):  # the failure is reported once, below
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        torchrun(args)
    except SignalException as e:  # Ctrl-C or SIGTERM here: torchrun passed it on; every rank stopped
        raise LaunchError("", 128 + int(e.sigval)) from None
    except ChildFailedError as e:
        codes = {f.exitcode for f in e.failures.values()}
        stopped = {128 + int(signal.SIGINT), 128 + int(signal.SIGTERM)}
        if codes <= stopped:  # a rank was signalled alone: all stopped after the same step
            raise LaunchError("", min(codes)) from None
        rank, failure = e.get_first_failure()
        if failure.exitcode < 0:
            how = f"was killed by {failure.signal_name()}"
        else:
            how = f"exited with code {failure.exitcode}"
        quiet = failure.exitcode in (1, *stopped)  # that rank printed why
        message = "" if quiet else f"rank {rank} (pid {failure.pid}) {how}; torchrun stopped the others"
        raise LaunchError(message, 1 if failure.exitcode < 0 else failure.exitcode) from None
