"""resx.export: TorchScript files that both runtimes load, each carrying a JSON manifest."""

from resx.export.torchscript import (
    FORMAT,
    MANIFEST_NAME,
    ExportError,
    Inspection,
    canonical_form,
    export,
    fingerprint,
    flops_per_image,
    inspect,
    load,
    load_weights,
    quiet_jit,
    weights_hash,
)

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "ExportError",
    "Inspection",
    "canonical_form",
    "export",
    "fingerprint",
    "flops_per_image",
    "inspect",
    "load",
    "load_weights",
    "quiet_jit",
    "weights_hash",
]
