"""What `resx bench` measures: its configuration and presets, merged in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

import torch

from resx.errors import ResxError
from resx.models import DEFAULT_WIDTH, ModelConfig


class BenchError(ResxError):
    """The benchmark cannot run fairly (or at all); the message says why and what to do."""


# Engines whose forward a CUDA graph can capture (torch.compile has its own: mode="reduce-overhead").
GRAPHED_ENGINES = ("eager", "script", "frozen", "aoti")


@dataclass(frozen=True)
class Path:
    """One thing measured: a runtime at a dtype, replayed from a CUDA graph or not."""

    label: str
    runtime: str
    dtype: str
    cuda_graphs: bool = False


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


@dataclass
class BenchConfig:
    models: list[str] = field(default_factory=lambda: ["resnet18"])
    stem: str = "cifar"
    layers: list[int] | None = None
    width: int = DEFAULT_WIDTH
    runtimes: list[str] = field(default_factory=list)  # empty: all (resx.bench.runners.RUNTIMES)
    dtypes: list[str] = field(default_factory=lambda: ["fp32"])  # every runtime at each
    channels_last: bool = False
    cuda_graphs: bool = False  # also every graph-capturable runtime replayed from a CUDA graph (CUDA only)
    deterministic: bool = False
    device: str = "cpu"
    threads: int = 0  # intra-op threads for every runtime; 0: torch's current default
    seed: int = 0
    rounds: int = 6  # each on a fresh runtime state (a new process for the executable)
    latency_calls: int = 40  # per runtime and round
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32, 128])
    throughput_calls: int = 8
    thread_counts: list[int] = field(default_factory=lambda: [1, 2, 4])
    thread_seconds: float = 2.0
    warmup: WarmupRule = field(default_factory=WarmupRule)
    inference: bool = True
    training: bool = True
    train_steps: int = 5
    train_batch: int = 128
    epochs: int = 0  # >0: train full epochs (needs data), reporting losses and accuracies
    train_rounds: int = 1
    data: str | None = None
    max_load: float = 0.5  # other processes' busy cores per core above which the machine counts as loaded
    force: bool = False
    preset: str = "custom"

    def model_config(self, name: str) -> ModelConfig:
        return ModelConfig(name, stem=self.stem, layers=self.layers, width=self.width)

    def paths(self) -> list[Path]:
        """Everything measured: every runtime at every dtype, and with --cuda-graphs also every runtime
        whose engine can be captured, replayed from a CUDA graph. Labelled runtime[+graphs][@bf16]."""
        from resx.bench.runners import RUNTIMES

        out = []
        for d in self.dtypes:
            for graphs in (False, True) if self.cuda_graphs else (False,):
                for r in self.runtimes:
                    if graphs and RUNTIMES[r].engine not in GRAPHED_ENGINES:
                        continue
                    label = r + ("+graphs" if graphs else "") + ("" if d == "fp32" else f"@{d}")
                    out.append(Path(label, r, d, graphs))
        return out

    def engine_options(self, path: Path):
        from resx.engines import EngineOptions

        return EngineOptions(device=self.device, dtype=path.dtype, channels_last=self.channels_last,
                             runners=max([1, *self.thread_counts]), deterministic=self.deterministic,
                             cuda_graphs=path.cuda_graphs)  # fmt: skip

    def validate(self) -> None:
        from resx.bench.runners import RUNTIMES, resolve
        from resx.models import DTYPES

        self.runtimes = [resolve(r) for r in self.runtimes] if self.runtimes else list(RUNTIMES)
        if len(set(self.runtimes)) != len(self.runtimes):
            raise BenchError(f"--runtime lists a runtime twice: {', '.join(self.runtimes)}")
        bad = [d for d in self.dtypes if d not in DTYPES]
        if bad or not self.dtypes or len(set(self.dtypes)) != len(self.dtypes):
            raise BenchError(f"--dtype '{','.join(self.dtypes)}': give fp32, bf16 or fp32,bf16")
        for name in self.models:
            self.model_config(name)
        positive = {"--rounds": self.rounds, "--latency-calls": self.latency_calls,
                    "--throughput-calls": self.throughput_calls, "--train-steps": self.train_steps,
                    "--train-batch": self.train_batch, "--train-rounds": self.train_rounds}  # fmt: skip
        for option, value in positive.items():
            if value < 1:
                raise BenchError(f"{option} must be at least 1, got {value}")
        if not (self.thread_seconds > 0 and self.thread_seconds < float("inf")):
            raise BenchError(f"--thread-seconds must be a positive number, got {self.thread_seconds}")
        if self.threads < 0:
            raise BenchError(f"--threads must be >= 0 (0: torch's default), got {self.threads}")
        if self.epochs < 0:
            raise BenchError(f"--epochs must be >= 0, got {self.epochs}")
        if self.epochs > 0 and not self.data:
            raise BenchError("--epochs needs real data: pass --data DIR (CIFAR-10)")
        if not (self.max_load == self.max_load):  # NaN
            raise BenchError("--max-load must be a number")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BenchError(f"--device {self.device}: CUDA is not available here; use --device cpu")
        if self.device.split(":")[0] not in ("cpu", "cuda"):
            raise BenchError(f"unknown --device '{self.device}': cpu or cuda")
        if self.cuda_graphs and not self.device.startswith("cuda"):
            raise BenchError("--cuda-graphs needs --device cuda")

    def oversubscribed(self) -> bool:
        return self.threads > (os.cpu_count() or 1)


PRESETS: dict[str, dict] = {
    # What `make demo` runs: every runtime at fp32 and bf16, about 5 minutes on a 2-core machine once
    # the AOTInductor packages are cached. Batch-1 latency in rounds, each on fresh processes, so that
    # its CI holds across reruns.
    "quick": dict(models=["resnet18"], dtypes=["fp32", "bf16"], rounds=3, latency_calls=30, batch_sizes=[1, 128],
                  throughput_calls=2, thread_counts=[1, 4], thread_seconds=0.4, train_steps=3, train_batch=32,
                  epochs=0, train_rounds=2),
    # The structure of the well-known comparison: ResNet18 and ResNet34, 50 epochs at batch 128 (a GPU job).
    "seed": dict(models=["resnet18", "resnet34"], epochs=50, train_batch=128),
    # On a GPU: ResNet18 and ResNet34, latency with and without CUDA graphs, throughput at batches 1-512,
    # the training step at batch 128, fp32 and bf16, the runtimes that compare the languages and the
    # engines that ship. Concurrency is the CPU's question: benchmarks/device/run.py sweeps it apart.
    "gpu": dict(models=["resnet18", "resnet34"], device="cuda", dtypes=["fp32", "bf16"], cuda_graphs=True,
                runtimes=["py-eager", "py-script", "py-compile", "py-aoti", "cpp-script", "cpp-aoti", "exe-script",
                          "exe-aoti"], rounds=3, latency_calls=50, batch_sizes=[1, 8, 32, 128, 512],
                throughput_calls=12, thread_counts=[], train_steps=8, train_batch=128, train_rounds=1),
    "custom": {},
}  # fmt: skip


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
    if isinstance(runtimes, str) and runtimes != "all":
        runtimes = [r.strip() for r in runtimes.split(",") if r.strip()]
        if not runtimes:
            raise BenchError("--runtime: give all or a comma list of runtimes")
    elif isinstance(runtimes, str):
        runtimes = values.get("runtimes", [])  # the preset's, else every runtime
    cfg = BenchConfig(**(values | {"runtimes": list(runtimes)}), preset=preset)
    cfg.validate()
    return cfg
