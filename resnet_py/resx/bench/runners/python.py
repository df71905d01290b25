"""The runtimes whose language is Python: an engine (resx.engines) called from Python."""

from __future__ import annotations

import threading
import time

import torch

from resx import stats
from resx.bench import serving
from resx.bench.config import WarmupRule
from resx.bench.runners.base import Identity, Runner, make_input
from resx.device import sync
from resx.engines import Engine
from resx.env import python_env
from resx.export import tensor_sha1


class PyRunner(Runner):
    engine: Engine

    def start(self) -> None:
        self.engine = Engine(self.model_file, self.options)

    def stop(self) -> None:
        self.engine = None

    def identity(self, seed: int) -> Identity:
        e = self.engine
        compiled = {
            "threads": e.compiled_threads,
            "load_seconds": e.load_seconds,
            "compile_seconds": e.compile_seconds,
            "recorded": e.recorded,
        }
        with torch.inference_mode():
            output = e(make_input(1, seed, self.device, self.shape)).cpu()
        input_hash = tensor_sha1(make_input(1, seed, shape=self.shape))
        return Identity(
            e.fingerprint(), e.weights_hash(), e.state_fingerprint(), input_hash, output, python_env(), compiled
        )

    def set_threads(self, n: int) -> int:
        torch.set_num_threads(n)
        return torch.get_num_threads()

    def _call_ns(self, x: torch.Tensor) -> int:
        t0 = time.perf_counter_ns()
        self.engine(x)
        sync(self.device)
        return time.perf_counter_ns() - t0

    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int:
        x, times, w = make_input(batch, seed, self.device, self.shape), [], rule.window
        with torch.inference_mode():
            while len(times) < rule.max_calls:
                times.append(self._call_ns(x))
                if len(times) >= 2 * w and stats.stable(times[-2 * w : -w], times[-w:], rule.tolerance):
                    break
        return len(times)

    def time(self, batch: int, seed: int, calls: int) -> list[int]:
        x = make_input(batch, seed, self.device, self.shape)
        with torch.inference_mode():
            return [self._call_ns(x) for _ in range(calls)]

    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]:
        x = make_input(1, seed, self.device, self.shape)
        counts = [0] * threads
        go = threading.Event()

        def work(i: int) -> None:
            xi = x.clone()
            go.wait()
            end = time.perf_counter() + seconds
            with torch.inference_mode():
                while time.perf_counter() < end:
                    self.engine(xi)
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

    def device_memory(self) -> dict[str, int]:
        if not self.device.startswith("cuda"):
            return {}
        s = torch.cuda.memory_stats(self.device)  # the keys resx::device_memory reads in C++
        return {
            "allocated_bytes": s.get("allocated_bytes.all.current", 0),
            "reserved_bytes": s.get("reserved_bytes.all.current", 0),
            "peak_allocated_bytes": s.get("allocated_bytes.all.peak", 0),
            "peak_reserved_bytes": s.get("reserved_bytes.all.peak", 0),
        }

    def profile(self, batch: int, seed: int, calls: int) -> dict:
        """torch.profiler's CPU events, as resx::profile_forward lists its RecordFunction callback's."""
        x = make_input(batch, seed, self.device, self.shape)
        activities = [torch.profiler.ProfilerActivity.CPU]
        with torch.inference_mode(), torch.profiler.profile(activities=activities) as prof:
            t0 = time.perf_counter_ns()
            for _ in range(calls):
                self.engine(x)
                sync(self.device)
            wall = time.perf_counter_ns() - t0
        events = list(prof.events())
        index = {id(e): i for i, e in enumerate(events)}
        ops = [
            [e.name, round(e.time_range.start * 1e3), round(e.time_range.end * 1e3), index.get(id(e.cpu_parent), -1)]
            for e in events
        ]
        return {"calls": calls, "wall_ns": wall, "ops": ops}

    def loadgen(self, request: dict) -> dict:
        def call(x: torch.Tensor) -> None:
            self.engine(x)
            sync(self.device)

        samples = make_input(int(request["samples"]), int(request["seed"]), self.device, self.shape)
        return serving.serve(call, samples, request)
