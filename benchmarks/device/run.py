"""The GPU run, in one call on a machine with an accelerator (or its CPU form anywhere).

    benchmarks/device/run.sh [--smoke] [--budget SECONDS]      (installs, then runs this)
    python benchmarks/device/run.py [--smoke] [--out DIR] [--data DIR] [--budget SECONDS]

Steps, each given what is left of the time budget and skipped (saying so) when too little is:
  1. env        what every runtime sees, CUDA settings included
  2. tests      the CUDA tests (tests/test_cuda.py)
  3. accuracy   the well-known table for real: ResNet18 trained in py and in cpp with --deterministic
                (one-cycle, at least 10 epochs; --smoke: 1 epoch on a subset), loss, accuracy, time per epoch
  4. bench      `resx bench --preset gpu` (--smoke: ResNet18, fewer rounds and batches)
  5. threads    the many-core concurrency sweep, 1 to 16 callers with one intra-op thread each, on the CPU
  6. serving    MLPerf LoadGen in each runtime's own process: SingleStream, the Server curve and its
                peak rate within the p99 bound with 1 to 16 workers, Offline (CUDA: ResNet18 on the GPU)
  7. language   where the language matters (`resx bench --language-map`): the ResNet sweep over depth and
                width at batch 1, each runtime's call taken apart, the GIL with 1 to 16 callers (CUDA: on
                the GPU, where a kernel takes microseconds and the language's share is largest)
  8. ddp        data-parallel at world size 2, py (DDP) and cpp (DDP's Reducer): equal per-step losses?
                On one GPU both processes share it over gloo (NCCL wants a GPU per process): a
                correctness run. Then benchmarks/bench_ddp.py, 1 and 2 processes x 1 thread, on the CPU.
Without CUDA every step runs its CPU form on a narrow ResNet (tests skipped), so that CI keeps this
script working. Everything lands in --out (default $OUT): results.json, report.md and one archive of
every report and run (results.tar.gz): the device tool brings back 8 files at most.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CARRY = HERE / "carry"  # git-ignored, carried to the device: see prepare.sh


class Run:
    def __init__(self, out: Path, budget: float, smoke: bool, cuda: bool, dry: bool = False):
        self.out, self.budget, self.smoke, self.cuda, self.dry = out, budget, smoke, cuda, dry
        self.start, self.steps, self.ddp = time.monotonic(), {}, {}
        # Outside --out: the device tool brings back 8 files, so --out gets 3 and the rest goes in the archive.
        self.work = Path(tempfile.mkdtemp(prefix="resx-device-"))
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def step(self, name: str, needs: float, command: list[str], timeout: float | None = None) -> bool:
        """Run one command if `needs` seconds are left; record its status, time and output's tail."""
        if self.left() < needs:
            self.steps[name] = {"status": f"skipped: {self.left():.0f} s left of the budget, {needs:.0f} needed"}
            print(f"[{name}] skipped (budget)", flush=True)
            return False
        if self.dry and "bench" in command:
            command = [*command, "--dry-run"]  # the plan alone: the options parse, the step's plumbing runs
        print(f"[{name}] {' '.join(command)}", flush=True)
        begin = time.monotonic()
        try:
            proc = subprocess.run(
                command,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=max(10.0, min(timeout or self.left(), self.left())),
            )
            status, output = ("ok" if proc.returncode == 0 else f"exit {proc.returncode}"), proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            status, output = (
                "timed out",
                (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else "",
            )
        (self.work / f"{name}.log").write_text(output)
        self.steps[name] = {
            "status": status,
            "seconds": round(time.monotonic() - begin, 1),
            "tail": output.strip().splitlines()[-15:],
        }
        print(f"[{name}] {status} in {self.steps[name]['seconds']} s", flush=True)
        return status == "ok"


def resx(*args: str) -> list[str]:
    return [sys.executable, "-m", "resx", *args]


def make_data(run: Run, data: Path | None) -> Path | None:
    """Real CIFAR-10 from the carried JPEG archive (converted here), or --data, or none."""
    if data is not None:
        return data
    tool = CARRY / "make-cifar10"
    if not (tool.exists() and (CARRY / "cifar10-jpeg.tar.xz").exists()):
        run.steps["data"] = {"status": f"skipped: no {CARRY}/cifar10-jpeg.tar.xz (run benchmarks/device/prepare.sh)"}
        return None
    dest = run.work / "cifar10"
    if run.step("data", 30, [sys.executable, str(tool), str(dest)]):
        return dest
    return None


def accuracy(run: Run, data: Path | None) -> dict:
    """ResNet18 trained in py and in cpp, same recipe, --deterministic: the well-known table."""
    device = "cuda" if run.cuda else "cpu"
    if data is None:
        run.steps["accuracy"] = {"status": "skipped: no CIFAR-10"}
        return {}
    if run.dry:  # the plumbing alone: the narrowest net, a few images
        recipe = ["--epochs", "1", "--subset", "256", "--test-subset", "40", "--width", "2", "--threads", "1"]
    elif run.smoke or not run.cuda:  # a correctness run: the narrow net, a subset
        recipe = [
            "--epochs",
            "1",
            "--subset",
            "2560",
            "--test-subset",
            "1000",
            "--width",
            "16" if not run.cuda else "64",
        ]
    else:
        recipe = ["--epochs", "10", "--schedule", "onecycle", "--lr", "0.2", "--warmup-epochs", "0"]
    table = {}
    for runtime in ("py", "cpp"):
        out = run.work / "runs" / runtime
        command = resx(
            "train",
            "--runtime",
            runtime,
            "--data",
            str(data),
            "--device",
            device,
            "--deterministic",
            "--batch-size",
            "128",
            *recipe,
            "-o",
            str(out),
        )
        if run.step(f"train-{runtime}", 60, command):
            from resx.rundir import RunDir

            epochs = RunDir(out).read_epochs()
            table[runtime] = [
                {
                    "epoch": e.epoch,
                    "epoch_time": e.epoch_time,
                    "train_loss": e.train_loss,
                    "train_top_1": e.train_top_1,
                    "test_loss": e.test_loss,
                    "test_top_1": e.test_top_1,
                }
                for e in epochs
            ]
    return table


def ddp(run: Run, data: Path | None) -> dict:
    """py-DDP and cpp-DDP at world size 2 on this device, deterministic: their per-step losses compared."""
    from resx.bench.training import synthetic_cifar
    from resx.rundir import RunDir

    device = "cuda" if run.cuda else "cpu"
    if run.dry:  # tests/test_ddp.py proves DDP in both languages; the dry form keeps the step's place
        for name in ("ddp-py", "ddp-cpp", "ddp-bench"):
            run.steps[name] = {"status": "skipped: --dry"}
        return {}
    data = data or synthetic_cifar(run.work / "synthetic", 1024, 256, 0)
    losses = {}
    for runtime in ("py", "cpp"):
        out = run.work / "ddp" / runtime
        command = resx(
            "train",
            "--runtime",
            runtime,
            "--data",
            str(data),
            "--device",
            device,
            "--deterministic",
            "--nproc-per-node",
            "2",
            "--threads",
            "1",
            "--width",
            "16",
            "--batch-size",
            "64",
            "--subset",
            "1024",
            "--test-subset",
            "256",
            "--epochs",
            "2",
            "-o",
            str(out),
        )
        if run.step(f"ddp-{runtime}", 40, command, timeout=180):
            losses[runtime] = [s.loss for s in RunDir(out).read_steps()]
    same = len(losses) == 2 and losses["py"] == losses["cpp"]
    diff = max((abs(a - b) for a, b in zip(*losses.values(), strict=True)), default=None) if len(losses) == 2 else None
    shape = ["--width", "16", "--steps", "6"] if run.cuda else ["--width", "8", "--steps", "3", "--batch-size", "16"]
    run.step(
        "ddp-bench",
        40,
        [
            sys.executable,
            "benchmarks/bench_ddp.py",
            *shape,
            "--rounds",
            "1",
            "--json",
            str(run.work / "bench-ddp.json"),
        ],
    )
    return {"device": device, "steps": len(losses.get("py", [])), "bit_identical": same, "max_loss_difference": diff}


def language(run: Run) -> None:
    """The language map: on CUDA the GPU sweep (3 depths x widths 4, 16, 64, held out 32; callers 1 to 16
    on the sweep's smallest graph), on the CPU a tiny one that keeps the step working."""
    if run.cuda:
        shape = ["--device", "cuda", "--runtime", "py-eager,cpp-eager,py-script,exe-script,exe-aoti"]
        shape += ["--map-widths", "4,64", "--map-held-out", "16", "--map-rounds", "2"] if run.smoke else []
        shape += ["--thread-seconds", "0.5", "--map-rounds", "3"] if not run.smoke else ["--thread-seconds", "0.2"]
    else:
        shape = ["--runtime", "py-eager,exe-script", "--width", "2", "--layers", "1,1,1,1"]
        shape += ["--map-layers", "1,1,1,1/2,2,2,2", "--map-widths", "2,4", "--map-held-out", ""]
        shape += ["--map-rounds", "2", "--latency-calls", "5", "--thread-seconds", "0.1"]
    run.step(
        "language",
        60,
        resx(
            "bench",
            "--language-map",
            "--threads",
            "1",
            "--batch-sizes",
            "1",
            "--rounds",
            "2",
            "--no-training",
            *shape,
            "-o",
            str(run.work / "bench-language"),
        ),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="the short form (<= 3 minutes on a GPU)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "device-out")))
    ap.add_argument("--data", type=Path, default=None, help="CIFAR-10 (default: made from the carried archive)")
    ap.add_argument("--budget", type=float, default=None, help="seconds for everything (default 540, smoke 170)")
    ap.add_argument(
        "--dry", action="store_true", help="the plumbing alone (what make test runs): benches plan, nothing measures"
    )
    args = ap.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available()
    run = Run(args.out, args.budget or (170.0 if args.smoke else 540.0), args.smoke, cuda, args.dry)
    print(
        f"device run: {'CUDA ' + torch.cuda.get_device_name(0) if cuda else 'no CUDA: the CPU forms'}, torch "
        f"{torch.__version__}, {os.cpu_count()} cores, budget {run.budget:.0f} s",
        flush=True,
    )
    run.step("env", 30, resx("env", "--json"))
    if cuda:
        run.step("tests", 60, [sys.executable, "-m", "pytest", "-q", "-x", "tests/test_cuda.py"], timeout=150)
    else:
        run.steps["tests"] = {"status": "skipped: no CUDA here"}
    data = make_data(run, args.data)
    table = accuracy(run, data)
    if cuda:
        shape = (
            ["--model", "resnet18", "--rounds", "2", "--batch-sizes", "1,128", "--train-steps", "4"]
            if run.smoke
            else []
        )
        run.step("bench", 60, resx("bench", "--preset", "gpu", *shape, "-o", str(run.work / "bench-gpu")))
    else:
        run.step(
            "bench",
            30,
            resx(
                "bench",
                "--width",
                "8",
                "--runtime",
                "py-eager,cpp-script,exe-script",
                "--rounds",
                "2",
                "--latency-calls",
                "5",
                "--batch-sizes",
                "1,8",
                "--throughput-calls",
                "2",
                "--thread-counts",
                "1",
                "--thread-seconds",
                "0.2",
                "--train-steps",
                "2",
                "--train-batch",
                "8",
                "-o",
                str(run.work / "bench-cpu"),
            ),
        )
    counts = "1,2,4" if run.smoke or (os.cpu_count() or 1) < 16 else "1,2,4,8,16"
    run.step(
        "threads",
        30,
        resx(
            "bench",
            "--device",
            "cpu",
            "--runtime",
            "py-eager,py-script,cpp-script,exe-script",
            "--no-training",
            "--batch-sizes",
            "1",
            "--rounds",
            "2",
            "--latency-calls",
            "20",
            "--thread-counts",
            counts,
            "--thread-seconds",
            "1" if cuda else "0.2",
            *([] if cuda and not run.smoke else ["--width", "8"]),
            "-o",
            str(run.work / "bench-threads"),
        ),
    )
    # The GPU form: ResNet18 on the device, 1 to 16 workers. The CPU form keeps the step working, briefly.
    shape = [
        "--device",
        "cuda",
        "--model",
        "resnet18",
        "--runtime",
        "py-eager,py-script,cpp-script,exe-script,exe-aoti",
    ]
    shape += ["--batch-sizes", "1,32", "--rounds", "2", "--serve-rounds", "2", "--serve-workers"]
    shape += ["1,4" if run.smoke else "1,4,16", "--serve-seconds", "0.5" if run.smoke else "1"]
    if not cuda:
        shape = ["--width", "8", "--runtime", "py-eager,exe-script", "--batch-sizes", "1,8", "--rounds", "1"]
        shape += ["--serve-rounds", "1", "--serve-workers", "1", "--serve-seconds", "0.1", "--serve-rates", "300,600"]
    run.step(
        "serving",
        40,
        resx(
            "bench",
            *shape,
            "--no-training",
            "--latency-calls",
            "20",
            "--thread-counts",
            "1",
            "--thread-seconds",
            "0.2",
            "--serve",
            "singlestream,server,offline",
            "-o",
            str(run.work / "bench-serving"),
        ),
    )
    language(run)
    run.ddp = ddp(run, data)
    write(run, table, torch)
    return 0 if all(s["status"] == "ok" or s["status"].startswith("skipped") for s in run.steps.values()) else 1


def write(run: Run, table: dict, torch) -> None:
    results = {
        "device": torch.cuda.get_device_name(0) if run.cuda else None,
        "torch": torch.__version__,
        "cores": os.cpu_count(),
        "smoke": run.smoke,
        "seconds": round(time.monotonic() - run.start, 1),
        "steps": run.steps,
        "accuracy": table,
        "ddp": run.ddp,
    }
    (run.out / "results.json").write_text(json.dumps(results, indent=1))
    lines = [
        f"# resx device run ({'smoke' if run.smoke else 'full'})\n",
        f"{results['device'] or 'no CUDA (CPU forms)'}, torch {results['torch']}, {results['cores']} cores, "
        f"{results['seconds']} s.\n",
        "| step | status | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {s['status']} | {s.get('seconds', '')} |" for name, s in run.steps.items()]
    if table:
        lines += [
            "",
            "## ResNet18 on CIFAR-10, py and cpp, --deterministic",
            "",
            "| runtime | epoch | time (s) | train loss | train top-1 | test loss | test top-1 |",
            "|---|---|---|---|---|---|---|",
        ]
        for runtime, epochs in table.items():
            for e in epochs:
                test = "" if e["test_loss"] is None else f"{e['test_loss']:.4f} | {e['test_top_1']:.2f}%"
                lines.append(
                    f"| {runtime} | {e['epoch']} | {e['epoch_time']:.1f} | {e['train_loss']:.4f} | "
                    f"{e['train_top_1']:.2f}% | {test or '— | —'} |"
                )
    if run.ddp.get("steps"):
        lines += [
            "",
            f"## DDP at world size 2 on {run.ddp['device']}: py and cpp per-step losses "
            f"{'bit-identical' if run.ddp['bit_identical'] else 'differ'} over {run.ddp['steps']} steps "
            f"(max difference {run.ddp['max_loss_difference']})",
        ]
    for name in ("bench-gpu", "bench-threads", "bench-language", "bench-cpu"):
        report = run.work / name / "report.md"
        if report.exists():
            lines += ["", f"## {name}", "", report.read_text()]
    (run.out / "report.md").write_text("\n".join(lines) + "\n")

    def small(info: tarfile.TarInfo) -> tarfile.TarInfo | None:  # models, checkpoints and data stay behind
        skip = info.name.endswith((".pt", ".pt2", ".bin", ".lock")) or "/cifar10" in info.name
        return None if skip else info

    with tarfile.open(run.out / "results.tar.gz", "w:gz") as tar:  # every report, run and log, in one file
        tar.add(run.work, arcname="work", filter=small)


if __name__ == "__main__":
    sys.exit(main())
