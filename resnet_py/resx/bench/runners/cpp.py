"""The runtimes whose language is C++ called from Python: a resx::Engine through the extension (GIL
released). Timing loops run in C++ (resnet_cpp/bench.cpp) and hand back raw nanoseconds."""

from __future__ import annotations

import json

from resx.bench.config import WarmupRule
from resx.bench.runners.base import Identity, Runner
from resx.cpp import _cpp


class CppRunner(Runner):
    def start(self) -> None:
        o = self.options
        self.engine = _cpp.Engine(
            str(self.model_file),
            o.engine,
            o.device,
            o.dtype,
            o.channels_last,
            o.runners,
            o.deterministic,
            o.cuda_graphs,
            list(o.input_shape),
        )

    def stop(self) -> None:
        self.engine = None

    def identity(self, seed: int) -> Identity:
        e = self.engine
        compiled = {
            "threads": e.compiled_threads(),
            "load_seconds": e.load_seconds,
            "compile_seconds": 0.0,
            "recorded": e.recorded(),
        }
        output = e.forward(_cpp.make_input(1, seed, self.device, list(self.shape))).cpu()
        return Identity(
            e.fingerprint(),
            e.weights_hash(),
            e.state_fingerprint(),
            _cpp.input_hash(1, seed, list(self.shape)),
            output,
            _cpp.env(),
            compiled,
        )

    def set_threads(self, n: int) -> int:
        _cpp.set_num_threads(n)
        return int(_cpp.env()["intra_op_threads"])

    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int:
        x = _cpp.make_input(batch, seed, self.device, list(self.shape))
        return _cpp.warm_up(self.engine, x, rule.window, rule.tolerance, rule.max_calls)

    def time(self, batch: int, seed: int, calls: int) -> list[int]:
        return _cpp.time_forward(self.engine, _cpp.make_input(batch, seed, self.device, list(self.shape)), calls)

    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]:
        return _cpp.time_threads(self.engine, _cpp.make_input(1, seed, self.device, list(self.shape)), threads, seconds)

    def device_memory(self) -> dict[str, int]:
        return json.loads(_cpp.device_memory(self.device))

    def profile(self, batch: int, seed: int, calls: int) -> dict:
        x = _cpp.make_input(batch, seed, self.device, list(self.shape))
        return json.loads(_cpp.profile_forward(self.engine, x, calls))

    def loadgen(self, request: dict) -> dict:
        return json.loads(_cpp.loadgen(self.engine, json.dumps(request)))
