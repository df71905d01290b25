"""The C++ runtime seen from Python: the nanobind module and the standalone executable."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from resx.errors import CppRuntimeError, ResxError

__all__ = ["CppRuntimeError", "executable", "executable_env", "run_executable"]


def __getattr__(name: str):
    """resx.cpp._cpp, the extension, imported on first use after torch (whose LibTorch it links): the
    `resx-cpp` command starts without importing torch (3 s here)."""
    if name == "_cpp":
        import torch  # noqa: F401

        from resx import _cpp

        return _cpp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def executable() -> Path:
    """Path of resx-cpp: built and installed next to the extension, editable install or not."""
    spec = importlib.util.find_spec("resx._cpp")
    if spec is None or spec.origin is None:
        raise ResxError("resx's C++ extension is not installed: reinstall resx (make install)")
    path = Path(spec.origin).with_name("resx-cpp")
    if not path.exists():
        raise ResxError(f"resx-cpp not found next to {spec.origin}: reinstall resx (make install)")
    return path


def run_executable(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run resx-cpp. Exit 1 (an input it refused) becomes a ResxError with its one-line reason."""
    proc = subprocess.run([str(executable()), *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        reason = lines[-1] if lines else f"resx-cpp {args[0]} exited {proc.returncode}"
        if proc.returncode == 1:
            raise ResxError(reason.removeprefix(f"resx-cpp {args[0]}: "))
        raise CppRuntimeError(f"resx-cpp {args[0]} exited {proc.returncode}: {reason}")
    return proc


def executable_env(threads: int | None = None) -> dict[str, str]:
    args = ["env", "--json"] + (["--threads", str(threads)] if threads else [])
    return json.loads(run_executable(*args).stdout)


def exec_main() -> None:
    """The `resx-cpp` command in the environment's bin/: becomes the executable installed beside the
    extension (same process, arguments and signals)."""
    path = str(executable())
    os.execv(path, [path, *sys.argv[1:]])
