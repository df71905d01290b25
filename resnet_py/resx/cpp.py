"""The C++ runtime seen from Python: the nanobind module and the standalone executable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch  # noqa: F401  (loads LibTorch before the extension that links it)

from resx import _cpp
from resx.errors import CppRuntimeError, ResxError

__all__ = ["CppRuntimeError", "_cpp", "executable", "executable_env", "run_executable"]


def executable() -> Path:
    """Path of resx-cpp: built and installed next to the extension, editable install or not."""
    path = Path(_cpp.__file__).with_name("resx-cpp")
    if not path.exists():
        raise ResxError(f"resx-cpp not found next to {_cpp.__file__}: reinstall resx (make install)")
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
