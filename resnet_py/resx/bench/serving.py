"""Serving under load, with MLPerf's LoadGen in every runtime's own process: the Python wheel for the py
runtimes (Python threads answer), LoadGen's C++ sources compiled into the C++ runtime for cpp and exe
(std::threads answer, resnet_cpp/serving.cpp), so that no Python sits in the executable's path.

This module owns the LoadGen side of resx in both languages:
  LoadgenRun   one test as asked (scenario, workers, offered rate, bound, duration, seeds), and the
               request every runtime receives (LoadGen's TestSettings by their own names)
  serve        the Python system under test (the mirror of resx::run_loadgen)
  read_log     LoadGen's detail log -> a ServeResult (the same reader for every runtime)
  ServePlan    what every path's serving rounds ask; peak_search, the Server curve and its peak rate
(resx.bench.measure.measure_serving runs them in each fresh process).
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from resx.errors import BenchError

# resx's names for LoadGen's scenarios (TestScenario).
SCENARIOS = {"singlestream": "SingleStream", "server": "Server", "offline": "Offline"}
SERVE_SAMPLES = 64  # the sample library: make_input(64, seed), held on the device for the whole test
# The offered rates of the Server curve, as multiples of the rate one caller reaches at batch 1 on the
# fastest path; the curve climbs them until p99 passes the bound, then bisects that step.
RATE_STEPS = tuple(2 ** (k / 2) for k in range(-6, 5))
# The default p99 bound, as a multiple of the baseline's batch-1 p50. Serving runs on the cores less one
# (ServePlan.threads), so a query takes up to twice that p50 before it queues; at 4x, one worker on 2
# cores sat at the bound from the lowest rate on (ResNet18, measured here).
BOUND_FACTOR = 8
# A Server step whose p99 passes the bound is repeated this many times before the climb stops there: on
# these machines one 2-second step in a round had a p99 4x the next rates' (a stall), and halved the peak.
CONFIRM = 1


@dataclass(frozen=True)
class LoadgenRun:
    """One LoadGen test, as every runtime runs it: the same settings and seeds for all (recorded)."""

    scenario: str  # singlestream, server or offline (SCENARIOS)
    workers: int  # threads that answer queries (Python threads or std::threads)
    duration_s: float  # LoadGen's min_duration (MLPerf's is 600 s; resx's is short and says so)
    min_queries: int
    bound_s: float  # Server: the p99 latency bound (LoadGen's target latency)
    rate: float = 0.0  # Server: the offered queries/s (Poisson arrivals)
    expected_s: float = 1e-3  # SingleStream: the expected latency; Offline: seconds per sample expected
    batch: int = 1  # samples per call (Offline)
    seed: int = 0  # the inputs', and LoadGen's schedule, sample and library seeds

    def settings(self) -> dict:
        """mlperf::TestSettings, by LoadGen's own names: what both languages set."""
        s = {
            "scenario": SCENARIOS[self.scenario],
            "mode": "PerformanceOnly",
            "min_duration_ms": max(1, round(self.duration_s * 1e3)),
            "min_query_count": self.min_queries,
            "qsl_rng_seed": self.seed,
            "sample_index_rng_seed": self.seed,
            "schedule_rng_seed": self.seed,
            "performance_sample_count_override": SERVE_SAMPLES,
        }
        if self.scenario == "server":
            s |= {"server_target_qps": self.rate, "server_target_latency_ns": round(self.bound_s * 1e9)}
        elif self.scenario == "singlestream":
            s |= {"single_stream_expected_latency_ns": round(self.expected_s * 1e9)}
        else:
            s |= {"offline_expected_qps": 1 / self.expected_s}
        return s

    def request(self, outdir: Path) -> dict:
        """What every runtime receives (resx::run_loadgen's request)."""
        return {
            "settings": self.settings(),
            "workers": self.workers,
            "batch": self.batch,
            "samples": SERVE_SAMPLES,
            "seed": self.seed,
            "outdir": str(outdir),
        }

    @property
    def key(self) -> str:
        rate = f"-q{self.rate:.4g}" if self.scenario == "server" else ""
        return f"{self.scenario}-w{self.workers}{rate}"


def serve(call: Callable[[torch.Tensor], object], samples: torch.Tensor, request: dict) -> dict:
    """One LoadGen test in this Python process: `workers` Python threads take the queries in arrival order
    and call `call` (the engine's forward and a device sync), as resx::run_loadgen does in C++."""
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    for key, value in request["settings"].items():
        enum = {"scenario": lg.TestScenario, "mode": lg.TestMode}.get(key)
        setattr(settings, key, getattr(enum, value) if enum else value)  # an unknown key: AttributeError
    log = lg.LogSettings()
    log.log_output.outdir = request["outdir"]
    log.enable_trace = False
    batch, work = int(request["batch"]), queue.SimpleQueue()

    def issue(query) -> None:
        for i in range(0, len(query), batch):
            work.put(query[i : i + batch])

    def answer() -> None:
        with torch.inference_mode():
            while (call_samples := work.get()) is not None:
                if len(call_samples) == 1:
                    x = samples.narrow(0, call_samples[0].index, 1)
                else:
                    x = samples.index_select(0, torch.tensor([s.index for s in call_samples], device=samples.device))
                call(x)
                lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in call_samples])

    pool = [threading.Thread(target=answer, daemon=True) for _ in range(int(request["workers"]))]
    for t in pool:
        t.start()
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(len(samples), len(samples), lambda _: None, lambda _: None)
    began = time.perf_counter()
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log)
    finally:
        took = time.perf_counter() - began
        for _ in pool:
            work.put(None)
        for t in pool:
            t.join()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    return {"seconds": took, "sut": "resx-py"}


@dataclass
class ServeResult:
    """What LoadGen concluded of one test, read from its detail log (the same file in both languages)."""

    run: LoadgenRun
    valid: bool  # LoadGen's verdict (every constraint: duration, queries, early stopping, the bound)
    within_bound: bool  # its p99 within the bound (Server's performance constraint; True elsewhere)
    p50_s: float
    p90_s: float
    p99_s: float
    completed_per_s: float  # samples completed per second
    scheduled_per_s: float  # samples LoadGen scheduled per second (Server: the offered rate it reached)
    queries: int
    seconds: float  # the test's wall time, from inside the runtime
    why: str  # what LoadGen said failed, or ""
    settings: dict = field(default_factory=dict)  # LoadGen's effective_* settings, as it logged them
    loadgen: str = ""  # its version
    summary: str = ""  # mlperf_log_summary.txt, kept for the report's files
    round: int = 0  # the serving round that ran it


def read_log(outdir: Path, run: LoadgenRun, seconds: float) -> ServeResult:
    """LoadGen's detail log (`:::MLLOG {json}` lines) and summary in outdir -> a ServeResult."""
    detail = Path(outdir) / "mlperf_log_detail.txt"
    if not detail.exists():
        raise BenchError(f"LoadGen wrote no {detail.name} in {outdir}: the test did not run")
    keys: dict = {}
    errors = []
    for line in detail.read_text().splitlines():
        if line.startswith(":::MLLOG "):
            entry = json.loads(line[len(":::MLLOG ") :])
            keys[entry["key"]] = entry["value"]
            if entry.get("metadata", {}).get("is_error"):
                errors.append(str(entry["value"]))
    if "result_validity" not in keys:
        raise BenchError(f"LoadGen's log in {outdir} has no result: {errors[0] if errors else 'the test stopped'}")
    ns = 1e-9
    within = bool(keys.get("result_perf_constraints_met", True))
    why = [
        name
        for name, met in (
            ("p99 above the bound", within),
            ("min duration", keys.get("result_min_duration_met", True)),
            ("min queries", keys.get("result_min_queries_met", True)),
            ("early stopping: too few queries to claim the percentile", keys.get("early_stopping_met", True)),
        )
        if not met
    ]
    summary = Path(outdir) / "mlperf_log_summary.txt"
    return ServeResult(
        run,
        keys["result_validity"] == "VALID",
        within,
        keys["result_50.00_percentile_latency_ns"] * ns,
        keys["result_90.00_percentile_latency_ns"] * ns,
        keys["result_99.00_percentile_latency_ns"] * ns,
        float(keys.get("result_completed_samples_per_sec", keys.get("result_samples_per_second", 0.0))),
        float(keys.get("result_scheduled_samples_per_sec", 0.0)),
        int(keys.get("result_query_count", 0)),
        seconds,
        "; ".join(why),
        {k.removeprefix("effective_"): v for k, v in keys.items() if k.startswith("effective_")},
        str(keys.get("loadgen_version", "")),
        summary.read_text() if summary.exists() else "",
    )


@dataclass(frozen=True)
class ServePlan:
    """What the serving rounds ask of every path: the same for all (resx.bench.config derives it)."""

    scenarios: tuple[str, ...]  # of SCENARIOS
    workers: tuple[int, ...]
    rates: tuple[float, ...]  # the Server curve's offered rates, ascending
    bound_s: float
    duration_s: float
    min_queries: int
    expected_s: float  # LoadGen's SingleStream expectation: under the fastest path's batch-1 latency
    offline_batch: int
    # LoadGen's Offline expectation: the fastest path's measured seconds per image at offline_batch. LoadGen
    # issues 1.1x expected-rate x duration samples at once, so a rate set too high makes the test that
    # much longer (a first form, at 1/2 of batch-1 latency per batch, ran 30-60x the duration).
    offline_sample_s: float
    refine: int  # bisection steps between the last rate within the bound and the first above it
    cores: int  # the intra-op threads of the other scenarios, shared out by threads()
    seed: int = 0

    def threads(self, workers: int) -> int:
        """Intra-op threads per worker: the cores less one, shared out. LoadGen's issuing thread keeps a
        core busy, and intra-op threads that wait on each other in a barrier stall behind it (measured
        here: batch-1 calls 9x slower in SingleStream with both cores as intra-op threads)."""
        return max(1, (self.cores - 1) // workers)

    def run(self, scenario: str, workers: int = 1, rate: float = 0.0) -> LoadgenRun:
        expected = self.offline_sample_s if scenario == "offline" else self.expected_s
        return LoadgenRun(
            scenario,
            workers,
            self.duration_s,
            self.min_queries,
            self.bound_s,
            rate,
            expected,
            self.offline_batch if scenario == "offline" else 1,
            self.seed,
        )


def peak_search(serve_at: Callable[[float], ServeResult], rates: tuple[float, ...], refine: int) -> list[ServeResult]:
    """The Server curve: the offered rates in ascending order until p99 passes the bound, then `refine`
    bisections (geometric) between the last rate within it and the first above. A step whose p99 passes
    the bound is run once more and counts as above it only if the repeat is too (CONFIRM): one outlying
    2-second step cannot end the climb. Every run is returned; the peak is the highest rate within the
    bound in any run (peak_rate)."""
    runs: list[ServeResult] = []

    def within(rate: float) -> bool:
        for _ in range(1 + CONFIRM):
            r = serve_at(rate)
            runs.append(r)
            if r.within_bound:
                return True
        return False

    low, high = None, None
    for rate in rates:
        if not within(rate):
            high = rate
            break
        low = rate
    for _ in range(refine if low is not None and high is not None else 0):
        mid = math.sqrt(low * high)
        low, high = (mid, high) if within(mid) else (low, mid)
    return runs


def peak_rate(runs: list[ServeResult]) -> float:
    """The highest offered rate whose p99 stayed within the bound (0: none did)."""
    return max((r.run.rate for r in runs if r.within_bound), default=0.0)
