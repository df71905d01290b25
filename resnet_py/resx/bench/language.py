"""Where the language matters: each runtime's batch-1 call taken apart, the crossover, the GIL under
contention, and a prediction for any model. Pure analysis of what `resx bench --language-map` measured
(resx.bench.compare runs the sweep); nothing here times anything.

Runtimes that run the same ATen kernels differ by what they add around them. Against a reference (the
C++ runtime of the sweep: exe-script, else another C++ path), a runtime's batch-1 call on graph g costs

    latency_r(g) - latency_ref(g) = fixed_r + per_op_r x ops(g)

ops(g) the operators the runtime itself calls per call (the top-level ones of the baseline's profile:
Python pays around each of those; what ATen dispatches inside them costs every runtime alike). fixed_r
is what a call adds whatever the graph (entering the runtime, its arguments, its result); per_op_r what
it adds around each operator (Python's
interpreter and nn.Module calls, TorchScript's interpreter); a compiled engine, which replaces and fuses
operators, shows its fixed cost and what it saves (or costs) per operator it replaced. The sweep varies
the depth (ops) and the width (the kernels' time) of one ResNet; each round is fitted on its own (a
round ran every path on a graph back to back, so the difference is paired) and the interval is
Student's t over the rounds, as resx.stats does for ratios.

The profile (torch.profiler in Python, a RecordFunction callback in C++) gives each runtime's operators
and its own time outside them; the profiler's cost per operator, calibrated on the sweep, turns a
model's profile into its latency, and so into every path's predicted ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from resx import stats
from resx.bench.results import (
    LATENCY,
    CallCost,
    Estimate,
    LanguageMap,
    ModelResults,
    OpProfile,
    Prediction,
    Scenario,
)
from resx.errors import BenchError

SHARES = (1.1, 2.0)  # the crossovers reported: C++ at least 10% faster, and at least 2x


@dataclass(frozen=True)
class FitPoint:
    """One graph of the sweep for one runtime: its operators (the baseline's profile) and, per round, the
    runtime's and the reference's batch-1 latency (each round's median call, seconds)."""

    label: str
    ops: float
    rounds: list[float]
    reference: list[float]


def _solve(ops: np.ndarray, extra: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """[fixed, per_op] by least squares, each graph's error relative to its reference latency (timings
    move in proportion)."""
    design = np.column_stack([np.ones_like(ops), ops]) / scale[:, None]
    beta, *_ = np.linalg.lstsq(design, extra / scale, rcond=None)
    return beta


def fit(runtime: str, reference: str, points: list[FitPoint]) -> CallCost:
    """The runtime's fixed and per-operator cost beyond the reference's, from graphs of different operator
    counts: one fit per round (the rounds every point ran for both), t over the rounds."""
    if len(points) < 3:
        raise BenchError(f"{runtime}: the call's decomposition needs at least 3 graphs, got {len(points)}")
    ops = np.array([p.ops for p in points], dtype=np.float64)
    if np.ptp(ops) == 0:
        raise BenchError(f"{runtime}: the graphs must differ in operator count (give --map-layers of other depths)")
    rounds = min(min(len(p.rounds), len(p.reference)) for p in points)
    scale = np.array([float(np.median(p.reference)) for p in points])
    per_round = np.array(
        [_solve(ops, np.array([p.rounds[i] - p.reference[i] for p in points]), scale) for i in range(rounds)]
    )
    extra = np.array([float(np.median(p.rounds)) for p in points]) - scale
    beta = _solve(ops, extra, scale)
    residual = float(np.sqrt(np.mean(((beta[0] + beta[1] * ops - extra) / scale) ** 2)))
    fixed, per_op = (Estimate.of(list(per_round[:, k])) for k in range(2))
    return CallCost(runtime, reference, fixed, per_op, [p.label for p in points], residual)


def profiler_cost(points: list[tuple[OpProfile, float]]) -> Estimate:
    """What the profiler adds per operator it records, from (profile, unprofiled latency) pairs of one
    runtime: (profiled wall - latency) / operators, t over the graphs."""
    values = [(p.wall_s - latency) / p.ops for p, latency in points if p.ops > 0]
    if not values:
        raise BenchError("the profiler's cost needs profiles with operators")
    return Estimate.of(values)


def crossover(costs: dict[str, CallCost], path: str, baseline: str, ops: float, factor: float) -> float | None:
    """The path's own latency below which it is at least `factor` x faster than the baseline, for a graph
    of `ops` operators: it saves the difference of their extras per call, D, so baseline / path =
    (path + D) / path >= factor while path <= D / (factor - 1) (seconds); None when it saves nothing."""
    saved = extra(costs, baseline, ops) - extra(costs, path, ops)
    return saved / (factor - 1) if saved > 0 else None


def extra(costs: dict[str, CallCost], path: str, ops: float) -> float:
    """What the path adds beyond the reference (0 for the reference itself)."""
    return costs[path].extra(ops) if path in costs else 0.0


def contention(entry: ModelResults, path: str, cores: int) -> dict[int, float]:
    """Per caller count k: the images/s of k concurrent callers over min(k, cores) x one caller's (1:
    they scale with the cores; below 1: they get in each other's way, as Python threads under the GIL)."""
    one = entry.measurement(Scenario("concurrency", callers=1), path)
    if one is None or one.value <= 0:
        return {}
    out = {}
    for s in entry.scenarios():
        m = entry.measurement(s, path) if s.kind == "concurrency" else None
        if m is not None:
            out[s.callers] = m.value / (min(s.callers, cores) * one.value)
    return dict(sorted(out.items()))


def handoff_cost(
    sweep: dict[str, ModelResults], graphs: list[str], ops: dict[str, float], path: str, cores: int
) -> Estimate | None:
    """What each operator adds to a call per extra concurrent caller (Python threads hand the GIL over at
    every operator): from each graph's one- and k-caller rates (k: the most callers up to the cores),
    (k / rate_k - 1 / rate_1) / ((k - 1) x operators), t over the graphs; about 0 when callers do not
    wait for each other. None without concurrency measured."""
    values = []
    for g in graphs:
        e = sweep[g]
        ks = [s.callers for s in e.scenarios() if s.kind == "concurrency" and 1 < s.callers <= cores]
        if not ks or g not in ops:
            continue
        k = max(ks)
        one = e.measurement(Scenario("concurrency", callers=1), path)
        many = e.measurement(Scenario("concurrency", callers=k), path)
        if one is not None and many is not None and min(one.value, many.value) > 0:
            values.append((k / many.value - 1 / one.value) / ((k - 1) * ops[g]))
    return Estimate.of(values) if values else None


SAME_KERNELS = ("eager", "script", "frozen")  # the engines that run the profiled ATen operators themselves


def same_kernels(path: str) -> bool:
    """Whether a path runs the baseline's operators (its engine is eager, script or frozen), which the map
    can predict from the baseline's profile; a compiled engine replaces and fuses them."""
    return path.partition("@")[0].partition("+")[0].partition("-")[2] in SAME_KERNELS


@dataclass(frozen=True)
class Forecast:
    """What the map predicts for a model from its baseline's profile: every path's batch-1 latency
    (seconds), and its images/s with `callers` callers, one intra-op thread each: each call on its own
    core, longer by the path's cost per operator per extra caller (handoff_cost)."""

    latency: dict[str, float]
    rates: dict[str, float]
    callers: int


def forecast(
    costs: dict[str, CallCost],
    profile: OpProfile | None,
    profiler: Estimate,
    baseline: str,
    cores: int,
    label: str,
    handoffs: dict[str, Estimate] | None = None,
) -> Forecast:
    """A model's place on the map, from one profile of its baseline at batch 1: its latency is the
    profiled call less the profiler's cost per operator; every path that runs the same operators adds
    its own extra instead of the baseline's; with `cores` callers each call is longer by the path's
    handoff cost per operator per extra caller. A profile without operators says nothing of them:
    refused."""
    if profile is None or profile.ops <= 0:
        raise BenchError(
            f"{label}: its profile recorded no operators, so its place on the language map is unknown "
            "(profile the baseline: a CUDA graph replay or a fused engine dispatches none)"
        )
    if baseline not in costs and not costs:
        raise BenchError(f"{label}: no runtime of the map was fitted")
    n = profile.top_ops
    base = max(profile.wall_s - profiler.value * profile.ops, 1e-9)
    reference = base - extra(costs, baseline, n)
    paths = [p for p in dict.fromkeys([baseline, *costs, *(c.reference for c in costs.values())]) if same_kernels(p)]
    latency = {p: reference + extra(costs, p, n) for p in paths}
    handoffs = handoffs or {}
    rates = {}
    for p, t in latency.items():
        wait = handoffs[p].value * n * (cores - 1) if p in handoffs else 0.0
        rates[p] = cores / max(t + wait, 1e-9)
    return Forecast(latency, rates, cores)


def check(label: str, entry: ModelResults, f: Forecast) -> list[Prediction]:
    """The forecast's ratios to the baseline beside the ones measured on the model (batch-1 latency, and
    as many concurrent callers as cores); NaN where the forecast's latency is not positive (Prediction.made)."""
    base, out = entry.baseline, []
    many = Scenario("concurrency", callers=f.callers)
    for path in f.latency:
        if path == base:
            continue
        made = min(f.latency[path], f.latency[base]) > 0  # else the fitted extras exceed the call: no prediction
        for scenario, predicted in (
            (LATENCY, f.latency[path] / f.latency[base] if made else math.nan),
            (many, f.rates[path] / f.rates[base] if made else math.nan),
        ):
            r = entry.ratio(scenario, path, base)
            if r is not None and math.isfinite(r.low):
                out.append(Prediction(label, path, base, scenario.key, predicted, r.value, r.low, r.high))
    return out


REFERENCES = ("exe-script", "cpp-script", "exe-eager", "cpp-eager", "exe-frozen", "cpp-frozen")


def fit_paths(
    entries: dict[str, ModelResults], ops: dict[str, float], scenario: Scenario, paths: list[str], reference: str
) -> tuple[dict[str, CallCost], dict[str, str]]:
    """Every path's cost beyond the reference in one scenario, over the graphs `entries` whose operator
    count `ops` has: (costs, and for the paths that could not be fitted, why)."""
    costs, skipped = {}, {}
    for path in paths:
        if path == reference:
            continue
        points = []
        for g, e in entries.items():
            m, ref = e.measurement(scenario, path), e.measurement(scenario, reference)
            if m is not None and ref is not None and ops.get(g, 0) > 0:
                points.append(FitPoint(g, ops[g], m.per_round, ref.per_round))
        try:
            costs[path] = fit(path, reference, points)
        except BenchError as e:
            skipped[path] = str(e)
    return costs, skipped


def time_per_op(profile: OpProfile) -> float:
    """Seconds inside operators per operator: the least is the most overhead-bound graph."""
    return profile.op_s / profile.ops


def analyse(
    sweep: dict[str, ModelResults], fit_points: list[str], models: dict[str, ModelResults], cores: int
) -> LanguageMap:
    """The map from the sweep's graphs (those of `fit_points` fitted; the rest held out) and the run's
    own models (held out, each predicted from its baseline's profile)."""
    profiles = {g: dict(e.profiles) for g, e in sweep.items()} | {m: dict(e.profiles) for m, e in models.items()}
    first = sweep[fit_points[0]]
    base, paths = first.baseline, first.paths(LATENCY)
    reference = next((r for r in REFERENCES if r in paths), None)
    if reference is None:
        raise BenchError(f"--language-map needs a C++ runtime to compare with: add one of {', '.join(REFERENCES)}")
    ops = {g: profiles[g][base].top_ops for g in fit_points if base in profiles[g]}
    costs, skipped = fit_paths({g: sweep[g] for g in fit_points}, ops, LATENCY, paths, reference)
    calibration = [
        (profiles[g][base], sweep[g].measurement(LATENCY, base).value)
        for g in fit_points
        if base in profiles[g] and sweep[g].measurement(LATENCY, base) is not None
    ]
    profiler = profiler_cost(calibration)
    handoffs = {p: e for p in paths if (e := handoff_cost(sweep, fit_points, ops, p, cores)) is not None}
    held = [g for g in sweep if g not in fit_points]
    predictions = []
    for label, entry in [*((g, sweep[g]) for g in held), *models.items()]:
        prof = profiles[label].get(entry.baseline)
        if prof is not None and prof.ops > 0 and entry.baseline == base:
            f = forecast(costs, prof, profiler, base, cores, label, handoffs)
            predictions += check(label, entry, f)
    own = next((profiles[m].get(base) for m in models if profiles[m].get(base)), None) or profiles[fit_points[0]][base]
    crossovers = {
        p: {f"{f:g}": crossover(costs, p, base, own.top_ops, f) for f in SHARES}
        for p in [*costs, reference]
        if p != base
    }
    train = _training(sweep, profiles, base)
    all_ops = {g: p[base].top_ops for g, p in profiles.items() if base in p}
    fitted = {g: sweep[g] for g in fit_points}
    count_ref = count_reference(fitted, reference)
    count_costs = fit_counts(fitted, ops, count_ref)
    count_crossovers = {
        p: {f"{f:g}": crossover(count_costs, p, base, own.top_ops, f) for f in SHARES}
        for p in [*count_costs, count_ref]
        if p != base and count_costs
    }
    count_predictions = predict_counts([*((g, sweep[g]) for g in held), *models.items()], all_ops, count_costs)
    # The most overhead-bound graph: the least time inside operators per operator.
    bound = min((g for g in sweep if base in profiles[g]), key=lambda g: time_per_op(profiles[g][base]))
    return LanguageMap(
        reference,
        base,
        list(fit_points),
        held,
        costs,
        profiler,
        profiles,
        own.top_ops,
        crossovers,
        {p: c for p in sweep[bound].paths(LATENCY) if (c := contention(sweep[bound], p, cores))},
        bound,
        predictions,
        skipped,
        handoffs,
        *train,
        count_costs,
        count_predictions,
        count_crossovers,
    )


def fit_line(ops: list[float], extra: list[float]) -> tuple[Estimate, Estimate, float]:
    """extra = fixed + per_op x ops by least squares over the graphs, each coefficient with Student's t 95%
    interval from the residuals (n - 2 degrees of freedom; none with 2 graphs), and the fit's root-mean-
    square error relative to the largest extra. Counts are deterministic: their interval is the model's,
    not the machine's."""
    x, y = np.asarray(ops, dtype=np.float64), np.asarray(extra, dtype=np.float64)
    design = np.column_stack([np.ones_like(x), x])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ beta
    n = x.size
    if n > 2:
        sigma2 = float(residual @ residual) / (n - 2)
        se = np.sqrt(np.diag(sigma2 * np.linalg.inv(design.T @ design)))
        h = [stats.t_quantile(n - 2) * s for s in se]
    else:
        h = [math.nan, math.nan]
    est = [Estimate(float(b), float(b) - hk, float(b) + hk, n) for b, hk in zip(beta, h, strict=True)]
    scale = max(float(np.max(np.abs(y))), 1.0)
    return est[0], est[1], float(np.sqrt(np.mean(residual**2))) / scale


COUNT_REFERENCES = ("cpp-eager", "exe-eager")


def count_reference(entries: dict[str, ModelResults], reference: str) -> str:
    """What the counts are fitted against: the eager module from C++ where it was counted (so py-eager's
    extra is the language's alone, the same module and kernels), else the time map's reference."""
    counted = {p for e in entries.values() for p in e.counts}
    return next((r for r in COUNT_REFERENCES if r in counted), reference)


def fit_counts(entries: dict[str, ModelResults], ops: dict[str, float], reference: str) -> dict[str, CallCost]:
    """Every counted path's instructions per call beyond the reference's: fixed + per operator the runtime
    calls, over the fitted graphs that counted both."""
    paths = dict.fromkeys(p for e in entries.values() for p in e.counts)
    out = {}
    for path in paths:
        graphs = [g for g, e in entries.items() if path in e.counts and reference in e.counts and g in ops]
        if path == reference or len(graphs) < 3 or np.ptp([ops[g] for g in graphs]) == 0:
            continue
        extra = [entries[g].counts[path].instructions - entries[g].counts[reference].instructions for g in graphs]
        fixed, per_op, residual = fit_line([ops[g] for g in graphs], extra)
        out[path] = CallCost(path, reference, fixed, per_op, graphs, residual)
    return out


def predict_counts(
    held: list[tuple[str, ModelResults]], ops: dict[str, float], costs: dict[str, CallCost]
) -> list[Prediction]:
    """For each graph or model the fit did not use: every fitted path's instructions per call predicted
    from the reference's count and the model's operators, beside its count."""
    out = []
    for label, entry in held:
        for path, cost in costs.items():
            have = entry.counts.get(path), entry.counts.get(cost.reference)
            if None in have or label not in ops:
                continue
            measured, reference = have[0].instructions, have[1].instructions
            predicted = reference + cost.extra(ops[label])
            out.append(Prediction(label, path, cost.reference, "instructions", predicted, measured, measured, measured))
    return out


TRAIN_REFERENCES = ("cpp-eager", "exe-eager", "cpp-script", "exe-script")


def _training(
    sweep: dict[str, ModelResults], profiles: dict[str, dict[str, OpProfile]], base: str
) -> tuple[str, dict[str, CallCost], str, dict[str, dict[str, float]]]:
    """The training step's decomposition on the sweep's graphs that trained: each path's step beyond the
    C++ reference's, fixed + per forward operator (the graph's size; backward and the optimizer scale
    with it), and the step split at the graph with the least operator time per operator."""
    trained = {g: e for g, e in sweep.items() if e.training and base in profiles[g]}
    if not trained:
        return "", {}, "", {}
    first = next(iter(trained.values()))
    steps = [s for s in first.scenarios() if s.kind == "training"]
    paths = list(first.training)
    reference = next((r for r in TRAIN_REFERENCES if r in paths), "")
    costs = {}
    if reference and steps:  # fewer than 3 graphs trained leaves a path unfitted: the split still shows it
        ops = {g: profiles[g][base].top_ops for g in trained}
        costs, _ = fit_paths(trained, ops, steps[0], paths, reference)
    graph = min(trained, key=lambda g: time_per_op(profiles[g][base]))
    split = {p: dict(t.split_ms) for p, t in trained[graph].training.items()}
    return reference, costs, graph, split
