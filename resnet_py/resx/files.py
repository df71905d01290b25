"""Atomic writes: a reader sees the old file or the new one, never a partial one; a failed write names
the file and the cause and leaves no temporary behind. Mirrors resx::atomic_write (resnet_cpp/io.cpp):
the same temporary names (`.NAME.XXXXXXXX.tmp` beside NAME) and the same file mode (0666 less the umask)."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from pathlib import Path

from resx.errors import ResxError

TEMP_SUFFIX = ".tmp"


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def is_temp(name: str) -> bool:
    """A temporary left by an interrupted atomic write (either language)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def write_error(path: Path, e: OSError) -> ResxError:
    return ResxError(f"{path}: cannot write ({e.strerror or e})")


def atomic_write(path: Path, data: bytes | str) -> None:
    path = Path(path)
    view = memoryview(data.encode() if isinstance(data, str) else data)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)  # ENOSPC can surface only here; and the rename must not overtake the data
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise write_error(path, e) from None


def torch_bytes(obj) -> bytes:
    """torch.save into memory, so that the bytes reach the disk through atomic_write (torch's own file
    writer reports a full disk as an anonymous RuntimeError)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def safe_torch_load(path: Path, mmap: bool = False):
    """torch.load(weights_only=True) that also reads torch::pickle_save files: those tag typed dicts
    with restore_type_tag, a torch function that only annotates the dict, so allowing it keeps the
    weights_only guarantee."""
    import torch
    import torch.jit._pickle

    with torch.serialization.safe_globals([torch.jit._pickle.restore_type_tag]):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
