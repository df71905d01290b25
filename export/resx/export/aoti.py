"""AOTInductor export: a .pt2 package that Python (torch._inductor.aoti_load_package) and C++
(torch::inductor::AOTIModelPackageLoader, resx::Engine) both load. It carries the TorchScript export's
manifest (as the package's `resx_manifest.json` metadata) plus the compile settings, the names of the
module's parameters and buffers (the package's constants, whose bytes both languages hash), and
refuses to run under settings it was not compiled for.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from resx.device import to_channels_last
from resx.errors import ExportError, first_line
from resx.export.torchscript import (
    MANIFEST_NAME,
    Inspection,
    as_source,
    example_input,
    manifest_claims,
    prepared,
)
from resx.files import atomic_write, write_error
from resx.models import DTYPES, ModelConfig
from resx.options import option
from resx.sources import Source
from resx.tolerances import TOLERANCE

FORMAT = "resx-aoti/1"


class ForeignPackage(ExportError):
    """An AOTInductor package without a resx manifest: resx derives what it can (resx.export.foreign)."""


CONSTANT_PREFIX = "net."  # the package holds Inference(net): its constants are net.<name>
MAX_BATCH = 1024  # the dynamic batch dimension's upper bound


class Inference(nn.Module):
    """What the compiled engines run: the network in eval mode, under bf16 autocast when asked, with a
    float32 output. resx::AutocastGuard does the same around the TorchScript engines in C++."""

    def __init__(self, net: nn.Module, dtype: str = "fp32"):
        super().__init__()
        self.net, self.bf16 = net, dtype == "bf16"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bf16:
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return self.net(x).float()
        return self.net(x)


@dataclass(frozen=True)
class CompileSettings:
    device: str = option("cpu", "The device compiled for, cpu or cuda.")
    dtype: str = option("fp32", "fp32, or bf16 (autocast compiled in).")
    threads: int = option(0, "Intra-op threads compiled in (0: dynamic, the runtime's count at each call).")
    freezing: bool = option(True, "Inductor folds BatchNorm and prepacks the weights.")
    channels_last: bool = option(False, "Compiled for channels-last inputs.")

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise ExportError(f"unknown --dtype '{self.dtype}': fp32 or bf16")
        if self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ExportError(f"unknown --device '{self.device}': cpu or cuda")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ExportError(f"--device {self.device}: CUDA is not available here; export for cpu")
        if self.threads < 0:
            raise ExportError(f"--threads must be >= 0 (0: dynamic), got {self.threads}")

    def to_manifest(self) -> dict:
        memory_format = "channels_last" if self.channels_last else "contiguous"
        return {
            "device": self.device.split(":")[0],
            "dtype": self.dtype,
            "threads": self.threads,
            "freezing": self.freezing,
            "memory_format": memory_format,
        }


def export_aoti(
    model: Source | ModelConfig,
    path: Path,
    seed: int = 0,
    weights: Path | None = None,
    settings: CompileSettings = CompileSettings(),
) -> dict:
    """torch.export with a dynamic batch dimension, then aoti_compile_and_package; returns the manifest
    with the compile time (which the package itself cannot record: it is known after compiling). A module
    torch.export cannot capture fails in one line naming the step and torch's reason."""
    settings.validate()
    path = Path(path)
    if path.suffix != ".pt2":
        raise ExportError(f"{path}: an AOTInductor package's name ends in .pt2")
    source = as_source(model)
    model, _, manifest = prepared(source, seed, weights)
    manifest |= {
        "format": FORMAT,
        "compile": settings.to_manifest(),
        "constant_prefix": CONSTANT_PREFIX,
        "parameter_names": [n for n, _ in model.named_parameters()],
        "buffer_names": [n for n, _ in model.named_buffers()],
    }
    device = torch.device(settings.device)
    net = Inference(model, settings.dtype).to(device).eval()
    example = example_input(source.shape).to(device)
    if settings.channels_last:
        to_channels_last(net)
        example = example.contiguous(memory_format=torch.channels_last)
    configs = {
        "freezing": settings.freezing,
        "cpp.dynamic_threads": settings.threads == 0,
        "aot_inductor.metadata": {MANIFEST_NAME: json.dumps(manifest)},
    }
    from torch import _inductor as inductor  # here: it takes a second to import

    start = time.perf_counter()
    with _threads(settings.threads), torch.no_grad():
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        try:
            program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
        except Exception as e:  # noqa: BLE001  (torch.export reports the construct it cannot capture)
            raise ExportError(
                f"torch.export cannot capture {source.spec} with a dynamic batch ({_reason(e)})"
            ) from None
        with _atomic_package(path) as tmp:
            try:
                inductor.aoti_compile_and_package(program, package_path=str(tmp), inductor_configs=configs)
            except Exception as e:  # noqa: BLE001  (Inductor's lowering names the operator it cannot compile)
                raise ExportError(f"AOTInductor cannot compile {source.spec} ({_reason(e)})") from None
    return manifest | {"compile_seconds": time.perf_counter() - start}


def _reason(e: BaseException) -> str:
    """torch's message, its first line (the construct or operator it names)."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(e).__name__)[:240]


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Compile with n intra-op threads (what Inductor then compiles in); 0: leave them."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _atomic_package(path: Path) -> Iterator[Path]:
    """The packager needs a name ending in .pt2: write it in a temporary directory beside `path`,
    then rename it into place; on any error nothing is left."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
            yield Path(tmp) / path.name
            os.replace(Path(tmp) / path.name, path)
    except OSError as e:
        raise write_error(path, e) from None


# ------------------------------------------------------------------------------------------ reading


def read_manifest(path: Path) -> dict:
    """The resx manifest of a .pt2, from its metadata, without loading the compiled code."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file (make one with `resx export resnet18 --format aoti -o {path}`)")
    if not zipfile.is_zipfile(path):
        raise ExportError(f"{path}: not an AOTInductor package (not a zip archive; truncated or another format)")
    try:
        metadata = torch._C._aoti.AOTIModelPackageLoader.load_metadata_from_package(str(path), "model")
    except Exception as e:  # noqa: BLE001  (the loader raises many kinds for a file that is not one)
        raise ExportError(f"{path}: not a loadable AOTInductor package ({first_line(e, None)})") from None
    if MANIFEST_NAME not in metadata:
        raise ForeignPackage(
            f"{path}: no resx manifest (an AOTInductor package resx did not write); give its "
            f"input with --input-shape, or export the model with `resx export`"
        )
    try:
        manifest = json.loads(metadata[MANIFEST_NAME])
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: its resx manifest is not valid JSON ({e})") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("compile"), dict)
    ):
        raise ExportError(f"{path}: its resx manifest is not a {FORMAT} one; re-export the file")
    return manifest


def check_settings(path: Path, manifest: dict, *, device: str, dtype: str, channels_last: bool) -> None:
    """A package runs only under what it was compiled for (resx::AotiEngine checks the same)."""
    compiled = manifest["compile"]
    wanted = {
        "device": device.split(":")[0],
        "dtype": dtype,
        "memory_format": "channels_last" if channels_last else "contiguous",
    }
    for key, value in wanted.items():
        if compiled.get(key) != value:
            raise ExportError(
                f"{path}: compiled for {key} {compiled.get(key)}, this run asks for {value}; re-export "
                f"with `resx export ... --format aoti --{key} {value}`"
            )


def runs(forward, num_classes: int, shape: tuple[int, ...] = (3, 32, 32)) -> str:
    """ "yes" when a forward gives finite [B, classes] float32 logits at batch 1 and 3 (the batch is dynamic)."""
    for batch in (1, 3):
        y = forward(torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch)))
        if tuple(y.shape) != (batch, num_classes) or y.dtype != torch.float32 or not torch.isfinite(y).all():
            return f"no: batch {batch} gave {tuple(y.shape)} {y.dtype}"
    return "yes"


def describe_package(path: Path, manifest: dict) -> dict[str, str]:
    """What a package shows of itself when run (resx::describe_package): that it runs at batch 1 and 3,
    and, when its weights were the seeded ones, how far its outputs are from the model its manifest
    names, built afresh. A package of compiled code has no graph to fingerprint, and Inductor folds or
    merges its weights into constants of its own: its fingerprint and weights hash are the ones
    recorded at export, and what proves them is its outputs (here, and in `resx bench`'s gate)."""
    from torch._inductor.package import load_package

    model = load_package(str(path))
    source = Source.from_manifest(manifest)
    out = {}
    with torch.inference_mode():
        out["runs"] = runs(model, int(manifest["model"]["num_classes"]), source.shape)
        if manifest.get("weights_from") is None and source.buildable:
            dtype, tol = manifest["compile"]["dtype"], TOLERANCE[("aoti", manifest["compile"]["dtype"])]
            net = Inference(source.build(seed=manifest["seed"], check=False), dtype).eval()
            x = torch.randn(3, *source.shape, generator=torch.Generator().manual_seed(0))
            diff = float((model(x) - net(x)).abs().max())
            out["outputs"] = f"within {tol:g}" if diff <= tol else f"differ by {diff:.3g}"
    return out


def inspect_package(path: Path, cpp: bool = True) -> Inspection:
    """Re-verify a package: it loads and runs in Python and in C++, and its outputs are the model's."""
    manifest = read_manifest(path)
    manifest_claims(manifest, path)  # well-formed
    found = describe_package(path, manifest)
    sources = {"python": found}
    if cpp:
        from resx import _cpp

        sources["c++"] = _cpp.describe_package(str(path))[0]
    claims = {"runs": "yes"}
    if "outputs" in found:
        claims["outputs"] = f"within {TOLERANCE[('aoti', manifest['compile']['dtype'])]:g}"
    sources["manifest"] = claims
    result = Inspection(Path(path), manifest)
    # Each check in the languages that make it (the outputs need the model built in Python).
    result.checks = {k: {src: values[k] for src, values in sources.items() if k in values} for k in claims}
    return result


# -------------------------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """$RESX_CACHE, else ~/.cache/resx."""
    return Path(os.environ.get("RESX_CACHE") or Path.home() / ".cache" / "resx")


def cache_path(kind: str, name: str, suffix: str, manifest: dict, *settings) -> Path:
    """Where the cache keeps a compiled file: under `kind`, keyed by the manifest it carries (graph,
    weights, every key a newer resx records; not when it was made or from which file) and what it was
    compiled with (`settings`: versions among them)."""
    recorded = {k: v for k, v in manifest.items() if k not in ("created", "weights_from")}
    key = json.dumps([recorded, *settings], sort_keys=True)
    return cache_dir() / kind / f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:20]}{suffix}"


def cached(
    model: Source | ModelConfig,
    seed: int,
    settings: CompileSettings,
    manifest: dict | None = None,
    weights: Path | None = None,
) -> tuple[Path, dict, bool]:
    """A package for these settings, compiled once: keyed by the manifest it would carry (graph, weights,
    every key a newer resx records), the settings, torch's version and the CPU. Returns (path, manifest,
    whether it was cached). manifest: prepared()'s for this config and seed, when the caller has it."""
    source = as_source(model)
    manifest = manifest if manifest is not None else prepared(source, seed, weights)[2]
    path = cache_path(
        "aoti", f"{source.label}-{settings.dtype}", ".pt2", manifest, asdict(settings), torch.__version__, _cpu()
    )
    index = path.with_suffix(".json")
    if path.is_file() and index.is_file():
        with contextlib.suppress(ExportError, json.JSONDecodeError, OSError):
            read_manifest(path)
            return path, json.loads(index.read_text()), True
    manifest = export_aoti(source, path, seed, weights, settings=settings)
    atomic_write(index, json.dumps(manifest))
    return path, manifest, False


def _cpu() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("flags")), "")
    return ""
