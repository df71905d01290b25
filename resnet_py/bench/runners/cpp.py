"""cpp: the TorchScript file in the C++ runtime, in this process (nanobind, GIL released). Timing loops
run in C++ (resnet_cpp/bench.cpp) and hand back raw nanoseconds."""

from __future__ import annotations

from resx.bench.config import WarmupRule
from resx.bench.runners.base import Runner
from resx.cpp import _cpp


class CppRunner(Runner):
    def start(self) -> None:
        self.model = _cpp.Model(str(self.model_file), self.device)
        self.model.eval()

    def stop(self) -> None:
        self.model = None

    def fingerprint(self) -> str:
        return self.model.fingerprint()

    def weights_hash(self) -> str:
        return self.model.weights_hash()

    def input_hash(self, batch: int, seed: int) -> str:
        return _cpp.input_hash(batch, seed)

    def output(self, batch: int, seed: int):
        return self.model.forward(_cpp.make_input(batch, seed, self.device)).cpu()

    def env(self) -> dict[str, str]:
        return _cpp.env()

    def set_threads(self, n: int) -> None:
        _cpp.set_num_threads(n)

    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int:
        x = _cpp.make_input(batch, seed, self.device)
        return _cpp.warm_up(self.model, x, rule.window, rule.tolerance, rule.max_calls)

    def time(self, batch: int, seed: int, calls: int) -> list[int]:
        return _cpp.time_forward(self.model, _cpp.make_input(batch, seed, self.device), calls)

    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]:
        return _cpp.time_threads(self.model, _cpp.make_input(1, seed, self.device), threads, seconds)
