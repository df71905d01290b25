"""ExecuTorch's C++ runtime seen from Python: resx._executorch (the extension, cpp-executorch) and
resx-executorch (the executable that loads no libtorch, exe-executorch), both built by meson where it found
the ExecuTorch wheel. No torch here: the cpp-executorch worker imports this alone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import ModuleType

from resx.errors import ResxError

MISSING = "resx was built without ExecuTorch's C++ runtime (install ExecuTorch, then `make install`)"


def extension() -> ModuleType:
    try:
        from resx import _executorch
    except ImportError:
        raise ResxError(MISSING) from None
    return _executorch


def executable() -> Path:
    """Path of resx-executorch: built and installed next to the extension."""
    path = Path(extension().__file__).with_name("resx-executorch")
    if not path.exists():
        raise ResxError(f"resx-executorch not found next to {extension().__file__}: reinstall resx (make install)")
    return path


def inspect(path: Path) -> dict:
    """What resx-executorch sees of a program: {runs, threads, executorch_version, manifest}; a ResxError
    with its one-line reason when it refuses the file."""
    proc = subprocess.run([str(executable()), "inspect", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        reason = lines[-1] if lines else f"resx-executorch inspect exited {proc.returncode}"
        raise ResxError(reason.removeprefix("resx-executorch inspect: "))
    return json.loads(proc.stdout)
