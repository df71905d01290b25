"""The files a model's paths open, made before any round and timing nothing: the weights export of the
eager engines (the module in each language), the TorchScript graph of script and frozen (scripted, or
traced where the model does not script), the AOTInductor packages of each dtype and the ExecuTorch
program (cached across runs: keyed by manifest and settings; with --aoti-freezing auto both the frozen
and the unfrozen package, which the rounds time to choose); for a model file resx did not write, the
file and a manifest derived from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from resx.bench.plan import ModelPlan
from resx.export import prepared, save, save_weights
from resx.export.aoti import CompileSettings, cached
from resx.export.foreign import derive
from resx.sources import Source

EAGER = ("eager", "compile")  # the engines that build the module from the weights export


@dataclass(frozen=True)
class Candidate:
    """An AOTInductor package compiled for a dtype, with or without freezing."""

    path: Path
    manifest: dict
    cached: bool


@dataclass
class Prepared:
    manifest: dict
    source: Source  # as the manifest records it: its classes and input shape
    files: dict  # "eager", "script", or ("aoti", dtype) -> the file a path of that engine opens
    candidates: dict[str, dict[str, Candidate]] = field(default_factory=dict)  # dtype -> "on"/"off" -> package

    def file(self, engine: str, dtype: str) -> Path:
        if engine == "aoti":
            return self.files[("aoti", dtype)]
        if engine == "executorch":
            return self.files["executorch"]
        return self.files["eager" if engine in EAGER else "script"]


def prepare(model: ModelPlan, work: Path, notify: Callable[[str], None]) -> Prepared:
    source, cfg = model.source, model.config
    if source.kind == "file":
        manifest = derive(Path(source.name), source.shape)
        engine = "aoti" if source.name.endswith(".pt2") else "script"
        dtypes = {p.dtype for p in model.paths}
        files = {("aoti", d) if engine == "aoti" else "script": Path(source.name) for d in dtypes}
        return Prepared(manifest, Source.from_manifest(manifest), files)
    model_file, weights_file = work / f"{source.label}.pt", work / f"{source.label}.pth"
    notify(f"exporting {source.spec}")
    scripts = any(p.engine in ("script", "frozen") for p in model.paths)
    weights = Path(source.weights) if source.weights else None  # a resx file's own weights
    module, graph, manifest = prepared(source, cfg.model.seed, weights, need_script=scripts)  # once, for every file
    if graph is not None:
        save(graph, model_file, manifest)
    save_weights(module, weights_file, manifest)
    out = Prepared(manifest, Source.from_manifest(manifest), {"script": model_file, "eager": weights_file})
    if any(p.engine == "executorch" for p in model.paths):
        from resx.export.executorch import cached_program

        notify(f"ExecuTorch program for {source.spec} (XNNPACK; exported once, then cached)")
        out.files["executorch"], _ = cached_program(source, cfg.model.seed, manifest, weights)
    freezing = ("on", "off") if cfg.paths.aoti_freezing == "auto" else (cfg.paths.aoti_freezing,)
    for dtype in dict.fromkeys(p.dtype for p in model.paths if p.engine == "aoti"):
        notify(f"AOTInductor package for {source.spec} {dtype} (compiled once, then cached)")
        out.candidates[dtype] = {}
        for f in freezing:
            settings = CompileSettings(cfg.paths.device, dtype, 0, f == "on", cfg.paths.channels_last)
            out.candidates[dtype][f] = Candidate(*cached(source, cfg.model.seed, settings, manifest, weights))
    return out
