"""The rounds of `resx bench`. A round starts every path still being measured in a fresh process of its
own, in rotating order (A B C D, then B C D A, ...: drift on the machine hits all alike), measures
every scenario there (batch-1 latency, throughput, concurrent callers) and stops the process, so that
one runtime's process is alive at a time and what differs between processes (memory layout, allocator
and thread-pool state) enters the interval. After `min_rounds`, a path stops once each of its ratios
to the baseline has a 95% interval within +-target; the run stops when none is left, at `max_rounds`,
or when the next round would overrun the budget."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from resx import stats
from resx.bench.config import DRIFT_SAMPLES, BenchConfig, Path
from resx.bench.language import OpProfile
from resx.bench.monitor import OtherLoad, mapped_libraries, peak_rss_bytes, rss_bytes
from resx.bench.registry import BASELINE
from resx.bench.results import LATENCY, Measurement, Ratio, Scenario
from resx.bench.runners import Identity, Runner
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

    cfg: BenchConfig
    paths: list[str]
    budget: float
    baseline: str = BASELINE
    measurements: dict[tuple[Scenario, str], Measurement] = field(default_factory=dict)
    active: list[str] = field(default_factory=list)
    stopping: dict[str, dict] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)  # other processes' busy cores, per round
    last_seconds: dict[str, float] = field(default_factory=dict)  # each path's last round
    identities: dict[str, Identity] = field(default_factory=dict)  # what each path's first process reported
    footprints: dict[str, dict] = field(default_factory=dict)  # each path's model file and mapped libraries
    drift: dict[str, dict] = field(default_factory=dict)  # each path's resident memory over a long run
    serving: dict[str, list[dict]] = field(default_factory=dict)  # each path's LoadGen tests (ServeResult)
    profiles: dict[str, dict] = field(default_factory=dict)  # each path's operators (language.OpProfile)
    done: int = 0  # rounds completed

    def __post_init__(self) -> None:
        self.active = list(self.paths)
        self.baseline = self.baseline if self.baseline in self.paths else (self.paths[0] if self.paths else "")
        self._start = time.monotonic()

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
        cfg, others = self.cfg, [p for p in self.active if p != self.baseline]
        if self.done >= cfg.min_rounds:
            for p in others:
                ratios = self.ratios(p)
                if ratios and all(r.within(cfg.target) for r in ratios):
                    self._retire(p, f"every interval within ±{cfg.target:.0%}")
        others = [p for p in self.active if p != self.baseline]
        elapsed = time.monotonic() - self._start
        upcoming = sum(self.last_seconds.get(p, 0.0) for p in self.active)
        reason = None
        if self.done >= cfg.min_rounds and not others:
            reason = "every other path's intervals were within the target"
        elif self.done >= cfg.max_rounds:
            reason = f"max rounds ({cfg.max_rounds})"
        elif self.done >= cfg.min_rounds and elapsed + upcoming > self.budget:
            reason = f"budget ({self.budget:.0f} s) spent"
        if reason is None:
            return True
        for p in list(self.active):
            self._retire(p, reason)
        return False

    def _retire(self, path: str, reason: str) -> None:
        self.active.remove(path)
        widths = {r.scenario.key: r.half_width for r in self.ratios(path)}
        self.stopping[path] = {
            "rounds": self.done,
            "reason": reason,
            "half_width": widths,
            "reached": all(w <= self.cfg.target for w in widths.values()),
        }


def measure_startup(runner: Runner, cfg: BenchConfig, rounds: Rounds, label: str) -> None:
    """What a fresh process took before it answered, and its memory once loaded: spawn to ready (of which
    the model's load), then the first batch-1 call, before any warm-up. A runtime without a process of
    its own has nothing to report."""
    if runner.pid is None or runner.startup is None:
        return
    ready, load = runner.startup
    rounds.add(Scenario("startup", phase="ready"), label, [ready])
    rounds.add(Scenario("startup", phase="load"), label, [load])
    rounds.add(Scenario("memory", batch=0), label, [float(rss_bytes(runner.pid))])
    rounds.add(Scenario("startup", phase="first"), label, [runner.time(1, cfg.seed, 1)[0] * NS])
    if label not in rounds.footprints:
        libraries = mapped_libraries(runner.pid)
        rounds.footprints[label] = {
            "model_file_bytes": runner.model_file.stat().st_size,
            "libraries": len(libraries),
            "library_bytes": sum(libraries.values()),
        }


def measure_drift(runner: Runner, cfg: BenchConfig, rounds: Rounds, label: str) -> None:
    """Once per path: cfg.drift_calls batch-1 calls in this process, its resident memory sampled between
    chunks (resx.stats.drift fits the growth)."""
    if not cfg.drift_calls or runner.pid is None or label in rounds.drift:
        return
    chunk = -(-cfg.drift_calls // DRIFT_SAMPLES)
    calls, values, done = [0], [rss_bytes(runner.pid)], 0
    while done < cfg.drift_calls:
        n = min(chunk, cfg.drift_calls - done)
        runner.time(1, cfg.seed, n)
        done += n
        calls.append(done)
        values.append(rss_bytes(runner.pid))
    rounds.drift[label] = stats.drift(calls, values) | {"samples": [list(p) for p in zip(calls, values, strict=True)]}


def measure_profile(runner: Runner, cfg: BenchConfig, rounds: Rounds, label: str) -> None:
    """Once per path, warm, at the run's threads: the operators of cfg.profile_calls batch-1 calls, recorded
    inside the runtime (torch.profiler in Python, a RecordFunction callback in C++)."""
    if not cfg.profile_calls or label in rounds.profiles:
        return
    raw = runner.profile(1, cfg.seed, cfg.profile_calls)
    rounds.profiles[label] = OpProfile.of(raw).to_dict()


def _peak(runner: Runner, rounds: Rounds, label: str, batch: int) -> None:
    """The resident peak after the batch-B scenario, and on CUDA the caching allocator's peaks."""
    if runner.pid is not None:
        rounds.add(Scenario("memory", batch=batch), label, [float(peak_rss_bytes(runner.pid))])
    if runner.device.startswith("cuda"):
        held = runner.device_memory()
        for kind in ("cuda_allocated", "cuda_reserved"):
            rounds.add(Scenario(kind, batch=batch), label, [float(held[f"peak_{kind.removeprefix('cuda_')}_bytes"])])


def measure_in_process(runner: Runner, cfg: BenchConfig, scenarios: list[Scenario], rounds: Rounds, label: str) -> None:
    """Every inference scenario in one fresh process (concurrency last: it sets one intra-op thread), and
    the process's resident peak after each batch size."""
    rule = cfg.warmup
    for s in scenarios:
        if s.kind == "latency":
            warm = runner.warm_up(1, cfg.seed, rule.for_batch(1))
            rounds.add(s, label, [t * NS for t in runner.time(1, cfg.seed, cfg.latency_calls)], warm)
            _peak(runner, rounds, label, 1)
        elif s.kind == "throughput":
            warm = runner.warm_up(s.batch, cfg.seed, rule.for_batch(s.batch))
            calls = max(1, round(cfg.throughput_calls * max(1.0, 32 / s.batch)))  # small batches are cheap
            rounds.add(s, label, [t * NS for t in runner.time(s.batch, cfg.seed, calls)], warm)
            _peak(runner, rounds, label, s.batch)
    concurrency = [s for s in scenarios if s.kind == "concurrency"]
    if concurrency:
        runner.set_threads(1)  # one intra-op thread per caller: the GIL question
        warm = runner.warm_up(1, cfg.seed, rule.for_batch(1))
        for s in concurrency:
            calls, wall = runner.threads_run(s.callers, cfg.thread_seconds, cfg.seed)
            rounds.add(s, label, [calls / (wall * NS)], warm)
        runner.set_threads(cfg.threads)


def inference_rounds(
    cfg: BenchConfig,
    paths: list[Path],
    make: Callable[[Path], Runner],
    notify: Notify,
    identified: Callable[[dict[str, Identity]], None],
    baseline: str = BASELINE,
) -> Rounds:
    """Adaptive rounds of every path. Each path's first process reports its identity before it times
    anything; `identified` sees them as they come (the gate refuses there, before that path times)."""
    scenarios = cfg.scenarios()
    rounds = Rounds(cfg, [p.label for p in paths], cfg.budget, baseline)
    by_label = {p.label: p for p in paths}
    identities = rounds.identities
    while True:
        meter = OtherLoad()
        meter.start()
        for label in rounds.order():
            notify(f"round {rounds.done + 1}: {label} (fresh process)" if scenarios else f"starting {label}")
            started = time.monotonic()
            with make(by_label[label]) as runner:
                runner.set_threads(cfg.threads)
                if scenarios:
                    # Before any other call, so the first call is the process's first; a gate that then
                    # refuses this path stops the run, and no figure of it is kept.
                    measure_startup(runner, cfg, rounds, label)
                if label not in identities:
                    identities[label] = runner.identity(cfg.seed)
                    identified(identities)
                measure_in_process(runner, cfg, scenarios, rounds, label)
                if scenarios:
                    measure_drift(runner, cfg, rounds, label)
                    measure_profile(runner, cfg, rounds, label)
            rounds.last_seconds[label] = time.monotonic() - started
        if not scenarios:  # the gate alone
            rounds.active.clear()
            return rounds
        if not rounds.close_round(meter.stop()):
            return rounds


def serve_plan(cfg: BenchConfig, rounds: Rounds) -> ServePlan:
    """What every path's serving rounds ask, the same for all, from what the inference rounds measured:
    the Server curve's rates as steps around the fastest path's batch-1 rate (or --serve-rates), the p99
    bound as BOUND_FACTOR x the baseline's batch-1 p50 (or --serve-bound-ms), Offline at the largest batch
    size and the fastest path's measured rate there."""
    latency = {p: m.value for (s, p), m in rounds.measurements.items() if s == LATENCY}
    fastest = min(latency.values(), default=cfg.serve_bound_ms * 1e-3 / BOUND_FACTOR if cfg.serve_bound_ms else 1e-3)
    bound = cfg.serve_bound_ms * 1e-3 if cfg.serve_bound_ms else BOUND_FACTOR * latency.get(rounds.baseline, fastest)
    rates = sorted(cfg.serve_rates) or [float(f"{k / fastest:.3g}") for k in RATE_STEPS]
    batch = max(cfg.batch_sizes)
    per_image = [
        m.value / batch for (s, _), m in rounds.measurements.items() if s == Scenario("throughput", batch=batch)
    ]
    return ServePlan(
        tuple(cfg.serve),
        tuple(cfg.serve_workers),
        tuple(rates),
        bound,
        cfg.serve_seconds,
        cfg.serve_min_queries,
        fastest / 2,  # under the truth: LoadGen then generates enough queries to fill the duration
        batch,
        min(per_image, default=fastest),
        cfg.serve_refine,
        cfg.threads,
        cfg.seed,
    )


def measure_serving(
    runner: Runner, cfg: BenchConfig, plan: ServePlan, rounds: Rounds, label: str, logs: pathlib.Path
) -> None:
    """LoadGen's scenarios in one fresh process, warmed up first: SingleStream (one query at a time), then
    per worker count (intra-op threads shared out among them, ServePlan.threads) the Server curve and its
    peak rate within the bound, and Offline."""
    results: list[ServeResult] = []

    def serve(run: LoadgenRun) -> ServeResult:
        out = logs / label.replace("@", "_") / f"round{rounds.done + 1}-{run.key}"
        out.mkdir(parents=True, exist_ok=True)
        r = read_log(out, run, float(runner.loadgen(run.request(out))["seconds"]))
        r.round = rounds.done + 1
        results.append(r)
        return r

    rule = cfg.warmup
    if "singlestream" in plan.scenarios:
        runner.set_threads(plan.threads(1))
        runner.warm_up(1, cfg.seed, rule.for_batch(1))
        rounds.add(Scenario("singlestream"), label, [serve(plan.run("singlestream")).p90_s])
    for workers in plan.workers:
        runner.set_threads(plan.threads(workers))
        runner.warm_up(1, cfg.seed, rule.for_batch(1))
        if "server" in plan.scenarios:
            curve = peak_search(lambda rate, w=workers: serve(plan.run("server", w, rate)), plan.rates, plan.refine)
            rounds.add(Scenario("server", callers=workers), label, [peak_rate(curve)])
        if "offline" in plan.scenarios:
            runner.warm_up(plan.offline_batch, cfg.seed, rule.for_batch(plan.offline_batch))
            done = serve(plan.run("offline", workers))
            rounds.add(Scenario("offline", batch=plan.offline_batch, callers=workers), label, [done.completed_per_s])
    runner.set_threads(cfg.threads)
    rounds.serving.setdefault(label, []).extend(r.to_dict() for r in results)


def serving_rounds(
    cfg: BenchConfig,
    paths: list[Path],
    make: Callable[[Path], Runner],
    plan: ServePlan,
    logs: pathlib.Path,
    notify: Notify,
) -> Rounds:
    """cfg.serve_rounds rounds of LoadGen's scenarios, every path in a fresh process per round, in rotating
    order, as the inference rounds do (a fixed count: LoadGen's runs are long, and their figures are
    reported with intervals over these rounds)."""
    rounds = Rounds(cfg, [p.label for p in paths], float("inf"))
    by_label = {p.label: p for p in paths}
    for _ in range(cfg.serve_rounds):
        meter = OtherLoad()
        meter.start()
        for label in rounds.order():
            notify(f"serving round {rounds.done + 1}: {label} under LoadGen (fresh process)")
            with make(by_label[label]) as runner:
                measure_serving(runner, cfg, plan, rounds, label, logs)
        load = meter.stop()
        rounds.done += 1
        if load is not None:
            rounds.loads.append(load)
    rounds.active.clear()
    return rounds
