"""The device script (benchmarks/device/run.py) in its dry CPU form: its plumbing (steps, budget, every
command's options, the report and the archive) kept working for the GPU machine it is written for. What
each step measures is tested where it lives: training parity (test_train), the bench (test_bench), serving
(test_serving), the map (test_language), DDP (test_ddp), the CUDA paths (test_cuda, on a GPU)."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import torch
from conftest import make_cifar

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device" / "run.py"


def test_the_device_script_runs_its_cpu_form(tmp_path):
    if torch.cuda.is_available():
        import pytest

        pytest.skip("on a GPU machine the device script runs for real (benchmarks/device/run.sh)")
    data = make_cifar(tmp_path / "data", train_per_file=52, test=40)  # 260 images: 2 steps of 128
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--dry", "--out", str(out), "--data", str(data), "--budget", "400"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text())
    steps = results["steps"]
    assert steps["tests"]["status"].startswith("skipped: no CUDA")
    assert {name: s["status"] for name, s in steps.items() if name != "tests"} == {
        "env": "ok",
        "train-py": "ok",
        "train-cpp": "ok",
        "bench": "ok",
        "threads": "ok",
        "serving": "ok",
        "language": "ok",
        "ddp-py": "skipped: --dry",
        "ddp-cpp": "skipped: --dry",
        "ddp-bench": "skipped: --dry",
    }
    assert results["accuracy"]["py"][0]["train_loss"] == results["accuracy"]["cpp"][0]["train_loss"]
    report = (out / "report.md").read_text()
    assert "ResNet18 on CIFAR-10, py and cpp" in report and "| threads | ok |" in report
    with tarfile.open(out / "results.tar.gz") as tar:
        names = tar.getnames()
    for step in ("bench-cpu", "bench-serving", "bench-language", "bench-threads"):
        assert any(n.endswith(f"{step}/plan.txt") for n in names) and any(
            n.endswith(f"{step}/config.toml") for n in names
        )
    assert not any(n.endswith(".pt") for n in names)
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "results.json", "results.tar.gz"]  # <= 8 come back
