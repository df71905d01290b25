"""resx.export: the files both runtimes load, each carrying a JSON manifest: TorchScript (.pt,
export/torchscript.py) and AOTInductor packages (.pt2, export/aoti.py)."""

from pathlib import Path

from resx.export.aoti import CompileSettings, export_aoti, inspect_package, read_manifest
from resx.export.torchscript import (
    FORMAT,
    MANIFEST_NAME,
    ExportError,
    Inspection,
    canonical_form,
    describe,
    export,
    fingerprint,
    flops_per_image,
    load,
    load_weights,
    manifest_claims,
    quiet_jit,
    save,
    script,
    tensor_sha1,
    weights_hash,
)
from resx.export.torchscript import inspect as inspect_torchscript

__all__ = [
    "FORMAT",
    "FORMATS",
    "MANIFEST_NAME",
    "CompileSettings",
    "ExportError",
    "Inspection",
    "canonical_form",
    "describe",
    "export",
    "export_aoti",
    "fingerprint",
    "flops_per_image",
    "format_of",
    "inspect",
    "inspect_package",
    "load",
    "load_weights",
    "manifest_claims",
    "quiet_jit",
    "read_manifest",
    "save",
    "script",
    "tensor_sha1",
    "weights_hash",
]


# The formats resx writes, by the file's suffix.
FORMATS = {".pt": "torchscript", ".pt2": "aoti"}


def format_of(path: Path, kind: str | None = None) -> str:
    """The format to write `path` in: --format when given (it must fit the suffix), else the suffix's."""
    suffix = Path(path).suffix
    known = ", ".join(f"{s} ({f})" for s, f in FORMATS.items())
    if kind is not None and kind not in FORMATS.values():
        raise ExportError(f"unknown --format '{kind}': {' or '.join(FORMATS.values())}")
    if suffix not in FORMATS:
        raise ExportError(f"{path}: resx writes {known}; name the file with one of these suffixes")
    if kind is not None and FORMATS[suffix] != kind:
        raise ExportError(f"{path}: a {suffix} file holds {FORMATS[suffix]}, not {kind}; rename it or drop --format")
    return FORMATS[suffix]


def inspect(path: Path, cpp: bool = True) -> Inspection:
    """Re-verify an export, in Python and in C++: a .pt2 package or a TorchScript file."""
    return inspect_package(path, cpp) if Path(path).suffix == ".pt2" else inspect_torchscript(path, cpp)
