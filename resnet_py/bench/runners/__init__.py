"""The runtimes `resx bench` compares: one Runner class per language, one registry entry per runtime.

A runtime is a language (py: Python calling torch; cpp: Python calling the C++ runtime through the
extension, GIL released; exe: resx-cpp, a process with no Python) and an engine (resx.engines: eager,
script, frozen, compile, aoti), named language-engine: py-eager, cpp-frozen, exe-aoti, ... Adding a
runtime is adding an entry here (and, for a new engine, teaching resx.engines / resx::Engine to open it).

The bench drives every runtime in a process of its own, new each round (process.ServeRunner): resx-cpp
bench-serve for exe, a Python worker (serve.py) around the in-process runner (python.PyRunner,
cpp.CppRunner) for the others.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

from resx.bench.config import BenchError
from resx.bench.runners.base import Identity, Runner, make_input
from resx.engines import EngineOptions


@dataclass(frozen=True)
class Runtime:
    name: str
    language: str  # py, cpp, exe
    engine: str  # resx.engines.ENGINES
    train: dict | None  # the `resx train` that trains this way (runtime, py_module, compile), if any
    description: str


def _runtimes() -> dict[str, Runtime]:
    languages = {"py": "from Python", "cpp": "in LibTorch C++ called from Python", "exe": "in resx-cpp, no Python"}
    engines = {"eager": "the nn.Module", "script": "the TorchScript file", "frozen": "the frozen TorchScript file",
               "compile": "torch.compile (Inductor)", "aoti": "the AOTInductor package"}  # fmt: skip
    training = {("py", "eager"): {"runtime": "py", "py_module": "eager"},
                ("py", "script"): {"runtime": "py", "py_module": "scripted"},
                ("py", "compile"): {"runtime": "py", "py_module": "eager", "compile": True},
                ("cpp", "script"): {"runtime": "cpp", "py_module": "eager"},
                ("exe", "script"): {"runtime": "cpp-exe", "py_module": "eager"}}  # fmt: skip
    combos = [("py", e) for e in ("eager", "script", "frozen", "compile", "aoti")] + [
        (lang, e) for lang in ("cpp", "exe") for e in ("script", "frozen", "aoti")]  # fmt: skip
    return {f"{lang}-{e}": Runtime(f"{lang}-{e}", lang, e, training.get((lang, e)), f"{engines[e]}, {languages[lang]}")
            for lang, e in combos}  # fmt: skip


RUNTIMES: dict[str, Runtime] = _runtimes()
BASELINE = "py-eager"
ALIASES: dict[str, str] = {"cpp": "cpp-script", "cpp-exe": "exe-script"}  # the names before engines were compared
CLASSIC = ["py-eager", "py-script", "cpp-script", "exe-script"]  # the four that run the same graph


def resolve(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in RUNTIMES:
        known = ", ".join([*RUNTIMES, *ALIASES])
        raise BenchError(f"unknown runtime '{name}': choose from {known} or all")
    return name


def make_local_runner(name: str, model_file: Path, options: EngineOptions) -> Runner:
    """A runtime that lives in this Python process (py and cpp languages)."""
    from resx.bench.runners.cpp import CppRunner
    from resx.bench.runners.python import PyRunner

    runtime = RUNTIMES[resolve(name)]
    if runtime.language == "exe":
        raise BenchError(f"{name} runs in a process of its own: use make_runner")
    cls = PyRunner if runtime.language == "py" else CppRunner
    return cls(runtime.name, model_file, replace(options, engine=runtime.engine))


def make_runner(name: str, model_file: Path, options: EngineOptions, label: str | None = None) -> Runner:
    """A runtime in a process of its own, new at every start(). `label` names it in reports
    (py-aoti@bf16, say)."""
    from resx.bench.runners.process import ServeRunner
    from resx.cpp import executable

    runtime = RUNTIMES[resolve(name)]
    o = replace(options, engine=runtime.engine)
    flags = ["--device", o.device, "--engine", o.engine, "--dtype", o.dtype, "--runners", str(o.runners)]
    flags += ["--channels-last"] if o.channels_last else []
    flags += ["--deterministic"] if o.deterministic else []
    flags += ["--cuda-graphs"] if o.cuda_graphs else []
    if runtime.language == "exe":
        command = [str(executable()), "bench-serve", str(model_file), *flags]
    else:
        command = [sys.executable, "-m", "resx.bench.runners.serve", runtime.name, str(model_file), *flags]
    return ServeRunner(label or runtime.name, model_file, o, command)


__all__ = ["ALIASES", "BASELINE", "CLASSIC", "RUNTIMES", "Identity", "Runner", "Runtime", "make_input",
           "make_local_runner", "make_runner", "resolve"]  # fmt: skip
