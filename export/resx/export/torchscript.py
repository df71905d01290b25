"""TorchScript export of resx models: the file both runtimes load, with a JSON manifest inside.

The fingerprint is computed on the module as *loaded from the file* (what LibTorch sees), so that the
C++ runtime can recompute the same text with torch::jit::load and compare (resnet_cpp/model.cpp).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import hashlib
import io
import json
import math
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import resx
from resx.data import AUGMENT, IMAGE_SHAPE
from resx.errors import ExportError, first_line
from resx.files import atomic_write, safe_torch_load
from resx.models import ARCHITECTURES, MAX_SEED, ModelConfig, architecture_of, load_state, parameter_count, structure
from resx.sources import Source

MANIFEST_NAME = "resx_manifest.json"  # mirrors resx::kManifestName
FORMAT = "resx-export/1"

_SOURCE_RANGE = re.compile(r"\s*# \S+:\d+:\d+$", re.M)
_MANGLE = re.compile(r"___torch_mangle_\d+\.")
_jit_noted = False


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """torch 2.14 deprecates TorchScript with a FutureWarning per call. resx needs TorchScript
    (it is what LibTorch loads), so it says so once per process instead of on every call."""
    global _jit_noted
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*deprecated")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*TorchScript.*")
        yield
    if not _jit_noted and os.environ.get("RESX_QUIET_JIT") != "1":
        _jit_noted = True
        print(
            "note: torch 2.14 deprecates TorchScript; resx uses it on purpose, as the format LibTorch "
            "C++ loads (set RESX_QUIET_JIT=1 to hide this line)",
            file=sys.stderr,
        )


def canonical_form(module: torch.jit.ScriptModule) -> str:
    """Inlined forward graph without source ranges or mangling, then every parameter's and buffer's
    name, shape and dtype. Mirrors resx::canonical_form."""
    graph = module.forward.graph.copy()
    torch._C._jit_pass_inline(graph)
    text = _MANGLE.sub("", _SOURCE_RANGE.sub("", graph.str(False)))
    return (text if text.endswith("\n") else text + "\n") + state_lines(module)


def state_lines(module: nn.Module) -> str:
    """Every parameter's and buffer's name, shape and dtype, one per line (resx::state_lines): the part of
    the fingerprint that any module has, scripted or not, in either language."""
    lines = []
    for kind, items in (("param", module.named_parameters()), ("buffer", module.named_buffers())):
        for name, t in items:
            lines.append(f"{kind} {name} {list(t.shape)} {str(t.dtype).removeprefix('torch.')}\n")
    return "".join(lines)


def state_fingerprint(module: nn.Module) -> str:
    """What the parameters and buffers are (names, shapes, dtypes), independent of values and of the
    graph: the C++ frontend module, which has no graph, proves its structure with it."""
    return hashlib.sha1(state_lines(module).encode()).hexdigest()


def fingerprint(module: torch.jit.ScriptModule) -> str:
    """What defines the computation, independent of the weight values."""
    return hashlib.sha1(canonical_form(module).encode()).hexdigest()


def graph_fingerprint(module: nn.Module, shape: tuple[int, ...] = IMAGE_SHAPE, how: str | None = None) -> str | None:
    """The fingerprint of an eager module's graph, made as its export made it (graph_of: scripted, or
    traced at `shape`); None when this torch refuses TorchScript (it is deprecated) or the module makes
    no graph: the callers then rely on the state fingerprint and the outputs."""
    try:
        return fingerprint(graph_of(module, shape, how)[0])
    except Exception:  # noqa: BLE001  (whatever a torch without TorchScript raises)
        return None


def tensor_sha1(t: torch.Tensor) -> str:
    """SHA-1 of a tensor's bytes; resx::tensor_sha1."""
    return hashlib.sha1(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def weights_hash(module: nn.Module) -> str:
    """SHA-1 over every parameter's and buffer's name and bytes, in module order."""
    h = hashlib.sha1()
    for items in (module.named_parameters(), module.named_buffers()):
        for name, t in items:
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def flops_per_image(model: nn.Module, shape: tuple[int, ...] = IMAGE_SHAPE) -> dict[str, int] | None:
    """Forward and training (forward + backward) FLOPs of one image at `shape`, by torch's FlopCounterMode,
    on the meta device where the module allows it (FLOPs depend on shapes alone: 0.1 s for ResNet18
    instead of 1.3), else computed; None for a module that does not run backward on random inputs."""
    for device in ("meta", "cpu"):
        try:
            return _count_flops(copy.deepcopy(model).to(device), torch.zeros(2, *shape, device=device))
        except Exception:  # noqa: BLE001  (a user's module may refuse the meta device, or backward)
            continue
    return None


def _count_flops(model: nn.Module, x: torch.Tensor) -> dict[str, int | None]:
    # A copy: a training step would move the caller's BN running stats. Two images: BN in training mode
    # needs more than one value per channel. Imported here: it imports triton, which a worker that only
    # runs a model does not need (0.1-0.2 s of every start).
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as forward:
        model(x)
    model.train()
    try:
        with FlopCounterMode(display=False) as training:
            out = model(x)
            out.sum().backward()  # a model whose training forward returns more (auxiliary heads) has none
        trained = training.get_total_flops() // 2
    except Exception:  # noqa: BLE001
        trained = None
    return {"forward": forward.get_total_flops() // 2, "training": trained}


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a resx export, a resx checkpoint or a plain state dict (never unpickling
    arbitrary objects: weights_only=True)."""
    if not path.is_file():
        raise ExportError(f"{path}: no such weights file")
    with contextlib.suppress(RuntimeError, ValueError), quiet_jit():
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    try:
        obj = safe_torch_load(path)
    except Exception as e:  # noqa: BLE001  (torch raises many kinds for a file that is not one)
        reason = type(e).__name__
        raise ExportError(f"{path}: not a weights file ({reason}); give a resx export or checkpoint") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # a checkpoint
    elif isinstance(obj, dict) and isinstance(obj.get("state"), dict):
        obj = obj["state"]  # a weights export
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ExportError(f"{path}: holds no state dict of tensors")
    return obj


def script(model: nn.Module) -> torch.jit.ScriptModule:
    """The scripted module as LibTorch sees it: scripted, saved and loaded back (the fingerprint is
    computed on this form, in Python and in C++)."""
    buf = io.BytesIO()
    with quiet_jit():
        torch.jit.save(torch.jit.script(model), buf)
        buf.seek(0)
        return torch.jit.load(buf, map_location="cpu")


def save(module: torch.jit.ScriptModule, path: Path, manifest: dict | None = None) -> None:
    buf = io.BytesIO()
    with quiet_jit():
        torch.jit.save(module, buf, _extra_files={MANIFEST_NAME: json.dumps(manifest, indent=2)} if manifest else {})
    atomic_write(Path(path), buf.getvalue())


def as_source(model: Source | ModelConfig) -> Source:
    """A resx ResNet's config as the Source it is; a Source as it is."""
    if isinstance(model, Source):
        return model
    return Source.of_config(model)


def example_input(shape: tuple[int, ...]) -> torch.Tensor:
    """What a graph is traced at, and a package compiled for: two images of `shape` (BatchNorm in
    training mode needs more than one value per channel), the same numbers in every process."""
    return torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))


def graph_of(model: nn.Module, shape: tuple[int, ...], how: str | None = None) -> tuple[torch.jit.ScriptModule, str]:
    """The TorchScript graph LibTorch loads, and how it was made: scripted (data-dependent control flow
    kept) when the module scripts and returns one tensor, else traced at example_input(shape), which
    freezes whatever control flow that input took. how: "script" or "trace" to make it that way (the
    way an export recorded); a module that does neither raises ExportError naming the step."""
    reasons = []
    if how in (None, "script"):
        try:
            with warnings.catch_warnings(), torch.no_grad():  # a caveat of scripting: traced instead below
                warnings.simplefilter("ignore", UserWarning)
                scripted = script(model)
                out = scripted(example_input(shape))
            if isinstance(out, torch.Tensor):
                return scripted, "script"
            reasons.append(f"scripted, it returns a {type(out).__name__}, not a tensor")
        except ExportError:
            raise
        except Exception as e:  # noqa: BLE001  (TorchScript's frontend raises many kinds)
            reasons.append(f"torch.jit.script failed: {first_line(e)}")
        if how == "script":
            raise ExportError(f"the module no longer scripts ({reasons[0]}); re-export it")
    try:
        traced = trace(model, example_input(shape))
    except Exception as e:  # noqa: BLE001  (tracing runs the user's code)
        reasons.append(f"torch.jit.trace failed: {first_line(e)}")
        raise ExportError(f"cannot export a TorchScript graph: {'; '.join(reasons)}") from None
    return traced, "trace"


def trace(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """The traced module as LibTorch sees it: traced in eval mode, saved and loaded back."""
    buf = io.BytesIO()
    with quiet_jit(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.jit.save(torch.jit.trace(model.eval(), example, check_trace=False), buf)
        buf.seek(0)
        return torch.jit.load(buf, map_location="cpu")


TRACE_NOTE = (
    "traced, not scripted ({why}): control flow that depends on the data is frozen as the example input took it"
)


def prepared(
    model: Source | ModelConfig, seed: int = 0, weights: Path | None = None, need_script: bool = False
) -> tuple[nn.Module, torch.jit.ScriptModule | None, dict]:
    """The eval-mode network an export holds, its TorchScript graph as LibTorch loads it (scripted, or
    traced where it does not script, said in the manifest's "export"), and the manifest every format of
    export shares: the source (enough to rebuild the module in a later process), the input shape, the
    fingerprint of the graph, the state fingerprint, the weights hash, FLOPs at the input shape,
    normalisation where the source defines it, provenance. Where no graph can be made (a torch that
    refuses TorchScript, a module that neither scripts nor traces) a format that needs none still
    exports, fingerprinted by its state ("state:" + its SHA-1); need_script: the TorchScript export,
    which then fails in one line naming the step."""
    source = as_source(model)
    if not 0 <= seed <= MAX_SEED:
        raise ExportError(f"--seed must be in [0, 2**63 - 1], got {seed}")
    module = source.build(seed=seed)
    if weights is not None:
        state = load_weights(weights)
        try:
            load_state(module, state)
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            reason = first[1].strip() if len(first) > 1 else first[0]
            raise ExportError(f"{weights}: weights do not fit {source.spec} ({reason})") from None
    flops = flops_per_image(module, source.shape)
    module.eval()
    try:
        loaded, how = graph_of(module, source.shape)
    except ExportError as e:
        if need_script:
            raise ExportError(
                f"{e} (for {source.spec}); export weights (.pth) or an AOTInductor package (.pt2)"
            ) from None
        loaded, how = None, None
    graph = loaded if loaded is not None else module
    if source.num_classes is None:
        source.num_classes = source.classes(module)
    manifest = {
        "format": FORMAT,
        "model": source.model_dict(),
        "source": source.to_dict(),
        "parameters": parameter_count(module),
        "flops_per_image": flops,
        "input": {"shape": [1, *source.shape], "dtype": "float32"},
        "normalization": source.normalization,
        "augmentation": AUGMENT.to_dict() if source.kind == "builtin" else None,
        "export": {"graph": how, "note": None if how != "trace" else TRACE_NOTE.format(why="it does not script")},
        "fingerprint": fingerprint(loaded) if loaded is not None else f"state:{state_fingerprint(module)}",
        "state_fingerprint": state_fingerprint(graph),
        "weights_hash": weights_hash(graph),
        "seed": seed,
        "weights_from": str(weights) if weights else None,
        "torch_version": torch.__version__,
        "resx_version": resx.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return module, loaded, json.loads(json.dumps(manifest))  # as stored: tuples become lists


def export(model: Source | ModelConfig, path: Path, seed: int = 0, weights: Path | None = None) -> dict:
    """The TorchScript graph (scripted, or traced where it does not script) saved with its manifest;
    returns the manifest."""
    _, graph, manifest = prepared(model, seed, weights, need_script=True)
    save(graph, Path(path), manifest)
    return manifest


def load(path: Path) -> tuple[torch.jit.ScriptModule, dict | None]:
    """The scripted module and its manifest (None for a foreign TorchScript file)."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such file (make one with `resx export resnet18 -o {path}`)")
    if not zipfile.is_zipfile(path):
        raise ExportError(f"{path}: not a TorchScript file (not a zip archive; truncated or another format)")
    extra = {MANIFEST_NAME: ""}
    try:
        with quiet_jit():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:  # noqa: BLE001  (torch raises many kinds for a file that is not one)
        raise ExportError(f"{path}: not a loadable TorchScript file ({first_line(e, None)})") from None
    raw = extra[MANIFEST_NAME]
    if not raw:
        return module, None
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: its resx manifest is not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise ExportError(f"{path}: its resx manifest is not a JSON object; re-export the file")
    return module, manifest


def describe(module: nn.Module, claimed_name: str) -> dict[str, str]:
    """What a file says of itself, recomputed from its graph and parameters; mirrors resx::describe."""
    shapes = {name: list(t.shape) for name, t in module.named_parameters()}
    return describe_architecture(shapes, claimed_name) | {
        "fingerprint": fingerprint(module),
        "state_fingerprint": state_fingerprint(module),
        "weights_hash": weights_hash(module),
    }


def describe_architecture(shapes: dict[str, list[int]], claimed_name: str) -> dict[str, str]:
    """The architecture that parameter names and shapes describe, and the parameter count
    (resx::describe_architecture). model.name is the architecture the shapes imply: the one whose own
    blocks they are, else the claimed one if its block kind matches (custom layers)."""
    out = {"parameters": str(sum(math.prod(s) for s in shapes.values()))}
    found = structure(shapes)
    if not found:
        return out | {"model.block": "(not a resx ResNet)"}
    name = architecture_of(found["block"], found["layers"])
    if name is None:
        custom = claimed_name in ARCHITECTURES and ARCHITECTURES[claimed_name][0].__name__ == found["block"]
        name = claimed_name if custom else f"(no {found['block']} architecture)"
    return out | {
        "model.name": name,
        "model.block": found["block"],
        "model.layers": _join(found["layers"]),
        "model.stem": found["stem"],
        "model.width": str(found["width"]),
        "model.num_classes": str(found["num_classes"]),
    }


def manifest_claims(manifest: dict, source: Path | str) -> dict[str, str]:
    """The keys of describe(), as a manifest states them; mirrors resx::manifest_claims."""
    try:
        model = manifest["model"]
        state = {"state_fingerprint": str(manifest["state_fingerprint"])} if "state_fingerprint" in manifest else {}
        return {
            "fingerprint": str(manifest["fingerprint"]),
            **state,
            "weights_hash": str(manifest["weights_hash"]),
            "parameters": str(int(manifest["parameters"])),
        } | (resnet_claims(model) if "block" in model else {})
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"{source}: malformed resx manifest ({type(e).__name__}: {e}); re-export the file") from None


def resnet_claims(model: dict) -> dict[str, str]:
    """The architecture a resx ResNet's manifest states (what its parameter shapes must describe)."""
    return {
        "model.name": str(model["name"]),
        "model.block": str(model["block"]),
        "model.layers": _join(model["layers"]),
        "model.stem": str(model["stem"]),
        "model.width": str(int(model["width"])),
        "model.num_classes": str(int(model["num_classes"])),
    }


def _join(values) -> str:
    return ",".join(str(int(v)) for v in values)


@dataclass
class Inspection:
    path: Path
    manifest: dict | None  # the file's, or (foreign) one derived from it at --input-shape, or None
    checks: dict[str, dict[str, str]] = field(default_factory=dict)  # what -> {source: value}
    foreign: bool = False  # a file resx did not write: the checks compare the languages with each other

    @property
    def failures(self) -> list[str]:
        return [what for what, values in self.checks.items() if len(set(values.values())) > 1]


def inspect(path: Path, cpp: bool = True) -> Inspection:
    """Re-verify a file: what its manifest states against what Python and C++ recompute from the graph
    and the parameters (fingerprint, state, weights hash, parameter count, architecture). A file resx did
    not write has no manifest: Python and C++ are compared with each other."""
    module, manifest = load(path)
    result = Inspection(Path(path), manifest, foreign=manifest is None)
    claims = manifest_claims(manifest, path) if manifest is not None else {}
    name = claims.get("model.name", "")
    sources = {"python": describe(module, name)}
    if cpp:
        from resx import _cpp

        sources["c++"] = _cpp.describe(_cpp.Model(str(path)), name)
    if manifest is not None:
        sources["manifest"] = claims
    keys = list(claims) or list(sources["python"])
    result.checks = {k: {src: values.get(k, "(absent)") for src, values in sources.items()} for k in keys}
    return result
