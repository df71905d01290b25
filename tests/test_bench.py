"""resx bench: statistics, the fairness gate, and the report files. No timing assertions."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import run_resx

from resx import _cpp, bench, report, stats
from resx.export import export
from resx.models import ModelConfig


def test_summarize_known_sample():
    s = stats.summarize([1_000_000, 2_000_000, 3_000_000, 4_000_000])
    assert s["n"] == 4 and s["mean_ms"] == 2.5 and s["p50_ms"] == 2.5
    assert s["std_ms"] == pytest.approx(1.2909944)
    assert s["min_ms"] == 1 and s["max_ms"] == 4
    assert s["p90_ms"] == pytest.approx(3.7) and s["p99_ms"] == pytest.approx(3.97)
    with pytest.raises(ValueError):
        stats.summarize([])


def test_throughput_uses_the_median_call():
    assert stats.throughput([10_000_000, 10_000_000, 90_000_000], batch=8) == pytest.approx(800.0)


def test_bootstrap_ratio():
    rng = np.random.default_rng(1)
    b = rng.normal(10, 1, 400)
    exact = stats.bootstrap_ratio(2 * b, b)
    assert exact["ratio"] == pytest.approx(2.0)
    noisy = stats.bootstrap_ratio(rng.normal(15, 1, 400), b)
    assert noisy["ci_low"] < 1.5 < noisy["ci_high"] and noisy["ci_high"] - noisy["ci_low"] < 0.1
    mean = stats.bootstrap_ratio([2.0, 2.0, 2.0], [1.0, 1.0, 1.0], np.mean)
    assert (mean["ratio"], mean["ci_low"], mean["ci_high"]) == (2.0, 2.0, 2.0)


def test_warm_up_rule():
    assert stats.stable([10, 10, 10], [10.4, 10.2, 10.3], 0.05)
    assert not stats.stable([20, 20, 20], [10, 10, 10], 0.05)
    assert bench.WarmupRule(10).for_batch(1).window == 10
    assert bench.WarmupRule(10).for_batch(128).window == 2


def test_inputs_are_the_same_numbers_in_both_languages():
    assert torch.equal(bench.make_input(4, 7), _cpp.make_input(4, 7, "cpu"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    a, b = d / "a.pt", d / "b.pt"
    return a, export(ModelConfig("resnet18"), a), b, export(ModelConfig("resnet18", stem="imagenet"), b)


def test_gate_passes_for_the_same_file(files):
    a, manifest, _, _ = files
    runners = [bench.make_runner(n, a, "cpu") for n in bench.RUNTIMES]
    try:
        threads = torch.get_num_threads()
        for r in runners:
            r.set_threads(threads)
        gate = bench.fairness_gate(runners, manifest, threads, 0, max_load=100)
        assert gate.failures == [], gate.failures
        assert not gate.loaded
        assert {c["check"] for c in gate.checks} >= {"fingerprint", "weights", "intra-op threads", "LibTorch build"}
    finally:
        for r in runners:
            r.close()


def test_gate_refuses_a_fingerprint_mismatch(files):
    a, manifest, b, _ = files
    runners = [bench.make_runner("py-script", a, "cpu"), bench.make_runner("cpp", b, "cpu")]
    gate = bench.fairness_gate(runners, manifest, torch.get_num_threads(), 0, max_load=100)
    failed = {c["check"] for c in gate.failures}
    assert "fingerprint" in failed and "weights" in failed


def test_gate_refuses_a_thread_mismatch(files):
    a, manifest, _, _ = files
    exe = bench.make_runner("cpp-exe", a, "cpu")
    try:
        requested = torch.get_num_threads()
        exe.set_threads(requested + 1)
        gate = bench.fairness_gate([bench.make_runner("cpp", a, "cpu"), exe], manifest, requested, 0, max_load=100)
        assert [c["check"] for c in gate.failures] == ["intra-op threads"]
    finally:
        exe.close()


def test_run_refuses_then_force_records(files, monkeypatch):
    a, _, b, _ = files
    real = bench.make_runner
    monkeypatch.setattr(bench, "make_runner", lambda name, f, d: real(name, b if name == "cpp" else f, d))
    cfg = bench.BenchConfig(runtimes=["py-script", "cpp"], inference=False, training=False, max_load=100)
    with pytest.raises(bench.BenchError, match="fairness gate refused resnet18: fingerprint"):
        bench.run(cfg)
    cfg.force = True
    results = bench.run(cfg)
    assert results["forced"] and results["models"]["resnet18"]["gate"]["forced"]
    assert not results["models"]["resnet18"]["gate"]["passed"]


TINY = [
    "--quick",
    "--latency-calls",
    "8",
    "--rounds",
    "2",
    "--batch-sizes",
    "1,2",
    "--throughput-calls",
    "1",
    "--thread-counts",
    "1,2",
    "--thread-seconds",
    "0.2",
    "--train-steps",
    "2",
    "--train-batch",
    "4",
]


def test_quick_bench_writes_every_report_file(tmp_path):
    out = tmp_path / "report"
    proc = run_resx("bench", *TINY, "-o", str(out), "--max-load", "-1")  # -1: any machine counts as loaded
    assert proc.returncode == 0, proc.stderr
    assert "machine is loaded" in proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["loaded"]
    entry = results["models"]["resnet18"]
    assert set(entry["inference"]["latency"]) == set(bench.RUNTIMES)
    assert entry["gate"]["passed"]
    with open(out / "results.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == report.CSV_COLUMNS
    measured = {(r["runtime"], r["measurement"]) for r in rows}
    for runtime in bench.RUNTIMES:
        for m in ("latency", "throughput", "concurrent throughput", "training step", "training epoch"):
            assert (runtime, m) in measured, (runtime, m)
    ratio_rows = [r for r in rows if r["measurement"] == "latency" and r["runtime"] == "cpp"]
    assert (
        float(ratio_rows[0]["ci_low"]) <= float(ratio_rows[0]["ratio_vs_py_eager"]) <= float(ratio_rows[0]["ci_high"])
    )
    md = (out / "report.md").read_text()
    assert "| Runtime | Model | Total time | Time per epoch | Latency p50 (ms) |" in md
    assert "Machine loaded" in md and "extrapolated" in md
    for plot in ("latency", "throughput-batch", "throughput-threads", "train-split"):
        assert (out / f"resnet18-{plot}.png").stat().st_size > 1000
    assert "py-eager" in proc.stdout and "resnet18" in proc.stdout


def test_bench_bad_inputs(tmp_path):
    def error(*args):
        proc = run_resx("bench", *args, "-o", str(tmp_path / "r"))
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode != 0 and len(lines) == 1, proc.stderr
        return lines[0]

    assert "unknown runtime" in error("--runtime", "rust")
    assert "unknown model" in error("--model", "vgg")
    assert "--batch-sizes" in error("--batch-sizes", "0,x")
    assert "--data" in error("--preset", "seed")
    assert not (tmp_path / "r").exists()
