"""resx.export: the files both runtimes load, each carrying a JSON manifest: TorchScript (.pt,
resx.export.torchscript), AOTInductor packages (.pt2, resx.export.aoti) and weights exports (.pth,
resx.export.weights: the state dict, for the eager module in Python and the C++ frontend in C++)."""

from pathlib import Path

from resx.export.aoti import CompileSettings, ForeignPackage, export_aoti, inspect_package, read_manifest
from resx.export.foreign import derive
from resx.export.torchscript import (
    FORMAT,
    MANIFEST_NAME,
    ExportError,
    Inspection,
    canonical_form,
    describe,
    describe_architecture,
    export,
    fingerprint,
    flops_per_image,
    graph_fingerprint,
    graph_of,
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
from resx.models import load_state

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
    "graph_of",
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
    "write",
]


# The formats resx writes, by the file's suffix.
FORMATS = {".pt": "torchscript", ".pt2": "aoti", ".pth": "weights", ".pte": "executorch"}


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


def write(
    kind: str,
    source,
    output: Path,
    seed: int,
    weights: Path | None,
    settings: CompileSettings,
    backend: str = "xnnpack",
) -> str:
    """Export `source` (resx.sources.Source) to `output` in `kind` (format_of's); returns what was written,
    in one line."""
    if kind == "executorch":
        from resx.export.executorch import export_executorch

        manifest = export_executorch(source, output, seed, weights, backend)
        batch, took = manifest["executorch"]["max_batch"], manifest["compile_seconds"]
        how = f"ExecuTorch program, {backend}, batch up to {batch}, exported in {took:.1f} s"
    elif kind == "aoti":
        manifest = export_aoti(source, output, seed, weights, settings)
        threads = settings.threads or "dynamic"
        how = (
            f"AOTInductor for {settings.device} {settings.dtype}, threads {threads}, "
            f"compiled in {manifest['compile_seconds']:.1f} s"
        )
    elif kind == "weights":
        manifest = export_weights(source, output, seed=seed, weights=weights)
        how = "weights: state dict and manifest, for the eager module in either language"
    else:
        manifest = export(source, output, seed=seed, weights=weights)
        how = "TorchScript, " + ("traced" if manifest["export"]["graph"] == "trace" else "scripted")
    flops, note = manifest.get("flops_per_image"), (manifest.get("export") or {}).get("note")
    return (
        f"wrote {output} ({how}): {source.spec}, input {'x'.join(map(str, source.shape))}, "
        f"{manifest['parameters']:,} parameters"
        + (f", {flops['forward'] / 1e9:.3f} GFLOP/img forward" if flops else "")
        + f", fingerprint {manifest['fingerprint'][:12]}"
        + (f"; {note}" if note else "")
    )


def inspect(path: Path, cpp: bool = True, shape: tuple[int, int, int] | None = None) -> Inspection:
    """Re-verify an export, in Python and in C++: a .pt2 package, a weights export or a TorchScript file.
    A file resx did not write is described instead (at `shape`, its FLOPs and classes too)."""
    suffix = Path(path).suffix
    if suffix == ".pte":
        from resx.export.executorch import inspect_program

        return inspect_program(path, cpp)
    if suffix == ".pt2":
        try:
            return inspect_package(path, cpp)
        except ForeignPackage:
            return inspect_foreign_package(path, cpp, shape)
    if suffix == ".pth":
        return inspect_weights(path, cpp)
    result = inspect_torchscript(path, cpp)
    if result.foreign and shape is not None:
        result.manifest = derive(path, shape)
    return result


def inspect_foreign_package(path: Path, cpp: bool, shape: tuple[int, int, int] | None) -> Inspection:
    """A package resx did not write: it runs at `shape` in Python and in C++, and its bytes identify it."""
    if shape is None:
        raise ExportError(
            f"{path}: an AOTInductor package resx did not write does not record its input's shape; give "
            f"--input-shape C,H,W"
        )
    manifest = derive(path, shape)
    found = {"python": {"fingerprint": manifest["fingerprint"], "runs": "yes"}}
    if cpp:
        import torch

        from resx import _cpp

        engine = _cpp.Engine(str(path), "aoti", input_shape=list(shape))
        out = engine.forward(_cpp.make_input(3, 0, "cpu", list(shape)))
        ok = tuple(out.shape) == (3, manifest["model"]["num_classes"]) and bool(torch.isfinite(out).all())
        found["c++"] = {"fingerprint": engine.fingerprint(), "runs": "yes" if ok else f"no: {tuple(out.shape)}"}
    result = Inspection(Path(path), manifest, foreign=True)
    result.checks = {k: {src: values[k] for src, values in found.items()} for k in ("fingerprint", "runs")}
    return result


def inspect_weights(path: Path, cpp: bool = True) -> Inspection:
    """A weights export against its manifest: Python rebuilds the network from the manifest and fills it
    (its graph scripted for the fingerprint); C++ builds its torch::nn mirror from the same file, with no
    TorchScript, and reports the state, weights and architecture (its fingerprint is the recorded one)."""
    from resx.sources import Source

    state, manifest = read_weights(path)
    claims = manifest_claims(manifest, path)
    source = Source.from_manifest(manifest)
    module = source.build(check=False)
    try:
        load_state(module, state)
    except RuntimeError as e:
        raise ExportError(f"{path}: its state does not fit the model its manifest names ({e})") from None
    how = (manifest.get("export") or {}).get("graph")
    name = claims.get("model.name", "")
    if how:  # the graph the export made, made again from the rebuilt module
        found = describe(graph_of(module.eval(), source.shape, how)[0], name)
    else:  # no graph could be made (TorchScript refused): the state proves it
        shapes = {n: list(t.shape) for n, t in module.named_parameters()}
        found = describe_architecture(shapes, name) | {
            "fingerprint": manifest["fingerprint"],
            "state_fingerprint": state_fingerprint(module),
            "weights_hash": weights_hash(module),
        }
    sources = {"python": found}
    if cpp and source.cpp_module:  # the C++ frontend has the ResNets; other models it does not write
        from resx import _cpp

        sources["c++"] = _cpp.describe(_cpp.Frontend(str(path)), name)
    sources["manifest"] = claims
    result = Inspection(Path(path), manifest)
    result.checks = {k: {src: values.get(k, "(absent)") for src, values in sources.items()} for k in claims}
    return result
