"""The C++ runtime seen from Python: the nanobind module and the standalone executable."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch  # noqa: F401  (loads LibTorch before the extension that links it)

from resx import _cpp

__all__ = ["_cpp", "executable", "executable_env", "run_executable"]


class CppRuntimeError(RuntimeError):
    """The C++ runtime (extension or executable) failed; the message is its one-line reason."""


def executable() -> Path:
    """Path of resx-cpp: built and installed next to the extension, editable install or not."""
    path = Path(_cpp.__file__).with_name("resx-cpp")
    if not path.exists():
        raise CppRuntimeError(f"resx-cpp not found next to {_cpp.__file__}: reinstall resx (make install)")
    return path


def run_executable(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run resx-cpp; a non-zero exit becomes CppRuntimeError with its stderr as the message."""
    proc = subprocess.run([str(executable()), *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()
        raise CppRuntimeError(reason[-1] if reason else f"resx-cpp {args[0]} exited {proc.returncode}")
    return proc


def executable_env(threads: int | None = None) -> dict[str, str]:
    args = ["env", "--json"] + (["--threads", str(threads)] if threads else [])
    return json.loads(run_executable(*args).stdout)
