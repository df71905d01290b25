"""The ExecuTorch export (.pte): PyTorch's runtime for C++ without libtorch. torch.export with a dynamic
batch, lowered by executorch.exir with XNNPACK's delegate (or ExecuTorch's portable kernels alone), the
program written whole. resx's manifest travels inside the program, as the constant method `resx_manifest`
(its JSON as uint8 bytes: ExecuTorch's constant methods hold numbers and tensors, not strings), so any
runtime that loads the program can read it.

executorch is an optional dependency (its Python bindings link libtorch; requirements.txt pins it with
--no-deps: its Requires-Dist pulls packages resx does not use). Import it here, lazily."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from resx.errors import ExportError, first_line
from resx.export.aoti import Inference, cache_path, runs
from resx.export.torchscript import Inspection, as_source, prepared
from resx.files import atomic_write
from resx.models import ModelConfig
from resx.options import option
from resx.sources import Source
from resx.tolerances import TOLERANCE

FORMAT = "resx-executorch/1"
MANIFEST_METHOD = "resx_manifest"
MAX_BATCH = 128  # the dynamic batch dimension's upper bound (XNNPACK plans its buffers for it)
BACKENDS = ("xnnpack", "portable")  # XNNPACK's delegate, or ExecuTorch's portable kernels alone
INSTALL = "pip install --no-deps executorch==1.5.1 torchao==0.18.0 ruamel.yaml flatbuffers tabulate"


def _exir():
    # torchao, imported by exir, registers an Enum with torch's pytree, which logs a deprecation warning
    # about torchao's own code on every export: not the user's to act on.
    pytree_log = logging.getLogger("torch.utils._pytree")
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        from executorch import exir
    except ImportError:
        raise ExportError(f"ExecuTorch is not installed; {INSTALL}") from None
    finally:
        pytree_log.setLevel(level)
    return exir


def export_executorch(
    model: Source | ModelConfig, path: Path, seed: int = 0, weights: Path | None = None, backend: str = "xnnpack"
) -> dict:
    """The program and its manifest in one .pte; returns the manifest (with the export's seconds)."""
    path = Path(path)
    if path.suffix != ".pte":
        raise ExportError(f"{path}: an ExecuTorch program's name ends in .pte")
    if backend not in BACKENDS:
        raise ExportError(f"--backend '{backend}': choose {' or '.join(BACKENDS)}")
    exir = _exir()
    source = as_source(model)
    net, _, manifest = prepared(source, seed, weights)
    import executorch

    version = getattr(executorch, "__version__", "") or _version()
    manifest |= {"format": FORMAT, "executorch": {"backend": backend, "max_batch": MAX_BATCH, "version": version}}
    example = torch.randn(2, *source.shape, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    with torch.no_grad():
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        try:
            program = torch.export.export(Inference(net).eval(), (example,), dynamic_shapes=({0: batch},))
        except Exception as e:  # noqa: BLE001  (torch.export reports the construct it cannot capture)
            raise ExportError(
                f"torch.export cannot capture {source.spec} with a dynamic batch ({first_line(e, None)})"
            ) from None
        text = torch.frombuffer(bytearray(json.dumps(manifest).encode()), dtype=torch.uint8)
        partitioner = []
        if backend == "xnnpack":
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

            partitioner = [XnnpackPartitioner()]
        try:
            # XNNPACK's passes re-run each convolution on fake tensors, and ATen's choice of a CPU backend
            # (oneDNN below a batch of 16, then NNPACK) guards on the batch: with the example's batch as
            # hint, the batch's range narrows to 2..15 and the input is planned for 15. The kernels are
            # XNNPACK's, not ATen's: with that choice off, the program is planned for MAX_BATCH.
            with _no_aten_conv_backends():
                edge = exir.to_edge_transform_and_lower(
                    program, partitioner=partitioner, constant_methods={MANIFEST_METHOD: text}
                )
                buffer = edge.to_executorch().buffer
        except Exception as e:  # noqa: BLE001  (the lowering names the operator it cannot take)
            raise ExportError(f"ExecuTorch cannot lower {source.spec} ({first_line(e, None)})") from None
    atomic_write(path, buffer)
    return manifest | {"compile_seconds": time.perf_counter() - start}


@contextlib.contextmanager
def _no_aten_conv_backends():
    """oneDNN and NNPACK off for ATen's convolutions (their flags also warn about TF32 on Intel GPUs)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False), torch.backends.nnpack.flags(enabled=False):
            yield


def cached_program(
    source: Source, seed: int, manifest: dict, weights: Path | None = None, backend: str = "xnnpack"
) -> tuple[Path, bool]:
    """A program for this model, exported once (10-60 s here): kept in the cache beside the AOTInductor
    packages, keyed by the manifest it would carry (graph, weights, every key a newer resx records), the
    backend, the planned batch and ExecuTorch's and torch's versions. Returns (path, whether cached)."""
    settings = (backend, MAX_BATCH, _version(), torch.__version__)
    path = cache_path("executorch", f"{source.label}-{backend}", ".pte", manifest, *settings)
    index = path.with_suffix(".json")  # written after the program: both present, the program is whole
    if path.is_file() and index.is_file():
        return path, True
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(index, json.dumps(export_executorch(source, path, seed, weights, backend)))
    return path, False


def _version() -> str:
    from importlib.metadata import version

    return version("executorch")


def runtime_env() -> dict[str, str]:
    """What ExecuTorch's Python runtime reports of itself, with resx.env's keys where they apply (the C++
    runtime's resx::et::env_report has the same): its release, and its threadpool's threads as the
    intra-op threads (XNNPACK's kernels run on it, not on LibTorch's)."""
    from executorch.extension.pybindings import portable_lib

    return {"executorch_version": _version(), "intra_op_threads": str(portable_lib._threadpool_get_thread_count())}


def load_program(path: Path):
    """The program, loaded by ExecuTorch's Python runtime (torch first: its bindings need libtorch loaded)."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file (make one with `resx export resnet18 -o {path}`)")
    try:
        from executorch.runtime import Runtime
    except ImportError:
        raise ExportError(f"{path}: ExecuTorch is not installed; {INSTALL}") from None
    try:
        return Runtime.get().load_program(str(path))
    except Exception as e:  # noqa: BLE001  (the runtime raises for a file that is not a program)
        raise ExportError(f"{path}: not a loadable ExecuTorch program ({first_line(e, None)})") from None


def read_manifest(path: Path, program=None) -> dict:
    """The resx manifest a .pte carries (its `resx_manifest` method)."""
    program = program or load_program(path)
    if MANIFEST_METHOD not in program.method_names:
        raise ExportError(f"{path}: no resx manifest (an ExecuTorch program resx did not write); export it with resx")
    data = program.load_method(MANIFEST_METHOD).execute([])[0]
    try:
        manifest = json.loads(bytes(data.numpy().tobytes()).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: its resx manifest is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f"{path}: its resx manifest is not a {FORMAT} one; re-export the file")
    return manifest


class Program:
    """An ExecuTorch program's forward as a callable of a float32 batch (the Python runtime). A loaded
    method owns its planned buffers: one call at a time (concurrent callers queue on the lock)."""

    def __init__(self, path: Path):
        self.program = load_program(path)
        try:
            self.method = self.program.load_method("forward")
        except Exception as e:  # noqa: BLE001  (the runtime raises for an operator it has no kernel for)
            raise ExportError(f"{path}: its forward cannot be loaded ({first_line(e, None)})") from None
        self.lock = threading.Lock()
        sizes = self.method.metadata.input_tensor_meta(0).sizes()
        self.max_batch = int(sizes[0]) if sizes else 0  # the batch ExecuTorch planned the input's buffer for

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.max_batch and x.shape[0] > self.max_batch:
            raise ExportError(
                f"batch {x.shape[0]} exceeds the {self.max_batch} ExecuTorch planned the program's buffers for; "
                f"run batches up to {self.max_batch}"
            )
        with self.lock:
            return self.method.execute([x.contiguous()])[0]


def inspect_program(path: Path, cpp: bool = True) -> Inspection:
    """Re-verify a program: it runs at batch 1 and 3, and when its weights were the seeded ones its outputs
    are within the engine's tolerance of the model its manifest names, built afresh. Like an AOTInductor
    package, a lowered program has no graph to fingerprint: its outputs prove it."""
    forward = Program(path)
    manifest = read_manifest(path, forward.program)
    source = Source.from_manifest(manifest)
    found = {"runs": runs(forward, int(manifest["model"]["num_classes"]), source.shape)}
    claims = {"runs": "yes"}
    seen = {}
    if cpp:  # ExecuTorch's C++ runtime, in a process with no libtorch: it reads the manifest and runs it too
        from resx.executorch_cpp import inspect

        cpp_view = inspect(path)
        seen = {"runs": cpp_view["runs"], "manifest": "same" if cpp_view["manifest"] == manifest else "differs"}
        claims["manifest"] = "same"
        found["manifest"] = "same"
    if manifest.get("weights_from") is None and source.buildable:
        tol = TOLERANCE[("executorch", "fp32")]
        net = source.build(seed=manifest["seed"], check=False).eval()
        x = torch.randn(3, *source.shape, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            diff = float((forward(x) - net(x)).abs().max())
        found["outputs"] = f"within {tol:g}" if diff <= tol else f"differ by {diff:.3g}"
        claims["outputs"] = f"within {tol:g}"
    result = Inspection(Path(path), manifest)
    sources = {"python": found} | ({"c++": seen} if seen else {}) | {"manifest": claims}
    # C++ runs the program and reads its manifest; the outputs against a rebuilt model are Python's to check.
    result.checks = {k: {src: values[k] for src, values in sources.items() if k in values} for k in claims}
    return result


@dataclass(frozen=True)
class ProgramSettings:
    """How `resx export` lowers an ExecuTorch program."""

    backend: str = option("xnnpack", "xnnpack (XNNPACK's delegate) or portable (ExecuTorch's own kernels alone).")
