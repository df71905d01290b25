"""resx bench: statistics, the fairness gate (every row can fail), and the report files. No timing assertions."""

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import bench_config, bench_plan

from resx import _cpp, stats
from resx.bench import analysis, report
from resx.bench import gate as G
from resx.bench.config import WarmupRule
from resx.bench.monitor import mapped_libraries, peak_rss_bytes, rss_bytes
from resx.bench.registry import CLASSIC, RUNTIMES, resolve
from resx.bench.results import LATENCY, Measurement, Ratio, Scenario, read_json
from resx.bench.rounds import Rounds
from resx.bench.runners import make_local_runner, make_runner
from resx.bench.workers import python as pyworker
from resx.bench.workers.python import make_input
from resx.engines import EngineOptions
from resx.errors import BenchError
from resx.export import export, tensor_sha1
from resx.models import ModelConfig
from resx.sources import Source

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


def test_ratio_interval_is_t_on_the_log_of_per_round_ratios():
    a, b = [2.2, 1.8, 2.0], [1.0, 1.0, 1.0]
    r = stats.ratio_interval(a, b)
    logs = np.log(np.array(a) / np.array(b))
    h = 4.303 * logs.std(ddof=1) / np.sqrt(3)  # t, 2 degrees of freedom
    assert r.value == pytest.approx(np.exp(logs.mean())) and r.rounds == 3
    assert (r.low, r.high) == pytest.approx((np.exp(logs.mean() - h), np.exp(logs.mean() + h)))
    assert r.half_width == pytest.approx(np.expm1(h)) and r.q25 < r.value < r.q75
    one = stats.ratio_interval([2.0], [1.0])
    assert one.value == 2.0 and np.isnan(one.low) and one.half_width == np.inf
    assert stats.t_quantile(1) == 12.706 and stats.t_quantile(40) == pytest.approx(2.021, abs=1e-3)
    with pytest.raises(ValueError):
        stats.ratio_interval([1.0], [1.0, 2.0])


def _synthetic_round(rng, ratio: float, spread: float, calls: int = 30) -> tuple[list[float], list[float]]:
    """One round of two paths: each process shifted by its own between-round factor (sd `spread` on the log
    scale), calls around it with 5% noise; path a is `ratio` times path b."""
    a = ratio * 0.01 * np.exp(rng.normal(0, spread)) * np.exp(rng.normal(0, 0.05, calls))
    b = 0.01 * np.exp(rng.normal(0, spread)) * np.exp(rng.normal(0, 0.05, calls))
    return list(a), list(b)


@pytest.mark.parametrize("rounds", [3, 5])
def test_the_interval_covers_a_known_ratio_95_percent_of_the_time(rounds):
    """Synthetic rounds with a known ratio and a between-round spread: ~95% of the intervals contain it,
    already with 3 rounds (a percentile bootstrap over 3 rounds is too narrow exactly there)."""
    rng, hits, trials = np.random.default_rng(0), 0, 2000
    for _ in range(trials):
        pairs = [_synthetic_round(rng, 0.9, 0.04) for _ in range(rounds)]
        r = Ratio.of(Measurement(LATENCY, "a", [p[0] for p in pairs]), Measurement(LATENCY, "b", [p[1] for p in pairs]))
        hits += r.low <= 0.9 <= r.high
    assert 0.93 <= hits / trials <= 0.97


def test_stopping_on_the_interval_keeps_its_coverage_near_95_percent():
    """The bench's own stopping rule (resx.bench.rounds.Rounds): stop once the interval is within +-3%,
    after 3 rounds, at most 10. Stopping when an interval happens to be narrow costs a little coverage;
    measured here, it stays within a few points of 95%."""
    rng, hits, trials, spent = np.random.default_rng(1), 0, 600, []
    for _ in range(trials):
        rounds = Rounds(["py-eager", "x"], budget=1e9, min_rounds=3, max_rounds=10, target=0.03)
        while True:
            a, b = _synthetic_round(rng, 0.9, 0.02)
            rounds.add(LATENCY, "x", a)
            rounds.add(LATENCY, "py-eager", b)
            if not rounds.close_round(0.0):
                break
        (r,) = rounds.ratios("x")
        hits += r.low <= 0.9 <= r.high
        spent.append(rounds.stopping["x"].rounds)
    assert 0.90 <= hits / trials <= 0.98
    assert min(spent) >= 3 and max(spent) <= 10 and np.mean(spent) < 8


def test_drift_is_fitted_from_samples():
    calls = list(range(0, 10_001, 500))
    leak = stats.drift(calls, [600e6 + 3_000 * c for c in calls])  # 3 kB per call
    assert leak["bytes_per_1000_calls"] == pytest.approx(3e6) and leak["growth_bytes"] == pytest.approx(30e6)
    settles = stats.drift(calls, [600e6 + (50e6 if c >= 1000 else 0) for c in calls])  # a cache filled once
    assert settles["growth_bytes"] == pytest.approx(50e6) and settles["late_bytes_per_1000_calls"] == pytest.approx(
        0, abs=1
    )
    with pytest.raises(ValueError, match="at least 4 samples"):
        stats.drift([0, 1, 2], [1, 2, 3])


def test_warm_up_rule():
    assert stats.stable([10, 10, 10], [10.4, 10.2, 10.3], 0.05)
    assert not stats.stable([20, 20, 20], [10, 10, 10], 0.05)
    assert WarmupRule(10).for_batch(1).window == 10
    assert WarmupRule(10).for_batch(128).window == 2


def test_inputs_are_the_same_numbers_in_both_languages():
    assert torch.equal(make_input(4, 7), _cpp.make_input(4, 7, "cpu"))
    assert tensor_sha1(make_input(1, 7)) == _cpp.input_hash(1, 7)


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
        make_local_runner(name, path, EngineOptions())
        if local and RUNTIMES[resolve(name)].language != "exe"
        else make_runner(name, path, EngineOptions())
    )
    runners = [make(name, path) for name, path in specs]
    threads = torch.get_num_threads()
    for r in runners:
        r.start()
        r.set_threads(threads)
    return runners


def gate_of(specs, manifest, threads=None, local=True, runners=None):
    runners = runners or started(specs, local)
    try:
        ids = {f"{r.name}#{k}": r.identity(0) for k, r in enumerate(runners)}
        ids = {n.split("#")[0] if list(ids).count(n) == 1 else n: i for n, i in ids.items()}
        opts = {n: r.options for n, r in zip(ids, runners, strict=True)}
        return G.fairness_gate(ids, opts, manifest, threads or torch.get_num_threads())
    finally:
        for r in runners:
            r.stop()


def failed(gate):
    return {c.check.split(" (")[0] for c in gate.failures}


def test_gate_passes_for_the_same_file(files):
    paths, manifest = files
    gate = gate_of([(n, paths["a"]) for n in CLASSIC], manifest, local=False)
    assert gate.failures == [], gate.failures
    assert not gate.loaded
    assert {c.check.split(" (")[0] for c in gate.checks} >= {
        "fingerprint",
        "weights",
        "input",
        "outputs",
        "intra-op threads",
        "LibTorch build",
    }


class _Extra(torch.nn.Module):
    """A different eager module with the same parameters: one ReLU more at the end."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return torch.relu(self.inner(x))


def test_gate_refuses_a_different_eager_module(files, monkeypatch):
    paths, manifest = files
    own = Source.build
    monkeypatch.setattr(Source, "build", lambda self, seed=0, check=True: _Extra(own(self, seed, check)))
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
    other = lambda batch, seed, device="cpu", shape=(3, 32, 32): torch.randn(batch, *shape).to(device)  # unseeded
    monkeypatch.setattr(pyworker, "make_input", other)
    gate = gate_of([("py-eager", paths["a"]), ("cpp", paths["a"])], manifest)
    assert failed(gate) == {"input", "outputs"}


def test_gate_refuses_a_thread_mismatch(files):
    paths, manifest = files
    runners = started([("cpp", paths["a"]), ("cpp-exe", paths["a"])])
    requested = torch.get_num_threads()
    runners[1].set_threads(requested + 1)
    try:
        assert failed(gate_of(None, manifest, requested, runners=runners)) == {"intra-op threads"}
    finally:
        torch.set_num_threads(requested)


def test_run_refuses_then_force_records(files, monkeypatch):
    paths, _ = files
    from resx.bench import run as R

    real, made = R.make_runner, []

    def swapped(name, file, options, label, env=None, timeout=None):  # cpp-script runs another architecture
        made.append(name)
        return real(name, paths["imagenet"] if name == "cpp-script" else file, options, label, env)

    monkeypatch.setattr(R, "make_runner", swapped)
    sections = dict(
        paths={"runtimes": ["py-script", "cpp"]},
        model={"width": 8},
        training={"enabled": False},
        rounds={"max_load": 100, "max_rounds": 1, "noise_floor": False},
        inference={"latency_calls": 2, "batch_sizes": [1], "thread_counts": []},
    )
    with pytest.raises(BenchError, match="fairness gate refused resnet18: fingerprint"):
        R.run(bench_plan(**sections))
    assert made == ["py-script", "cpp-script"]  # refused as cpp-script reported, before it timed anything
    results = R.run(bench_plan(**(sections | {"rounds": sections["rounds"] | {"force": True}})))
    assert results.forced and results.models["resnet18"].gate.forced
    assert not results.models["resnet18"].gate.passed


@pytest.mark.parametrize("runtime", ["cpp-exe", "py-eager"])
def test_every_runtime_starts_a_fresh_process_each_time(files, runtime):
    paths, manifest = files
    began = time.perf_counter()
    (runner,) = started([(runtime, paths["a"])], local=False)
    try:
        first = runner.pid
        ready, load = runner.startup  # spawn to ready, and the model's load within it, as the worker timed it
        assert 0 < load < ready < time.perf_counter() - began
        assert 0 < rss_bytes(first) <= peak_rss_bytes(first)
        assert any("libtorch" in Path(lib).name for lib in mapped_libraries(first))
        runner.restart()
        identity = runner.identity(0)
        assert runner.pid != first and identity.fingerprint == manifest["fingerprint"]
        assert identity.env["intra_op_threads"] and len(runner.time(1, 0, 3)) == 3
    finally:
        runner.stop()


def test_a_bench_run_writes_every_report_file(e2e):
    out, proc = e2e
    assert "machine is loaded" in proc.stderr
    results = read_json(out / "results.json")
    assert results.loaded and results.memory.peak_rss_bytes > 0 and results.seconds > 0
    entry = results.models["resnet18"]
    keys = {s.key for s in entry.scenarios()}
    assert keys == {"latency", "throughput/b2", "concurrency/c1", "concurrency/c2", "training/b4"}
    paths = {*CLASSIC, "cpp-eager"}
    assert set(entry.paths(LATENCY)) == {*paths, "py-eager+again"}
    lat = entry.measurement(LATENCY, "cpp-script")
    assert len(lat.rounds) == 2 and all(len(r) == 4 for r in lat.rounds) and len(lat.warmup_calls) == 2
    assert entry.gate.passed and all(s["inference"].rounds == 2 for s in entry.stopping.values())
    with open(out / "results.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == report.CSV_COLUMNS
    measured = {(r["path"], r["scenario"]) for r in rows if r["model"] == "resnet18"}
    assert all((p, k) in measured for p in paths for k in keys if k != "training/b4")
    ratio = next(r for r in rows if r["scenario"] == "latency" and r["path"] == "cpp-script")
    assert float(ratio["ci_low"]) <= float(ratio["ratio"]) <= float(ratio["ci_high"])
    assert ratio["rounds"] == "2" and float(ratio["round_q25"]) <= float(ratio["round_q75"])
    md = (out / "report.md").read_text()
    assert "| Path | Model | Total time | Time per epoch | Latency p50 (ms) |" in md and "Train loss" not in md
    assert "Machine loaded" in md and "extrapolated" in md and "between rounds (IQR)" in md
    assert "What should I ship?" in md and "cpp-script / py-script" in md and "Against the machine's floor" in md
    assert "How far the rounds went" in md and "GB resident" in md and "The run's noise floor" in md
    assert "2 rounds, too few for an interval" in md  # two rounds: their range, not a t interval
    assert results.floor_gflops["fp32"] > 0 and results.floor_gflops["bf16"] > 0
    # What shipping costs, once per fresh process: start-up phases and memory, beside the rounds' figures.
    once = {s.key for s in entry.scenarios(steady=False)}
    assert once == {"startup/ready", "startup/load", "startup/first", "memory/b0", "memory/b1", "memory/b2"}
    for path in paths:
        ready, load = (entry.measurement(Scenario("startup", phase=p), path) for p in ("ready", "load"))
        assert len(ready.rounds) == 2 and all(0 < lo < r for (r,), (lo,) in zip(ready.rounds, load.rounds, strict=True))
        held = [entry.measurement(Scenario("memory", batch=b), path).rounds for b in (0, 1, 2)]
        assert all(a <= b <= c for (a,), (b,), (c,) in zip(*held, strict=True))  # RSS, then its high-water mark
        assert len(entry.drift[path].samples) == 21 and entry.drift[path].calls == 40
        foot = entry.footprint[path]
        assert foot.model_file_bytes > 0 and foot.libraries > 0 and foot.library_bytes > 0
        assert entry.profiles[path].ops > 10
    assert entry.ratio(Scenario("startup", phase="ready"), "cpp-script", "py-eager") is not None
    assert all(entry.stopping[p]["inference"].half_width.keys() <= keys for p in paths)  # adapt to calls only
    assert "What shipping costs: start-up and memory" in md and "start-up: spawn to ready" in md
    assert set(entry.training) == {"py-eager", "cpp-eager"} and all(
        t.peak_rss_bytes > 2**27 for t in entry.training.values()
    )
    assert "peak RSS, largest process of the run" in md
    for plot in ("latency", "throughput-b2", "concurrency", "training-b4", "train-split", "startup"):
        assert (out / f"resnet18-{plot}.png").stat().st_size > 1000
    assert "py-eager" in proc.stdout and "resnet18" in proc.stdout and "between rounds" in proc.stdout
    assert "…" not in proc.stdout  # piped: tables whole, not cut at 80 columns


def test_a_run_says_its_plan_and_where_it_is(e2e):
    """Before it starts: the models, paths, scenarios, rounds, budgets and an estimate; while it runs, with
    stderr not a terminal (a CI log): one line per step with the time in and left."""
    _, proc = e2e
    err = proc.stderr
    assert "resx bench (custom): 3 model(s)" in err and "expected to take about" in err and "--quick" in err
    assert "resnet18: 6 paths (py-eager, py-eager+again, py-script, cpp-script, exe-script, cpp-eager)" in err
    steps = [line for line in err.splitlines() if line.startswith("[") and " in, " in line]
    assert (
        len(steps) > 20 and any("round 2: cpp-script" in s for s in steps) and any("training round" in s for s in steps)
    )


def test_report_re_renders_a_run_byte_for_byte_and_compare_reads_two(e2e, tmp_path):
    out, _ = e2e
    from typer.testing import CliRunner

    from resx.cli import app

    result = CliRunner().invoke(app, ["report", str(out / "results.json"), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "report.md").read_bytes() == (out / "report.md").read_bytes()
    assert (tmp_path / "resnet18-latency.png").exists() and (tmp_path / "results.csv").exists()
    same = CliRunner().invoke(app, ["compare", str(out / "results.json"), str(out / "results.json")])
    assert same.exit_code == 0 and "0 of " in same.stdout and "ratios changed beyond both intervals" in same.stdout
    # The config written beside the report measures the same again: --config of it plans the same run.
    again = bench_plan(
        **{k: v for k, v in __import__("tomllib").loads((out / "config.toml").read_text()).items() if k != "preset"}
    )
    assert again.config == read_json(out / "results.json").config


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runtime", "rust"], "unknown runtime"),
        (["--runtime", "py-eager@fp16"], "unknown dtype"),
        (["--model", "vgg"], "unknown model"),
        (["--batch-sizes", "0,x"], "--batch-sizes"),
        (["--preset", "seed"], "--data"),
        (["--rounds", "0"], "--max-rounds must be at least 1"),
        (["--thread-seconds", "nan"], "--thread-seconds"),
        (["--target", "0"], "--target"),
        (["--runtime", "cpp,cpp-script"], "twice"),
        (["--drift-calls", "5"], "--drift-calls must be 0 (off) or at least 20"),
        (["--count-steps", "-1"], "--count-steps must be 0 (none) or more"),
        (["--count-runtime", "rust"], "--count-runtime rust: not a measured path"),
        (["--count-kernels", "sse"], "--count-kernels 'sse': give avx or avx2"),
        (["--threads", "999"], "--threads 999: this machine has"),
        (["--preset", "fast"], "unknown preset 'fast'"),
        (["--serve", "server", "--serve-rates", "10,x"], "--serve-rates '10,x'"),
    ],
)
def test_bench_bad_inputs_are_one_line_at_once(tmp_path, args, message):
    """In-process (the CLI's own runner): refused before any GEMM is timed or worker started."""
    from typer.testing import CliRunner

    from resx.cli import app

    started = time.monotonic()
    result = CliRunner().invoke(app, ["bench", *args, "-o", str(tmp_path / "r")])
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert message in lines[0] and time.monotonic() - started < 10
    assert not (tmp_path / "r").exists()


def test_compile_cold_runs_torch_compile_with_inductors_caches_off(files):
    plan = bench_plan(paths={"runtimes": ["py-eager", "py-compile"], "compile_cold": True})
    (model,) = plan.models
    paths = {p.label: p for p in model.paths}
    assert list(paths) == ["py-eager", "py-eager+again", "py-compile", "py-compile+cold"]
    assert paths["py-compile+cold"].env == {"TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"} and not paths["py-compile"].env
    assert "py-compile+cold" not in {p.label for p in model.train_paths}  # a start-up figure: it does not train
    # The path's environment reaches its process (a cheap engine stands in for torch.compile here).
    with make_runner("py-script", files[0]["a"], EngineOptions(), "cold", paths["py-compile+cold"].env) as r:
        environ = Path(f"/proc/{r.pid}/environ").read_bytes().split(b"\0")
    assert b"TORCHINDUCTOR_FORCE_DISABLE_CACHES=1" in environ


# ------------------------------------------------------------------------ config, plan, results, protocol


def test_a_preset_switch_can_be_turned_off_and_a_config_file_overrides_the_preset(tmp_path):
    from resx.bench import config as C

    assert bench_config("language").map.enabled and not bench_config("language", map={"enabled": False}).map.enabled
    assert (
        bench_config("gpu").paths.cuda_graphs
        and not bench_config("gpu", paths={"cuda_graphs": False}).paths.cuda_graphs
    )
    file = tmp_path / "mine.toml"
    file.write_text(
        '[inference]\nlatency_calls = 7\nbatch_sizes = [1, 4]\n\n[paths]\nruntimes = ["py-eager", "cpp-eager"]\n'
    )
    cfg = C.configure("quick", file, {"inference": {"latency_calls": 9}})  # defaults < preset < file < flags
    assert cfg.inference.latency_calls == 9 and cfg.inference.batch_sizes == (1, 4) and cfg.rounds.budget == 120.0
    assert cfg.paths.runtimes == ("py-eager", "cpp-eager") and cfg.paths.named and cfg.training.runtimes == ()
    written = tmp_path / "config.toml"
    written.write_text(C.write(cfg))
    assert C.configure("custom", written) == cfg  # what a run writes beside its report measures it again
    bad = tmp_path / "bad.toml"
    for text, message in [
        ("[inference]\nlatency = 3\n", "unknown key 'inference.latency'"),
        ("[speed]\nx = 1\n", "unknown section 'speed'"),
        ("[inference]\nlatency_calls = 'many'\n", "inference.latency_calls: expected a whole number"),
        ("not toml [", "not a TOML config file"),
    ]:
        bad.write_text(text)
        with pytest.raises(BenchError, match=message):
            C.configure("custom", bad)


def test_the_plan_is_a_function_of_the_config():
    cfg = bench_config(paths={"runtimes": ["py-eager", "exe-aoti@bf16"]}, inference={"batch_sizes": [1, 8]})
    from resx.bench import plan as P

    a, b = (P.make(cfg, 2, 2) for _ in range(2))
    assert a == b and cfg == bench_config(
        paths={"runtimes": ["py-eager", "exe-aoti@bf16"]}, inference={"batch_sizes": [1, 8]}
    )
    (model,) = a.models
    assert [p.label for p in model.paths] == ["py-eager", "py-eager+again", "exe-aoti@bf16"]
    assert [s.key for s in model.scenarios] == ["latency", "throughput/b8", "concurrency/c1", "concurrency/c2"]
    assert [p.label for p in model.train_paths] == ["py-eager"] and model.threads == 2
    assert P.make(cfg.replace(paths={"threads": 1}), 2, 2).threads == 1
    e = P.estimate(a, {"resnet18": 0.56})
    assert 0 < e.expected_s <= e.at_most_s
    assert e.first_s == 2 * P.AOTI_S  # bf16's package with and without freezing, when the cache lacks them
    assert "plus up to 1.3 min compiling the packages and programs not cached yet" in report.plan_lines(a, e)[-1]


def test_batches_past_an_executorch_program_s_bound_skip_its_paths_or_refuse_them_when_named():
    from resx.bench import plan as P
    from resx.export.executorch import MAX_BATCH

    big = {"batch_sizes": [1, MAX_BATCH * 2]}
    (model,) = P.make(bench_config(inference=big), 2, 2).models
    assert not any("executorch" in p.label for p in model.paths) and model.paths[0].label == "py-eager"
    assert f"exported for batches up to {MAX_BATCH}" in model.skipped["py-executorch"]
    (model,) = P.make(bench_config(inference={"batch_sizes": [1, MAX_BATCH]}), 2, 2).models
    assert "py-executorch" in [p.label for p in model.paths]
    named = bench_config(paths={"runtimes": ["py-eager", "py-executorch"]}, inference=big)
    with pytest.raises(BenchError, match=rf"^py-executorch: .* up to {MAX_BATCH}, below --batch-sizes {MAX_BATCH * 2}"):
        P.make(named, 2, 2)


def test_results_round_trip_through_the_codec_and_a_reader_refuses_other_formats(tmp_path):
    from resx.bench.results import FORMAT, Results, write_json
    from resx.codec import decode, encode

    cfg = bench_config("quick")
    r = Results("now", cfg, {"python": {"x": "1"}}, threads=2, load=[0.1])
    r.models["m"] = __import__("resx.bench.results", fromlist=["ModelResults"]).ModelResults("m", {"fingerprint": "f"})
    r.models["m"].measurements.append(Measurement(LATENCY, "py-eager", [[1e-3, 2e-3]], [3]))
    assert decode(Results, json.loads(write_json(r))) == r and encode(r)["format"] == FORMAT
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"format": "resx-bench/2", "models": {}}))
    with pytest.raises(BenchError, match="results of format 'resx-bench/2'; this resx reads resx-bench/3"):
        read_json(old)
    old.write_text("{")
    with pytest.raises(BenchError, match="not a resx results file"):
        read_json(old)


def test_the_protocol_is_defined_alike_in_both_languages():
    from resx.bench import protocol as P

    assert json.loads(_cpp.protocol_schema()) == P.schema()
    assert P.command(P.ThreadsRun(1, 1.0, 0)) == "threads_run" and set(P.REQUESTS) >= {"identify", "time", "count"}


def test_a_ratio_shows_its_rounds_range_below_three_rounds_and_the_noise_floor_is_read():
    def ratio(values, base, path="x"):
        return Ratio.of(
            Measurement(LATENCY, path, [[v] for v in values]), Measurement(LATENCY, "b", [[v] for v in base])
        )

    two = ratio([0.9, 0.5], [1.0, 1.0])
    assert report.ci(two) == "0.671 (rounds 0.500–0.900; 2 rounds, too few for an interval)"  # the geometric mean
    assert report.ci(ratio([0.9, 0.8, 0.85], [1.0, 1.0, 1.0])).startswith("0.849 [")
    from resx.bench.results import ModelResults

    entry = ModelResults("m", {}, baseline="b")
    entry.measurements = [
        Measurement(LATENCY, "b", [[1.0], [1.0], [1.0]]),
        Measurement(LATENCY, "b+again", [[1.1], [0.9], [1.0]]),
        Measurement(LATENCY, "fast", [[0.5], [0.5], [0.52]]),
        Measurement(LATENCY, "close", [[0.97], [0.96], [0.98]]),
    ]
    entry.ratios = analysis.ratios(entry)
    rows = {s.path: s.beyond_noise for s in analysis.ship(entry)}
    assert rows == {"fast": True}
    close = entry.ratio(LATENCY, "close", "b")
    assert not analysis.beyond_noise(entry, close) and analysis.within_noise(entry, close)
    entry.measurements = [m for m in entry.measurements if m.path != "fast"]
    entry.ratios = analysis.ratios(entry)
    assert report.ship(entry)[0][1] == "none beyond the noise (fastest: close)"
