"""What the results say, as functions of the typed results: the ratios, the run's noise floor, the fastest
path per scenario and whether it beats the baseline beyond the noise, the epoch time extrapolated from
the training step, each path against the machine's floor, how far the rounds went, and two runs set side
by side (`resx compare`). resx.bench.report formats these; it decides nothing itself."""

from __future__ import annotations

import math
from dataclasses import dataclass

from resx.bench.plan import AGAIN
from resx.bench.registry import language_counterpart, script_counterpart
from resx.bench.results import LATENCY, Measurement, ModelResults, Ratio, Results, Scenario
from resx.data import SPLIT_SIZES

TRAIN_IMAGES = SPLIT_SIZES["train"]  # CIFAR-10's training images: an epoch, for the extrapolated epoch time


def noise_path(baseline: str) -> str:
    return baseline + AGAIN


def ratios(entry: ModelResults) -> list[Ratio]:
    """Every path against the baseline (py-eager at fp32), every C++ path against Python on the same engine
    and dtype (the language's own share: cpp-eager / py-eager is the C++ API against the Python API), and
    C++ TorchScript against the C++ module (TorchScript's own share), per scenario, over the rounds both
    ran."""
    out = []
    for scenario in entry.scenarios() + entry.scenarios(steady=False):
        names = entry.paths(scenario)
        pairs = [(n, entry.baseline) for n in names if n != entry.baseline]
        pairs += [(n, language_counterpart(n)) for n in names if language_counterpart(n) in names]
        pairs += [(n, script_counterpart(n)) for n in names if script_counterpart(n) in names]
        for name, base in dict.fromkeys(pairs):  # cpp-eager / py-eager is both the baseline's and the language's
            a, b = entry.measurement(scenario, name), entry.measurement(scenario, base)
            # A Server round with no rate within the bound has no ratio (the report shows it as none).
            if a is not None and b is not None and min(a.per_round + b.per_round) > 0:
                out.append(Ratio.of(a, b))
    return out


def noise(entry: ModelResults, scenario: Scenario) -> Ratio | None:
    """The baseline's second process against its first in one scenario: what the run's noise alone makes
    of a ratio of 1."""
    return entry.ratio(scenario, noise_path(entry.baseline), entry.baseline)


def within_noise(entry: ModelResults, r: Ratio) -> bool:
    """A ratio whose interval is narrower than the noise floor's: the rounds agree more than the baseline
    agrees with itself, so its interval understates the run's noise."""
    floor = noise(entry, r.scenario)
    return floor is not None and r.path != floor.path and r.half_width < floor.half_width


FEW_ROUNDS = 3  # below this many rounds a t interval is too wide to tell anything: the rounds' range instead


def span(r: Ratio) -> tuple[float, float]:
    """What a ratio can be: its 95% interval, or with fewer than FEW_ROUNDS rounds the range of its
    per-round ratios."""
    return (r.low, r.high) if r.rounds >= FEW_ROUNDS else (r.lowest, r.highest)


def beyond_noise(entry: ModelResults, r: Ratio) -> bool:
    """Whether the path is better than the baseline beyond the noise: all it can be (span) lies past all the
    noise floor can be (or past 1 where the run has no noise floor)."""
    low, high = span(r)
    floor = noise(entry, r.scenario)
    f_low, f_high = span(floor) if floor is not None else (1.0, 1.0)
    return low > f_high if r.scenario.rate else high < f_low


@dataclass(frozen=True)
class Ship:
    """A row of "what should I ship?": the fastest path in a scenario, its figure, its ratio to the baseline,
    and whether it beats the baseline beyond the run's noise."""

    scenario: Scenario
    path: str
    measurement: Measurement
    ratio: Ratio | None
    beyond_noise: bool


def fastest(entry: ModelResults, scenario: Scenario) -> str:
    ms = [m for m in entry.measurements if m.scenario == scenario and not m.path.endswith(AGAIN)]
    better = max if (scenario.rate or scenario.kind == "throughput") else min
    return better(ms, key=lambda m: m.images_per_s if scenario.kind == "throughput" else m.value).path


SHIPPING = [Scenario("startup", phase="ready"), Scenario("startup", phase="first"), Scenario("memory", batch=0)]


def ship(entry: ModelResults) -> list[Ship]:
    """Per scenario (the per-call ones, the start and memory once loaded, LoadGen's), the fastest path."""
    rows = []
    once = entry.scenarios(steady=False)
    for scenario in entry.scenarios() + [s for s in SHIPPING if s in once] + [s for s in once if s.serving]:
        best = fastest(entry, scenario)
        r = entry.ratio(scenario, best, entry.baseline)
        rows.append(
            Ship(scenario, best, entry.measurement(scenario, best), r, r is not None and beyond_noise(entry, r))
        )
    return rows


def language_share(entry: ModelResults) -> list[Ratio]:
    """C++ against Python on the same engine and dtype: the language's own share of the time."""
    return [r for r in entry.ratios if r.baseline == language_counterpart(r.path) and r.scenario.steady]


def script_share(entry: ModelResults) -> list[Ratio]:
    """C++ TorchScript against the C++ module: TorchScript's own share, apart from the language's."""
    return [r for r in entry.ratios if r.baseline == script_counterpart(r.path) and r.scenario.steady]


@dataclass(frozen=True)
class Epoch:
    """A path's time per epoch and for the run: measured over whole epochs, or extrapolated from its
    training step to a full epoch of CIFAR-10."""

    epoch_s: float | None
    total_s: float | None
    extrapolated: bool


def epoch(entry: ModelResults, path: str, epochs: int) -> Epoch:
    t = entry.training.get(path)
    if t is not None and t.epoch_time_s is not None:
        return Epoch(t.epoch_time_s, t.total_time_s, False)
    step = next((entry.measurement(s, path) for s in entry.scenarios() if s.kind == "training"), None)
    if step is None:
        return Epoch(None, None, False)
    seconds = step.value * (TRAIN_IMAGES // step.scenario.batch)
    return Epoch(seconds, seconds * max(1, epochs), True)


def floor_fraction(results: Results, entry: ModelResults, path: str) -> tuple[float, float, str]:
    """(p50 seconds, the floor in seconds, its dtype): the network's forward FLOPs at the GEMM's rate."""
    m = entry.measurement(LATENCY, path)
    dtype = path.partition("@")[2] or "fp32"
    floor = entry.manifest["flops_per_image"]["forward"] / (results.floor_gflops[dtype] * 1e9)
    return m.value, floor, dtype


def missed(entry: ModelResults) -> list[str]:
    """The paths whose intervals the rounds did not bring within the target."""
    return sorted(
        {p for p, phases in entry.stopping.items() for s in phases.values() if s.half_width and not s.reached}
    )


@dataclass(frozen=True)
class Change:
    """One ratio in two runs: `changed` when neither run's value lies in the other's 95% interval."""

    model: str
    scenario: Scenario
    path: str
    baseline: str
    a: Ratio | None
    b: Ratio | None

    @property
    def changed(self) -> bool:
        a, b = self.a, self.b
        if a is None or b is None or not (math.isfinite(a.low) and math.isfinite(b.low)):
            return False
        return not (a.low <= b.value <= a.high) and not (b.low <= a.value <= b.high)

    @property
    def factor(self) -> float | None:
        """b / a: how the ratio moved from the first run to the second."""
        return None if self.a is None or self.b is None else self.b.value / self.a.value


def compare(a: Results, b: Results) -> list[Change]:
    """Every ratio of either run, paired by model, scenario, path and baseline."""
    out = []
    for model in dict.fromkeys([*a.models, *b.models]):
        ea, eb = a.models.get(model), b.models.get(model)
        keys = dict.fromkeys((r.scenario, r.path, r.baseline) for e in (ea, eb) if e for r in e.ratios)
        for scenario, path, baseline in keys:
            ra = ea.ratio(scenario, path, baseline) if ea else None
            rb = eb.ratio(scenario, path, baseline) if eb else None
            out.append(Change(model, scenario, path, baseline, ra, rb))
    return out
