"""py-eager (the nn.Module) and py-script (the TorchScript file), driven from this Python process."""

from __future__ import annotations

import threading
import time

import torch

from resx import stats
from resx.bench.config import BenchError, WarmupRule
from resx.bench.runners.base import Runner, make_input
from resx.envinfo import python_env
from resx.export import fingerprint, load, script, tensor_sha1, weights_hash
from resx.models import ModelConfig, build
from resx.train import sync


class PyRunner(Runner):
    model: torch.nn.Module

    def start(self) -> None:
        scripted, manifest = load(self.model_file)
        if manifest is None:
            raise BenchError(f"{self.model_file}: not a resx export (no manifest)")
        if self.engine == "eager":
            model = build(ModelConfig.from_dict(manifest["model"]))
            model.load_state_dict(scripted.state_dict())
        else:
            model = scripted
        self.model = model.to(self.device).eval()

    def fingerprint(self) -> str:
        # The eager module has no graph of its own: script the very module this runner times.
        return fingerprint(script(self.model) if self.engine == "eager" else self.model)

    def weights_hash(self) -> str:
        return weights_hash(self.model)

    def input_hash(self, batch: int, seed: int) -> str:
        return tensor_sha1(make_input(batch, seed))

    def output(self, batch: int, seed: int) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(make_input(batch, seed, self.device)).cpu()

    def env(self) -> dict[str, str]:
        return python_env()

    def set_threads(self, n: int) -> None:
        torch.set_num_threads(n)

    def _call_ns(self, x: torch.Tensor) -> int:
        t0 = time.perf_counter_ns()
        self.model(x)
        sync(self.device)
        return time.perf_counter_ns() - t0

    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int:
        x, times, w = make_input(batch, seed, self.device), [], rule.window
        with torch.inference_mode():
            while len(times) < rule.max_calls:
                times.append(self._call_ns(x))
                if len(times) >= 2 * w and stats.stable(times[-2 * w : -w], times[-w:], rule.tolerance):
                    break
        return len(times)

    def time(self, batch: int, seed: int, calls: int) -> list[int]:
        x = make_input(batch, seed, self.device)
        with torch.inference_mode():
            return [self._call_ns(x) for _ in range(calls)]

    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]:
        x = make_input(1, seed, self.device)
        counts = [0] * threads
        go = threading.Event()

        def work(i: int) -> None:
            xi = x.clone()
            go.wait()
            end = time.perf_counter() + seconds
            with torch.inference_mode():
                while time.perf_counter() < end:
                    self.model(xi)
                    sync(self.device)
                    counts[i] += 1

        pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        t0 = time.perf_counter_ns()
        go.set()
        for t in pool:
            t.join()
        return sum(counts), time.perf_counter_ns() - t0
