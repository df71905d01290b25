"""What `resx bench` measured, as types: a Scenario (what was asked, as data), a Measurement (the values
of one path in one scenario, round by round) and a Ratio (two paths compared over the rounds both ran).
report and compare read these; results.json is their versioned form (resx-bench/2)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from resx import stats
from resx.errors import BenchError

FORMAT = "resx-bench/2"
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

    def to_dict(self) -> dict:
        return {
            "scenario": asdict(self.scenario),
            "path": self.path,
            "unit": self.scenario.unit,
            "rounds": self.rounds,
            "warmup_calls": self.warmup_calls,
            "value": self.value,
            "calls": self.calls,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Measurement:
        return cls(Scenario(**d["scenario"]), d["path"], d["rounds"], d.get("warmup_calls", []))


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

    @classmethod
    def of(cls, a: Measurement, b: Measurement) -> Ratio:
        n = min(len(a.rounds), len(b.rounds))  # a path that stopped early: the rounds both ran
        i = stats.ratio_interval(a.per_round[:n], b.per_round[:n])
        return cls(a.scenario, a.path, b.path, i.value, i.low, i.high, i.rounds, i.half_width, i.q25, i.q75)

    def within(self, target: float) -> bool:
        return self.half_width <= target

    @property
    def speedup(self) -> tuple[float, float, float]:
        """The ratio read as 'times faster or more' (above 1: better than the baseline): (value, low, high)."""
        if self.scenario.rate:
            return self.value, self.low, self.high
        return 1 / self.value, 1 / self.high, 1 / self.low

    def to_dict(self) -> dict:
        return {"scenario": asdict(self.scenario)} | {k: v for k, v in asdict(self).items() if k != "scenario"}

    @classmethod
    def from_dict(cls, d: dict) -> Ratio:
        return cls(**(d | {"scenario": Scenario(**d["scenario"])}))


@dataclass
class ModelResults:
    """Everything measured on one model."""

    name: str
    manifest: dict
    gate: dict = field(default_factory=dict)
    packages: dict = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    training: dict[str, dict] = field(default_factory=dict)  # per path: the step's split, compile time, epochs
    stopping: dict[str, dict] = field(default_factory=dict)  # per path: rounds, calls, why it stopped
    baseline: str = "py-eager"  # what every path is compared with (for a model file, its engine in Python)
    skipped: dict[str, str] = field(default_factory=dict)  # runtimes that cannot run this model, and why
    footprint: dict[str, dict] = field(default_factory=dict)  # per path: model file, libraries it mapped
    drift: dict[str, dict] = field(default_factory=dict)  # per path: resident memory over a long run
    # LoadGen's tests: the plan every path ran, and per path every test (resx.bench.serving.ServeResult)
    serve_plan: dict = field(default_factory=dict)
    serving: dict[str, list[dict]] = field(default_factory=dict)
    profiles: dict[str, dict] = field(default_factory=dict)  # per path: its operators (resx.bench.language.OpProfile)

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

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "manifest": self.manifest,
            "gate": self.gate,
            "packages": self.packages,
            "measurements": [m.to_dict() for m in self.measurements],
            "ratios": [r.to_dict() for r in self.ratios],
            "training": self.training,
            "stopping": self.stopping,
            "baseline": self.baseline,
            "skipped": self.skipped,
            "footprint": self.footprint,
            "drift": self.drift,
            "serve_plan": self.serve_plan,
            "serving": self.serving,
            "profiles": self.profiles,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelResults:
        return cls(
            d["name"],
            d["manifest"],
            d.get("gate", {}),
            d.get("packages", {}),
            [Measurement.from_dict(m) for m in d.get("measurements", [])],
            [Ratio.from_dict(r) for r in d.get("ratios", [])],
            d.get("training", {}),
            d.get("stopping", {}),
            d.get("baseline", "py-eager"),
            d.get("skipped", {}),
            d.get("footprint", {}),
            d.get("drift", {}),
            d.get("serve_plan", {}),
            d.get("serving", {}),
            d.get("profiles", {}),
        )


@dataclass
class Results:
    """One `resx bench` run."""

    created: str
    config: dict
    env: dict
    floor_gflops: dict[str, float] = field(default_factory=dict)
    models: dict[str, ModelResults] = field(default_factory=dict)
    loaded: bool = False
    forced: bool = False
    seconds: float = 0.0  # the run's wall time
    memory: dict[str, Any] = field(default_factory=dict)  # peak RSS of the whole process tree
    load: list[float] = field(default_factory=list)  # other processes' busy cores during each round
    # --language-map: the sweep's graphs (measured as models are) and the map (resx.bench.language.LanguageMap)
    sweep: dict[str, ModelResults] = field(default_factory=dict)
    language: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"format": FORMAT} | {k: v for k, v in self.__dict__.items() if k not in ("models", "sweep")}
        out["sweep"] = {name: m.to_dict() for name, m in self.sweep.items()}
        return out | {"models": {name: m.to_dict() for name, m in self.models.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> Results:
        if d.get("format") != FORMAT:
            raise BenchError(f"results of format {d.get('format', 'resx-bench/1')!r}; this resx reads {FORMAT}")
        values = {k: v for k, v in d.items() if k not in ("format", "models", "sweep")}
        sweep = {n: ModelResults.from_dict(m) for n, m in d.get("sweep", {}).items()}
        return cls(**values, models={n: ModelResults.from_dict(m) for n, m in d["models"].items()}, sweep=sweep)


def finite(x: float) -> bool:
    return x is not None and math.isfinite(x)
