"""The runtimes `resx bench` compares: one Runner class per language, one registry entry per runtime.

A runtime is a language (py: this Python process; cpp: the C++ runtime in this process through the
extension, GIL released; exe: resx-cpp, a process with no Python) and an engine (eager: the nn.Module;
script: the TorchScript file). Adding a runtime is adding an entry here (and, for a new engine, teaching
its runner to load it).
"""

from __future__ import annotations

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
        Runtime("cpp", "cpp", "script", ("cpp", "eager"), "the TorchScript file in LibTorch C++, in this process"),
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


def make_runner(name: str, model_file: Path, device: str) -> Runner:
    from resx.bench.runners.cpp import CppRunner
    from resx.bench.runners.executable import ExeRunner
    from resx.bench.runners.python import PyRunner

    runtime = RUNTIMES[resolve(name)]
    cls = {"py": PyRunner, "cpp": CppRunner, "exe": ExeRunner}[runtime.language]
    return cls(runtime.name, runtime.engine, Path(model_file), device)


__all__ = ["ALIASES", "BASELINE", "RUNTIMES", "Identity", "Runner", "Runtime", "make_input", "make_runner", "resolve"]
