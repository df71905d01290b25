"""resx.export: the files both runtimes load, each carrying a JSON manifest: TorchScript (.pt,
export/torchscript.py), AOTInductor packages (.pt2, export/aoti.py) and weights exports (.pth,
export/weights.py: the state dict, for the eager module in Python and the C++ frontend in C++)."""

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
    graph_fingerprint,
    load,
    load_weights,
    manifest_claims,
    prepared,
    quiet_jit,
    save,
    script,
    state_fingerprint,
    tensor_sha1,
    weights_hash,
)
from resx.export.torchscript import inspect as inspect_torchscript
from resx.export.weights import export_weights, read_weights, save_weights

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
    "export_weights",
    "fingerprint",
    "flops_per_image",
    "format_of",
    "graph_fingerprint",
    "inspect",
    "inspect_package",
    "load",
    "load_weights",
    "manifest_claims",
    "prepared",
    "quiet_jit",
    "read_manifest",
    "read_weights",
    "save",
    "save_weights",
    "script",
    "state_fingerprint",
    "tensor_sha1",
    "weights_hash",
]


# The formats resx writes, by the file's suffix.
FORMATS = {".pt": "torchscript", ".pt2": "aoti", ".pth": "weights"}


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
    """Re-verify an export, in Python and in C++: a .pt2 package, a weights export or a TorchScript file."""
    suffix = Path(path).suffix
    if suffix == ".pt2":
        return inspect_package(path, cpp)
    return inspect_weights(path, cpp) if suffix == ".pth" else inspect_torchscript(path, cpp)


def inspect_weights(path: Path, cpp: bool = True) -> Inspection:
    """A weights export against its manifest: Python rebuilds the network from the manifest and fills it
    (its graph scripted for the fingerprint); C++ builds its torch::nn mirror from the same file, with no
    TorchScript, and reports the state, weights and architecture (its fingerprint is the recorded one)."""
    from resx.models import ModelConfig, build

    state, manifest = read_weights(path)
    claims = manifest_claims(manifest, path)
    module = build(ModelConfig.from_dict(manifest["model"]))
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise ExportError(f"{path}: its state does not fit the model its manifest names ({e})") from None
    sources = {"python": describe(script(module.eval()), claims["model.name"])}
    if cpp:
        from resx import _cpp

        sources["c++"] = _cpp.describe(_cpp.Frontend(str(path)), claims["model.name"])
    sources["manifest"] = claims
    result = Inspection(Path(path), manifest)
    result.checks = {k: {src: values.get(k, "(absent)") for src, values in sources.items()} for k in claims}
    return result
