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


def inspect(path: Path, cpp: bool = True) -> Inspection:
    """Re-verify an export, in Python and in C++: a .pt2 package or a TorchScript file."""
    return inspect_package(path, cpp) if Path(path).suffix == ".pt2" else inspect_torchscript(path, cpp)
