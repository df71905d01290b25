"""The plan of a `resx bench` run: a pure function of its config (and of the machine's cores), typed and
explicit: every model's paths, scenarios and training paths, the language map's graphs, the budgets, and
an estimate of how long it takes. A config the plan cannot be made of is refused here, in one line naming
the option, before anything is exported or timed."""

from __future__ import annotations

import contextlib
import math
import shutil
from dataclasses import dataclass, field

from resx.bench.config import BenchConfig, WarmupRule
from resx.bench.registry import RUNTIMES, baseline_of, resolve, runs, why_not
from resx.bench.results import Scenario
from resx.bench.serving import SCENARIOS as SERVE_SCENARIOS
from resx.engines import EngineOptions
from resx.errors import BenchError
from resx.export.executorch import MAX_BATCH as EXECUTORCH_MAX_BATCH
from resx.models import DTYPES, architecture_of
from resx.sources import Source

# Engines whose forward a CUDA graph can capture (torch.compile has its own: mode="reduce-overhead").
GRAPHED_ENGINES = ("eager", "script", "frozen", "aoti")
COLD_CACHE_ENV = "TORCHINDUCTOR_FORCE_DISABLE_CACHES"  # torch.compiler.config.force_disable_caches
DRIFT_SAMPLES = 20  # resident-memory samples over a --drift-calls run
MAP_PROFILE_CALLS = 10  # the language map's profile of each path, when --profile-calls is not given
VALGRIND_INSTALL = "install valgrind (Debian and Ubuntu: apt-get install valgrind), or drop --counts"
# --count-kernels: the environment of a worker under callgrind, by the kernels' instruction set. valgrind
# emulates the AVX2 kernels' FMA slowly (ResNet18 at width 64: 40 s a call there, 0.4 s with these).
KERNEL_ISA = {"avx": {"DNNL_MAX_CPU_ISA": "AVX", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}, "avx2": {}}
# Every worker under callgrind: Python's string hashing fixed (it is random per process), so that the
# interpreter's dict probes are the same in every graph and rerun. Random, py-eager's interpreter count of
# one graph moved by 1.7% between processes and off the map's line by 56k; fixed, two runs were equal to
# the instruction and the line's per-operator interval ±0.7% (benchmarks/README.md).
COUNT_ENV = {"PYTHONHASHSEED": "0"}
AGAIN = "+again"  # the baseline's second path (resx.bench.analysis.noise_path): the run's noise floor


@dataclass(frozen=True)
class BenchPath:
    """One thing measured: a runtime at a dtype, replayed from a CUDA graph or not."""

    label: str
    runtime: str
    dtype: str
    cuda_graphs: bool = False
    cold_cache: bool = False  # torch.compile with Inductor's caches off, in every fresh process (+cold)

    @property
    def env(self) -> dict[str, str]:
        """What the path's process gets in its environment beyond the bench's."""
        return {COLD_CACHE_ENV: "1"} if self.cold_cache else {}

    @property
    def engine(self) -> str:
        return RUNTIMES[self.runtime].engine


@dataclass(frozen=True)
class ModelPlan:
    """One model as measured: under `config` (a graph of the language map has its own), its paths (the
    baseline first), the scenarios of each inference round, the paths that train, and the runtimes that
    cannot run it (why)."""

    label: str
    source: Source
    config: BenchConfig
    threads: int
    paths: tuple[BenchPath, ...]
    train_paths: tuple[BenchPath, ...]
    scenarios: tuple[Scenario, ...]
    baseline: str
    skipped: dict[str, str] = field(default_factory=dict)
    profile_calls: int = 0

    def engine_options(self, path: BenchPath, shape: tuple[int, int, int]) -> EngineOptions:
        cfg = self.config
        serving = cfg.serving.workers if cfg.serving.scenarios else ()
        return EngineOptions(
            engine=path.engine,
            device=cfg.paths.device,
            dtype=path.dtype,
            channels_last=cfg.paths.channels_last,
            runners=max([1, *cfg.inference.thread_counts, *serving]),
            deterministic=cfg.paths.deterministic,
            cuda_graphs=path.cuda_graphs,
            input_shape=tuple(shape),
        )


@dataclass(frozen=True)
class SweepPoint:
    """A graph of the language map: its label (blocks per stage / width), whether the fit uses it, and
    its plan (batch 1, 1 up to the cores' callers, the map's rounds)."""

    label: str
    fitted: bool
    model: ModelPlan


@dataclass(frozen=True)
class Plan:
    config: BenchConfig
    cores: int
    threads: int  # intra-op threads of every runtime (the config's, or torch's default)
    models: tuple[ModelPlan, ...]
    sweep: tuple[SweepPoint, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def serving(self) -> bool:
        return bool(self.config.serving.scenarios)


def make(cfg: BenchConfig, cores: int, default_threads: int, cuda: bool = False) -> Plan:
    """The plan of `cfg` on a machine of `cores` cores whose torch runs `default_threads` intra-op threads
    by default (`cuda`: whether CUDA is available); one line naming the option that cannot be planned."""
    _check(cfg, cores, cuda)
    threads = cfg.paths.threads or default_threads
    runtimes = _runtimes(cfg)
    if not cfg.model.models or len(set(cfg.model.models)) != len(cfg.model.models):
        raise BenchError(f"--model '{','.join(cfg.model.models)}': give each model once, comma-separated")
    models = tuple(_model(cfg, spec, runtimes, threads) for spec in cfg.model.models)
    if cfg.paths.named:  # a runtime named that no model runs is refused; for the others it is skipped
        refused = [r for r in runtimes if not any(runs(r.partition("@")[0], m.source) for m in models)]
        if refused:
            source = models[0].source
            can = ", ".join(dict.fromkeys(p.runtime for p in models[0].paths)) or "none of those asked for"
            raise BenchError(
                f"{', '.join(refused)}: {why_not(refused[0].partition('@')[0], source)}; {source.spec} runs on {can}"
            )
    trains = {p.label for p in _paths(cfg, runtimes, None) if RUNTIMES[p.runtime].train}
    unknown = [r for r in cfg.training.runtimes if r not in trains]
    if unknown:
        raise BenchError(
            f"--train-runtime {unknown[0]}: not a measured path that trains; choose from "
            f"{', '.join(sorted(trains)) or 'none'}"
        )
    measured = {p.label for p in _paths(cfg, runtimes, None)}
    unknown = [r for r in cfg.counts.runtimes if r not in measured]
    if unknown:
        raise BenchError(
            f"--count-runtime {unknown[0]}: not a measured path; choose from {', '.join(sorted(measured)) or 'none'}"
        )
    warnings = []
    if cfg.inference.enabled and max(cfg.inference.thread_counts, default=0) > cores:
        warnings.append(
            f"--thread-counts {max(cfg.inference.thread_counts)}: more callers than this machine's {cores} cores; "
            "beyond them the figures time the oversubscription"
        )
    sweep = _sweep(cfg, runtimes, threads, cores) if cfg.map.enabled else ()
    return Plan(cfg, cores, threads, models, sweep, tuple(warnings))


def _runtimes(cfg: BenchConfig) -> list[str]:
    """The runtimes asked for, resolved (aliases) and with their @dtype; all when none were named."""
    out = []
    for entry in cfg.paths.runtimes or tuple(RUNTIMES):
        name, at, dtype = entry.partition("@")
        if at and dtype not in DTYPES:
            raise BenchError(f"--runtime {entry}: unknown dtype '{dtype}' ({' or '.join(DTYPES)})")
        out.append(resolve(name) + (f"@{dtype}" if at else ""))
    labels = [p.label for p in _paths(cfg, out, None)]
    if len(set(labels)) != len(labels):
        raise BenchError(f"--runtime lists a runtime twice: {', '.join(out)}")
    return out


def _paths(cfg: BenchConfig, runtimes: list[str], source: Source | None) -> list[BenchPath]:
    """Everything measured (on `source`, the runtimes that can run it): every runtime at every dtype
    (or at its own), and with --cuda-graphs also every runtime whose engine can be captured, replayed
    from a CUDA graph, and with --compile-cold every torch.compile runtime with Inductor's caches off.
    Labelled runtime[+graphs|+cold][@bf16]; the baseline first."""
    p = cfg.paths
    chosen = [r for r in runtimes if source is None or runs(r.partition("@")[0], source)]
    entries = [(r.partition("@")[0], [r.partition("@")[2]] if "@" in r else list(p.dtypes)) for r in chosen]
    out = []
    for d in dict.fromkeys([*p.dtypes, *(ds[0] for _, ds in entries if len(ds) == 1)]):
        for graphs in (False, True) if p.cuda_graphs else (False,):
            for runtime, dtypes in entries:
                engine = RUNTIMES[runtime].engine
                if d not in dtypes or (graphs and engine not in GRAPHED_ENGINES):
                    continue
                if engine == "executorch" and (d != "fp32" or p.device != "cpu" or p.channels_last):
                    continue  # the program runs as exported: fp32 on the CPU
                at = "" if d == "fp32" else f"@{d}"
                out.append(BenchPath(runtime + ("+graphs" if graphs else "") + at, runtime, d, graphs))
                if p.compile_cold and RUNTIMES[runtime].engine == "compile" and not graphs:
                    out.append(BenchPath(runtime + "+cold" + at, runtime, d, cold_cache=True))
    base = baseline_of(source)
    return sorted(out, key=lambda x: x.label != base)


def _model(cfg: BenchConfig, spec: str, runtimes: list[str], threads: int) -> ModelPlan:
    source = cfg.model.source(spec, among=True)
    paths = _paths(cfg, runtimes, source)
    base = baseline_of(source)
    if cfg.rounds.noise_floor and cfg.inference.enabled:
        first = next((p for p in paths if p.label == base), None)
        if first is not None:
            paths.insert(1, BenchPath(base + AGAIN, first.runtime, first.dtype))
    chosen = set(cfg.training.runtimes)
    train = [
        p
        for p in paths
        if cfg.training.enabled
        and source.buildable  # a model file trains from the source it came from
        and RUNTIMES[p.runtime].train
        and not p.cuda_graphs
        and not p.cold_cache
        and not p.label.endswith(AGAIN)
        and (not chosen or p.label in chosen)
    ]
    skipped = {
        r: why_not(r, source) for r in dict.fromkeys(x.partition("@")[0] for x in runtimes) if not runs(r, source)
    }
    largest = max(cfg.inference.batch_sizes, default=1) if cfg.inference.enabled else 1
    beyond = [p for p in paths if RUNTIMES[p.runtime].engine == "executorch" and largest > EXECUTORCH_MAX_BATCH]
    if beyond:  # an ExecuTorch program's buffers are planned for the export's bound: larger batches cannot run
        why = f"its program is exported for batches up to {EXECUTORCH_MAX_BATCH}, below --batch-sizes {largest}"
        if cfg.paths.named:
            raise BenchError(f"{beyond[0].runtime}: {why}; give batches up to {EXECUTORCH_MAX_BATCH} or drop it")
        paths = [p for p in paths if p not in beyond]
        skipped |= {p.runtime: why for p in beyond}
    profile = cfg.inference.profile_calls or (MAP_PROFILE_CALLS if cfg.map.enabled else 0)
    return ModelPlan(
        source.label, source, cfg, threads, tuple(paths), tuple(train), _scenarios(cfg), base, skipped, profile
    )


def _scenarios(cfg: BenchConfig) -> tuple[Scenario, ...]:
    """The inference scenarios every path is measured at, in each round."""
    i = cfg.inference
    if not i.enabled:
        return ()
    out = [Scenario("latency")] + [Scenario("throughput", batch=b) for b in i.batch_sizes if b > 1]
    return tuple(out + [Scenario("concurrency", callers=t) for t in i.thread_counts])


def callers(cores: int) -> list[int]:
    """1, 2, 4, ... up to the cores, and the cores."""
    return sorted({*(2**k for k in range(cores.bit_length()) if 2**k <= cores), cores})


def _sweep(cfg: BenchConfig, runtimes: list[str], threads: int, cores: int) -> tuple[SweepPoint, ...]:
    """The language map's graphs: batch 1 and 1 up to the cores' concurrent callers, no serving, the map's
    rounds, whatever they take."""
    m = cfg.map
    middle = m.layers[len(m.layers) // 2]
    graphs = [(ls, w, True) for ls in m.layers for w in m.widths] + [(middle, w, False) for w in m.held_out]
    out = []
    for layers, width, fitted in graphs:
        arch = architecture_of("BasicBlock", list(layers))
        point = cfg.replace(
            model={"models": (arch or "resnet18",), "layers": None if arch else layers, "width": width},
            inference={"batch_sizes": (1,), "thread_counts": tuple(callers(cores)), "drift_calls": 0},
            serving={"scenarios": ()},
            training={
                "enabled": cfg.training.enabled and fitted and width == min(m.widths),
                "rounds": m.rounds,
                "budget": math.inf,  # the map's rounds, whatever they take
                "epochs": 0,
            },
            paths={"compile_cold": False},
            counts={"steps": 0},  # the map's graphs count their calls; the training step is the models' to count
            rounds={
                "min_rounds": m.rounds,
                "max_rounds": m.rounds,
                "rounds": None,
                "budget": math.inf,
                "noise_floor": False,
            },
            map={"enabled": False},
        )
        label = f"{'-'.join(map(str, layers))}/w{width}"
        plan = _model(point, point.model.models[0], runtimes, threads)
        profile = cfg.inference.profile_calls or MAP_PROFILE_CALLS
        out.append(SweepPoint(label, fitted, _with(plan, label=label, profile_calls=profile)))
    return tuple(out)


def _with(plan: ModelPlan, **changes) -> ModelPlan:
    from dataclasses import replace

    return replace(plan, **changes)


def _check(cfg: BenchConfig, cores: int, cuda: bool) -> None:
    """Every option's range, one line naming the option."""
    r, i, t, p = cfg.rounds, cfg.inference, cfg.training, cfg.paths
    bad = [d for d in p.dtypes if d not in DTYPES]
    if bad or not p.dtypes or len(set(p.dtypes)) != len(p.dtypes):
        raise BenchError(f"--dtype '{','.join(p.dtypes)}': give fp32, bf16 or fp32,bf16")
    at_least_1 = {
        "--max-rounds": r.max_rounds if r.rounds is None else r.rounds,
        "--min-rounds": r.min_rounds if r.rounds is None else r.rounds,
        "--latency-calls": i.latency_calls,
        "--throughput-calls": i.throughput_calls,
        "--train-steps": t.steps,
        "--train-batch": t.batch,
        "--train-rounds": t.rounds,
        "--count-calls": cfg.counts.calls,
    }
    for option, value in at_least_1.items():
        if value < 1:
            raise BenchError(f"{option} must be at least 1, got {value}")
    if cfg.counts.steps < 0:
        raise BenchError(f"--count-steps must be 0 (none) or more, got {cfg.counts.steps}")
    if i.drift_calls < 0 or 0 < i.drift_calls < DRIFT_SAMPLES:
        raise BenchError(f"--drift-calls must be 0 (off) or at least {DRIFT_SAMPLES}, got {i.drift_calls}")
    positive = {
        "--thread-seconds": i.thread_seconds,
        "--target": r.target,
        "--budget": r.budget,
        "--train-budget": t.budget,
        "--start-timeout": r.start_timeout,
    }
    for option, value in positive.items():
        if not (0 < value <= math.inf) or (math.isinf(value) and option not in ("--budget", "--train-budget")):
            raise BenchError(f"{option} must be a positive number, got {value}")
    if cfg.counts.kernels not in KERNEL_ISA:
        raise BenchError(f"--count-kernels '{cfg.counts.kernels}': give {' or '.join(KERNEL_ISA)}")
    if p.aoti_freezing not in ("auto", "on", "off"):
        raise BenchError(f"--aoti-freezing '{p.aoti_freezing}': give auto, on or off")
    _check_serving(cfg, cores)
    _check_map(cfg)
    if p.threads < 0:
        raise BenchError(f"--threads must be >= 0 (0: torch's default), got {p.threads}")
    if p.threads > cores:
        raise BenchError(
            f"--threads {p.threads}: this machine has {cores} cores; give --threads {cores} or "
            f"fewer (more would time the oversubscription, not the runtimes)"
        )
    if t.epochs < 0:
        raise BenchError(f"--epochs must be >= 0, got {t.epochs}")
    if t.epochs > 0 and not t.data:
        raise BenchError("--epochs needs real data: pass --data DIR (CIFAR-10)")
    if cfg.preset == "seed" and not t.data:
        raise BenchError("--preset seed trains 50 epochs on CIFAR-10: pass --data DIR (see `resx data fetch`)")
    if math.isnan(r.max_load):
        raise BenchError("--max-load must be a number")
    if p.device.split(":")[0] not in ("cpu", "cuda"):
        raise BenchError(f"unknown --device '{p.device}': cpu or cuda")
    if p.device.startswith("cuda") and not cuda:
        raise BenchError(f"--device {p.device}: CUDA is not available here; use --device cpu")
    if p.cuda_graphs and not p.device.startswith("cuda"):
        raise BenchError("--cuda-graphs needs --device cuda")
    if cfg.counts.enabled and p.device != "cpu":
        raise BenchError("--counts counts instructions on the CPU: drop it, or use --device cpu")
    if cfg.counts.enabled and not all(shutil.which(tool) for tool in ("valgrind", "callgrind_annotate")):
        raise BenchError(f"--counts: valgrind is not on the PATH; {VALGRIND_INSTALL}")


def _check_map(cfg: BenchConfig) -> None:
    m = cfg.map
    if cfg.inference.profile_calls < 0:
        raise BenchError(f"--profile-calls must be >= 0 (0: no profile), got {cfg.inference.profile_calls}")
    if not m.enabled:
        return
    if not cfg.inference.enabled:
        raise BenchError("--language-map measures batch-1 latency: drop --no-inference")
    if len(m.layers) < 2 or any(len(ls) != 4 or min(ls) < 1 for ls in m.layers):
        raise BenchError("--map-layers: give at least 2 depths as 4 blocks per stage each, e.g. 1,1,1,1/2,2,2,2")
    widths = [*m.widths, *m.held_out]
    if not m.widths or any(w < 1 for w in widths) or len(set(widths)) != len(widths):
        raise BenchError(
            "--map-widths/--map-held-out: give positive widths, each once across both, e.g. 4,16,64 and 8,32"
        )
    if len(m.layers) * len(m.widths) < 3:
        raise BenchError("--map-layers x --map-widths: the fit needs at least 3 graphs")
    if m.rounds < 2:
        raise BenchError(f"--map-rounds must be at least 2 (an interval needs two), got {m.rounds}")


def _check_serving(cfg: BenchConfig, cores: int) -> None:
    s = cfg.serving
    unknown = [x for x in s.scenarios if x not in SERVE_SCENARIOS]
    if unknown or len(set(s.scenarios)) != len(s.scenarios):
        raise BenchError(
            f"--serve '{','.join(s.scenarios)}': give none or a comma list of {', '.join(SERVE_SCENARIOS)}"
        )
    if not s.scenarios:
        return
    if not s.workers or any(w < 1 for w in s.workers):
        raise BenchError(f"--serve-workers '{','.join(map(str, s.workers))}': give counts of at least 1")
    if max(s.workers) > cores and not cfg.rounds.force:
        raise BenchError(
            f"--serve-workers {max(s.workers)}: this machine has {cores} cores; give {cores} or fewer, "
            "or --force to time the oversubscription"
        )
    if any(not (0 < x < math.inf) for x in s.rates):
        raise BenchError(
            "--serve-rates: every offered rate must be a positive number of queries/s, got "
            + ",".join(map(str, s.rates))
        )
    if s.bound_ms is not None and not (0 < s.bound_ms < math.inf):
        raise BenchError(f"--serve-bound-ms must be a positive number of milliseconds, got {s.bound_ms}")
    if not (0 < s.seconds < math.inf):
        raise BenchError(f"--serve-seconds must be a positive number, got {s.seconds}")
    for option, value in {"--serve-rounds": s.rounds, "--serve-min-queries": s.min_queries}.items():
        if value < 1:
            raise BenchError(f"{option} must be at least 1, got {value}")
    if s.refine < 0:
        raise BenchError(f"--serve-refine must be >= 0, got {s.refine}")
    if not cfg.inference.enabled and not (s.rates and s.bound_ms):
        raise BenchError(
            "--serve derives its rates and bound from the batch-1 latency the inference rounds measure: "
            "give --serve-rates and --serve-bound-ms, or drop --no-inference"
        )


# ------------------------------------------------------------------------------------------ the estimate

GFLOPS_PER_THREAD = 20.0  # a rough CPU rate for the estimate (the report measures the machine's own floor)
START_S = {"py": 3.0, "cpp": 3.5, "exe": 1.5}  # a fresh process to ready, by language (compile: + COMPILE_S)
COMPILE_S = 25.0  # torch.compile in every fresh process
# A collection: starting the worker under callgrind (~50 s for torch), then the calls before the count
# and the counted ones, each slow there: seconds per forward GFLOP by --count-kernels (ResNet18 at width
# 64, 0.56 GFLOP: ~5 s a call at avx, ~40 s at avx2, whose FMA valgrind emulates). Two warm-up calls
# (three if the second took over twice the first) make oneDNN's primitives and fill the caches.
COUNT_S = 50.0
COUNT_S_PER_GFLOP = {"avx": 9.0, "avx2": 75.0}
COUNT_WARMUP = WarmupRule(window=1, tolerance=1.0, max_calls=3)
# Counts do not depend on the machine's load: their valgrind processes run side by side, one per core (at
# most COLLECTORS: each held 1.2-1.4 GB resident here under valgrind), after the model's timing.
COLLECTORS = 8
TRAIN_COUNT_S = 100.0  # one trainer under callgrind, prepared outside it: 68 s cpp-exe, 113 s py here (width 4)
# Made once, then cached (resx.export.aoti.cached, resx.export.executorch.cached_program): an AOTInductor
# package (each dtype; with --aoti-freezing auto two) took 25-45 s here, an ExecuTorch program 24-50 s.
AOTI_S, EXECUTORCH_S = 40.0, 40.0


def counted_path(path: BenchPath, chosen: tuple[str, ...] = ()) -> bool:
    """Whether --counts counts a path's calls: every CPU path (or those of --count-runtime) but the
    baseline's repeat, whose count is the baseline's."""
    return not path.label.endswith(AGAIN) and not path.cuda_graphs and (not chosen or path.label in chosen)


def training_countable(path: BenchPath) -> bool:
    """Whether --counts counts a training path's step: not torch.compile's, which would compile forward
    and backward under callgrind."""
    return not RUNTIMES[path.runtime].train.get("compile")


@dataclass(frozen=True)
class Estimate:
    """How long a run should take: `expected` from the plan and the models' sizes, `at_most` where the
    budgets and the most rounds stop it (None: a phase of fixed count, the language map's, has no bound)."""

    expected_s: float
    at_most_s: float
    first_s: float = 0.0  # compiling what the cache does not hold yet: the first run of a model pays it


def _per_round(model: ModelPlan, call_s: float) -> float:
    """One inference round of every path: each fresh process, its warm-up and its timed calls."""
    i, total = model.config.inference, 0.0
    for p in model.paths:
        start = START_S[RUNTIMES[p.runtime].language] + (COMPILE_S if p.engine == "compile" else 0.0)
        calls = 2 * i.warmup.window + i.latency_calls
        calls += sum(b * (i.throughput_calls * max(1.0, 32 / b) + i.warmup.window) for b in i.batch_sizes if b > 1)
        total += start + calls * call_s + len(i.thread_counts) * i.thread_seconds + model.profile_calls * call_s * 3
    return total if model.scenarios else total / 2


def _model_seconds(model: ModelPlan, gflop: float, cores: int) -> tuple[float, float]:
    cfg = model.config
    call_s = gflop / (GFLOPS_PER_THREAD * model.threads) + 2e-4
    low, high = cfg.rounds.span
    one = _per_round(model, call_s)
    expected, most = one * (low + high) / 2, one * high
    budget = cfg.rounds.budget
    expected, most = min(expected, budget + one), min(most, budget + one)
    t = cfg.training
    if model.train_paths:
        step = 3 * gflop * t.batch / (GFLOPS_PER_THREAD * model.threads)
        steps = t.steps if t.epochs == 0 else t.epochs * 50_000 // t.batch
        run = sum(START_S[RUNTIMES[p.runtime].language] + 2 + steps * step for p in model.train_paths)
        expected += min(run * t.rounds, t.budget + run)
        most += min(run * t.rounds, t.budget + run)
    s = cfg.serving
    if s.scenarios:
        tests = ("singlestream" in s.scenarios) + len(s.workers) * (
            ("offline" in s.scenarios) + ("server" in s.scenarios) * (6 + s.refine)
        )
        serve = s.rounds * len(model.paths) * (tests * (s.seconds + 1) + START_S["py"])
        expected, most = expected + serve, most + serve
    if cfg.counts.enabled:
        chosen = cfg.counts.runtimes
        counted = len([p for p in model.paths if counted_path(p, chosen)])
        trained = len([p for p in model.train_paths if counted_path(p, chosen) and training_countable(p)])
        trained = trained if cfg.counts.steps else 0
        at_once = collectors(cores)
        calls = COUNT_WARMUP.max_calls + cfg.counts.calls
        one = COUNT_S + calls * gflop * COUNT_S_PER_GFLOP.get(cfg.counts.kernels, 0.0)
        counts = math.ceil(counted / at_once) * one + math.ceil(trained / at_once) * TRAIN_COUNT_S
        expected, most = expected + counts, most + counts
    return expected, most


def collectors(cores: int) -> int:
    """How many valgrind processes count at once on a machine of `cores` cores."""
    return max(1, min(cores, COLLECTORS))


def gflop(plan: Plan) -> dict[str, float]:
    """Each model's forward GFLOP per image, for the estimate (counted on the meta device; a model that
    does not count counts as 1)."""
    from resx.export import flops_per_image

    out = {}
    for model in plan.models:
        with contextlib.suppress(Exception):  # an estimate: whatever fails here, the run itself reports
            flops = flops_per_image(model.source.build(check=False), tuple(model.source.shape))
            out[model.label] = flops["forward"] / 1e9 if flops else 1.0
    return out


def estimate(plan: Plan, gflop: dict[str, float]) -> Estimate:
    """The run's time from its plan and each model's forward GFLOP per image (`gflop`, by model label; a
    model not in it counts as 1)."""
    expected = most = 20.0  # the machine's floor and the exports
    for model in plan.models:
        e, m = _model_seconds(model, gflop.get(model.label, 1.0), plan.cores)
        expected, most = expected + e, most + m
    for point in plan.sweep:
        width = point.model.config.model.width
        e, m = _model_seconds(point.model, gflop.get(point.label, 0.56 * (width / 64) ** 2), plan.cores)
        expected, most = expected + e, most + m
    return Estimate(expected, most, sum(_first_seconds(m) for m in [*plan.models, *(p.model for p in plan.sweep)]))


def _first_seconds(model: ModelPlan) -> float:
    """The packages and the program a model's paths open, compiled when the cache lacks them."""
    if model.source.kind == "file":
        return 0.0  # a model file is opened as it is
    freezing = 2 if model.config.paths.aoti_freezing == "auto" else 1
    packages = len({p.dtype for p in model.paths if p.engine == "aoti"}) * freezing
    program = any(p.engine == "executorch" for p in model.paths)
    return packages * AOTI_S + program * EXECUTORCH_S
