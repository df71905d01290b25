"""What `resx bench` is asked to measure: one dataclass per concern, composed into BenchConfig, each field
written once with its help (resx.options derives the command line from them). A preset, a config file
(--config FILE.toml) and the command line are partial overrides of the same object, applied in that order
on top of the defaults; the config a run used is written beside its report (config.toml), and --config of
that file measures the same again. Nothing here plans or measures: resx.bench.plan reads a config."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import tomllib

from resx.codec import decode, encode
from resx.errors import BenchError
from resx.options import concern, option, positive_floats, positive_ints, stages, words
from resx.sources import SourceOptions

MODEL_HELP = (
    "resnet18, resnet34, resnet50, resnet101, resnet152; torchvision:NAME (a classification builder); "
    "package.module:callable or file.py:callable (your factory); a .pt or .pt2 file."
)
# Typed here so that the CLI starts without torch; tests check them against the registry.
RUNTIME_HELP = (
    "py-eager, py-script, py-frozen, py-compile, py-aoti, py-executorch, cpp-eager, cpp-script (cpp), cpp-frozen, "
    "cpp-aoti, cpp-executorch, exe-eager, exe-script (cpp-exe), exe-frozen, exe-aoti, exe-executorch"
)


def _all(text: str, option: str) -> tuple[str, ...]:
    return () if text.strip() == "all" else words(text, option)


def _none(text: str, option: str) -> tuple[str, ...]:
    return () if text.strip() == "none" else words(text, option)


def _depths(text: str, option: str) -> tuple[tuple[int, ...], ...]:
    return tuple(stages(x, option) for x in text.split("/"))


def _widths_or_none(text: str, option: str) -> tuple[int, ...]:
    return () if text.strip() in ("", "none") else positive_ints(text, option)


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


@dataclass(frozen=True)
class ModelOptions(SourceOptions):
    models: tuple[str, ...] = option(
        ("resnet18",), f"Comma list of models, kinds mixed: {MODEL_HELP}", flag="--model", parse=words
    )


@dataclass(frozen=True)
class PathOptions:
    # Empty: every runtime (resx.bench.registry.RUNTIMES); "name@dtype": that runtime at that dtype alone.
    runtimes: tuple[str, ...] = option(
        (),
        f"all, or a comma list of language-engine runtimes: {RUNTIME_HELP}; NAME@bf16 runs that one at bf16 alone.",
        flag="--runtime",
        parse=_all,
        show="all",
    )
    dtypes: tuple[str, ...] = option(
        ("fp32",), "fp32, bf16 or fp32,bf16: every runtime at each.", flag="--dtype", parse=words
    )
    device: str = option("cpu", "cpu or cuda.")
    threads: int = option(0, "Intra-op threads in every runtime, at most the cores (0: torch's default).")
    channels_last: bool = option(False, "Channels-last weights and inputs everywhere.")
    cuda_graphs: bool = option(False, "CUDA: also every runtime replayed from a CUDA graph.")
    compile_cold: bool = option(
        False, "Also every torch.compile runtime with Inductor's caches off (NAME+cold): what a first start takes."
    )
    aoti_freezing: str = option(
        "auto",
        "AOTInductor packages with Inductor's freezing: on, off, or auto (both compiled once, the faster at batch 1 kept; freezing's prepacked convolutions cost a fixed time per call).",
    )
    deterministic: bool = option(False, "Deterministic algorithms in every runtime (CUDA).")
    # Set when the runtimes were named (the command line or a config file), not a preset's or all: a
    # runtime named that no model can run is then refused rather than skipped.
    named: bool = option(False, cli=False)


@dataclass(frozen=True)
class RoundOptions:
    # Each round starts every path in a fresh process, in rotating order, and measures every scenario there.
    # A path stops once each of its ratios to the baseline has a 95% interval within +-target, after
    # min_rounds; the run stops at max_rounds or when the next round would overrun the budget.
    target: float = option(0.03, "Stop a path once each ratio's 95% interval is within +-this.")
    min_rounds: int = option(3, "Rounds before a path may stop.")
    max_rounds: int = option(10, "Rounds at most.")
    rounds: int | None = option(None, "Exactly this many rounds (no adaptive stop).", show="adaptive")
    budget: float = option(600.0, "Seconds for the inference rounds.")
    start_timeout: float = option(
        300.0, "Seconds a runtime's process may take to open the model (building it, compiling) before it is refused."
    )
    max_load: float = option(0.5, "Other processes' busy cores per core above which the run is marked loaded.")
    force: bool = option(False, "Run even when the fairness gate fails (recorded).")
    noise_floor: bool = option(
        True,
        "Time the baseline twice, as two paths: its ratio to itself is the run's noise floor, against which every ratio is read.",
    )

    @property
    def span(self) -> tuple[int, int]:
        """The fewest and most rounds a path runs."""
        if self.rounds is not None:
            return self.rounds, self.rounds
        return min(self.min_rounds, self.max_rounds), self.max_rounds


@dataclass(frozen=True)
class InferenceOptions:
    enabled: bool = option(True, "Measure inference.", flag="--inference")
    latency_calls: int = option(40, "Timed batch-1 calls per path and round.")
    batch_sizes: tuple[int, ...] = option((1, 8, 32, 128), "Batch sizes, e.g. 1,8,32,128.", parse=positive_ints)
    throughput_calls: int = option(8, "Timed calls per batch size, path and round (more for small batches).")
    thread_counts: tuple[int, ...] = option((1, 2), "Concurrent callers, e.g. 1,2.", parse=positive_ints)
    thread_seconds: float = option(1.0, "Seconds per caller count, path and round.")
    drift_calls: int = option(
        0,
        "Batch-1 calls in one long run per path (its first process), resident memory sampled: a leak or a growing cache shows as drift. 0: off.",
    )
    profile_calls: int = option(
        0, "Calls whose operators are recorded once per path (0: none; 10 with --language-map)."
    )
    warmup: WarmupRule = option(WarmupRule(), cli=False)


@dataclass(frozen=True)
class ServingOptions:
    # MLPerf's LoadGen (resx.bench.serving), in rounds of their own after the inference rounds.
    scenarios: tuple[str, ...] = option(
        (),
        "Serving under load with MLPerf's LoadGen, in each runtime's own language: none, or a comma list of singlestream, server, offline.",
        flag="--serve",
        parse=_none,
        show="none",
    )
    workers: tuple[int, ...] = option(
        (1, 2), "Workers answering LoadGen's queries, e.g. 1,2.", flag="--serve-workers", parse=positive_ints
    )
    rates: tuple[float, ...] = option(
        (),
        "Server: offered queries/s, e.g. 50,100,200.",
        flag="--serve-rates",
        parse=positive_floats,
        show="steps from 1/8x to 4x the fastest path's batch-1 rate",
    )
    bound_ms: float | None = option(
        None, "Server: the p99 latency bound, ms.", flag="--serve-bound-ms", show="8x the baseline's batch-1 p50"
    )
    seconds: float = option(2.0, "LoadGen's minimum duration per test (MLPerf's: 600).", flag="--serve-seconds")
    min_queries: int = option(32, "LoadGen's minimum queries per test.", flag="--serve-min-queries")
    refine: int = option(
        2, "Server: bisections between the last rate within the bound and the first above it.", flag="--serve-refine"
    )
    rounds: int = option(3, "Serving rounds, a fresh process per path each.", flag="--serve-rounds")


@dataclass(frozen=True)
class MapOptions:
    # Where the language matters (resx.bench.language): after the models, a sweep of one resx ResNet over
    # blocks per stage (operators per call) and widths (time inside them) at batch 1 with 1 up to the cores'
    # callers, every path in `rounds` fresh processes; the fit uses layers x widths, and the held-out widths
    # (at the middle depth) and the run's models test its predictions. With training on, the graphs of the
    # smallest width also time the training step of the paths that train.
    enabled: bool = option(
        False,
        "Where the language matters: sweep a ResNet over depth and width at batch 1, take each runtime's call apart (fixed, per operator, operator time), the crossover, the GIL under contention, and predict each --model's ratios from its profile.",
        flag="--language-map",
    )
    layers: tuple[tuple[int, ...], ...] = option(
        ((1, 1, 1, 1), (2, 2, 2, 2), (3, 4, 6, 3)),
        "The map's depths: blocks per stage, '/'-separated, e.g. 1,1,1,1/2,2,2,2/3,4,6,3.",
        flag="--map-layers",
        parse=_depths,
    )
    widths: tuple[int, ...] = option((4, 16, 64), "The map's fitted widths.", flag="--map-widths", parse=positive_ints)
    held_out: tuple[int, ...] = option(
        (8, 32),
        "Widths at the middle depth the fit does not use (its check); none for none.",
        flag="--map-held-out",
        parse=_widths_or_none,
    )
    rounds: int = option(5, "Rounds per graph of the map.", flag="--map-rounds")


@dataclass(frozen=True)
class TrainingOptions:
    enabled: bool = option(True, "Measure training.", flag="--training")
    runtimes: tuple[str, ...] = option(
        (),
        "Comma list of the paths whose training step is measured.",
        flag="--train-runtime",
        parse=words,
        show="every measured path that trains",
    )
    steps: int = option(5, "Training steps per run (without --epochs); the first is dropped.", flag="--train-steps")
    batch: int = option(128, "Training batch size.", flag="--train-batch")
    rounds: int = option(3, "Training runs per path at most (fresh processes, interleaved).", flag="--train-rounds")
    budget: float = option(300.0, "Seconds for the training rounds.", flag="--train-budget")
    epochs: int = option(0, "Train full epochs (needs --data) and report accuracy.")
    data: str | None = option(None, "CIFAR-10 for training.", show="synthetic images, timing only")


@dataclass(frozen=True)
class CountOptions:
    # Instruction counts under valgrind's callgrind (resx.bench.counts): deterministic where time is noisy.
    enabled: bool = option(
        False,
        "Instructions per call of every CPU path under callgrind (valgrind): batch 1, one intra-op thread, and where they go.",
        flag="--counts",
    )
    runtimes: tuple[str, ...] = option(
        (),
        "Comma list of the paths whose calls (and training steps) are counted.",
        flag="--count-runtime",
        parse=words,
        show="every measured CPU path",
    )
    calls: int = option(10, "Calls counted per path (after warm-up), the same for every path.", flag="--count-calls")
    steps: int = option(
        2,
        "Training steps counted per path that trains (after 2 uncounted), at the training batch; 0: none.",
        flag="--count-steps",
    )
    kernels: str = option(
        "avx",
        "The kernels' instruction set under valgrind: avx (oneDNN at AVX, MKL at SSE4.2: a collection ~100x faster "
        "on convolutions) or avx2 (valgrind's own CPU: it emulates their FMA slowly). The framework's and the "
        "language's counts do not depend on it; the kernels' do.",
        flag="--count-kernels",
    )


@dataclass(frozen=True)
class BenchConfig:
    model: ModelOptions = concern(ModelOptions)
    paths: PathOptions = concern(PathOptions)
    rounds: RoundOptions = concern(RoundOptions)
    inference: InferenceOptions = concern(InferenceOptions)
    serving: ServingOptions = concern(ServingOptions)
    map: MapOptions = concern(MapOptions)
    training: TrainingOptions = concern(TrainingOptions)
    counts: CountOptions = concern(CountOptions)
    preset: str = "custom"

    def replace(self, **concerns: dict) -> BenchConfig:
        """A copy with some fields of some concerns changed: replace(paths={"threads": 1})."""
        return dataclasses.replace(
            self, **{c: dataclasses.replace(getattr(self, c), **values) for c, values in concerns.items()}
        )


# The --help panel of each concern.
PANELS = {
    "model": "Model",
    "paths": "Runtimes",
    "rounds": "Rounds",
    "inference": "Inference",
    "serving": "Serving (LoadGen)",
    "map": "Where the language matters",
    "training": "Training",
    "counts": "Instruction counts",
}

PRESETS: dict[str, dict] = {
    # What `make demo` runs, within 3 minutes on a 2-core machine once the AOTInductor package is cached: the
    # same module in each language (py/cpp/exe-eager), TorchScript from Python and without it, AOTInductor
    # at bf16 (the fastest shipped form here). Not py-compile: torch.compile compiles again in every fresh
    # process (about 15 s each here), which the full `resx bench` measures.
    "quick": {
        "paths": {
            "runtimes": [
                "py-eager",
                "cpp-eager",
                "exe-eager",
                "py-script",
                "exe-script",
                "py-aoti@bf16",
                "exe-aoti@bf16",
            ]
        },
        "rounds": {"min_rounds": 3, "max_rounds": 8, "budget": 120.0},
        "inference": {
            "latency_calls": 30,
            "batch_sizes": [1, 32],
            "throughput_calls": 3,
            "thread_counts": [2],
            "thread_seconds": 0.4,
        },
        "training": {"runtimes": ["py-eager", "cpp-eager"], "steps": 4, "batch": 32, "rounds": 3, "budget": 40.0},
    },
    # The structure of the well-known comparison: ResNet18 and ResNet34, 50 epochs at batch 128 (a GPU job).
    "seed": {
        "model": {"models": ["resnet18", "resnet34"]},
        "training": {"epochs": 50, "batch": 128, "rounds": 1},
    },
    # On a GPU: ResNet18 and ResNet34, latency with and without CUDA graphs, throughput at batches 1-512,
    # the training step at batch 128, fp32 and bf16, the runtimes that compare the languages and the
    # engines that ship. Concurrency is the CPU's question: benchmarks/device/run.py sweeps it apart.
    "gpu": {
        "model": {"models": ["resnet18", "resnet34"]},
        "paths": {
            "device": "cuda",
            "dtypes": ["fp32", "bf16"],
            "cuda_graphs": True,
            "runtimes": [
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
        },
        "rounds": {"max_rounds": 5},
        "inference": {
            "latency_calls": 50,
            "batch_sizes": [1, 8, 32, 128, 512],
            "throughput_calls": 12,
            "thread_counts": [],
        },
        "training": {"steps": 8, "batch": 128, "rounds": 2},
    },
    # Where the language matters, sized toward 30 minutes on a 2-core machine (benchmarks/README.md): the
    # map (resx.bench.language) at 1 intra-op thread, batch 1 and up to the cores' callers, for the runtimes
    # that differ by language alone (the eager module from Python and C++; TorchScript from Python, C++ and
    # an executable), on 4 depths at width 16 and a held-out width; the training step of the same module
    # in each language at batch 8; and the instruction counts of the eager module in each language, 3 calls
    # each (a count is the same call after call): py-eager's per-operator cost beyond cpp-eager's, fitted
    # on 4 graphs. The engines that ship (torch.compile, AOTInductor, ExecuTorch) are the default run's
    # question (compiling them per graph added up to 16 minutes by the estimate). Not counted: the training
    # step (ResNet18's at width 64 has ~16x the FLOPs of the width-16 step; `--counts` on a narrower model
    # counts it) and the TorchScript paths (each collection is a minute or more under valgrind).
    "language": {
        "paths": {"threads": 1, "runtimes": ["py-eager", "cpp-eager", "py-script", "cpp-script", "exe-script"]},
        "rounds": {"min_rounds": 5, "max_rounds": 5},
        "inference": {"batch_sizes": [1], "latency_calls": 40},
        "map": {
            "enabled": True,
            "layers": [[1, 1, 1, 1], [2, 2, 2, 2], [2, 3, 4, 2], [3, 4, 6, 3]],
            "widths": [16],
            "held_out": [8],
            "rounds": 3,
        },
        "training": {"runtimes": ["py-eager", "cpp-eager"], "steps": 6, "batch": 8, "rounds": 5},
        "counts": {"enabled": True, "runtimes": ["py-eager", "cpp-eager"], "calls": 3, "steps": 0},
    },
    "custom": {},
}


def merged(base: BenchConfig, overrides: dict, where: str) -> BenchConfig:
    """`base` with `overrides` ({concern: {field: value}}, values as a config file holds them) on top; an
    unknown concern or field, or a value of the wrong type, is one line naming it and `where`."""
    data = encode(base)
    for section, values in overrides.items():
        if section == "preset":
            data["preset"] = values
            continue
        if section not in PANELS or not isinstance(values, dict):
            raise BenchError(f"{where}: unknown section '{section}'; the sections are {', '.join(PANELS)}")
        known = {f.name for f in dataclasses.fields(getattr(base, section)) if f.init}
        for key, value in values.items():
            if key not in known:
                raise BenchError(f"{where}: unknown key '{section}.{key}'; {section} has {', '.join(sorted(known))}")
            data[section][key] = encode(value)
    try:
        return decode(BenchConfig, data)
    except ValueError as e:
        raise BenchError(f"{where}: {e}") from None


def configure(preset: str = "custom", file: Path | None = None, given: dict | None = None) -> BenchConfig:
    """The defaults, then the preset, then the config file, then the options given on the command line
    ({concern: {field: value}}), each a partial override of the one before."""
    if preset not in PRESETS:
        raise BenchError(f"unknown preset '{preset}': {', '.join(PRESETS)}")
    cfg = merged(BenchConfig(preset=preset), PRESETS[preset], f"preset {preset}")
    for layer, where in ((read(file) if file else {}, str(file)), (given or {}, "the command line")):
        layer = {k: dict(v) if isinstance(v, dict) else v for k, v in layer.items()}
        named = "runtimes" in layer.get("paths", {})
        if named and "runtimes" not in layer.get("training", {}):
            # The preset's training runtimes were chosen among its own runtimes: every one that trains now.
            layer.setdefault("training", {})["runtimes"] = []
        if named:
            layer["paths"]["named"] = bool(layer["paths"]["runtimes"])
        cfg = merged(cfg, layer, where)
    return cfg


def read(path: Path) -> dict:
    """A config file: TOML, {section: {key: value}}, as `write` writes it (or any part of it)."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BenchError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise BenchError(f"{path}: not a TOML config file ({e})") from None
    return data


def write(cfg: BenchConfig) -> str:
    """The config as TOML (None values left out: they mean "each model's own"), read back by `read`."""
    data = encode(cfg)
    lines = [f"# resx bench --config config.toml measures this again\npreset = {_toml(data.pop('preset'))}\n"]
    for section, values in data.items():
        lines.append(f"\n[{section}]\n")
        for key, value in values.items():
            if value is not None:
                lines.append(f"{key} = {_toml(value)}\n")
    return "".join(lines)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {type(value).__name__}")
