"""Where the language matters (resx.bench.language): the decomposition recovers known costs from
synthetic timings, the profile's reading of nested events, the profilers of both languages count the
same operators on the same graph, a profile without operators is refused, the options, and one tiny
--language-map run end to end. No timing assertions."""

import json
import math
import zlib

import numpy as np
import pytest
from conftest import bench_plan

from resx.bench import analysis
from resx.bench import language as L
from resx.bench.config import WarmupRule
from resx.bench.results import (
    Counts,
    Estimate,
    LanguageMap,
    Measurement,
    ModelResults,
    OpProfile,
    Scenario,
    TrainingDetail,
    read_json,
)
from resx.bench.runners import make_local_runner, make_runner
from resx.codec import decode, encode
from resx.engines import EngineOptions
from resx.errors import BenchError
from resx.export import export, export_weights
from resx.models import ModelConfig


def synthetic(fixed: float, per_op: float, rounds: int = 5, noise: float = 0.01, seed: int = 0) -> list[L.FitPoint]:
    """Graphs of 3 depths x 3 widths: the reference takes kernels + its own 0.2 us per operator; the runtime
    adds fixed + per_op x operators; every round's timings move by `noise` (relative)."""
    rng = np.random.default_rng(seed)
    points = []
    for ops in (280.0, 460.0, 820.0):
        for kernels in (1e-4, 1e-3, 1e-2):
            ref = kernels + 0.2e-6 * ops
            run = ref + fixed + per_op * ops
            points.append(
                L.FitPoint(
                    f"{ops:.0f}/{kernels:g}",
                    ops,
                    list(run * (1 + noise * rng.standard_normal(rounds))),
                    list(ref * (1 + noise * rng.standard_normal(rounds))),
                )
            )
    return points


def test_the_decomposition_recovers_known_fixed_and_per_operator_costs():
    cost = L.fit("py-eager", "exe-script", synthetic(fixed=40e-6, per_op=0.8e-6, noise=0.002))
    assert cost.fixed.low <= 40e-6 <= cost.fixed.high and abs(cost.fixed.value / 40e-6 - 1) < 0.2
    assert cost.per_op.low <= 0.8e-6 <= cost.per_op.high and abs(cost.per_op.value / 0.8e-6 - 1) < 0.05
    assert cost.per_op.half_width < 0.2 and cost.points and cost.residual < 0.01
    exact = L.fit("cpp-eager", "exe-script", synthetic(fixed=5e-6, per_op=-0.1e-6, noise=0.0))
    assert math.isclose(exact.fixed.value, 5e-6, rel_tol=1e-6) and math.isclose(exact.per_op.value, -0.1e-6)


def test_the_fit_refuses_graphs_it_cannot_separate():
    with pytest.raises(BenchError, match="at least 3 graphs"):
        L.fit("py-eager", "exe-script", synthetic(1e-6, 1e-6)[:2])
    same = [p for p in synthetic(1e-6, 1e-6) if p.ops == 460.0]
    with pytest.raises(BenchError, match="differ in operator count"):
        L.fit("py-eager", "exe-script", same)


def test_the_crossover_is_where_the_saved_time_is_the_share_asked():
    costs = {
        "py-eager": L.fit("py-eager", "exe-script", synthetic(100e-6, 1e-6, noise=0.0)),
        "py-script": L.fit("py-script", "exe-script", synthetic(20e-6, 0.1e-6, noise=0.0)),
    }
    saved = 100e-6 + 460 * 1e-6  # py-eager's extra; the reference's is 0
    assert math.isclose(L.crossover(costs, "exe-script", "py-eager", 460, 2.0), saved, rel_tol=1e-6)
    assert math.isclose(L.crossover(costs, "exe-script", "py-eager", 460, 1.1), saved / 0.1, rel_tol=1e-6)
    assert L.crossover(costs, "py-eager", "py-script", 460, 1.1) is None  # py-eager saves nothing on py-script


def test_a_profile_reads_nested_operators_inside_a_non_operator_scope():
    raw = {
        "calls": 2,
        "wall_ns": 2000,
        "ops": [
            ["forward", 0, 900, -1],  # a TorchScript function: not an operator
            ["aten::conv2d", 100, 500, 0],
            ["aten::convolution", 120, 480, 1],
            ["aten::empty", 130, 140, 2],
            ["aten::relu_", 600, 700, 0],
            ["aten::conv2d", 1100, 1400, -1],
            ["aten::convolution", 1110, 1390, 5],
            ["aten::relu_", 1500, 1600, -1],
        ],
    }
    p = OpProfile.of(raw["calls"], raw["wall_ns"], raw["ops"])
    assert p.ops == 7 / 2 and p.top_ops == 4 / 2
    assert math.isclose(p.op_s, (400 + 100 + 300 + 100) * 1e-9 / 2)
    assert math.isclose(p.leaf_s, (10 + 100 + 280 + 100) * 1e-9 / 2)  # empty, relu_, convolution, relu_
    assert p.names == {"aten::conv2d": 1.0, "aten::relu_": 1.0}
    assert math.isclose(p.outside_s, (2000 - 900) * 1e-9 / 2)
    assert decode(OpProfile, json.loads(json.dumps(encode(p)))) == p


def test_a_profile_without_operators_is_refused():
    costs = {"py-eager": L.fit("py-eager", "exe-script", synthetic(1e-5, 1e-6, noise=0.0))}
    empty = OpProfile(calls=5, ops=0.0, top_ops=0.0, op_s=0.0, wall_s=1e-3)
    with pytest.raises(BenchError, match="recorded no operators"):
        L.forecast(costs, empty, Estimate(1e-6, 0.5e-6, 1.5e-6, 5), "py-eager", 2, "graphed")
    with pytest.raises(BenchError, match="recorded no operators"):
        L.forecast(costs, None, Estimate(1e-6, 0.5e-6, 1.5e-6, 5), "py-eager", 2, "graphed")
    with pytest.raises(BenchError, match="at least 1 call"):
        OpProfile.of(0, 0, [])


def test_the_forecast_adds_each_paths_extra_and_its_handoffs_under_contention():
    costs = {
        "py-eager": L.fit("py-eager", "exe-script", synthetic(100e-6, 1e-6, noise=0.0)),
        "cpp-eager": L.fit("cpp-eager", "exe-script", synthetic(5e-6, 0.0, noise=0.0)),
        "exe-aoti": L.fit("exe-aoti", "exe-script", synthetic(-50e-6, 0.0, noise=0.0)),
    }
    handoffs = {"py-eager": Estimate(2e-6, 1e-6, 3e-6, 4)}
    profile = OpProfile(calls=1, ops=460.0, top_ops=69.0, op_s=1e-3, wall_s=2e-3)
    f = L.forecast(costs, profile, Estimate(1e-6, 1e-6, 1e-6, 3), "py-eager", 2, "m", handoffs)
    base = 2e-3 - 460e-6  # the profiled call less the profiler's cost per operator it recorded
    assert math.isclose(f.latency["py-eager"], base)
    assert math.isclose(f.latency["exe-script"], base - (100e-6 + 69e-6))  # Python pays per operator it calls
    assert math.isclose(f.latency["cpp-eager"], f.latency["exe-script"] + 5e-6)
    assert "exe-aoti" not in f.latency  # other kernels: not predicted from the baseline's operators
    assert math.isclose(f.rates["py-eager"], 2 / (base + 2e-6 * 69))  # one extra caller, 2 us per operator
    assert math.isclose(f.rates["exe-script"], 2 / f.latency["exe-script"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root, config = tmp_path_factory.mktemp("language"), ModelConfig("resnet18", width=4, layers=[1, 1, 1, 1])
    export(config, root / "tiny.pt")
    export_weights(config, root / "tiny.pth")  # the eager engines' file
    return root / "tiny.pt"


def counts(profile: OpProfile, drop: tuple[str, ...] = ()) -> dict[str, float]:
    return {k: v for k, v in profile.names.items() if k not in drop}


def test_the_profilers_of_both_languages_count_the_same_operators(tiny):
    """torch.profiler (Python) and resx's RecordFunction callback (C++) on the same TorchScript graph: the
    same operators, but for the C++ engine's own input conversion (aten::to); the same module written in
    each language: the same layers, but for C++'s Linear (t + addmm where Python calls aten::linear)."""
    got = {}
    for name in ("py-script", "cpp-script", "exe-script", "py-eager", "cpp-eager"):
        file = tiny.with_suffix(".pth" if name.endswith("eager") else ".pt")
        runner = (make_runner if name.startswith("exe") else make_local_runner)(name, file, EngineOptions())
        with runner:
            runner.set_threads(1)
            runner.warm_up(1, 0, WarmupRule(2, 1.0, 4))
            p = runner.profile(1, 0, 3)
            got[name] = OpProfile.of(p.calls, p.wall_ns, p.ops)
    assert got["py-script"].ops > 100 and got["py-script"].op_s > 0
    script, to = counts(got["py-script"], ("aten::to",)), got["py-script"].names.get("aten::to", 0.0)
    for name in ("cpp-script", "exe-script"):
        assert counts(got[name], ("aten::to",)) == script, name
        extra = got[name].names.get("aten::to", 0.0) - to  # each conversion may dispatch one op inside it
        assert got[name].top_ops == got["py-script"].top_ops + extra
        assert 0 <= got[name].ops - got["py-script"].ops <= 2 * extra
    layers = ("aten::conv2d", "aten::batch_norm", "aten::relu_", "aten::add")
    assert {k: got["py-eager"].names[k] for k in layers} == {k: got["cpp-eager"].names[k] for k in layers}
    assert got["py-eager"].names["aten::linear"] == 1 and got["cpp-eager"].names["aten::addmm"] == 1


def test_map_options_are_refused_in_one_line():
    bad = {"rounds": 1, "layers": [[1, 1, 1]], "widths": [], "held_out": [4]}  # held out 4: also a fitted width
    paths = {"runtimes": ["py-eager", "exe-script"]}
    cases = [{"map": {"enabled": True, key: value}} for key, value in bad.items()]
    cases.append({"map": {"enabled": True}, "inference": {"profile_calls": -1}})
    for sections in cases:
        with pytest.raises(BenchError) as e:
            bench_plan(paths=paths, **sections)
        message = str(e.value)
        assert "\n" not in message and ("map" in message or "profile" in message), message
    with pytest.raises(BenchError, match="drop --no-inference"):
        bench_plan(paths=paths, map={"enabled": True}, inference={"enabled": False})
    plan = bench_plan("language")
    assert plan.threads == 1 and len(plan.sweep) == 5 and plan.models[0].profile_calls == 10
    counts = plan.config.counts  # the preset counts instructions too: the eager call in each language
    assert counts.enabled and counts.runtimes == ("py-eager", "cpp-eager") and counts.steps == 0
    assert all(p.model.config.counts == counts for p in plan.sweep)
    assert [p.label for p in plan.sweep if not p.fitted] == ["2-3-4-2/w8"]
    point = plan.sweep[-2].model  # 3,4,6,3 is resnet34's own: named so, not overridden
    assert point.source.name == "resnet34" and point.label == "3-4-6-3/w16" and point.config.model.layers is None
    assert [s.key for s in point.scenarios if s.kind != "concurrency"] == ["latency"]


def test_a_language_map_run_writes_its_section_and_plot(map_run):
    out = map_run
    results = read_json(out / "results.json")
    lm = results.language
    assert lm.reference == "exe-script" and set(lm.costs) == {"py-eager"} and len(lm.fit_points) == 4
    assert set(results.sweep) == {"1-1-1-1/w2", "1-1-1-1/w4", "2-2-2-2/w2", "2-2-2-2/w4"}
    assert lm.profiles["resnet18"]["py-eager"].ops > 100 and 2 in lm.contention["py-eager"]
    assert {p.model for p in lm.predictions} == {"resnet18"}
    # The graphs of the smallest width trained too, each in its own run directory (not the model's).
    assert lm.train_graph in ("1-1-1-1/w2", "2-2-2-2/w2") and "py-eager" in lm.train_split
    report = (out / "report.md").read_text()
    assert "## Where the language matters for this model" in report and "language-map.png" in report
    assert (out / "language-map.png").stat().st_size > 0


def synthetic_entry(label: str, ops: float, kernels: float, extras: dict[str, float], rounds: int = 4) -> ModelResults:
    """A graph measured as the sweep measures one: batch-1 latency per path (kernels + extra), a training
    step (10x), one and two callers, and the baseline's profile (the profiler adds 1 us per operator)."""
    rng = np.random.default_rng(zlib.crc32(label.encode()))  # the same noise in every process
    entry = ModelResults(label, {"flops_per_image": {"forward": 1e6}})
    for path, extra in extras.items():
        t = kernels + extra
        for scenario, value in (
            (Scenario("latency"), t),
            (Scenario("training", batch=8), 10 * t),
            (Scenario("concurrency", callers=1), 1 / t),
            (Scenario("concurrency", callers=2), (1.0 if path.startswith("py-") else 1.9) / t),
        ):
            m = Measurement(scenario, path, [list(value * (1 + 0.002 * rng.standard_normal(3))) for _ in range(rounds)])
            entry.measurements.append(m)
        split = {"data": 0.1, "forward": t * 3e3, "backward": t * 6e3, "optimizer": t * 1e3}
        entry.training[path] = TrainingDetail(split, 0.0, 0, "", "synthetic")
    profile = OpProfile(
        calls=5, ops=6 * ops, top_ops=ops, op_s=kernels, wall_s=kernels + extras["py-eager"] + 6e-6 * ops
    )
    entry.profiles = {"py-eager": profile}
    entry.ratios = analysis.ratios(entry)
    return entry


def test_the_map_from_synthetic_graphs_recovers_costs_and_predicts_held_out_ones():
    def extras(ops):  # what each path adds beyond exe-script, by design
        return {"py-eager": 50e-6 + 1e-6 * ops, "cpp-eager": 5e-6 + 0.05e-6 * ops, "exe-script": 0.0}

    sweep = {
        f"{ops:.0f}/w{w}": synthetic_entry(f"{ops:.0f}/w{w}", ops, k, extras(ops))
        for ops in (280.0, 460.0, 820.0)
        for w, k in ((4, 2e-4), (32, 4e-3))
    }
    sweep["460/w8"] = synthetic_entry("460/w8", 460.0, 6e-4, extras(460.0))
    fitted = [g for g in sweep if g != "460/w8"]
    models = {"resnet18": synthetic_entry("resnet18", 460.0, 1e-2, extras(460.0))}
    lm = L.analyse(sweep, fitted, models, 2)
    assert lm.reference == "exe-script" and set(lm.costs) == {"py-eager", "cpp-eager"}
    py = lm.costs["py-eager"]
    assert abs(py.per_op.value / 1e-6 - 1) < 0.1 and py.per_op.half_width < 0.2  # a 95% interval misses 1 in 20
    assert abs(py.fixed.value / 50e-6 - 1) < 0.2
    assert abs(lm.profiler.value / 1e-6 - 1) < 0.05  # the profiler's 1 us per operator, calibrated
    assert lm.train_reference == "cpp-eager" and set(lm.train_costs) == {"py-eager", "exe-script"}
    assert lm.train_graph == "820/w4" and lm.train_split["py-eager"]["backward"] > 0
    assert lm.contention_graph == "820/w4" and lm.contention["py-eager"][2] < lm.contention["exe-script"][2]
    latency = [p for p in lm.predictions if p.scenario == "latency"]
    assert {p.model for p in latency} == {"460/w8", "resnet18"}
    assert all(abs(p.predicted / p.measured - 1) < 0.02 for p in latency), latency  # intervals of 0.2% noise: tiny
    assert lm.crossovers["exe-script"]["2"] == pytest.approx(50e-6 + 460e-6, rel=0.05)
    assert decode(LanguageMap, json.loads(json.dumps(encode(lm)))) == lm


def test_the_crossover_in_instructions_is_where_the_saved_count_is_the_share_asked():
    """On counts: py-eager adds 200k + 40k per operator beyond cpp-eager (the counts' reference); at the
    model's operators, cpp-eager's count below which py-eager / cpp-eager >= 1.1 is what it saves over 0.1."""
    sweep = {}
    for ops in (280.0, 460.0, 820.0):
        entry = synthetic_entry(f"{ops:.0f}/w4", ops, 2e-4, {"py-eager": 1e-4, "exe-script": 0.0})
        entry.counts = {"cpp-eager": Counts(3, 1e7), "py-eager": Counts(3, 1e7 + 2e5 + 4e4 * ops)}
        sweep[entry.name] = entry
    lm = L.analyse(sweep, list(sweep), {}, 2)
    assert set(lm.count_costs) == {"py-eager"} and lm.count_costs["py-eager"].reference == "cpp-eager"
    saved = 2e5 + 4e4 * lm.reference_ops
    assert lm.count_crossovers["cpp-eager"]["1.1"] == pytest.approx(saved / 0.1)
    assert lm.count_crossovers["cpp-eager"]["2"] == pytest.approx(saved)
    assert decode(LanguageMap, json.loads(json.dumps(encode(lm)))) == lm


def test_a_forecast_whose_extras_exceed_the_call_predicts_nothing():
    """Too few graphs or rounds for the machine's noise can fit extras larger than the call: the forecast's
    latency comes out negative, and its ratios are no prediction (not a miss by -120% or +1e8%)."""
    entry = synthetic_entry("held", 69, 1e-3, {"py-eager": 5e-4, "exe-script": 0.0}, rounds=3)
    f = L.Forecast({"py-eager": 1e-3, "exe-script": -1e-4}, {"py-eager": 2e3, "exe-script": 2e9}, 2)
    predictions = L.check("held", entry, f)
    assert {p.scenario for p in predictions} == {"latency", "concurrency/c2"}
    assert all(math.isnan(p.predicted) and not p.made and not p.within for p in predictions)
    fine = L.check(
        "held", entry, L.Forecast({"py-eager": 1.5e-3, "exe-script": 1e-3}, {"py-eager": 1, "exe-script": 2}, 2)
    )
    assert all(p.made for p in fine) and {round(p.predicted, 3) for p in fine} == {0.667, 2.0}
    again = decode(type(predictions[0]), json.loads(json.dumps(encode(predictions[0]))))  # NaN survives results.json
    assert math.isnan(again.predicted) and not again.made
