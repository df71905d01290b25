"""What `resx bench` measures: its configuration and presets, merged in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

import torch

from resx.bench.registry import RUNTIMES, baseline_of, resolve, runs, why_not
from resx.bench.results import Scenario
from resx.errors import BenchError
from resx.models import DEFAULT_WIDTH, DTYPES
from resx.sources import Source

# Engines whose forward a CUDA graph can capture (torch.compile has its own: mode="reduce-overhead").
GRAPHED_ENGINES = ("eager", "script", "frozen", "aoti")


@dataclass(frozen=True)
class Path:
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


@dataclass(frozen=True)
class WarmupRule:
    """Warm up until the median of the last `window` calls is within `tolerance` of the window before,
    or `max_calls` (mirrors resx::WarmupRule; TorchScript's profiling executor re-optimises during its
    first calls)."""

    window: int = 10
    tolerance: float = 0.05
    max_calls: int = 300

    def for_batch(self, batch: int) -> WarmupRule:
        # Big batches are slow and settle as fast in calls: a smaller window keeps the budget.
        return WarmupRule(max(2, int(self.window / batch**0.5)), self.tolerance, self.max_calls)


COLD_CACHE_ENV = "TORCHINDUCTOR_FORCE_DISABLE_CACHES"  # torch.compiler.config.force_disable_caches
DRIFT_SAMPLES = 20  # resident-memory samples over a --drift-calls run


@dataclass
class BenchConfig:
    models: list[str] = field(default_factory=lambda: ["resnet18"])
    stem: str = "cifar"
    layers: list[int] | None = None
    width: int = DEFAULT_WIDTH
    # Runtimes to compare; "name@dtype" runs at that dtype alone, a plain name at every one of `dtypes`.
    # Empty: all (resx.bench.registry.RUNTIMES).
    runtimes: list[str] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=lambda: ["fp32"])
    channels_last: bool = False
    # AOTInductor packages with Inductor's freezing: on, off, or auto (both compiled, the faster at batch 1 kept)
    aoti_freezing: str = "auto"
    cuda_graphs: bool = False  # also every graph-capturable runtime replayed from a CUDA graph (CUDA only)
    compile_cold: bool = False  # also every torch.compile path with Inductor's caches off (+cold): a first start
    deterministic: bool = False
    device: str = "cpu"
    threads: int = 0  # intra-op threads for every runtime; 0: torch's current default
    seed: int = 0
    # Rounds: each starts every path in a fresh process, in rotating order, and measures every scenario
    # there. A path stops once each of its ratios to the baseline has a 95% interval within +-target, after
    # min_rounds; the run stops at max_rounds or when the next round would overrun the budget.
    target: float = 0.03
    min_rounds: int = 3
    max_rounds: int = 10
    budget: float = 600.0  # seconds for the inference rounds
    latency_calls: int = 40  # timed batch-1 calls per path and round
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32, 128])
    throughput_calls: int = 8  # timed calls per batch size, path and round (more for small batches)
    thread_counts: list[int] = field(default_factory=lambda: [1, 2])
    thread_seconds: float = 1.0  # per caller count, path and round
    drift_calls: int = 0  # >0: batch-1 calls in one long run per path, its resident memory sampled
    # Serving under load with MLPerf's LoadGen (resx.bench.serving), in rounds of their own after the
    # inference rounds: the scenarios (singlestream, server, offline; empty: none), the workers that
    # answer, the Server curve's offered rates (empty: steps around the fastest path's batch-1 rate), its
    # p99 bound (None: BOUND_FACTOR x the baseline's batch-1 p50), each test's duration, its minimum of
    # queries, the bisection steps after the curve, and the rounds (fresh processes, interleaved).
    serve: list[str] = field(default_factory=list)
    serve_workers: list[int] = field(default_factory=lambda: [1, 2])
    serve_rates: list[float] = field(default_factory=list)
    serve_bound_ms: float | None = None
    serve_seconds: float = 2.0
    serve_min_queries: int = 32
    serve_refine: int = 2
    serve_rounds: int = 3
    # Where the language matters (resx.bench.language): after the models, a sweep of one resx ResNet over
    # blocks per stage (operators per call) and widths (time inside them) at batch 1 with 1 up to the cores'
    # callers, every path in map_rounds fresh processes; the fit uses map_layers x map_widths, and
    # map_held_out widths (at the middle depth) and the run's models test its predictions. With training
    # on, the graphs of the smallest width also time the training step of the paths that train (what
    # autograd's and the optimizer's dispatch add per step). Every path's operators are recorded once
    # (profile_calls calls; 0: not at all, unless the map is on).
    language_map: bool = False
    map_layers: list[list[int]] = field(default_factory=lambda: [[1, 1, 1, 1], [2, 2, 2, 2], [3, 4, 6, 3]])
    map_widths: list[int] = field(default_factory=lambda: [4, 16, 64])
    map_held_out: list[int] = field(default_factory=lambda: [8, 32])
    map_rounds: int = 5
    profile_calls: int = 0
    warmup: WarmupRule = field(default_factory=WarmupRule)
    inference: bool = True
    training: bool = True
    train_runtimes: list[str] = field(default_factory=list)  # the paths that train; empty: every one that can
    train_steps: int = 5  # per run; the first is dropped
    train_batch: int = 128
    epochs: int = 0  # >0: train full epochs (needs data), reporting losses and accuracies
    train_rounds: int = 3  # the most training runs per path (fresh processes, interleaved)
    train_budget: float = 300.0  # seconds for the training rounds
    data: str | None = None
    model_kwargs: dict = field(default_factory=dict)  # for every torchvision or factory model of `models`
    input_shape: tuple[int, int, int] | None = None  # C, H, W; None: each source's own (resx.sources)
    num_classes: int | None = None  # None: each source's own (10 for the ResNets, the builder's otherwise)
    max_load: float = 0.5  # other processes' busy cores per core above which the machine counts as loaded
    force: bool = False
    preset: str = "custom"

    def source(self, spec: str) -> Source:
        """A model of `models`, resolved (resx.sources), with this run's shape and arguments."""
        return Source.parse(
            spec,
            self.model_kwargs if self._kwargs_apply(spec) else None,
            self.num_classes,
            self.input_shape,
            stem=self.stem,
            layers=self.layers,
            width=self.width,
        )

    @staticmethod
    def _kwargs_apply(spec: str) -> bool:
        return spec.startswith("torchvision:") or (":" in spec and not spec.endswith((".pt", ".pt2")))

    def paths(self, source: Source | None = None) -> list[Path]:
        """Everything measured (on `source`, the runtimes that can run it): every runtime at every dtype
        (or at its own), and with --cuda-graphs also every runtime whose engine can be captured, replayed
        from a CUDA graph, and with --compile-cold every torch.compile runtime with Inductor's caches off.
        Labelled runtime[+graphs|+cold][@bf16]; the baseline first."""
        runtimes = [r for r in self.runtimes if source is None or runs(r.partition("@")[0], source)]
        entries = [(r.partition("@")[0], [r.partition("@")[2]] if "@" in r else self.dtypes) for r in runtimes]
        out = []
        for d in dict.fromkeys([*self.dtypes, *(ds[0] for _, ds in entries if len(ds) == 1)]):
            for graphs in (False, True) if self.cuda_graphs else (False,):
                for runtime, dtypes in entries:
                    if d not in dtypes or (graphs and RUNTIMES[runtime].engine not in GRAPHED_ENGINES):
                        continue
                    label = runtime + ("+graphs" if graphs else "") + ("" if d == "fp32" else f"@{d}")
                    out.append(Path(label, runtime, d, graphs))
                    if self.compile_cold and RUNTIMES[runtime].engine == "compile" and not graphs:
                        cold = runtime + "+cold" + ("" if d == "fp32" else f"@{d}")
                        out.append(Path(cold, runtime, d, cold_cache=True))
        base = baseline_of(source)
        return sorted(out, key=lambda p: p.label != base)

    def train_paths(self, source: Source | None = None) -> list[Path]:
        """The paths whose training step is measured: those of train_runtimes (all that train when empty)."""
        chosen = set(self.train_runtimes)
        if source is not None and not source.buildable:
            return []  # a model file trains from the source it came from
        return [
            p
            for p in self.paths(source)
            if RUNTIMES[p.runtime].train
            and not p.cuda_graphs
            and not p.cold_cache
            and (not chosen or p.label in chosen)
        ]

    def scenarios(self) -> list[Scenario]:
        """The inference scenarios every path is measured at, in each round."""
        if not self.inference:
            return []
        out = [Scenario("latency")] + [Scenario("throughput", batch=b) for b in self.batch_sizes if b > 1]
        return out + [Scenario("concurrency", callers=t) for t in self.thread_counts]

    def engine_options(self, path: Path, shape: tuple[int, int, int] = (3, 32, 32)):
        from resx.engines import EngineOptions

        return EngineOptions(
            device=self.device,
            dtype=path.dtype,
            channels_last=self.channels_last,
            runners=max([1, *self.thread_counts, *(self.serve_workers if self.serve else [])]),
            deterministic=self.deterministic,
            cuda_graphs=path.cuda_graphs,
            input_shape=tuple(shape),
        )

    explicit_runtimes: bool = False  # named by the user (not a preset's, nor all): refused where they cannot run

    def validate(self) -> None:
        runtimes = self.runtimes or list(RUNTIMES)
        resolved = []
        for entry in runtimes:
            name, at, dtype = entry.partition("@")
            if at and dtype not in DTYPES:
                raise BenchError(f"--runtime {entry}: unknown dtype '{dtype}' ({' or '.join(DTYPES)})")
            resolved.append(resolve(name) + (f"@{dtype}" if at else ""))
        self.runtimes = resolved
        bad = [d for d in self.dtypes if d not in DTYPES]
        if bad or not self.dtypes or len(set(self.dtypes)) != len(self.dtypes):
            raise BenchError(f"--dtype '{','.join(self.dtypes)}': give fp32, bf16 or fp32,bf16")
        labels = [p.label for p in self.paths()]
        if len(set(labels)) != len(labels):
            raise BenchError(f"--runtime lists a runtime twice: {', '.join(self.runtimes)}")
        trains = {p.label for p in self.paths() if RUNTIMES[p.runtime].train}
        unknown = [r for r in self.train_runtimes if r not in trains]
        if unknown:
            raise BenchError(
                f"--train-runtime {unknown[0]}: not a measured path that trains; choose from "
                f"{', '.join(sorted(trains)) or 'none'}"
            )
        if not self.models or len(set(self.models)) != len(self.models):
            raise BenchError(f"--model '{','.join(self.models)}': give each model once, comma-separated")
        # A runtime the user named is refused only when no model in the list runs on it; for the others
        # it is skipped, and the report says why.
        explicit = set(self.runtimes) if self.explicit_runtimes else set()
        sources = [self.source(spec) for spec in self.models]
        refused = sorted(r for r in explicit if not any(runs(r.partition("@")[0], s) for s in sources))
        if refused:
            source = sources[0]
            can = ", ".join(dict.fromkeys(p.runtime for p in self.paths(source))) or "none of those asked for"
            raise BenchError(
                f"{', '.join(refused)}: {why_not(refused[0].partition('@')[0], source)}; {source.spec} runs on {can}"
            )
        positive = {
            "--max-rounds": self.max_rounds,
            "--min-rounds": self.min_rounds,
            "--latency-calls": self.latency_calls,
            "--throughput-calls": self.throughput_calls,
            "--train-steps": self.train_steps,
            "--train-batch": self.train_batch,
            "--train-rounds": self.train_rounds,
        }
        for option, value in positive.items():
            if value < 1:
                raise BenchError(f"{option} must be at least 1, got {value}")
        if self.drift_calls < 0 or 0 < self.drift_calls < DRIFT_SAMPLES:
            raise BenchError(f"--drift-calls must be 0 (off) or at least {DRIFT_SAMPLES}, got {self.drift_calls}")
        self.min_rounds = min(self.min_rounds, self.max_rounds)
        for option, value in {
            "--thread-seconds": self.thread_seconds,
            "--target": self.target,
            "--budget": self.budget,
            "--train-budget": self.train_budget,
        }.items():
            if not (0 < value < float("inf")):
                raise BenchError(f"{option} must be a positive number, got {value}")
        if self.aoti_freezing not in ("auto", "on", "off"):
            raise BenchError(f"--aoti-freezing '{self.aoti_freezing}': give auto, on or off")
        cores = os.cpu_count() or 1
        self._validate_serving(cores)
        self._validate_map()
        if self.threads < 0:
            raise BenchError(f"--threads must be >= 0 (0: torch's default), got {self.threads}")
        if self.threads > cores:
            raise BenchError(
                f"--threads {self.threads}: this machine has {cores} cores; give --threads {cores} or "
                f"fewer (more would time the oversubscription, not the runtimes)"
            )
        if self.epochs < 0:
            raise BenchError(f"--epochs must be >= 0, got {self.epochs}")
        if self.epochs > 0 and not self.data:
            raise BenchError("--epochs needs real data: pass --data DIR (CIFAR-10)")
        if not (self.max_load == self.max_load):  # NaN
            raise BenchError("--max-load must be a number")
        if self.device.split(":")[0] not in ("cpu", "cuda"):
            raise BenchError(f"unknown --device '{self.device}': cpu or cuda")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BenchError(f"--device {self.device}: CUDA is not available here; use --device cpu")
        if self.cuda_graphs and not self.device.startswith("cuda"):
            raise BenchError("--cuda-graphs needs --device cuda")

    def _validate_map(self) -> None:
        if self.profile_calls < 0:
            raise BenchError(f"--profile-calls must be >= 0 (0: no profile), got {self.profile_calls}")
        if not self.language_map:
            return
        self.profile_calls = self.profile_calls or 10
        if not self.inference:
            raise BenchError("--language-map measures batch-1 latency: drop --no-inference")
        if len(self.map_layers) < 2 or any(len(ls) != 4 or min(ls) < 1 for ls in self.map_layers):
            raise BenchError("--map-layers: give at least 2 depths as 4 blocks per stage each, e.g. 1,1,1,1/2,2,2,2")
        widths = [*self.map_widths, *self.map_held_out]
        if not self.map_widths or any(w < 1 for w in widths) or len(set(widths)) != len(widths):
            raise BenchError(
                "--map-widths/--map-held-out: give positive widths, each once across both, e.g. 4,16,64 and 8,32"
            )
        if len(self.map_layers) * len(self.map_widths) < 3:
            raise BenchError("--map-layers x --map-widths: the fit needs at least 3 graphs")
        if self.map_rounds < 2:
            raise BenchError(f"--map-rounds must be at least 2 (an interval needs two), got {self.map_rounds}")

    def sweep(self) -> list[tuple[str, BenchConfig, bool]]:
        """The language map's graphs: (label, the bench configuration that measures it, used by the fit).
        Batch 1 and 1, 2, 4, ... up to the cores' concurrent callers, no serving, map_rounds rounds."""
        from dataclasses import replace

        from resx.models import architecture_of

        cores = os.cpu_count() or 1
        middle = self.map_layers[len(self.map_layers) // 2]
        graphs = [(ls, w, True) for ls in self.map_layers for w in self.map_widths]
        graphs += [(middle, w, False) for w in self.map_held_out]
        out = []
        for layers, width, fitted in graphs:
            arch = architecture_of("BasicBlock", layers)
            trains = self.training and fitted and width == min(self.map_widths)
            point = replace(
                self,
                models=[arch or "resnet18"],
                layers=None if arch else list(layers),
                width=width,
                batch_sizes=[1],
                thread_counts=sorted({*(2**k for k in range(cores.bit_length()) if 2**k <= cores), cores}),
                serve=[],
                training=trains,
                train_rounds=self.map_rounds,
                train_budget=1e9,  # map_rounds runs, whatever they take
                epochs=0,
                drift_calls=0,
                compile_cold=False,
                min_rounds=self.map_rounds,
                max_rounds=self.map_rounds,
                budget=1e9,  # map_rounds rounds, whatever they take
                language_map=False,
            )
            out.append((f"{'-'.join(map(str, layers))}/w{width}", point, fitted))
        return out

    def _validate_serving(self, cores: int) -> None:
        from resx.bench.serving import SCENARIOS

        unknown = [s for s in self.serve if s not in SCENARIOS]
        if unknown or len(set(self.serve)) != len(self.serve):
            raise BenchError(f"--serve '{','.join(self.serve)}': give none or a comma list of {', '.join(SCENARIOS)}")
        if not self.serve:
            return
        if not self.serve_workers or any(w < 1 for w in self.serve_workers):
            raise BenchError(f"--serve-workers '{','.join(map(str, self.serve_workers))}': give counts of at least 1")
        if max(self.serve_workers) > cores and not self.force:
            raise BenchError(
                f"--serve-workers {max(self.serve_workers)}: this machine has {cores} cores; give {cores} or fewer, "
                "or --force to time the oversubscription"
            )
        if any(not (0 < r < float("inf")) for r in self.serve_rates):
            raise BenchError(
                f"--serve-rates: every offered rate must be a positive number of queries/s, got "
                f"{','.join(map(str, self.serve_rates))}"
            )
        if self.serve_bound_ms is not None and not (0 < self.serve_bound_ms < float("inf")):
            raise BenchError(f"--serve-bound-ms must be a positive number of milliseconds, got {self.serve_bound_ms}")
        if not (0 < self.serve_seconds < float("inf")):
            raise BenchError(f"--serve-seconds must be a positive number, got {self.serve_seconds}")
        for option, value in {
            "--serve-rounds": self.serve_rounds,
            "--serve-min-queries": self.serve_min_queries,
        }.items():
            if value < 1:
                raise BenchError(f"{option} must be at least 1, got {value}")
        if self.serve_refine < 0:
            raise BenchError(f"--serve-refine must be >= 0, got {self.serve_refine}")
        if not self.inference and not (self.serve_rates and self.serve_bound_ms):
            raise BenchError(
                "--serve derives its rates and bound from the batch-1 latency the inference rounds measure: "
                "give --serve-rates and --serve-bound-ms, or drop --no-inference"
            )


PRESETS: dict[str, dict] = {
    # What `make demo` runs, within 3 minutes on a 2-core machine once the AOTInductor package is cached: the
    # same module in each language (py/cpp/exe-eager), TorchScript from Python and without it, AOTInductor
    # at bf16 (the fastest shipped form here). Not py-compile: torch.compile compiles again in every fresh
    # process (about 15 s each here), which the full `resx bench` measures.
    "quick": dict(
        models=["resnet18"],
        runtimes=[
            "py-eager",
            "cpp-eager",
            "exe-eager",
            "py-script",
            "exe-script",
            "py-aoti@bf16",
            "exe-aoti@bf16",
        ],
        train_runtimes=["py-eager", "cpp-eager"],
        latency_calls=30,
        batch_sizes=[1, 32],
        throughput_calls=3,
        thread_counts=[2],
        thread_seconds=0.4,
        min_rounds=3,
        max_rounds=8,
        budget=120.0,
        train_steps=4,
        train_batch=32,
        train_rounds=3,
        train_budget=40.0,
    ),
    # The structure of the well-known comparison: ResNet18 and ResNet34, 50 epochs at batch 128 (a GPU job).
    "seed": dict(models=["resnet18", "resnet34"], epochs=50, train_batch=128, train_rounds=1),
    # On a GPU: ResNet18 and ResNet34, latency with and without CUDA graphs, throughput at batches 1-512,
    # the training step at batch 128, fp32 and bf16, the runtimes that compare the languages and the
    # engines that ship. Concurrency is the CPU's question: benchmarks/device/run.py sweeps it apart.
    "gpu": dict(
        models=["resnet18", "resnet34"],
        device="cuda",
        dtypes=["fp32", "bf16"],
        cuda_graphs=True,
        runtimes=[
            "py-eager",
            "cpp-eager",
            "exe-eager",
            "py-script",
            "py-compile",
            "py-aoti",
            "cpp-script",
            "cpp-aoti",
            "exe-script",
            "exe-aoti",
        ],
        max_rounds=5,
        latency_calls=50,
        batch_sizes=[1, 8, 32, 128, 512],
        throughput_calls=12,
        thread_counts=[],
        train_steps=8,
        train_batch=128,
        train_rounds=2,
    ),
    # Where the language matters: the map (resx.bench.language) at 1 intra-op thread, batch 1 and up to the
    # cores' callers, for the runtimes that compare the languages and the engines that ship; the training
    # step of the same module in each language at batch 8.
    "language": dict(
        language_map=True,
        threads=1,
        runtimes=["py-eager", "cpp-eager", "py-script", "cpp-script", "exe-script", "py-compile", "exe-aoti"],
        batch_sizes=[1],
        latency_calls=40,
        min_rounds=5,
        max_rounds=5,
        train_runtimes=["py-eager", "cpp-eager"],
        train_steps=6,
        train_batch=8,
        train_rounds=5,
    ),
    "custom": {},
}


def configure(preset: str = "custom", runtimes: str | list[str] = "all", **options) -> BenchConfig:
    """A preset with the options that were given (None: not given) on top; validated."""
    if preset not in PRESETS:
        raise BenchError(f"unknown preset '{preset}': {', '.join(PRESETS)}")
    if preset == "seed" and not options.get("data"):
        raise BenchError("--preset seed trains 50 epochs on CIFAR-10: pass --data DIR (see `resx data fetch`)")
    known = {f.name for f in fields(BenchConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown bench option(s): {', '.join(unknown)}")
    values = PRESETS[preset] | {k: v for k, v in options.items() if v is not None}
    explicit = runtimes != "all"
    if runtimes != "all" and options.get("train_runtimes") is None:
        values.pop("train_runtimes", None)  # the preset's choice was among its own runtimes
    if isinstance(runtimes, str) and runtimes != "all":
        runtimes = [r.strip() for r in runtimes.split(",") if r.strip()]
        if not runtimes:
            raise BenchError("--runtime: give all or a comma list of runtimes")
    elif isinstance(runtimes, str):
        runtimes = values.get("runtimes", [])  # the preset's, else every runtime
    cfg = BenchConfig(**(values | {"runtimes": list(runtimes)}), preset=preset, explicit_runtimes=explicit)
    cfg.validate()
    return cfg
