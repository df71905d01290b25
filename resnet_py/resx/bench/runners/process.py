"""A runtime in a process of its own, driven over the timing-server protocol (JSON lines; resnet_cpp/main.cpp
describes it): `resx-cpp bench-serve` for the executable, a Python worker (resx.bench.runners.serve) for
the runtimes that live in Python. Each start() is a new process, so every round of the bench samples a
fresh process of every runtime. Its stderr goes to a file: no amount of warnings can fill a pipe and
stall it, and the file's last line explains a failure."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

from resx.bench.config import WarmupRule
from resx.bench.runners.base import Identity, Runner
from resx.errors import BenchError


class ServeRunner(Runner):
    proc: subprocess.Popen | None = None

    def __init__(self, name: str, model_file, options, command: list[str], env: dict[str, str] | None = None):
        super().__init__(name, model_file, options)
        self.command, self.env = command, env or {}

    def start(self) -> None:
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (closed in stop())
        env = os.environ | self.env | {"RESX_PARENT_PID": str(os.getpid()), "RESX_QUIET_JIT": "1"}  # it dies with us
        spawned = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
            env=env,
        )
        ready = self._read() or {}
        if not ready.get("ready"):
            raise BenchError(f"{self.name} did not start: {self._last_error()}")
        self.pid, self.startup = self.proc.pid, (time.perf_counter() - spawned, float(ready.get("load_s", 0.0)))

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.stderr):
            stream.close()
        self.proc, self.pid, self.startup = None, None, None

    def _last_error(self) -> str:
        self.stderr.seek(0)
        lines = [line.strip() for line in self.stderr.read().splitlines() if line.strip()]
        return lines[-1] if lines else f"no answer (exit status {self.proc.poll()})"

    def _read(self) -> dict | None:
        """The next answer; None when the process gave none (an empty object is an answer)."""
        try:
            line = self.proc.stdout.readline()
            return json.loads(line) if line.strip() else None
        except (OSError, ValueError):
            return None

    def ask(self, cmd: str, **args) -> dict:
        """One request, its answer; an error answer or a process that stopped is a BenchError naming the
        runtime and the request."""
        try:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
            self.proc.stdin.flush()
        except OSError:
            pass
        answer = self._read()
        if answer is None:
            raise BenchError(f"{self.name} stopped at '{cmd}': {self._last_error()}")
        if "error" in answer:
            raise BenchError(f"{self.name}: '{cmd}' failed: {answer['error']}")
        return answer

    def identity(self, seed: int) -> Identity:
        return Identity.from_json(self.ask("identity", seed=seed))

    def set_threads(self, n: int) -> int:
        return int(self.ask("threads", n=n)["threads"])

    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int:
        return int(
            self.ask(
                "warmup", batch=batch, seed=seed, window=rule.window, tolerance=rule.tolerance, max_calls=rule.max_calls
            )["calls"]
        )

    def time(self, batch: int, seed: int, calls: int) -> list[int]:
        return [int(v) for v in self.ask("time", batch=batch, seed=seed, calls=calls)["ns"]]

    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]:
        r = self.ask("threads_run", threads=threads, seconds=seconds, seed=seed)
        return int(r["calls"]), int(r["wall_ns"])

    def device_memory(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.ask("device_memory").items()}

    def profile(self, batch: int, seed: int, calls: int) -> dict:
        return self.ask("profile", batch=batch, seed=seed, calls=calls)

    def loadgen(self, request: dict) -> dict:
        return self.ask("loadgen", **request)
