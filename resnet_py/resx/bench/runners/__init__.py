"""The runners of the runtimes `resx bench` compares (resx.bench.registry names them): one Runner class
per language.

The bench drives every runtime in a process of its own, new each round (process.ServeRunner): resx-cpp
bench-serve for exe, a Python worker (serve.py) around the in-process runner (python.PyRunner,
cpp.CppRunner) for the others.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from resx.bench.registry import ALIASES, BASELINE, CLASSIC, RUNTIMES, Runtime, resolve
from resx.bench.runners.base import Identity, Runner, make_input
from resx.engines import EngineOptions
from resx.errors import BenchError


def make_local_runner(name: str, model_file: Path, options: EngineOptions) -> Runner:
    """A runtime that lives in this Python process (py and cpp languages)."""
    from resx.bench.runners.cpp import CppRunner
    from resx.bench.runners.python import PyRunner

    runtime = RUNTIMES[resolve(name)]
    if runtime.language == "exe":
        raise BenchError(f"{name} runs in a process of its own: use make_runner")
    cls = PyRunner if runtime.language == "py" else CppRunner
    return cls(runtime.name, model_file, replace(options, engine=runtime.engine))


def make_runner(
    name: str, model_file: Path, options: EngineOptions, label: str | None = None, env: dict[str, str] | None = None
) -> Runner:
    """A runtime in a process of its own, new at every start(). `label` names it in reports
    (py-aoti@bf16, say); `env` is added to its process's environment."""
    from resx.bench.runners.process import ServeRunner
    from resx.cpp import executable

    runtime = RUNTIMES[resolve(name)]
    o = replace(options, engine=runtime.engine)
    flags = ["--device", o.device, "--engine", o.engine, "--dtype", o.dtype, "--runners", str(o.runners)]
    flags += ["--input-shape", ",".join(map(str, o.input_shape))]
    flags += ["--channels-last"] if o.channels_last else []
    flags += ["--deterministic"] if o.deterministic else []
    flags += ["--cuda-graphs"] if o.cuda_graphs else []
    if runtime.language == "exe":
        command = [str(executable()), "bench-serve", str(model_file), *flags]
    else:
        command = [sys.executable, "-m", "resx.bench.runners.serve", runtime.name, str(model_file), *flags]
    return ServeRunner(label or runtime.name, model_file, o, command, env)


__all__ = [
    "ALIASES",
    "BASELINE",
    "CLASSIC",
    "RUNTIMES",
    "Identity",
    "Runner",
    "Runtime",
    "make_input",
    "make_local_runner",
    "make_runner",
    "resolve",
]
