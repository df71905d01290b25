"""The worker of the runtimes whose language is Python: an engine (resx.engines) called from Python."""

from __future__ import annotations

import threading
import time

import torch

from resx import stats
from resx.bench import protocol as P
from resx.device import sync
from resx.engines import Engine
from resx.env import python_env
from resx.export import tensor_sha1


def make_input(batch: int, seed: int, device: str = "cpu", shape: tuple[int, ...] = (3, 32, 32)) -> torch.Tensor:
    """The benchmark input; the same ATen call as resx::make_input, so the same numbers."""
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed)).to(device)


class PyWorker:
    def __init__(self, opening: P.Open):
        self.engine = Engine(opening.file, opening.options)
        self.device, self.shape = opening.options.device, tuple(opening.options.input_shape)

    def handle(self, request):
        return getattr(self, P.command(request))(request)

    def _input(self, batch: int, seed: int) -> torch.Tensor:
        return make_input(batch, seed, self.device, self.shape)

    def _call_ns(self, x: torch.Tensor) -> int:
        t0 = time.perf_counter_ns()
        self.engine(x)
        sync(self.device)
        return time.perf_counter_ns() - t0

    def identify(self, r: P.Identify) -> P.Identity:
        e = self.engine
        compiled = P.Compiled(e.compiled_threads, e.load_seconds, e.compile_seconds, e.recorded)
        with torch.inference_mode():
            output = e(self._input(1, r.seed)).cpu()
        input_hash = tensor_sha1(make_input(1, r.seed, shape=self.shape))
        env = python_env()
        if e.options.engine == "executorch":
            from resx.export.executorch import runtime_env

            env |= runtime_env()
        return P.Identity(
            e.fingerprint(),
            e.weights_hash(),
            e.state_fingerprint(),
            input_hash,
            output.reshape(-1).tolist(),
            env,
            compiled,
        )

    def threads(self, r: P.Threads) -> P.ThreadsSet:
        return P.ThreadsSet(self.engine.set_threads(r.n))

    def warmup(self, r: P.Warmup) -> P.Warmed:
        x, times, w = self._input(r.batch, r.seed), [], r.window
        with torch.inference_mode():
            while len(times) < r.max_calls:
                times.append(self._call_ns(x))
                if len(times) >= 2 * w and stats.stable(times[-2 * w : -w], times[-w:], r.tolerance):
                    break
        return P.Warmed(len(times))

    def time(self, r: P.Time) -> P.Times:
        x = self._input(r.batch, r.seed)
        with torch.inference_mode():
            return P.Times([self._call_ns(x) for _ in range(r.calls)])

    def threads_run(self, r: P.ThreadsRun) -> P.ThreadsDone:
        x = self._input(1, r.seed)
        counts = [0] * r.threads
        go = threading.Event()

        def work(i: int) -> None:
            xi = x.clone()
            go.wait()
            end = time.perf_counter() + r.seconds
            with torch.inference_mode():
                while time.perf_counter() < end:
                    self.engine(xi)
                    sync(self.device)
                    counts[i] += 1

        pool = [threading.Thread(target=work, args=(i,)) for i in range(r.threads)]
        for t in pool:
            t.start()
        t0 = time.perf_counter_ns()
        go.set()
        for t in pool:
            t.join()
        return P.ThreadsDone(sum(counts), time.perf_counter_ns() - t0)

    def device_memory(self, r: P.DeviceMemory) -> P.Held:
        if not self.device.startswith("cuda"):
            return P.Held()
        s = torch.cuda.memory_stats(self.device)  # the keys resx::device_memory reads in C++
        return P.Held(
            s.get("allocated_bytes.all.current", 0),
            s.get("reserved_bytes.all.current", 0),
            s.get("allocated_bytes.all.peak", 0),
            s.get("reserved_bytes.all.peak", 0),
        )

    def profile(self, r: P.Profile) -> P.Profiled:
        """torch.profiler's CPU events, as resx::profile_forward lists its RecordFunction callback's."""
        x = self._input(r.batch, r.seed)
        activities = [torch.profiler.ProfilerActivity.CPU]
        with torch.inference_mode(), torch.profiler.profile(activities=activities) as prof:
            t0 = time.perf_counter_ns()
            for _ in range(r.calls):
                self.engine(x)
                sync(self.device)
            wall = time.perf_counter_ns() - t0
        events = list(prof.events())
        index = {id(e): i for i, e in enumerate(events)}
        ops = [
            (e.name, round(e.time_range.start * 1e3), round(e.time_range.end * 1e3), index.get(id(e.cpu_parent), -1))
            for e in events
        ]
        return P.Profiled(r.calls, wall, ops)

    def loadgen(self, r: P.Loadgen) -> P.Served:
        from resx.bench.serving import serve

        def call(x: torch.Tensor) -> None:
            self.engine(x)
            sync(self.device)

        request = {k: getattr(r, k) for k in ("settings", "workers", "batch", "samples", "seed", "outdir")}
        served = serve(call, make_input(r.samples, r.seed, self.device, self.shape), request)
        return P.Served(served["seconds"], served["sut"])

    def count(self, r: P.Count) -> P.Counted:
        """Instrumentation and collection on around the calls alone (resx.callgrind)."""
        from resx import callgrind

        x = self._input(r.batch, r.seed)
        with torch.inference_mode():
            callgrind.count_on()
            for _ in range(r.calls):
                self.engine(x)
                sync(self.device)
            callgrind.count_off()
        return P.Counted(r.calls, callgrind.running())
