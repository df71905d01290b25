"""The runtimes whose language is C++ called from Python: a resx::Engine through the extension (GIL
released). Timing loops run in C++ (resnet_cpp/bench.cpp) and hand back raw nanoseconds."""

from __future__ import annotations

from resx.bench.config import WarmupRule
from resx.bench.runners.base import Runner
from resx.cpp import _cpp


class CppRunner(Runner):
    def start(self) -> None:
        o = self.options
        self.engine = _cpp.Engine(str(self.model_file), o.engine, o.device, o.dtype, o.channels_last, o.runners,
                                  o.deterministic, o.cuda_graphs)  # fmt: skip

    def stop(self) -> None:
        self.engine = None

    def fingerprint(self) -> str:
        return self.engine.fingerprint()

    def weights_hash(self) -> str:
        return self.engine.weights_hash()

    def input_hash(self, batch: int, seed: int) -> str:
        return _cpp.input_hash(batch, seed)

    def output(self, batch: int, seed: int):
        return self.engine.forward(_cpp.make_input(batch, seed, self.device)).cpu()

    def env(self) -> dict[str, str]:
        return _cpp.env()

    def compiled(self) -> dict:
        e = self.engine
        return {"threads": e.compiled_threads(), "load_seconds": e.load_seconds, "compile_seconds": 0.0,
                "recorded": e.recorded()}  # fmt: skip

    def set_threads(self, n: int) -> None:
        _cpp.set_num_threads(n)

    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int:
        x = _cpp.make_input(batch, seed, self.device)
        return _cpp.warm_up(self.engine, x, rule.window, rule.tolerance, rule.max_calls)

    def time(self, batch: int, seed: int, calls: int) -> list[int]:
        return _cpp.time_forward(self.engine, _cpp.make_input(batch, seed, self.device), calls)

    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]:
        return _cpp.time_threads(self.engine, _cpp.make_input(1, seed, self.device), threads, seconds)
