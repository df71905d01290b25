"""The engines that run a resx model for inference in Python, behind one interface (mirrors resx::Engine,
resnet_cpp/engine.cpp, which has script, frozen and aoti):

    eager    the nn.Module, rebuilt from the manifest, with the file's weights (a .pth weights export,
             or a TorchScript file's)
    script   the TorchScript file as loaded
    frozen   torch.jit.freeze + optimize_for_inference (BatchNorm folds into the convolutions)
    compile  torch.compile (Inductor, freezing on)
    aoti     an AOTInductor package (resx export --format aoti), compiled ahead of time
    executorch  an ExecuTorch program (.pte; XNNPACK's delegate), run by ExecuTorch's Python runtime

`dtype` bf16 runs under autocast (TorchScript engines, eager) or has it compiled in (compile, aoti);
outputs are float32 either way.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from resx.bench.protocol import EngineOptions
from resx.device import autocast, set_deterministic, to_channels_last
from resx.errors import ResxError
from resx.export import fingerprint, graph_fingerprint, load, read_weights, state_fingerprint, weights_hash
from resx.export.aoti import ForeignPackage, Inference, check_settings, read_manifest
from resx.export.foreign import file_id
from resx.models import DTYPES, load_state
from resx.sources import Source
from resx.tolerances import ENGINES


def check_options(options: EngineOptions) -> None:
    if options.engine not in ENGINES:
        raise ResxError(f"unknown engine '{options.engine}': {', '.join(ENGINES)}")
    if options.dtype not in DTYPES:
        raise ResxError(f"unknown dtype '{options.dtype}': {' or '.join(DTYPES)}")
    if options.cuda_graphs and not options.device.startswith("cuda"):
        raise ResxError("CUDA graphs need --device cuda")
    if options.engine == "executorch" and (options.device, options.dtype, options.channels_last) != (
        "cpu",
        "fp32",
        False,
    ):
        raise ResxError("the executorch engine runs its program as exported: cpu, fp32, contiguous inputs")


class Engine:
    """A model file opened for inference by one engine. forward() takes float32 and gives float32."""

    def __init__(self, path: Path, options: EngineOptions = EngineOptions()):
        check_options(options)
        self.path, self.options, self.device = Path(path), options, torch.device(options.device)
        self.compiled_threads, self.compile_seconds, self.recorded = -1, 0.0, False
        self._graph: tuple | None = None  # (graph, static input, static output) of the shape last captured
        if options.deterministic:
            set_deterministic(True)
        start = time.perf_counter()
        if options.engine == "aoti":
            self._open_package()
        elif options.engine == "executorch":
            self._open_program()
        else:
            self._open_torchscript()
        self.load_seconds = time.perf_counter() - start - self.compile_seconds

    def _open_package(self) -> None:
        o = self.options
        try:
            manifest = read_manifest(self.path)
            check_settings(self.path, manifest, device=o.device, dtype=o.dtype, channels_last=o.channels_last)
        except ForeignPackage:  # a package resx did not write: its bytes identify it (resx::AotiEngine too)
            ident = file_id(self.path)
            manifest = {"fingerprint": ident, "weights_hash": ident, "compile": {"threads": 0}}
        from torch._inductor.package import load_package  # here: Inductor takes a second to import

        self.module = load_package(str(self.path), num_runners=o.runners)
        # Compiled code shows neither graph nor weights: both as recorded at export, proved by outputs.
        self._fingerprint, self._weights_hash, self.recorded = manifest["fingerprint"], manifest["weights_hash"], True
        self._state = manifest.get("state_fingerprint", "")
        self.compiled_threads = manifest["compile"]["threads"]

    def _open_program(self) -> None:
        from resx.export.executorch import Program, read_manifest

        self.module = Program(self.path)
        manifest = read_manifest(self.path, self.module.program)
        # A lowered program shows neither graph nor weights: both as recorded at export, proved by outputs.
        self._fingerprint, self._weights_hash, self.recorded = manifest["fingerprint"], manifest["weights_hash"], True
        self._state = manifest.get("state_fingerprint", "")
        self.compiled_threads = 0  # XNNPACK's threadpool: sized at run time (set_threads)

    def set_threads(self, n: int) -> int:
        """Intra-op threads: LibTorch's, and for ExecuTorch its own threadpool's (XNNPACK); as now reported."""
        torch.set_num_threads(n)
        if self.options.engine != "executorch":
            return torch.get_num_threads()
        from executorch.extension.pybindings import portable_lib

        if portable_lib._threadpool_get_thread_count() != n:
            # XNNPACK's delegate keeps the pool it was loaded with: a new pool, then the program loaded again.
            portable_lib._unsafe_reset_threadpool(n)
            self.module = type(self.module)(self.path)
        return portable_lib._threadpool_get_thread_count()

    def _open_torchscript(self) -> None:
        o = self.options
        if o.engine in ("eager", "compile"):  # the nn.Module, filled from a weights export or a TorchScript file
            state, manifest = read_weights(self.path) if self.path.suffix == ".pth" else _script_state(self.path)
            source = Source.from_manifest(manifest)
            module = source.build(check=False)
            load_state(module, state)
            self._how = (manifest.get("export") or {}).get("graph")
            self._fingerprint = None  # the eager module's own graph, made as the export made it (fingerprint())
        else:  # the TorchScript file, with its manifest or one resx did not write (the gate derives one)
            module, _ = load(self.path)
            self._fingerprint = fingerprint(module)
        module = module.to(self.device).eval()
        self._weights_hash = weights_hash(module)  # before a freeze folds them
        self._state = state_fingerprint(module)
        if o.channels_last:
            to_channels_last(module)
        self._eager = module
        if o.engine == "frozen":
            module = torch.jit.optimize_for_inference(torch.jit.freeze(module))
        elif o.engine == "compile":
            torch._inductor.config.freezing = True
            module = torch.compile(Inference(module, o.dtype), dynamic=False)
            start = time.perf_counter()
            with torch.inference_mode():  # compiles now, apart from the timed calls
                module(self._prepare(torch.zeros(1, *o.input_shape)))
            self.compile_seconds = time.perf_counter() - start
        self.module = module

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.options.channels_last else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x)
        return self._replay(x) if self.options.cuda_graphs else self._run(x)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.options.engine in ("compile", "aoti", "executorch") or self.options.dtype == "fp32":
            return self.module(x)  # bf16 autocast compiled in
        with autocast(self.device, "bf16"):
            return self.module(x).float()

    def _replay(self, x: torch.Tensor) -> torch.Tensor:
        """The forward captured in a CUDA graph once per input shape, replayed on a static input: one
        launch per call instead of one per kernel (resx::GraphedEngine). The output is the graph's static
        tensor, valid until the next call."""
        if self._graph is None or self._graph[1].shape != x.shape:
            static_in, side = x.clone(), torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up, on the stream that captures
                    self._run(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._run(static_in)
            self._graph = (graph, static_in, static_out)
        graph, static_in, static_out = self._graph
        static_in.copy_(x)
        graph.replay()
        return static_out

    __call__ = forward

    def fingerprint(self) -> str:
        if self._fingerprint is None:  # the eager module has no graph of its own: make the one this runs
            graph = graph_fingerprint(self._eager, self.options.input_shape, self._how)
            self._fingerprint = graph if graph is not None else f"state:{self._state}"  # TorchScript refused
        return self._fingerprint

    def weights_hash(self) -> str:
        return self._weights_hash

    def state_fingerprint(self) -> str:
        return self._state


def _script_state(path: Path) -> tuple[dict, dict]:
    """The state dict and manifest of a resx TorchScript export."""
    scripted, manifest = load(path)
    if manifest is None:
        raise ResxError(
            f"{path}: a file resx did not write has no eager module to rebuild; run it with the engines "
            f"of its format (script, frozen)"
        )
    return scripted.state_dict(), manifest
