"""resx bench: statistics, the fairness gate (every row can fail), and the report files. No timing assertions."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import run_resx

from resx import _cpp, bench, engines, stats
from resx.bench import gate as G
from resx.bench.runners import CLASSIC, make_local_runner, resolve
from resx.bench.runners import python as pyrunner
from resx.engines import EngineOptions
from resx.export import export, tensor_sha1
from resx.models import ModelConfig, build

SMALL = dict(width=8)  # the same architecture, narrow: the gate's machinery, quickly


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


def test_bootstrap_ratio_resamples_rounds():
    rng = np.random.default_rng(1)
    b = [rng.normal(10, 0.1, 50) for _ in range(6)]
    exact = stats.bootstrap_ratio([2 * r for r in b], b)
    assert exact["ratio"] == pytest.approx(2.0, rel=1e-3) and exact["rounds"] == 6
    # Calls barely vary within a round, but the rounds disagree (a fresh process each): the interval
    # must be as wide as the rounds' spread, which a call-level bootstrap would miss.
    shifts = [0.90, 0.95, 1.0, 1.0, 1.05, 1.10]
    a = [s * r for s, r in zip(shifts, b, strict=True)]
    r = stats.bootstrap_ratio(a, b)
    assert r["ci_low"] < 0.97 and r["ci_high"] > 1.03
    assert r["round_q25"] == pytest.approx(0.9625, abs=0.01) and r["round_q75"] == pytest.approx(1.0375, abs=0.01)
    pooled_calls = stats.bootstrap_ratio([np.concatenate(a)], [np.concatenate(b)])  # one "round": calls only
    assert pooled_calls["ci_high"] - pooled_calls["ci_low"] < r["ci_high"] - r["ci_low"]
    mean = stats.bootstrap_ratio([[2.0], [2.0], [2.0]], [[1.0], [1.0], [1.0]], "mean")
    assert (mean["ratio"], mean["ci_low"], mean["ci_high"]) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError):
        stats.bootstrap_ratio([[1.0]], [[1.0], [2.0]])


def test_warm_up_rule():
    assert stats.stable([10, 10, 10], [10.4, 10.2, 10.3], 0.05)
    assert not stats.stable([20, 20, 20], [10, 10, 10], 0.05)
    assert bench.WarmupRule(10).for_batch(1).window == 10
    assert bench.WarmupRule(10).for_batch(128).window == 2


def test_inputs_are_the_same_numbers_in_both_languages():
    assert torch.equal(bench.make_input(4, 7), _cpp.make_input(4, 7, "cpu"))
    assert tensor_sha1(bench.make_input(1, 7)) == _cpp.input_hash(1, 7)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    paths = {k: d / f"{k}.pt" for k in ("a", "seed1", "imagenet")}
    manifest = export(ModelConfig("resnet18", **SMALL), paths["a"])
    export(ModelConfig("resnet18", **SMALL), paths["seed1"], seed=1)
    export(ModelConfig("resnet18", stem="imagenet", **SMALL), paths["imagenet"])
    return paths, manifest


def started(specs, local=True):
    """Runners started on (name, file) pairs: in this process where they can be (so that a test can
    change what they run), in a process of their own otherwise or when local=False (as the bench does)."""
    make = lambda name, path: (
        make_local_runner(name, path, EngineOptions()) if local and bench.RUNTIMES[resolve(name)].language != "exe"
        else bench.make_runner(name, path, EngineOptions()))  # fmt: skip
    runners = [make(name, path) for name, path in specs]
    threads = torch.get_num_threads()
    for r in runners:
        r.start()
        r.set_threads(threads)
    return runners


def gate_of(specs, manifest, threads=None, local=True):
    runners = started(specs, local)
    try:
        return G.fairness_gate(runners, manifest, threads or torch.get_num_threads(), 0, max_load=100)
    finally:
        for r in runners:
            r.stop()


def failed(gate):
    return {c["check"].split(" (")[0] for c in gate.failures}


def test_gate_passes_for_the_same_file(files):
    paths, manifest = files
    gate = gate_of([(n, paths["a"]) for n in CLASSIC], manifest, local=False)
    assert gate.failures == [], gate.failures
    assert not gate.loaded
    assert {c["check"].split(" (")[0] for c in gate.checks} >= {"fingerprint", "weights", "input", "outputs",
                                                                "intra-op threads", "LibTorch build"}  # fmt: skip


class _Extra(torch.nn.Module):
    """A different eager module with the same parameters: one ReLU more at the end."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return torch.relu(self.inner(x))


def test_gate_refuses_a_different_eager_module(files, monkeypatch):
    paths, manifest = files
    monkeypatch.setattr(engines, "build", lambda config: _Extra(build(config)))
    monkeypatch.setattr(_Extra, "load_state_dict", lambda self, state: self.inner.load_state_dict(state), raising=False)
    gate = gate_of([("py-eager", paths["a"]), ("cpp", paths["a"])], manifest)
    assert "fingerprint" in failed(gate)  # the eager module's own graph, scripted: not the file's


def test_gate_refuses_other_weights(files):
    paths, manifest = files
    gate = gate_of([("py-script", paths["a"]), ("cpp-exe", paths["seed1"])], manifest)
    assert failed(gate) == {"weights", "outputs"}


def test_gate_refuses_another_architecture(files):
    paths, manifest = files
    gate = gate_of([("py-eager", paths["a"]), ("cpp", paths["imagenet"])], manifest)
    assert {"fingerprint", "weights", "outputs"} <= failed(gate)


def test_gate_refuses_another_input(files, monkeypatch):
    paths, manifest = files
    other = lambda batch, seed, device="cpu": torch.randn(batch, 3, 32, 32).to(device)  # unseeded
    monkeypatch.setattr(pyrunner, "make_input", other)
    gate = gate_of([("py-eager", paths["a"]), ("cpp", paths["a"])], manifest)
    assert failed(gate) == {"input", "outputs"}


def test_gate_refuses_a_thread_mismatch_and_oversubscription(files):
    paths, manifest = files
    runners = started([("cpp", paths["a"]), ("cpp-exe", paths["a"])])
    try:
        requested = torch.get_num_threads()
        runners[1].set_threads(requested + 1)
        assert failed(G.fairness_gate(runners, manifest, requested, 0, max_load=100)) == {"intra-op threads"}
        many = 64
        for r in runners:
            r.set_threads(many)
        assert (
            failed(G.fairness_gate(runners, manifest, many, 0, max_load=100)) == {"threads within the 2 cores"}
            or torch.get_num_threads() >= many
        )  # a machine with 64 cores or more has none to refuse
    finally:
        for r in runners:
            r.stop()
        torch.set_num_threads(requested)


def test_run_refuses_then_force_records(files, monkeypatch):
    paths, _ = files
    from resx.bench import compare as R

    real = R.make_runner

    def swapped(name, file, options, label):  # cpp-script runs another architecture
        return real(name, paths["imagenet"] if name == "cpp-script" else file, options, label)

    monkeypatch.setattr(R, "make_runner", swapped)
    cfg = bench.configure(runtimes="py-script,cpp", inference=False, training=False, max_load=100, **SMALL)
    with pytest.raises(bench.BenchError, match="fairness gate refused resnet18: fingerprint"):
        bench.run(cfg)
    cfg.force = True
    results = bench.run(cfg)
    assert results["forced"] and results["models"]["resnet18"]["gate"]["forced"]
    assert not results["models"]["resnet18"]["gate"]["passed"]


@pytest.mark.parametrize("runtime", ["cpp-exe", "py-eager"])
def test_every_runtime_starts_a_fresh_process_each_time(files, runtime):
    paths, manifest = files
    (runner,) = started([(runtime, paths["a"])], local=False)
    try:
        first = runner.proc.pid
        runner.restart()
        assert runner.proc.pid != first and runner.fingerprint() == manifest["fingerprint"]
        assert runner.env()["intra_op_threads"] and len(runner.time(1, 0, 3)) == 3
    finally:
        runner.stop()


TINY = ["--quick", "--runtime", "py-eager,py-script,cpp,cpp-exe", "--dtype", "fp32", "--width", "8",
        "--latency-calls", "4", "--rounds", "2", "--batch-sizes", "1,2",
        "--throughput-calls", "1", "--thread-counts", "1,2", "--thread-seconds", "0.2", "--train-steps", "2",
        "--train-batch", "4"]  # fmt: skip


def test_quick_bench_writes_every_report_file(tmp_path):
    out = tmp_path / "report"
    proc = run_resx("bench", *TINY, "-o", str(out), "--max-load", "-1")  # -1: any machine counts as loaded
    assert proc.returncode == 0, proc.stderr
    assert "machine is loaded" in proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["loaded"]
    entry = results["models"]["resnet18"]
    assert set(entry["inference"]["latency"]) == set(CLASSIC)
    assert all(len(e["rounds_ns"]) == 2 and len(e["warmup_calls"]) == 2 for e in entry["inference"]["latency"].values())
    assert entry["gate"]["passed"]
    with open(out / "results.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == bench.report.CSV_COLUMNS
    measured = {(r["runtime"], r["measurement"]) for r in rows}
    for runtime in CLASSIC:
        for m in ("latency", "throughput", "concurrent throughput", "training step", "training epoch"):
            assert (runtime, m) in measured, (runtime, m)
    ratio = next(r for r in rows if r["measurement"] == "latency" and r["runtime"] == "cpp-script")
    assert float(ratio["ci_low"]) <= float(ratio["ratio_vs_baseline"]) <= float(ratio["ci_high"])
    assert ratio["rounds"] == "2" and float(ratio["round_q25"]) <= float(ratio["round_q75"])
    md = (out / "report.md").read_text()
    assert "| Runtime | Model | Total time | Time per epoch | Latency p50 (ms) |" in md
    assert "Machine loaded" in md and "extrapolated" in md and "between rounds (IQR)" in md
    assert "What should I ship?" in md and "cpp-script / py-script" in md and "Against the machine's floor" in md
    assert results["floor_gflops"]["fp32"] > 0 and results["floor_gflops"]["bf16"] > 0
    for plot in ("latency", "throughput-batch", "throughput-threads", "train-split"):
        assert (out / f"resnet18-{plot}.png").stat().st_size > 1000
    assert "py-eager" in proc.stdout and "resnet18" in proc.stdout and "between rounds" in proc.stdout


def test_bench_bad_inputs(tmp_path):
    def error(*args):
        proc = run_resx("bench", *args, "-o", str(tmp_path / "r"))
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        return lines[0]

    assert "unknown runtime" in error("--runtime", "rust")
    assert "unknown model" in error("--model", "vgg")
    assert "--batch-sizes" in error("--batch-sizes", "0,x")
    assert "--data" in error("--preset", "seed")
    assert "--rounds must be at least 1" in error("--rounds", "0")
    assert "--thread-seconds" in error("--thread-seconds", "nan")
    assert "twice" in error("--runtime", "cpp,cpp")
    assert not (tmp_path / "r").exists()
