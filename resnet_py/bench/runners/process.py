"""A runtime in a process of its own, driven over the timing-server protocol (resnet_cpp/main.cpp,
resx.bench.runners.serve): `resx-cpp bench-serve` for the executable, a Python worker for the runtimes
that live in Python. Each start() is a new process, so every round of the bench samples a fresh
process of every runtime. Its stderr goes to a file: no amount of warnings can fill a pipe and stall
it, and the file's last line explains a failure."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import torch

from resx.bench.config import BenchError, WarmupRule
from resx.bench.runners.base import Runner


class ServeRunner(Runner):
    proc: subprocess.Popen | None = None

    def __init__(self, name: str, model_file, options, command: list[str]):
        super().__init__(name, model_file, options)
        self.command = command

    def start(self) -> None:
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (closed in stop())
        env = os.environ | {"RESX_PARENT_PID": str(os.getpid()), "RESX_QUIET_JIT": "1"}  # it dies with us
        self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True, bufsize=1, env=env)  # fmt: skip
        if self.proc.stdout.readline().strip() != "ready":
            raise BenchError(f"{self.name} did not start: {self._last_error()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.stderr):
            stream.close()
        self.proc = None

    def _last_error(self) -> str:
        self.stderr.seek(0)
        lines = [line.strip() for line in self.stderr.read().splitlines() if line.strip()]
        return lines[-1] if lines else f"no answer (exit status {self.proc.poll()})"

    def _ask(self, line: str, expect: str) -> str:
        """Send one command; the rest of the answer's line after `expect`."""
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline().strip()
        except OSError:
            answer = ""
        if not answer:
            raise BenchError(f"{self.name} stopped at '{line}': {self._last_error()}")
        if not answer.startswith(expect + " ") and answer != expect:
            raise BenchError(f"{self.name}: '{line}' answered '{answer[:200]}'")
        return answer[len(expect) :].strip()

    def fingerprint(self) -> str:
        return self._ask("fingerprint", "fingerprint")

    def weights_hash(self) -> str:
        return self._ask("weights", "weights")

    def input_hash(self, batch: int, seed: int) -> str:
        return self._ask(f"input {batch} {seed}", "input")

    def output(self, batch: int, seed: int) -> torch.Tensor:
        values = self._ask(f"output {batch} {seed}", "output").split(",")
        return torch.tensor([float(v) for v in values]).view(batch, -1)

    def env(self) -> dict[str, str]:
        return json.loads(self._ask("env", "env"))

    def compiled(self) -> dict:
        threads, load, compile_, recorded = self._ask("compiled", "compiled").split()
        return {"threads": int(threads), "load_seconds": float(load), "compile_seconds": float(compile_),
                "recorded": recorded == "1"}  # fmt: skip

    def set_threads(self, n: int) -> None:
        self._ask(f"threads {n}", "ok")

    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int:
        return int(self._ask(f"warmup {batch} {seed} {rule.window} {rule.tolerance!r} {rule.max_calls}", "warmup"))

    def time(self, batch: int, seed: int, calls: int) -> list[int]:
        return [int(v) for v in self._ask(f"time {batch} {seed} {calls}", "ns").split()]

    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]:
        calls, wall = self._ask(f"threads-run {threads} {seconds!r} {seed}", "calls").split()
        return int(calls), int(wall)
