"""The runtimes `resx bench` compares, named language-engine: one entry per runtime. A language is py
(Python calling torch), cpp (Python calling the C++ runtime through an extension, GIL released) or exe
(resx-cpp, a process with no Python; for ExecuTorch resx-executorch, which loads no libtorch either); an
engine is one of resx.engines' (eager, script, frozen, compile, aoti, executorch). Adding a runtime is
adding an entry here (and, for a new engine, teaching resx.engines / resx::Engine to open it). A leaf of
the bench package: config and runners both read it."""

from __future__ import annotations

from dataclasses import dataclass

from resx.errors import BenchError
from resx.sources import Source


@dataclass(frozen=True)
class Runtime:
    name: str
    language: str  # py, cpp, exe
    engine: str  # resx.engines.ENGINES
    train: dict | None  # the `resx train` options that train this way (runtime, module, compile), if any
    description: str


def _runtimes() -> dict[str, Runtime]:
    languages = {"py": "from Python", "cpp": "in C++ called from Python", "exe": "in C++, no Python"}
    engines = {
        "eager": "the module written in the language (nn.Module; in C++ its torch::nn mirror)",
        "script": "the TorchScript file",
        "frozen": "the frozen TorchScript file",
        "compile": "torch.compile (Inductor)",
        "aoti": "the AOTInductor package",
        "executorch": "the ExecuTorch program (XNNPACK)",
    }
    training = {
        ("py", "eager"): {"runtime": "py", "module": "eager"},
        ("py", "script"): {"runtime": "py", "module": "scripted"},
        ("py", "compile"): {"runtime": "py", "module": "eager", "compile": True},
        ("cpp", "eager"): {"runtime": "cpp", "module": "eager"},
        ("cpp", "script"): {"runtime": "cpp", "module": "scripted"},
        ("exe", "eager"): {"runtime": "cpp-exe", "module": "eager"},
        ("exe", "script"): {"runtime": "cpp-exe", "module": "scripted"},
    }
    combos = [("py", e) for e in ("eager", "script", "frozen", "compile", "aoti", "executorch")] + [
        (lang, e) for lang in ("cpp", "exe") for e in ("eager", "script", "frozen", "aoti", "executorch")
    ]
    return {
        f"{lang}-{e}": Runtime(f"{lang}-{e}", lang, e, training.get((lang, e)), f"{engines[e]}, {languages[lang]}")
        for lang, e in combos
    }


RUNTIMES: dict[str, Runtime] = _runtimes()
BASELINE = "py-eager"
ALIASES: dict[str, str] = {"cpp": "cpp-script", "cpp-exe": "exe-script"}  # the names before engines were compared
CLASSIC = ["py-eager", "py-script", "cpp-script", "exe-script"]  # the four that run the same graph
LANGUAGE = ["py-eager", "cpp-eager", "exe-eager"]  # the same module written in each language


def resolve(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in RUNTIMES:
        known = ", ".join([*RUNTIMES, *ALIASES])
        raise BenchError(f"unknown runtime '{name}': choose from {known} or all")
    return name


def language_counterpart(label: str) -> str | None:
    """The same engine and dtype driven from Python, for a path of another language: cpp-frozen@bf16 ->
    py-frozen@bf16. Their ratio is the language's own share."""
    name, at, dtype = label.partition("@")
    graphs = name.endswith("+graphs")
    runtime = RUNTIMES.get(name.removesuffix("+graphs"))
    if runtime is None or runtime.language == "py":
        return None
    return f"py-{runtime.engine}" + ("+graphs" if graphs else "") + (f"@{dtype}" if at else "")


def script_counterpart(label: str) -> str | None:
    """The C++ frontend module in the same language and dtype, for a TorchScript path driven from C++:
    exe-script@bf16 -> exe-eager@bf16. Their ratio is TorchScript's own share, apart from the language's."""
    name, at, dtype = label.partition("@")
    graphs = name.endswith("+graphs")
    runtime = RUNTIMES.get(name.removesuffix("+graphs"))
    if runtime is None or runtime.language == "py" or runtime.engine != "script":
        return None
    return f"{runtime.language}-eager" + ("+graphs" if graphs else "") + (f"@{dtype}" if at else "")


def engines_of(source: Source) -> tuple[str, ...]:
    """The engines that can run a model: a model file only its own format's; every other source all."""
    if source.kind == "file":
        return ("aoti",) if source.name.endswith(".pt2") else ("script", "frozen")
    return ("eager", "script", "frozen", "compile", "aoti", "executorch")


def executorch_missing(language: str = "py") -> bool:
    """Whether ExecuTorch is absent: its wheel (the export and the Python runtime), and for C++ resx's
    build against it (resx._executorch and resx-executorch, built where meson found the wheel)."""
    import importlib.util

    if importlib.util.find_spec("executorch") is None:
        return True
    return language != "py" and importlib.util.find_spec("resx._executorch") is None


def runs(runtime: str, source: Source) -> bool:
    """Whether a runtime can run the model: its engine opens the model's files, and an eager engine in
    C++ needs the network written in the C++ frontend (resx::ResNet: the ResNets)."""
    r = RUNTIMES[resolve(runtime)]
    if r.engine not in engines_of(source) or (r.engine == "executorch" and executorch_missing(r.language)):
        return False
    return not (r.engine == "eager" and r.language != "py" and not source.cpp_module)


def takes_input(runtime: str) -> bool:
    """Whether the runtime is given each input (protocol.Input) instead of making it: ExecuTorch's C++
    runtime has no ATen generator."""
    r = RUNTIMES[resolve(runtime)]
    return r.engine == "executorch" and r.language != "py"


def why_not(runtime: str, source: Source) -> str:
    r = RUNTIMES[resolve(runtime)]
    if r.engine == "executorch" and executorch_missing():
        from resx.export.executorch import INSTALL

        return f"ExecuTorch is not installed ({INSTALL})"
    if r.engine == "executorch" and executorch_missing(r.language):
        from resx.executorch_cpp import MISSING

        return MISSING
    if r.engine == "eager" and r.language != "py" and source.kind != "file":
        return f"resx writes no C++ module for {source.spec} (its C++ frontend has the ResNets)"
    return f"a {source.label} file runs on its own format's engines ({', '.join(engines_of(source))})"


def baseline_of(source: Source | None) -> str:
    """What every path is compared with: py-eager, or for a model file (no eager module to rebuild) the
    Python runtime of its own engine."""
    if source is None or source.kind != "file":
        return BASELINE
    return "py-aoti" if source.name.endswith(".pt2") else "py-script"
