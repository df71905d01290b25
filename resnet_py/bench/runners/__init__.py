"""The runtimes `resx bench` compares: one Runner class per language, one registry entry per runtime.

A runtime is a language (py: Python calling torch; cpp: Python calling the C++ runtime through the
extension, GIL released; exe: resx-cpp, a process with no Python) and an engine (eager: the nn.Module;
script: the TorchScript file). Adding a runtime is adding an entry here (and, for a new engine, teaching
its runner to load it).

The bench drives every runtime in a process of its own, new each round (process.ServeRunner): resx-cpp
bench-serve for exe, a Python worker (serve.py) around the in-process runner (python.PyRunner,
cpp.CppRunner) for the others.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from resx.bench.config import BenchError
from resx.bench.runners.base import Identity, Runner, make_input


@dataclass(frozen=True)
class Runtime:
    name: str
    language: str  # py, cpp, exe
    engine: str  # eager, script
    train: tuple[str, str] | None  # (resx train --runtime, --py-module) that trains this way, if any
    description: str


RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime("py-eager", "py", "eager", ("py", "eager"), "the nn.Module, called from Python"),
        Runtime("py-script", "py", "script", ("py", "scripted"), "the TorchScript file, called from Python"),
        Runtime("cpp", "cpp", "script", ("cpp", "eager"), "the TorchScript file in LibTorch C++, called from Python"),
        Runtime("cpp-exe", "exe", "script", ("cpp-exe", "eager"), "the TorchScript file in resx-cpp, no Python"),
    )
}
BASELINE = "py-eager"
ALIASES: dict[str, str] = {}


def resolve(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in RUNTIMES:
        raise BenchError(f"unknown runtime '{name}': choose from {', '.join(RUNTIMES)} or all")
    return name


def make_local_runner(name: str, model_file: Path, device: str) -> Runner:
    """A runtime that lives in this Python process (py and cpp languages)."""
    from resx.bench.runners.cpp import CppRunner
    from resx.bench.runners.python import PyRunner

    runtime = RUNTIMES[resolve(name)]
    if runtime.language == "exe":
        raise BenchError(f"{name} runs in a process of its own: use make_runner")
    cls = PyRunner if runtime.language == "py" else CppRunner
    return cls(runtime.name, runtime.engine, Path(model_file), device)


def make_runner(name: str, model_file: Path, device: str) -> Runner:
    """A runtime in a process of its own, new at every start()."""
    from resx.bench.runners.process import ServeRunner
    from resx.cpp import executable

    runtime = RUNTIMES[resolve(name)]
    if runtime.language == "exe":
        command = [str(executable()), "bench-serve", str(model_file), device]
    else:
        command = [sys.executable, "-m", "resx.bench.runners.serve", runtime.name, str(model_file), device]
    return ServeRunner(runtime.name, runtime.engine, Path(model_file), device, command)


__all__ = ["ALIASES", "BASELINE", "RUNTIMES", "Identity", "Runner", "Runtime", "make_input", "make_local_runner",
           "make_runner", "resolve"]  # fmt: skip
