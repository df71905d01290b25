"""cpp: the TorchScript file in the C++ runtime, in this process (nanobind, GIL released). Timing loops
run in C++ (resnet_cpp/bench.cpp) and hand back raw nanoseconds."""

from __future__ import annotations

from resx.bench.config import WarmupRule
from resx.bench.runners.base import Identity, Runner
from resx.cpp import _cpp


class CppRunner(Runner):
    def start(self) -> None:
        self.model = _cpp.Model(str(self.model_file), self.device)
        self.model.eval()

    def stop(self) -> None:
        self.model = None

    def identity(self, seed: int) -> Identity:
        output = self.model.forward(_cpp.make_input(1, seed, self.device)).cpu()
        return Identity(
            self.model.fingerprint(), self.model.weights_hash(), _cpp.input_hash(1, seed), output, _cpp.env()
        )

    def set_threads(self, n: int) -> None:
        _cpp.set_num_threads(n)

    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int:
        x = _cpp.make_input(batch, seed, self.device)
        return _cpp.warm_up(self.model, x, rule.window, rule.tolerance, rule.max_calls)

    def time(self, batch: int, seed: int, calls: int) -> list[int]:
        return _cpp.time_forward(self.model, _cpp.make_input(batch, seed, self.device), calls)

    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]:
        return _cpp.time_threads(self.model, _cpp.make_input(1, seed, self.device), threads, seconds)
