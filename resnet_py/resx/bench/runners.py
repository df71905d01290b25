"""The bench's side of every runtime it measures: a Runner speaks the worker protocol (resx.bench.protocol)
to a worker in a process of its own, new at every start (ProcessRunner: `resx-cpp worker` for exe,
`resx-executorch worker` for exe-executorch, `python -m resx.bench.workers` for the runtimes that live in
Python), or to a worker in this process (LocalRunner: tests that change what it runs). The typed requests
are the Runner's methods; a runtime that cannot make the bench's input (ExecuTorch's C++ runtime) is sent
each input first (protocol.Input)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path

from resx.bench import protocol as P
from resx.bench.config import WarmupRule
from resx.bench.registry import RUNTIMES, resolve, takes_input
from resx.codec import decode, encode
from resx.errors import BenchError

START_TIMEOUT = 300.0  # seconds a worker may take to open its model (--start-timeout)


class Runner(ABC):
    """One runtime holding one model. start() gives it a fresh state; the requests go between start() and
    stop(). Every answer comes from inside the runtime."""

    # A runtime in a process of its own knows its pid and what its start took (seconds from spawn to
    # ready, and the model's load within it); one in the bench's own process has neither.
    pid: int | None = None
    startup: tuple[float, float] | None = None

    def __init__(self, name: str, model_file: Path, options: P.EngineOptions, runtime: str | None = None):
        self.name, self.model_file, self.options, self.device = name, Path(model_file), options, options.device
        self.runtime = resolve(runtime or name)
        self.shape = tuple(options.input_shape)
        self.given: set[tuple[int, int]] = set()  # the inputs this start of the worker holds (takes_input)
        self._inputs: tempfile.TemporaryDirectory | None = None

    @property
    def opening(self) -> P.Open:
        return P.Open(self.runtime, str(self.model_file), self.options)

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def _ask(self, request):
        """One request, its typed answer; an error answer is a BenchError naming the runtime and request."""

    def ask(self, request):
        """One request, its typed answer; a runtime that takes its inputs is given the request's first."""
        needed = P.input_of(request)
        if needed is not None and needed not in self.given and takes_input(self.runtime):
            self._ask(P.Input(*needed, str(self._input_file(*needed))))  # its hash: in the identity
            self.given.add(needed)
        return self._ask(request)

    def _input_file(self, batch: int, seed: int) -> Path:
        """The input every other runtime makes itself, as raw float32, written once per runner."""
        from resx.bench.workers.python import make_input

        if self._inputs is None:
            self._inputs = tempfile.TemporaryDirectory(prefix=f"resx-{self.name}-inputs-")
        path = Path(self._inputs.name) / f"b{batch}-s{seed}.f32"
        if not path.exists():
            path.write_bytes(make_input(batch, seed, shape=self.shape).contiguous().numpy().tobytes())
        return path

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Runner:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- the requests, typed
    def identity(self, seed: int) -> P.Identity:
        return self.ask(P.Identify(seed))

    def set_threads(self, n: int) -> int:
        """Intra-op threads; returns the count the runtime now reports."""
        return self.ask(P.Threads(n)).threads

    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int:
        return self.ask(P.Warmup(batch, seed, rule.window, rule.tolerance, rule.max_calls)).calls

    def time(self, batch: int, seed: int, calls: int) -> list[int]:
        return self.ask(P.Time(batch, seed, calls)).ns

    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]:
        """(calls, wall ns) of `threads` callers, each running batch-1 inference for `seconds`."""
        done = self.ask(P.ThreadsRun(threads, seconds, seed))
        return done.calls, done.wall_ns

    def device_memory(self) -> P.Held:
        return self.ask(P.DeviceMemory())

    def profile(self, batch: int, seed: int, calls: int) -> P.Profiled:
        return self.ask(P.Profile(batch, seed, calls))

    def loadgen(self, request: dict) -> P.Served:
        return self.ask(P.Loadgen(**request))

    def count(self, batch: int, seed: int, calls: int) -> P.Counted:
        return self.ask(P.Count(batch, seed, calls))


class LocalRunner(Runner):
    """The worker of a runtime that lives in Python (py and cpp), in this process."""

    def start(self) -> None:
        from resx.bench.workers import handler

        self.given = set()
        self.worker = handler(self.opening)

    def stop(self) -> None:
        self.worker = None

    def _ask(self, request):
        return self.worker.handle(request)


class ProcessRunner(Runner):
    """A runtime in a worker process of its own. Its stdout and stderr go to a log file: nothing the model
    prints can enter the protocol or fill a pipe, and the log's last line explains a failure."""

    proc: subprocess.Popen | None = None

    def __init__(
        self,
        name: str,
        model_file: Path,
        options: P.EngineOptions,
        command: list[str],
        env: dict[str, str] | None = None,
        runtime: str | None = None,
        start_timeout: float = START_TIMEOUT,
    ):
        super().__init__(name, model_file, options, runtime)
        self.command, self.env, self.start_timeout = command, env or {}, start_timeout

    def start(self) -> None:
        self.given = set()
        self.log = tempfile.NamedTemporaryFile(mode="w+", prefix=f"resx-{self.name}-", suffix=".log")  # noqa: SIM115
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        env = (
            os.environ
            | self.env
            | {
                "RESX_PARENT_PID": str(os.getpid()),  # it dies with us
                "RESX_QUIET_JIT": "1",
                P.WORKER_FDS: f"{requests_r},{answers_w}",
            }
        )
        spawned = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                pass_fds=(requests_r, answers_w),
                env=env,
            )
        finally:
            os.close(requests_r)
            os.close(answers_w)
        self._requests = os.fdopen(requests_w, "w", buffering=1)
        self._answers = os.fdopen(answers_r, "r")
        self._send(P.Open(self.runtime, str(self.model_file), self.options))
        ready = self._read(self.start_timeout)
        if ready is None:
            raise BenchError(f"{self.name} did not start: {self._ended('opening the model')}")
        if "error" in ready:
            self.stop()
            raise BenchError(f"{self.name} did not start: {ready['error']}")
        self.pid = self.proc.pid
        self.startup = (time.perf_counter() - spawned, decode(P.Ready, ready).load_s)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self._send(P.Quit())
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self._requests, self._answers, self.log):
            with contextlib.suppress(OSError):  # a request still buffered for a worker that exited: nobody reads it
                stream.close()
        self.proc, self.pid, self.startup = None, None, None

    def _send(self, request) -> None:
        try:
            self._requests.write(json.dumps({"cmd": P.command(request)} | encode(request)) + "\n")
            self._requests.flush()
        except OSError:
            pass  # the process ended: reading its answer says how

    def _read(self, timeout: float | None = None) -> dict | None:
        """The next answer; None when the process gave none (it ended, or `timeout` passed)."""
        if timeout is not None and not select.select([self._answers], [], [], timeout)[0]:
            self._timed_out = timeout
            return None
        try:
            line = self._answers.readline()
            return json.loads(line) if line.strip() else None
        except (OSError, ValueError):
            return None

    def _ended(self, doing: str) -> str:
        """Why no answer came, in one line; the process is stopped."""
        waited = getattr(self, "_timed_out", None)
        if waited is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            why = f"no answer within {waited:.0f} s while {doing} (--start-timeout); it was stopped"
        else:
            try:
                code = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
            status = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            why = f"its process ended ({status}) while {doing}"
        last = self._last_line()
        self.stop()
        return why + (f"; its log's last line: {last}" if last else "")

    def _last_line(self) -> str:
        self.log.seek(0)
        lines = [line.strip() for line in self.log.read().splitlines() if line.strip()]
        return lines[-1][:300] if lines else ""

    def _ask(self, request):
        name = P.command(request)
        self._send(request)
        answer = self._read()
        if answer is None:
            raise BenchError(f"{self.name} stopped at '{name}': {self._ended(f'answering {name}')}")
        if "error" in answer:
            raise BenchError(f"{self.name}: '{name}' failed: {answer['error']}")
        try:
            return decode(P.ANSWERS[type(request)], answer)
        except ValueError as e:
            raise BenchError(f"{self.name}: a malformed answer to '{name}' ({e})") from None


def make_local_runner(name: str, model_file: Path, options: P.EngineOptions) -> Runner:
    """A runtime that lives in this Python process (py and cpp languages)."""
    runtime = RUNTIMES[resolve(name)]
    if runtime.language == "exe":
        raise BenchError(f"{name} runs in a process of its own: use make_runner")
    return LocalRunner(runtime.name, model_file, _engine(options, runtime.engine), runtime.name)


def make_runner(
    name: str,
    model_file: Path,
    options: P.EngineOptions,
    label: str | None = None,
    env: dict[str, str] | None = None,
    start_timeout: float = START_TIMEOUT,
    wrapper: list[str] | None = None,
) -> Runner:
    """A runtime in a worker process of its own, new at every start(). `label` names it in reports
    (py-aoti@bf16, say); `env` is added to its process's environment; `wrapper` runs it under another
    program (valgrind, for instruction counts)."""
    runtime = RUNTIMES[resolve(name)]
    if runtime.language == "exe" and runtime.engine == "executorch":
        from resx.executorch_cpp import executable

        command = [str(executable()), "worker"]
    elif runtime.language == "exe":
        from resx.cpp import executable

        command = [str(executable()), "worker"]
    else:
        command = [sys.executable, "-m", "resx.bench.workers"]
    return ProcessRunner(
        label or runtime.name,
        model_file,
        _engine(options, runtime.engine),
        [*(wrapper or []), *command],
        env,
        runtime.name,
        start_timeout,
    )


def _engine(options: P.EngineOptions, engine: str) -> P.EngineOptions:
    from dataclasses import replace

    return replace(options, engine=engine)
