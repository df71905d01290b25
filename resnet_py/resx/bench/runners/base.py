"""What every runner does. Each runtime returns raw per-call nanoseconds; resx.stats computes the
statistics for all of them in one place."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch

from resx.bench.config import WarmupRule
from resx.engines import EngineOptions


def make_input(batch: int, seed: int, device: str = "cpu", shape: tuple[int, ...] = (3, 32, 32)) -> torch.Tensor:
    """The benchmark input; the same ATen call as resx::make_input, so the same numbers."""
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed)).to(device)


@dataclass
class Identity:
    """What a runtime reports of what it runs, computed inside it: the fairness gate compares these
    (the answer to bench-serve's `identity`)."""

    fingerprint: str  # of the graph it runs (the eager module: scripted for this purpose; "" for a C++ module)
    weights_hash: str  # of the weights it holds
    state: str  # of its parameters' and buffers' names, shapes and dtypes (resx.export.state_fingerprint)
    input_hash: str  # of the batch-1 input it makes itself
    output: torch.Tensor  # its batch-1 logits on that input (CPU)
    env: dict[str, str]  # resx env's keys, from inside the runtime
    # What the engine was compiled for and what opening it took: threads (0 dynamic, -1 nothing compiled),
    # load and compile seconds, and whether fingerprint and weights are the ones recorded at export.
    compiled: dict

    def to_json(self) -> dict:
        return self.__dict__ | {"output": self.output.reshape(-1).tolist()}

    @classmethod
    def from_json(cls, d: dict, batch: int = 1) -> Identity:
        return cls(
            d["fingerprint"],
            d["weights_hash"],
            d["state"],
            d["input_hash"],
            torch.tensor(d["output"], dtype=torch.float32).view(batch, -1),
            d["env"],
            d["compiled"],
        )


DEVICE_MEMORY_KEYS = ("allocated_bytes", "reserved_bytes", "peak_allocated_bytes", "peak_reserved_bytes")


class Runner(ABC):
    """One runtime holding one model. start() gives it a fresh state; the measurements call the rest
    between start() and stop(). Every method answers from inside the runtime."""

    # A runtime in a process of its own knows its pid and what its start took (seconds from spawn to
    # ready, and the model's load within it); one in the bench's own process has neither.
    pid: int | None = None
    startup: tuple[float, float] | None = None

    def __init__(self, name: str, model_file: Path, options: EngineOptions):
        self.name, self.model_file, self.options, self.device = name, Path(model_file), options, options.device
        self.shape = tuple(options.input_shape)

    @abstractmethod
    def start(self) -> None: ...

    def stop(self) -> None:  # noqa: B027  (most runners hold nothing that needs closing)
        pass

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Runner:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @abstractmethod
    def identity(self, seed: int) -> Identity: ...

    @abstractmethod
    def set_threads(self, n: int) -> int:
        """Intra-op threads; returns the count the runtime now reports."""

    @abstractmethod
    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int: ...

    @abstractmethod
    def time(self, batch: int, seed: int, calls: int) -> list[int]: ...

    @abstractmethod
    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]:
        """(calls, wall ns) of `threads` callers, each running batch-1 inference for `seconds`."""

    @abstractmethod
    def device_memory(self) -> dict[str, int]:
        """The CUDA caching allocator's figures since the process started (DEVICE_MEMORY_KEYS); {} off CUDA."""

    @abstractmethod
    def profile(self, batch: int, seed: int, calls: int) -> dict:
        """Every operator that `calls` forward calls dispatch, recorded inside the runtime: {calls, wall_ns,
        ops: [[name, start_ns, end_ns, parent index or -1], ...]} (resx.bench.language.OpProfile reads it)."""

    @abstractmethod
    def loadgen(self, request: dict) -> dict:
        """One LoadGen test, served in the runtime's own language (resx.bench.serving.LoadgenRun.request):
        {seconds, sut}; LoadGen's logs are in request["outdir"]."""
