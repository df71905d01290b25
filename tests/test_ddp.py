"""Data-parallel training: DDP in Python and DDP's own Reducer in C++, launched by torchrun (gloo, CPU).

Every run here is tiny (width 8, 41 images, batch 8 per rank, 1 thread per rank) so that a launch costs
seconds: what is tested is the engine, the sharding and the run directory, not the accuracy."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import invoke, make_cifar, run_resx
from test_train import assert_same_training

from resx import data as D
from resx import distributed
from resx.cpp import _cpp
from resx.export import read_weights
from resx.models import ModelConfig, build
from resx.recipe import TrainConfig
from resx.rundir import RunDir

# 41 images: each of 2 ranks takes 21 (one padded), in batches of 8, 8 and 5 (--keep-last).
ARGS = [
    "--width",
    "8",
    "--batch-size",
    "8",
    "--epochs",
    "2",
    "--threads",
    "1",
    "--subset",
    "41",
    "--keep-last",
    "--seed",
    "3",
    "--test-subset",
    "19",
]
# DDP at world 2 against one process with the same global batch as two micro-batches, per-step loss.
# Measured: equal to the last bit over the first epoch (1 thread, torch 2.14.1; 2 threads in the
# reference instead gave 2e-7, 1e-4, 4e-3 at steps 2-4: the runs amplify any rounding). The bound covers
# the float64 arithmetic of the loss record (a sum of loss x images over ranks).
TOLERANCE = 1e-12


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_cifar(tmp_path_factory.mktemp("ddp-data"), train_per_file=9, test=20)


def train(run: Path, data: Path, *extra: str, runtime: str = "py", check: bool = True):
    return run_resx("train", "-o", str(run), "--data", str(data), "--runtime", runtime, *ARGS, *extra, check=check)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp-runs")
    for runtime in ("py", "cpp"):
        train(root / runtime, data, "--nproc-per-node", "2", runtime=runtime)
    return root


def world(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())["world"]


def test_shards_are_the_same_in_both_languages_and_cover_the_epoch(data):
    images, labels = D.first_n(D.load_split(data, "train"), 41)
    plan = D.EpochPlan.draw(3, 0, 41)
    shards = [plan.shard(r, 2) for r in range(2)]
    assert [len(s.order) for s in shards] == [21, 21]  # padded to equal shards
    assert sorted(torch.cat([s.order for s in shards]).tolist()) == sorted([*plan.order.tolist(), plan.order[0].item()])
    for train in (True, False):
        for rank in range(2):
            py = D.CifarLoader(images, labels, 8, train=train, seed=3, rank=rank, world=2)
            cpp = _cpp.CifarLoader(images, labels, 8, train, 3, False, D.AUGMENT.to_cpp(), True, rank, 2)
            assert len(cpp) == len(py)
            cpp.start_epoch(1)
            for batch in py.batches(1):
                _, inputs, y = cpp.next()
                assert torch.equal(inputs, batch.inputs) and torch.equal(y, batch.labels)
            assert cpp.next() is None
    seen = [D.CifarLoader(images, labels, 8, train=False, rank=r, world=2) for r in range(2)]
    assert sum(b.labels.numel() for loader in seen for b in loader.batches()) == 41  # evaluated once each


def assert_same_worlds(py: Path, cpp: Path, steps: int) -> None:
    """Both runs' world: 2 gloo ranks, each timed and its all-reduce measured, in the same buckets."""
    wp, wc = world(py), world(cpp)
    for w in (wp, wc):
        assert w["size"] == 2 and w["backend"] == "gloo" and [r["rank"] for r in w["ranks"]] == [0, 1]
        for r in w["ranks"]:
            assert r["steps"] == steps and r["step_s"] > 0 and r["allreduce_s"] >= r["allreduce_overlap_s"] > 0
            assert 0 <= r["allreduce_share"] < 1
    assert wp["bucket_sizes"] == wc["bucket_sizes"]  # the same buckets, from DDP's own assignment


def test_py_and_cpp_ddp_train_bit_identically(runs):
    """DDP's Reducer over the C++ frontend module's parameters against py-DDP: bit-identical. Over a
    TorchScript file's parameters: test_sources (a torchvision model, which C++ trains scripted)."""
    assert_same_training(runs / "py", runs / "cpp")
    assert_same_worlds(runs / "py", runs / "cpp", steps=6)
    steps = RunDir(runs / "py").read_steps()
    assert [s.batch_size for s in steps] == [16, 16, 10] * 2  # the global batch: both ranks' images
    assert RunDir(runs / "py").read_config()["world_size"] == 2


def test_ddp_equals_one_process_with_the_same_global_batch(runs, data, restore_threads):
    """One process steps on the same global batch of 16 as two micro-batches of 8, each with its own
    BatchNorm statistics as each DDP rank has, their gradients averaged: the first epoch's losses agree
    with DDP's within float rounding (the order of the gradient sums differs). A plain batch of 16 would
    not: BatchNorm over 16 images is another function (step 2 differed by 0.11 here)."""
    torch.set_num_threads(1)  # as each rank (--threads 1 in ARGS): the kernels sum in the same order
    run = RunDir(runs / "py")
    cfg = TrainConfig.from_dict(run.read_config()["config"])
    state, manifest = read_weights(runs / "py" / "model.pth")  # the run's initial weights
    model = build(ModelConfig.from_dict(manifest["model"]))
    model.load_state_dict(state)
    model.train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.0, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
    )
    images, labels = D.first_n(D.load_split(data, "train"), cfg.subset)
    shards = [
        D.CifarLoader(images, labels, cfg.batch_size, train=True, seed=cfg.seed, rank=r, world=2).batches(0)
        for r in range(2)
    ]
    steps = [s for s in run.read_steps() if s.epoch == 1]
    for step, batches in zip(steps, zip(*shards, strict=True), strict=True):
        optimizer.param_groups[0]["lr"] = step.lr
        optimizer.zero_grad()
        losses = []
        for batch in batches:
            loss = F.cross_entropy(model(batch.inputs), batch.labels)
            (loss / 2).backward()  # DDP averages the ranks' gradients
            losses.append(loss.item())
        optimizer.step()
        assert step.loss == pytest.approx(sum(losses) / 2, rel=TOLERANCE), step.step


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_localhost_train_like_one_node(runs, data, tmp_path):
    run, port = tmp_path / "nodes", free_port()
    common = [
        "-o",
        str(run),
        "--data",
        str(data),
        "--runtime",
        "cpp",
        *ARGS,
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
    ]
    node1 = subprocess.Popen(
        [sys.executable, "-m", "resx", "train", *common, "--node-rank", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        run_resx("train", *common, "--node-rank", "0", check=True, timeout=300)
        out, _ = node1.communicate(timeout=120)
    finally:
        node1.kill()
    assert node1.returncode == 0, out
    assert_same_training(runs / "py", run)


def test_torchrun_by_hand_trains_like_the_launcher(runs, data, tmp_path):
    run = tmp_path / "torchrun"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "resx",
        "train",
        "-o",
        str(run),
        "--data",
        str(data),
        *ARGS,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert_same_training(runs / "py", run)


def test_one_process_is_todays_run(data, tmp_path, restore_threads):
    """In this process (no launcher starts for one process): the flag changes nothing."""
    for name, extra in (("flag", ["--nproc-per-node", "1"]), ("plain", [])):
        args = ["-o", str(tmp_path / name), "--data", str(data), *ARGS, *extra, "--epochs", "1"]
        proc = invoke("train", *args)
        assert proc.returncode == 0, proc.stderr
    assert_same_training(tmp_path / "flag", tmp_path / "plain")
    assert world(tmp_path / "flag") == {"size": 1, "backend": None, "bucket_sizes": None, "ranks": []}


def start(run: Path, data: Path, runtime: str) -> subprocess.Popen:
    args = [
        "-o",
        str(run),
        "--data",
        str(data),
        "--runtime",
        runtime,
        *ARGS,
        "--epochs",
        "8",  # enough that the stop lands mid-run; each one more costs the resume below an epoch
        "--batch-size",
        "4",
        "--nproc-per-node",
        "2",
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "resx", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def wait_for_epoch(run: Path, launcher: subprocess.Popen) -> None:
    """Until the first epoch is recorded: its checkpoint is written before run.json counts it."""
    deadline = time.monotonic() + 120
    while not ((run / "checkpoint.pt").exists() and RunDir(run).status().epochs_done >= 1):
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()
        time.sleep(0.05)


def worker(launcher: subprocess.Popen, rank: int) -> int:
    """The pid of torchrun's worker of this rank (torchrun runs inside the launcher)."""
    for child in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(child)
    raise AssertionError(f"no worker of rank {rank}")


@pytest.mark.parametrize("runtime", ["py", "cpp"])
def test_a_killed_rank_is_named_and_the_run_resumes(data, tmp_path, runtime):
    run = tmp_path / "killed"
    launcher = start(run, data, runtime)
    wait_for_epoch(run, launcher)
    killed = worker(launcher, 1)
    os.kill(killed, signal.SIGKILL)
    start_time = time.monotonic()
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 1
    assert time.monotonic() - start_time < 60  # not the process group's 600 s timeout
    assert f"rank 1 (pid {killed}) was killed by SIGKILL" in err
    assert "Traceback" not in err and f"resx train --resume {run}" in err
    done = RunDir(run).status().epochs_done
    assert done >= 1
    resumed = run_resx("train", "--resume", str(run), check=True)  # relaunched with the run's 2 processes
    assert RunDir(run).status().state == "complete", resumed.stderr
    assert world(run)["size"] == 2


def test_ctrl_c_stops_every_rank_and_keeps_the_checkpoint(data, tmp_path):
    run = tmp_path / "stopped"
    launcher = start(run, data, "cpp")
    wait_for_epoch(run, launcher)
    launcher.send_signal(signal.SIGINT)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 130, err
    assert "stopped by SIGINT" in err and err.count("error:") == 1
    status = RunDir(run).status()
    assert status.state == "interrupted" and status.epochs_done >= 1
    refused = invoke("train", "--resume", str(run), "--nproc-per-node", "3")
    assert refused.returncode == 1
    assert "trains on 2 process(es), not 3; resume it with --nproc-per-node (x --nnodes) 2" in refused.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--runtime", "cpp-exe", "--nproc-per-node", "2"], "the executable trains in one process"),
        (["--nnodes", "2"], "--nnodes > 1 needs --rdzv-endpoint HOST:PORT"),
        (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "--node-rank 2: must be in 0..1"),
        (["--nproc-per-node", "0"], "--nproc-per-node and --nnodes must be at least 1"),
        (["--rdzv-endpoint", "nohost"], "--rdzv-endpoint nohost: give HOST:PORT"),
    ],
)
def test_bad_launches_are_refused_before_any_process_starts(data, tmp_path, extra, message):
    proc = invoke("train", "-o", str(tmp_path / "r"), "--data", str(data), *extra)
    assert proc.returncode == 1 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "r").exists()


def test_torchrun_arguments():
    one = distributed.Launch(nproc_per_node=2).torchrun_args(["train", "-o", "r"])
    assert one[:3] == ["--nproc-per-node=2", "--nnodes=1", "--standalone"] and one[-5:] == [
        "-m",
        "resx",
        "train",
        "-o",
        "r",
    ]
    two = distributed.Launch(1, 2, 1, "node0:29500").torchrun_args([])
    assert "--rdzv-backend=static" in two and "--node-rank=1" in two and "--master-addr=node0" in two
    assert "--master-port=29500" in two
