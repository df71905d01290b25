"""Serving under load with MLPerf's LoadGen (resx.bench.serving): LoadGen runs in both languages with the
same settings and seeds, latency counts queueing, the peak search, the options. Tiny models, short tests;
no timing assertions beyond what a stall must show."""

import json
import os
import re
import time

import pytest
import torch
from conftest import bench_plan

from resx import _cpp
from resx.bench import serving as S
from resx.bench.results import Scenario, read_json
from resx.bench.runners import make_local_runner, make_runner
from resx.engines import EngineOptions
from resx.errors import BenchError, ResxError
from resx.export import export
from resx.models import ModelConfig

RUNS = [
    S.LoadgenRun("singlestream", 1, 0.2, 8, 0.05, expected_s=2e-4),
    S.LoadgenRun("server", 2, 0.2, 8, 0.05, rate=100.0),
    S.LoadgenRun("offline", 2, 0.2, 8, 0.05, expected_s=1e-4, batch=4),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("serving") / "tiny.pt"
    export(ModelConfig("resnet18", width=4), path)
    return path


def served(runner, run, out):
    out.mkdir(parents=True)
    return S.read_log(out, run, runner.loadgen(run.request(out)).seconds)


def test_the_build_has_loadgen():
    assert _cpp.loadgen_available()  # make unpacks LoadGen's sources; without them this build lacks serving


def test_loadgen_runs_in_every_language_with_the_same_settings(tiny, tmp_path):
    """py (the wheel, Python threads), cpp (the sources in the extension, std::threads, GIL released) and exe
    (the sources in resx-cpp): every scenario, and LoadGen logs the same effective settings for each."""
    runners = {
        "py-eager": make_local_runner("py-eager", tiny, EngineOptions()),
        "cpp-script": make_local_runner("cpp-script", tiny, EngineOptions()),
        "exe-script": make_runner("exe-script", tiny, EngineOptions()),
    }
    got = {}
    for name, runner in runners.items():
        with runner:
            runner.set_threads(1)
            for run in RUNS:
                got[name, run.scenario] = served(runner, run, tmp_path / name / run.key)
            assert runner.device_memory().peak_reserved_bytes == 0  # no CUDA allocator on the CPU, in any language
    for run in RUNS:
        results = [got[name, run.scenario] for name in runners]
        assert all(r.queries >= 1 and r.p50_s > 0 and r.p99_s >= r.p50_s for r in results)
        assert len({json.dumps(r.settings, sort_keys=True) for r in results}) == 1, [r.settings for r in results]
        assert len({r.loadgen for r in results}) == 1 and results[0].loadgen.startswith("6.")
        assert all(r.summary.startswith("=") and "Result is" in r.summary for r in results)
    server = got["exe-script", "server"].settings
    assert server["target_qps"] == 100 and server["schedule_rng_seed"] == 0 and server["scenario"] == "Server"
    assert got["cpp-script", "offline"].completed_per_s > 0


def test_an_unknown_setting_is_refused_in_both_languages(tiny, tmp_path):
    request = RUNS[0].request(tmp_path) | {"settings": RUNS[0].settings() | {"server_speed": 1}}
    runner = make_local_runner("cpp-script", tiny, EngineOptions())
    with runner, pytest.raises(ResxError, match="LoadGen setting 'server_speed' is unknown"):
        runner.loadgen(request)
    with pytest.raises(AttributeError):
        S.serve(lambda x: None, torch.zeros(4, 3, 8, 8), request)


def test_latency_counts_queueing_a_stalled_worker_shows_in_p99(tmp_path):
    """One worker, 200 queries/s; one call stalls 100 ms. LoadGen times from each query's scheduled
    arrival, so the queries queued behind the stall are late too: p99 holds the stall, p50 does not."""
    calls = []

    def call(x):
        calls.append(time.perf_counter())
        time.sleep(0.1 if len(calls) == 20 else 0.0005)

    run = S.LoadgenRun("server", 1, 0.5, 50, 0.05, rate=200.0)
    seconds = S.serve(call, torch.zeros(8, 3, 4, 4), run.request(tmp_path))["seconds"]
    r = S.read_log(tmp_path, run, seconds)
    assert r.p99_s >= 0.08 and r.p50_s < 0.05 and not r.within_bound and "p99 above the bound" in r.why
    assert r.queries == len(calls)


def test_peak_search_climbs_then_bisects_confirming_every_step_above_the_bound():
    """Synthetic: p99 exceeds the bound above 300 queries/s. A step above the bound is run again before the
    climb stops there (resx.bench.serving.CONFIRM)."""
    asked = []

    def serve_at(rate, stalls=()):
        asked.append(rate)
        run = S.LoadgenRun("server", 1, 1.0, 1, 0.01, rate=rate)
        stalled = rate in stalls and asked.count(rate) == 1  # this step's first run stalled, once
        p99 = 0.005 if rate <= 300 and not stalled else 0.02
        return S.ServeResult(run, True, p99 <= 0.01, 0.001, 0.002, p99, rate, rate, 10, 1.0, "")

    runs = S.peak_search(serve_at, (100, 200, 400, 800), refine=3)
    assert asked[:4] == [100, 200, 400, 400] and 800 not in asked  # the curve stops at the first rate above, twice
    assert all(asked.count(r.run.rate) == 1 + S.CONFIRM for r in runs if not r.within_bound)
    assert 200 < S.peak_rate(runs) <= 300 < min(r for r in asked if r > 300)
    assert S.peak_rate(S.peak_search(serve_at, (400, 800), refine=2)) == 0.0  # none within: no bisection
    asked.clear()  # one stalled 2-second step at 200/s: confirmed within the bound, and the climb goes on
    stalled = S.peak_search(lambda rate: serve_at(rate, stalls=(200,)), (100, 200, 400, 800), refine=3)
    assert asked[:4] == [100, 200, 200, 400] and S.peak_rate(stalled) == S.peak_rate(runs)
    plan = S.ServePlan(("server",), (1, 2), (1.0,), 0.01, 1.0, 1, 1e-3, 8, 1e-4, 0, cores=16)
    assert (plan.threads(1), plan.threads(2), plan.threads(16)) == (15, 7, 1)  # LoadGen keeps a core


def test_a_missing_log_is_one_line(tmp_path):
    with pytest.raises(BenchError, match=re.escape("LoadGen wrote no mlperf_log_detail.txt")):
        S.read_log(tmp_path, RUNS[0], 0.0)


SERVE = {"scenarios": ["server"]}


@pytest.mark.parametrize(
    "sections, message",
    [
        (dict(serving={"scenarios": ["server", "batch"]}), "--serve 'server,batch': give none or a comma list"),
        (dict(serving=SERVE | {"rates": [10.0, 0.0]}), "--serve-rates: every offered rate must be a positive"),
        (dict(serving=SERVE | {"bound_ms": 0.0}), "--serve-bound-ms must be a positive number"),
        (dict(serving=SERVE | {"bound_ms": -3.0}), "--serve-bound-ms must be a positive number"),
        (dict(serving=SERVE | {"workers": [(os.cpu_count() or 1) + 1]}), "cores; give"),
        (dict(serving=SERVE | {"seconds": 0.0}), "--serve-seconds must be a positive number"),
        (dict(serving=SERVE | {"rounds": 0}), "--serve-rounds must be at least 1"),
        (dict(serving=SERVE, inference={"enabled": False}), "give --serve-rates and --serve-bound-ms"),
    ],
)
def test_bad_serving_options_are_refused(sections, message):
    with pytest.raises(BenchError, match=re.escape(message)):
        bench_plan(**sections)


def test_more_workers_than_cores_run_only_when_forced():
    many = (os.cpu_count() or 1) + 1
    (model,) = bench_plan(serving=SERVE | {"workers": [many]}, rounds={"force": True}).models
    assert model.engine_options(model.paths[0], (3, 32, 32)).runners == many  # AOTInductor: one per worker


def test_bench_serve_writes_the_section_and_loadgen_summaries(map_run):
    out = map_run
    entry = read_json(out / "results.json").models["resnet18"]
    keys = {s.key for s in entry.scenarios(steady=False) if s.serving}
    assert keys == {"singlestream", "server/w1", "offline/w1/b4"}
    assert entry.serve_plan.rates == (50, 100, 200, 400) and entry.serve_plan.bound_s > 0
    at4 = Scenario("throughput", batch=4)  # Offline expects the fastest rate measured at its batch
    assert entry.serve_plan.offline_sample_s == min(entry.measurement(at4, p).value / 4 for p in entry.paths(at4))
    for path in ("py-eager", "py-eager+again", "exe-script"):
        tests = entry.serving[path]
        assert {t.round for t in tests} == {1, 2} and {t.run.scenario for t in tests} == set(S.SCENARIOS)
        for t in tests:
            summaries = (out / "loadgen" / "resnet18" / path).glob(f"round{t.round}-{t.run.key}*.txt")
            assert t.summary in {s.read_text() for s in summaries} and "MLPerf Results Summary" in t.summary
        assert len(entry.measurement(Scenario("server", callers=1), path).rounds) == 2
    md = (out / "report.md").read_text()
    assert "### Serving under load: MLPerf LoadGen" in md and "The Server curve" in md and "VALID" in md
    assert "LoadGen Server: peak rate within the p99 bound, 1 worker" in md and "more time(s) and ended the climb" in md
    assert (out / "resnet18-server.png").stat().st_size > 1000
