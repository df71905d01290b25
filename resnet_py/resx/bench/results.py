"""What `resx bench` measured, as types, end to end: a Scenario (what was asked, as data), a Measurement
(the values of one path in one scenario, round by round), a Ratio (two paths compared over the rounds both
ran), and every record beside them (the gate, why each path stopped, training, footprints, drift, LoadGen's
tests, operator profiles, instruction counts, the language map). results.json is their versioned form,
written and read by one codec (resx.codec); analysis and report read only these types."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resx import stats
from resx.bench.config import BenchConfig
from resx.bench.protocol import Compiled  # as each runtime reports it, kept in the gate's report
from resx.bench.serving import ServePlan, ServeResult
from resx.codec import decode, encode
from resx.errors import BenchError

FORMAT = "resx-bench/3"  # /2 had untyped records; resx reads only its own format
KINDS = (
    "latency",
    "throughput",
    "concurrency",
    "training",
    "startup",
    "memory",
    "cuda_allocated",
    "cuda_reserved",
    "singlestream",
    "server",
    "offline",
)
MEMORY = ("memory", "cuda_allocated", "cuda_reserved")  # bytes: resident, and CUDA's caching allocator
STEADY = ("latency", "throughput", "concurrency", "training")  # per call in a warm process
SERVING = ("singlestream", "server", "offline")  # LoadGen's scenarios (resx.bench.serving), per round
STEP_PARTS = ("data", "forward", "backward", "optimizer")  # a training step's split (resx.rundir.StepRecord's *_s)
STARTUP_PHASES = {  # what a fresh process takes before it answers, in order
    "ready": "spawn to ready (interpreter, libraries, model load)",
    "load": "of which the model's load",
    "first": "the first batch-1 call",
}


@dataclass(frozen=True)
class Scenario:
    """One thing a path is measured at: batch-1 latency, throughput at a batch size, concurrent callers
    (batch 1, one intra-op thread each), the training step at a batch size; and what shipping costs, once
    per fresh process: a start-up phase (STARTUP_PHASES), or resident memory (batch 0: after the load;
    batch B: the peak through the batch-B scenario), and on CUDA the caching allocator's peak allocated and
    reserved bytes through batch B (cuda_allocated, cuda_reserved); and serving under LoadGen's load, per round:
    SingleStream's p90 latency, Server's peak rate whose p99 stays within the bound with `callers`
    workers, Offline's samples/s with `callers` workers at batch `batch`."""

    kind: str
    batch: int = 1
    callers: int = 1
    phase: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown scenario kind '{self.kind}': {', '.join(KINDS)}")
        if (self.kind == "startup") != (self.phase in STARTUP_PHASES):
            raise ValueError(f"a startup scenario has a phase of {', '.join(STARTUP_PHASES)}; no other has one")

    @property
    def key(self) -> str:
        """A short stable name: latency, throughput/b128, concurrency/c2, training/b32, startup/ready,
        memory/b0."""
        if self.kind in ("latency", "singlestream"):
            return self.kind
        if self.kind == "server":
            return f"server/w{self.callers}"
        if self.kind == "offline":
            return f"offline/w{self.callers}/b{self.batch}"
        if self.kind == "startup":
            return f"startup/{self.phase}"
        return f"{self.kind}/c{self.callers}" if self.kind == "concurrency" else f"{self.kind}/b{self.batch}"

    @property
    def steady(self) -> bool:
        """Calls timed in a warm process (what the rounds adapt to); not a once-per-process figure."""
        return self.kind in STEADY

    @property
    def rate(self) -> bool:
        """Measured as images/s (higher is better) rather than seconds per call."""
        return self.kind in ("concurrency", "server", "offline")

    @property
    def serving(self) -> bool:
        """One of LoadGen's scenarios."""
        return self.kind in SERVING

    @property
    def unit(self) -> str:
        if self.kind in MEMORY:
            return "bytes"
        return {"concurrency": "images/s", "server": "queries/s", "offline": "images/s"}.get(self.kind, "s")

    @property
    def title(self) -> str:
        plural = "s" if self.callers > 1 else ""
        if self.kind in ("cuda_allocated", "cuda_reserved"):
            return f"CUDA allocator: peak {self.kind.removeprefix('cuda_')} through batch {self.batch}"
        if self.kind == "memory":
            return (
                "resident memory after the load"
                if self.batch == 0
                else f"peak resident memory through batch {self.batch}"
            )
        return {
            "latency": "batch-1 latency",
            "throughput": f"throughput at batch {self.batch}",
            "concurrency": f"{self.callers} concurrent caller{'s' if self.callers > 1 else ''}",
            "training": f"training step (batch {self.batch})",
            "startup": f"start-up: {STARTUP_PHASES.get(self.phase, '')}",
            "singlestream": "LoadGen SingleStream: p90 latency",
            "server": f"LoadGen Server: peak rate within the p99 bound, {self.callers} worker{plural}",
            "offline": f"LoadGen Offline: batch {self.batch}, {self.callers} worker{plural}",
        }[self.kind]


LATENCY = Scenario("latency")


@dataclass
class Measurement:
    """One path in one scenario: per round (a fresh process each), the values measured (seconds per call;
    images/s for a rate) and the warm-up calls it took."""

    scenario: Scenario
    path: str
    rounds: list[list[float]] = field(default_factory=list)
    warmup_calls: list[int] = field(default_factory=list)

    @property
    def per_round(self) -> list[float]:
        """The statistic each round contributes: its median call (or its rate)."""
        return [float(np.median(r)) for r in self.rounds]

    @property
    def pooled(self) -> np.ndarray:
        return np.concatenate([np.asarray(r, dtype=np.float64) for r in self.rounds])

    @property
    def value(self) -> float:
        """The median of every call (seconds), or the mean of the rounds' rates."""
        return float(np.mean(self.per_round)) if self.scenario.rate else float(np.median(self.pooled))

    @property
    def calls(self) -> int:
        return int(self.pooled.size)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.pooled, q))

    @property
    def images_per_s(self) -> float:
        return self.value if self.scenario.rate else self.scenario.batch / self.value

    @property
    def spread(self) -> tuple[float, float]:
        """The lowest and highest per-round statistic."""
        return min(self.per_round), max(self.per_round)


@dataclass
class Ratio:
    """path / baseline in one scenario over the rounds both ran: times (below 1: faster) or rates (above 1:
    more images/s), with the interval of resx.stats.ratio_interval."""

    scenario: Scenario
    path: str
    baseline: str
    value: float
    low: float
    high: float
    rounds: int
    half_width: float
    q25: float
    q75: float
    lowest: float  # the per-round ratios' range: what 2 rounds can honestly show (no useful interval)
    highest: float

    @classmethod
    def of(cls, a: Measurement, b: Measurement) -> Ratio:
        n = min(len(a.rounds), len(b.rounds))  # a path that stopped early: the rounds both ran
        per_round = [x / y for x, y in zip(a.per_round[:n], b.per_round[:n], strict=True)]
        i = stats.ratio_interval(a.per_round[:n], b.per_round[:n])
        return cls(
            a.scenario,
            a.path,
            b.path,
            i.value,
            i.low,
            i.high,
            i.rounds,
            i.half_width,
            i.q25,
            i.q75,
            min(per_round),
            max(per_round),
        )

    def within(self, target: float) -> bool:
        return self.half_width <= target

    @property
    def speedup(self) -> tuple[float, float, float]:
        """The ratio read as 'times faster or more' (above 1: better than the baseline): (value, low, high)."""
        if self.scenario.rate:
            return self.value, self.low, self.high
        return 1 / self.value, 1 / self.high, 1 / self.low


# ------------------------------------------------------------------------------------ the fairness gate


@dataclass(frozen=True)
class GateCheck:
    check: str
    ok: bool
    detail: dict[str, str]


@dataclass
class GateReport:
    checks: list[GateCheck] = field(default_factory=list)
    compiled: dict[str, Compiled] = field(default_factory=dict)  # per path
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    other_cpu_load: float | None = None  # cores busy with other processes, just before timing
    cores: int = 1
    loaded: bool = False
    forced: bool = False

    @property
    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.ok]

    @property
    def passed(self) -> bool:
        return not self.failures


# ------------------------------------------------------------------------------------ what else a run keeps


@dataclass(frozen=True)
class Stopping:
    """Why a path's rounds of one phase stopped: after how many, its ratios' half-widths then, and whether
    every one was within the target."""

    rounds: int
    reason: str
    half_width: dict[str, float]
    reached: bool


@dataclass(frozen=True)
class TrainingDetail:
    """A path's training runs: the step's split (median ms), compile time, the run's largest process's
    peak memory, the model's fingerprint, the data; with whole epochs, the accuracy and times."""

    split_ms: dict[str, float]
    compile_seconds: float
    peak_rss_bytes: int
    fingerprint: str
    data: str
    epoch_time_s: float | None = None
    epoch_time_kind: str = ""
    total_time_s: float | None = None
    train_loss: float | None = None
    train_top_1: float | None = None
    test_loss: float | None = None
    test_top_1: float | None = None


@dataclass(frozen=True)
class Package:
    """An AOTInductor package a dtype's paths ran: where, whether it came from the cache, how it was
    compiled, and with --aoti-freezing auto the evidence of the choice (batch-1 seconds of each)."""

    path: str
    cached: bool
    compile_seconds: float
    compile: dict
    freezing: bool
    freezing_batch1_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Footprint:
    """What shipping a path takes: its model file and the shared libraries its process mapped."""

    model_file_bytes: int
    libraries: int
    library_bytes: int


@dataclass(frozen=True)
class Drift:
    """Resident memory over one long run (resx.stats.drift) and its samples (calls, bytes)."""

    calls: float
    growth_bytes: float
    bytes_per_1000_calls: float
    late_bytes_per_1000_calls: float
    samples: list[tuple[int, int]]


@dataclass(frozen=True)
class MemoryReport:
    """The bench's whole process tree (resx.bench.monitor.TreeMemory)."""

    peak_rss_bytes: int = 0
    machine_used_peak_bytes: int = 0
    machine_used_before_bytes: int = 0
    samples: int = 0
    interval_s: float = 0.0


@dataclass(frozen=True)
class OpProfile:
    """What the operators of one forward call cost, from a profile of `calls` calls inside the runtime
    (resx.bench.runners.Runner.profile): per call, the operators dispatched (nested ones included), those
    the runtime called itself (top), the seconds inside operators (the top ones' spans), the profiled
    call's wall time and the innermost operators' time; the top operators by name. The profiler's own cost
    per operator is in op_s and wall_s alike."""

    calls: int
    ops: float
    top_ops: float
    op_s: float
    wall_s: float
    leaf_s: float = 0.0  # the innermost operators' time: a floor of the kernels' own
    names: dict[str, float] = field(default_factory=dict)

    @property
    def outside_s(self) -> float:
        """Seconds per call outside every operator: the runtime's own (interpreter, arguments, result)."""
        return max(0.0, self.wall_s - self.op_s)

    @classmethod
    def of(cls, calls: int, wall_ns: int, events: list) -> OpProfile:
        """From a runner's profile: `calls` calls, their wall time, and every record [name, start_ns,
        end_ns, parent index or -1] (resx.bench.protocol.Profiled)."""
        if calls < 1:
            raise BenchError("a profile needs at least 1 call")
        operator = [is_operator(e[0]) for e in events]

        def op_parent(i: int) -> int:  # the nearest enclosing operator (-1: none)
            p = int(events[i][3])
            while p >= 0 and not operator[p]:
                p = int(events[p][3])
            return p

        top = [i for i in range(len(events)) if operator[i] and op_parent(i) < 0]
        inside = sum(max(0, int(events[i][2]) - int(events[i][1])) for i in top)
        parents = {op_parent(i) for i in range(len(events)) if operator[i]}
        leaf = sum(max(0, int(e[2]) - int(e[1])) for i, e in enumerate(events) if operator[i] and i not in parents)
        names = Counter(events[i][0] for i in top)
        return cls(
            calls,
            sum(operator) / calls,
            len(top) / calls,
            inside * 1e-9 / calls,
            int(wall_ns) * 1e-9 / calls,
            leaf * 1e-9 / calls,
            {k: v / calls for k, v in names.most_common()},
        )


def is_operator(name: str) -> bool:
    """An operator's schema name (aten::conv2d, prim::..., mkldnn::...), not a user scope or a function."""
    return "::" in name and " " not in name


# ------------------------------------------------------------------------------------- the language map


@dataclass(frozen=True)
class Estimate:
    """A fitted value, the mean of its per-round fits, with Student's t 95% interval over the rounds."""

    value: float
    low: float
    high: float
    rounds: int

    @property
    def half_width(self) -> float:
        """The interval's half-width relative to the value (inf for one round or a value of 0)."""
        if self.rounds < 2 or self.value == 0:
            return math.inf
        return (self.high - self.low) / 2 / abs(self.value)

    @classmethod
    def of(cls, values: list[float]) -> Estimate:
        x = np.asarray(values, dtype=np.float64)
        mean = float(x.mean())
        if x.size < 2:
            return cls(mean, math.nan, math.nan, int(x.size))
        h = stats.t_quantile(x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
        return cls(mean, mean - h, mean + h, int(x.size))


@dataclass(frozen=True)
class CallCost:
    """What one runtime's batch-1 call adds beyond the reference's (resx.bench.language's model), fitted
    on `points` graphs; `residual`: the fit's root-mean-square error relative to the reference's."""

    runtime: str
    reference: str
    fixed: Estimate
    per_op: Estimate
    points: list[str]
    residual: float

    def extra(self, ops: float) -> float:
        return self.fixed.value + self.per_op.value * ops


@dataclass(frozen=True)
class Prediction:
    """A graph or model the fit did not use: the ratio (path / baseline) predicted from its baseline's
    profile beside the one measured, with its 95% interval."""

    model: str
    path: str
    baseline: str
    scenario: str
    predicted: float
    measured: float
    low: float
    high: float

    @property
    def made(self) -> bool:
        """Whether the fit predicted anything: a ratio of two latencies or rates is positive and finite; a fit
        whose extras exceed the call (too few graphs or rounds for its noise) gives neither."""
        return math.isfinite(self.predicted) and self.predicted > 0

    @property
    def within(self) -> bool:
        return self.made and self.low <= self.predicted <= self.high

    @property
    def miss(self) -> float:
        """predicted / measured - 1 when outside the interval, else 0."""
        return 0.0 if self.within else self.predicted / self.measured - 1


@dataclass
class LanguageMap:
    """The map of one run (resx.bench.language.analyse): each runtime's call cost beyond the reference
    (fitted on the sweep's `fit_points` graphs; per call in seconds, and in instructions where counted),
    the profiler's cost per operator, the crossovers against the baseline at the model's operator count,
    the contention per runtime at the sweep's most overhead-bound graph, every graph's and model's profile
    per path, the predictions for the graphs and models the fit did not use, and the training step's
    decomposition where the sweep timed it."""

    reference: str
    baseline: str
    fit_points: list[str]
    held_out: list[str]
    costs: dict[str, CallCost]
    profiler: Estimate
    profiles: dict[str, dict[str, OpProfile]]
    reference_ops: float
    crossovers: dict[str, dict[str, float | None]]  # per path: per factor ("1.1", "2"), its latency below which
    contention: dict[str, dict[int, float]]
    contention_graph: str
    predictions: list[Prediction]
    skipped: dict[str, str] = field(default_factory=dict)  # paths without a fit, and why
    handoffs: dict[str, Estimate] = field(default_factory=dict)  # per path: per operator per extra caller
    train_reference: str = ""
    train_costs: dict[str, CallCost] = field(default_factory=dict)
    train_graph: str = ""
    train_split: dict[str, dict[str, float]] = field(default_factory=dict)
    count_costs: dict[str, CallCost] = field(default_factory=dict)  # instructions beyond the reference's
    count_predictions: list[Prediction] = field(default_factory=list)  # held-out graphs' counts, predicted
    count_crossovers: dict[str, dict[str, float | None]] = field(default_factory=dict)  # as crossovers, in instructions


# ------------------------------------------------------------------------------------------- a model, a run


@dataclass
class ModelResults:
    """Everything measured on one model."""

    name: str
    manifest: dict  # the export's own manifest document (resx.export), as the file holds it
    gate: GateReport = field(default_factory=GateReport)
    packages: dict[str, Package] = field(default_factory=dict)  # per dtype
    measurements: list[Measurement] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    training: dict[str, TrainingDetail] = field(default_factory=dict)
    stopping: dict[str, dict[str, Stopping]] = field(default_factory=dict)  # per path, per phase
    baseline: str = "py-eager"  # what every path is compared with (for a model file, its engine in Python)
    skipped: dict[str, str] = field(default_factory=dict)  # runtimes that cannot run this model, and why
    footprint: dict[str, Footprint] = field(default_factory=dict)
    drift: dict[str, Drift] = field(default_factory=dict)
    serve_plan: ServePlan | None = None  # the plan every path's LoadGen tests ran
    serving: dict[str, list[ServeResult]] = field(default_factory=dict)
    profiles: dict[str, OpProfile] = field(default_factory=dict)
    counts: dict[str, Counts] = field(default_factory=dict)  # per path: instructions per call (--counts)
    training_counts: dict[str, Counts] = field(default_factory=dict)  # per path that trains: per step (--counts)

    def measurement(self, scenario: Scenario, path: str) -> Measurement | None:
        return next((m for m in self.measurements if m.scenario == scenario and m.path == path), None)

    def ratio(self, scenario: Scenario, path: str, baseline: str) -> Ratio | None:
        return next(
            (r for r in self.ratios if r.scenario == scenario and r.path == path and r.baseline == baseline), None
        )

    def scenarios(self, steady: bool = True) -> list[Scenario]:
        """The per-call scenarios measured (steady=False: the others: start-up, memory and LoadGen's)."""
        return list(dict.fromkeys(m.scenario for m in self.measurements if m.scenario.steady == steady))

    def paths(self, scenario: Scenario | None = None) -> list[str]:
        return list(dict.fromkeys(m.path for m in self.measurements if scenario in (None, m.scenario)))


@dataclass(frozen=True)
class Layer:
    """Instructions in one layer of the stack (resx.bench.counts.LAYERS), per call."""

    name: str
    instructions: float


@dataclass
class Counts:
    """A path's instructions per call under callgrind (batch 1, one intra-op thread, collection on only
    around the counted calls), split by where they ran; `by_object` and `by_function` keep callgrind's
    largest entries (per call)."""

    calls: int
    instructions: float  # per call
    layers: list[Layer] = field(default_factory=list)
    by_object: dict[str, float] = field(default_factory=dict)
    by_function: dict[str, float] = field(default_factory=dict)
    valgrind: str = ""  # valgrind's version
    seconds: float = 0.0  # the collection's wall time (under valgrind)
    kernels: str = "avx2"  # the kernels' instruction set (--count-kernels; runs before it had the option: avx2)
    hash_seed: str = ""  # PYTHONHASHSEED of the counted process ("": random, as runs before it was fixed)


@dataclass
class Results:
    """One `resx bench` run."""

    created: str
    config: BenchConfig
    env: dict[str, dict[str, str]]
    threads: int = 0  # the intra-op threads every runtime ran (the config's, or torch's default)
    floor_gflops: dict[str, float] = field(default_factory=dict)
    models: dict[str, ModelResults] = field(default_factory=dict)
    loaded: bool = False
    forced: bool = False
    seconds: float = 0.0  # the run's wall time
    memory: MemoryReport = field(default_factory=MemoryReport)
    load: list[float] = field(default_factory=list)  # other processes' busy cores during each round
    # --language-map: the sweep's graphs (measured as models are) and the map (resx.bench.language)
    sweep: dict[str, ModelResults] = field(default_factory=dict)
    language: LanguageMap | None = None
    format: str = FORMAT


def write_json(results: Results) -> str:
    return json.dumps(encode(results), indent=1)


def read_json(path: Path) -> Results:
    """A run's results.json; one line when it is not one this resx reads."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BenchError(f"{path}: no such file (resx bench -o DIR writes DIR/results.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BenchError(f"{path}: not a resx results file ({type(e).__name__}: {e})") from None
    found = data.get("format", "resx-bench/1") if isinstance(data, dict) else None
    if found != FORMAT:
        raise BenchError(f"{path}: results of format {found!r}; this resx reads {FORMAT} (rerun resx bench)")
    try:
        return decode(Results, data)
    except (ValueError, TypeError) as e:
        raise BenchError(f"{path}: malformed {FORMAT} results ({e})") from None


def finite(x: float) -> bool:
    return x is not None and math.isfinite(x)
