"""Atomic writes: a reader sees the old file or the new one, never a partial one (mirrors
resx::atomic_write in resnet_cpp/io.cpp)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def safe_torch_load(path: Path):
    """torch.load(weights_only=True) that also reads torch::pickle_save files: those tag typed dicts
    with restore_type_tag, a torch function that only annotates the dict, so allowing it keeps the
    weights_only guarantee."""
    import torch
    import torch.jit._pickle

    with torch.serialization.safe_globals([torch.jit._pickle.restore_type_tag]):
        return torch.load(path, map_location="cpu", weights_only=True)


def atomic_write(path: Path, data: bytes | str) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
