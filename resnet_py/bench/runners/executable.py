"""cpp-exe: `resx-cpp bench-serve`, a process with no Python answering timing commands one line at a time.
Each start() is a new process (a fresh runtime state); its stderr goes to a file, so that no amount of
warnings can fill a pipe and stall it, and the file's last line explains a failure."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import torch

from resx.bench.config import BenchError, WarmupRule
from resx.bench.runners.base import Identity, Runner
from resx.cpp import executable


class ExeRunner(Runner):
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (closed in stop())
        env = os.environ | {"RESX_PARENT_PID": str(os.getpid())}  # it dies with us (PR_SET_PDEATHSIG)
        self.proc = subprocess.Popen(
            [str(executable()), "bench-serve", str(self.model_file), self.device], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1, env=env,
        )  # fmt: skip
        first = self.proc.stdout.readline().split()
        if len(first) != 3 or first[0] != "ready":
            raise BenchError(f"resx-cpp bench-serve did not start: {self._last_error()}")
        self.fingerprint, self.weights_hash = first[1], first[2]

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
            raise BenchError(f"resx-cpp bench-serve stopped at '{line}': {self._last_error()}")
        if not answer.startswith(expect + " ") and answer != expect:
            raise BenchError(f"resx-cpp bench-serve: '{line}' answered '{answer[:200]}'")
        return answer[len(expect) :].strip()

    def identity(self, seed: int) -> Identity:
        env = json.loads(self._ask("env", "env"))
        output = torch.tensor([float(v) for v in self._ask(f"output 1 {seed}", "output").split(",")]).view(1, -1)
        return Identity(self.fingerprint, self.weights_hash, self._ask(f"input 1 {seed}", "input"), output, env)

    def set_threads(self, n: int) -> None:
        self._ask(f"threads {n}", "ok")

    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int:
        return int(self._ask(f"warmup {batch} {seed} {rule.window} {rule.tolerance!r} {rule.max_calls}", "warmup"))

    def time(self, batch: int, seed: int, calls: int) -> list[int]:
        return [int(v) for v in self._ask(f"time {batch} {seed} {calls}", "ns").split()]

    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]:
        calls, wall = self._ask(f"threads-run {threads} {seconds!r} {seed}", "calls").split()
        return int(calls), int(wall)
