"""The rounds of `resx bench`. A round starts every path still being measured in a fresh process of its
own, in rotating order (A B C D, then B C D A, ...: drift on the machine hits all alike), measures every
scenario there (batch-1 latency, throughput, concurrent callers) and stops the process, so that one
runtime's process is alive at a time and what differs between processes (memory layout, allocator and
thread-pool state) enters the interval. After the fewest rounds, a path stops once each of its ratios to
the baseline has a 95% interval within +-target; the run stops when none is left, at the most rounds, or
when the next round would overrun the budget. Serving rounds (LoadGen) follow, a fixed number."""

from __future__ import annotations

import math
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from resx import stats
from resx.bench.config import BenchConfig
from resx.bench.gate import Gate
from resx.bench.monitor import OtherLoad, mapped_libraries, peak_rss_bytes, rss_bytes
from resx.bench.plan import DRIFT_SAMPLES, BenchPath, ModelPlan
from resx.bench.prepare import Prepared
from resx.bench.registry import BASELINE
from resx.bench.results import LATENCY, Drift, Footprint, Measurement, OpProfile, Package, Ratio, Scenario, Stopping
from resx.bench.runners import Runner
from resx.bench.serving import (
    BOUND_FACTOR,
    RATE_STEPS,
    LoadgenRun,
    ServePlan,
    ServeResult,
    peak_rate,
    peak_search,
    read_log,
)

Notify = Callable[[str], None]
NS = 1e-9


def rotations(items: list, rnd: int) -> list:
    k = rnd % len(items) if items else 0
    return items[k:] + items[:k]


@dataclass
class Rounds:
    """The state of an adaptive series of rounds over paths, for one set of scenarios."""

    paths: list[str]
    budget: float
    min_rounds: int
    max_rounds: int
    target: float
    baseline: str = BASELINE
    measurements: dict[tuple[Scenario, str], Measurement] = field(default_factory=dict)
    active: list[str] = field(default_factory=list)
    stopping: dict[str, Stopping] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)  # other processes' busy cores, per round
    last_seconds: dict[str, float] = field(default_factory=dict)  # each path's last round
    footprints: dict[str, Footprint] = field(default_factory=dict)  # each path's model file and libraries
    drift: dict[str, Drift] = field(default_factory=dict)  # each path's resident memory over a long run
    serving: dict[str, list[ServeResult]] = field(default_factory=dict)  # each path's LoadGen tests
    profiles: dict[str, OpProfile] = field(default_factory=dict)  # each path's operators
    done: int = 0  # rounds completed

    def __post_init__(self) -> None:
        self.active = list(self.paths)
        self.baseline = self.baseline if self.baseline in self.paths else (self.paths[0] if self.paths else "")
        self._start = time.monotonic()

    @classmethod
    def of(cls, cfg: BenchConfig, paths: list[str], budget: float, baseline: str = BASELINE) -> Rounds:
        low, high = cfg.rounds.span
        return cls(paths, budget, low, high, cfg.rounds.target, baseline)

    def add(self, scenario: Scenario, path: str, values: list[float], warmup: int | None = None) -> None:
        m = self.measurements.setdefault((scenario, path), Measurement(scenario, path))
        m.rounds.append(values)
        if warmup is not None:
            m.warmup_calls.append(warmup)

    def ratios(self, path: str) -> list[Ratio]:
        """The path's per-call ratios, which the rounds adapt to (start-up and memory are reported beside)."""
        out = []
        for (scenario, p), m in self.measurements.items():
            base = self.measurements.get((scenario, self.baseline))
            if p == path and base is not None and path != self.baseline and scenario.steady:
                out.append(Ratio.of(m, base))
        return out

    def order(self) -> list[str]:
        return rotations(self.active, self.done)

    def close_round(self, load: float | None) -> bool:
        """After a round: retire the paths whose intervals are within the target; True to go on."""
        self.done += 1
        if load is not None:
            self.loads.append(load)
        others = [p for p in self.active if p != self.baseline]
        if self.done >= self.min_rounds:
            for p in others:
                ratios = self.ratios(p)
                if ratios and all(r.within(self.target) for r in ratios):
                    self._retire(p, f"every interval within ±{self.target:.0%}")
        others = [p for p in self.active if p != self.baseline]
        elapsed = time.monotonic() - self._start
        upcoming = sum(self.last_seconds.get(p, 0.0) for p in self.active)
        reason = None
        if self.done >= self.min_rounds and not others:
            reason = "every other path's intervals were within the target"
        elif self.done >= self.max_rounds:
            reason = f"max rounds ({self.max_rounds})"
        elif self.done >= self.min_rounds and elapsed + upcoming > self.budget:
            reason = f"budget ({self.budget:.0f} s) spent"
        if reason is None:
            return True
        for p in list(self.active):
            self._retire(p, reason)
        return False

    def _retire(self, path: str, reason: str) -> None:
        self.active.remove(path)
        widths = {r.scenario.key: r.half_width for r in self.ratios(path)}
        self.stopping[path] = Stopping(self.done, reason, widths, all(w <= self.target for w in widths.values()))


# ------------------------------------------------------------------------------ in one fresh process


def measure_startup(runner: Runner, seed: int, rounds: Rounds, label: str) -> None:
    """What a fresh process took before it answered, and its memory once loaded: spawn to ready (of which
    the model's load), then the first batch-1 call, before any warm-up. A runtime without a process of
    its own has nothing to report."""
    if runner.pid is None or runner.startup is None:
        return
    ready, load = runner.startup
    rounds.add(Scenario("startup", phase="ready"), label, [ready])
    rounds.add(Scenario("startup", phase="load"), label, [load])
    rounds.add(Scenario("memory", batch=0), label, [float(rss_bytes(runner.pid))])
    rounds.add(Scenario("startup", phase="first"), label, [runner.time(1, seed, 1)[0] * NS])
    if label not in rounds.footprints:
        libraries = mapped_libraries(runner.pid)
        rounds.footprints[label] = Footprint(runner.model_file.stat().st_size, len(libraries), sum(libraries.values()))


def measure_drift(runner: Runner, calls: int, seed: int, rounds: Rounds, label: str) -> None:
    """Once per path: `calls` batch-1 calls in this process, its resident memory sampled between chunks
    (resx.stats.drift fits the growth)."""
    if not calls or runner.pid is None or label in rounds.drift:
        return
    chunk = -(-calls // DRIFT_SAMPLES)
    done_at, values, done = [0], [rss_bytes(runner.pid)], 0
    while done < calls:
        n = min(chunk, calls - done)
        runner.time(1, seed, n)
        done += n
        done_at.append(done)
        values.append(rss_bytes(runner.pid))
    fit = stats.drift(done_at, values)
    rounds.drift[label] = Drift(**fit, samples=list(zip(done_at, values, strict=True)))


def measure_profile(runner: Runner, calls: int, seed: int, rounds: Rounds, label: str) -> None:
    """Once per path, warm, at the run's threads: the operators of `calls` batch-1 calls, recorded inside
    the runtime (torch.profiler in Python, a RecordFunction callback in C++)."""
    if not calls or label in rounds.profiles:
        return
    p = runner.profile(1, seed, calls)
    rounds.profiles[label] = OpProfile.of(p.calls, p.wall_ns, p.ops)


def _peak(runner: Runner, rounds: Rounds, label: str, batch: int) -> None:
    """The resident peak after the batch-B scenario, and on CUDA the caching allocator's peaks."""
    if runner.pid is not None:
        rounds.add(Scenario("memory", batch=batch), label, [float(peak_rss_bytes(runner.pid))])
    if runner.device.startswith("cuda"):
        held = runner.device_memory()
        rounds.add(Scenario("cuda_allocated", batch=batch), label, [float(held.peak_allocated_bytes)])
        rounds.add(Scenario("cuda_reserved", batch=batch), label, [float(held.peak_reserved_bytes)])


def measure_in_process(runner: Runner, model: ModelPlan, rounds: Rounds, label: str) -> None:
    """Every inference scenario in one fresh process (concurrency last: it sets one intra-op thread), and
    the process's resident peak after each batch size."""
    cfg = model.config
    i, seed, rule = cfg.inference, cfg.model.seed, cfg.inference.warmup
    for s in model.scenarios:
        if s.kind == "latency":
            warm = runner.warm_up(1, seed, rule.for_batch(1))
            rounds.add(s, label, [t * NS for t in runner.time(1, seed, i.latency_calls)], warm)
            _peak(runner, rounds, label, 1)
        elif s.kind == "throughput":
            warm = runner.warm_up(s.batch, seed, rule.for_batch(s.batch))
            calls = max(1, round(i.throughput_calls * max(1.0, 32 / s.batch)))  # small batches are cheap
            rounds.add(s, label, [t * NS for t in runner.time(s.batch, seed, calls)], warm)
            _peak(runner, rounds, label, s.batch)
    concurrency = [s for s in model.scenarios if s.kind == "concurrency"]
    if concurrency:
        runner.set_threads(1)  # one intra-op thread per caller: the GIL question
        warm = runner.warm_up(1, seed, rule.for_batch(1))
        for s in concurrency:
            calls, wall = runner.threads_run(s.callers, i.thread_seconds, seed)
            rounds.add(s, label, [calls / (wall * NS)], warm)
        runner.set_threads(model.threads)


Make = Callable[[BenchPath], Runner]


def inference_rounds(model: ModelPlan, make: Make, notify: Notify, gate: Gate) -> Rounds:
    """Adaptive rounds of every path. Each path's first process reports its identity before it times
    anything, and the gate admits it (or refuses the run) there."""
    cfg = model.config
    scenarios = model.scenarios
    rounds = Rounds.of(cfg, [p.label for p in model.paths], cfg.rounds.budget, model.baseline)
    by_label = {p.label: p for p in model.paths}
    while True:
        meter = OtherLoad()
        meter.start()
        for label in rounds.order():
            notify(f"round {rounds.done + 1}: {label} (fresh process)" if scenarios else f"starting {label}")
            started = time.monotonic()
            with make(by_label[label]) as runner:
                runner.set_threads(model.threads)
                if scenarios:
                    # Before any other call, so the first call is the process's first; a gate that then
                    # refuses this path stops the run, and no figure of it is kept.
                    measure_startup(runner, cfg.model.seed, rounds, label)
                if not gate.admitted(label):
                    gate.admit(label, runner.identity(cfg.model.seed))
                measure_in_process(runner, model, rounds, label)
                if scenarios:
                    measure_drift(runner, cfg.inference.drift_calls, cfg.model.seed, rounds, label)
                    if by_label[label].engine != "executorch":  # its kernels are not ATen's: no operators to list
                        measure_profile(runner, model.profile_calls, cfg.model.seed, rounds, label)
            rounds.last_seconds[label] = time.monotonic() - started
        if not scenarios:  # the gate alone
            rounds.active.clear()
            return rounds
        if not rounds.close_round(meter.stop()):
            return rounds


def choose_packages(model: ModelPlan, prepared: Prepared, make: Make, notify: Notify) -> dict[str, Package]:
    """The AOTInductor package each dtype's paths run: with --aoti-freezing auto, the frozen and the
    unfrozen one each timed at batch 1 in a fresh exe-aoti process, the faster kept. Freezing prepacks the
    weights for oneDNN, which pays on wide layers, but each prepacked convolution has a fixed cost per
    call that dominates narrow ones (ResNet18 at width 4, 1 thread: 650 us a call frozen, 373 us not)."""
    out = {}
    cfg = model.config
    for dtype, tried in prepared.candidates.items():
        batch1 = {}
        if len(tried) > 1:
            notify(f"AOTInductor package for {model.label} {dtype}: with or without freezing, timed at batch 1")
            label = "exe-aoti" + ("" if dtype == "fp32" else f"@{dtype}")
            for freezing, candidate in tried.items():
                prepared.files[("aoti", dtype)] = candidate.path
                with make(BenchPath(label, "exe-aoti", dtype)) as runner:
                    runner.set_threads(model.threads)
                    runner.warm_up(1, cfg.model.seed, cfg.inference.warmup.for_batch(1))
                    batch1[freezing] = float(np.median(runner.time(1, cfg.model.seed, 30))) * NS
        freezing = min(batch1, key=batch1.get) if batch1 else next(iter(tried))
        chosen = tried[freezing]
        prepared.files[("aoti", dtype)] = chosen.path
        m = chosen.manifest
        out[dtype] = Package(
            str(chosen.path), chosen.cached, m["compile_seconds"], m["compile"], freezing == "on", batch1
        )
    return out


# ------------------------------------------------------------------------------------------- serving


def serve_plan(model: ModelPlan, rounds: Rounds) -> ServePlan:
    """What every path's serving rounds ask, the same for all, from what the inference rounds measured:
    the Server curve's rates as steps around the fastest path's batch-1 rate (or --serve-rates), the p99
    bound as BOUND_FACTOR x the baseline's batch-1 p50 (or --serve-bound-ms), Offline at the largest batch
    size and the fastest path's measured rate there."""
    s, cfg = model.config.serving, model.config
    latency = {p: m.value for (sc, p), m in rounds.measurements.items() if sc == LATENCY}
    given_bound = s.bound_ms * 1e-3 if s.bound_ms else None
    fastest = min(latency.values(), default=given_bound / BOUND_FACTOR if given_bound else 1e-3)
    bound = given_bound or BOUND_FACTOR * latency.get(rounds.baseline, fastest)
    rates = sorted(s.rates) or [float(f"{k / fastest:.3g}") for k in RATE_STEPS]
    batch = max(cfg.inference.batch_sizes)
    at = Scenario("throughput", batch=batch)
    per_image = [m.value / batch for (sc, _), m in rounds.measurements.items() if sc == at]
    return ServePlan(
        tuple(s.scenarios),
        tuple(s.workers),
        tuple(rates),
        bound,
        s.seconds,
        s.min_queries,
        fastest / 2,  # under the truth: LoadGen then generates enough queries to fill the duration
        batch,
        min(per_image, default=fastest),
        s.refine,
        model.threads,
        cfg.model.seed,
    )


def measure_serving(runner: Runner, model: ModelPlan, plan: ServePlan, rounds: Rounds, label: str, logs: pathlib.Path):
    """LoadGen's scenarios in one fresh process, warmed up first: SingleStream (one query at a time), then
    per worker count (intra-op threads shared out among them, ServePlan.threads) the Server curve and its
    peak rate within the bound, and Offline."""
    results: list[ServeResult] = []
    seed, rule = model.config.model.seed, model.config.inference.warmup

    def serve(run: LoadgenRun) -> ServeResult:
        tries = sum(r.run == run for r in results)
        name = f"round{rounds.done + 1}-{run.key}" + (f"-try{tries + 1}" if tries else "")
        out = logs / label.replace("@", "_") / name
        out.mkdir(parents=True, exist_ok=True)
        r = read_log(out, run, runner.loadgen(run.request(out)).seconds)
        r.round = rounds.done + 1
        results.append(r)
        return r

    if "singlestream" in plan.scenarios:
        runner.set_threads(plan.threads(1))
        runner.warm_up(1, seed, rule.for_batch(1))
        rounds.add(Scenario("singlestream"), label, [serve(plan.run("singlestream")).p90_s])
    for workers in plan.workers:
        runner.set_threads(plan.threads(workers))
        runner.warm_up(1, seed, rule.for_batch(1))
        if "server" in plan.scenarios:
            curve = peak_search(lambda rate, w=workers: serve(plan.run("server", w, rate)), plan.rates, plan.refine)
            rounds.add(Scenario("server", callers=workers), label, [peak_rate(curve)])
        if "offline" in plan.scenarios:
            runner.warm_up(plan.offline_batch, seed, rule.for_batch(plan.offline_batch))
            done = serve(plan.run("offline", workers))
            rounds.add(Scenario("offline", batch=plan.offline_batch, callers=workers), label, [done.completed_per_s])
    runner.set_threads(model.threads)
    rounds.serving.setdefault(label, []).extend(results)


def serving_rounds(model: ModelPlan, make: Make, plan: ServePlan, logs: pathlib.Path, notify: Notify) -> Rounds:
    """The serving rounds: LoadGen's scenarios, every path in a fresh process per round, in rotating order,
    as the inference rounds do (a fixed count: LoadGen's runs are long)."""
    count = model.config.serving.rounds
    rounds = Rounds([p.label for p in model.paths], math.inf, count, count, model.config.rounds.target, model.baseline)
    by_label = {p.label: p for p in model.paths}
    for _ in range(count):
        meter = OtherLoad()
        meter.start()
        for label in rounds.order():
            notify(f"serving round {rounds.done + 1}/{count}: {label} under LoadGen (fresh process)")
            with make(by_label[label]) as runner:
                measure_serving(runner, model, plan, rounds, label, logs)
        load = meter.stop()
        rounds.done += 1
        if load is not None:
            rounds.loads.append(load)
    rounds.active.clear()
    return rounds
