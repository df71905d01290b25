"""Instructions per call, under valgrind's callgrind: what no noise on the machine can move. Each CPU path's
worker runs under callgrind with instrumentation and collection off (--instr-atstart=no
--collect-atstart=no), warms up, then switches both on around the counted calls alone through valgrind's
client requests (C++: callgrind.h, compiled into the extension and resx-cpp; Python: torch's own
torch._C._valgrind_toggle, what Timer.collect_callgrind uses, with resx._valgrind for the instrumentation).
One valgrind process per path and graph; batch 1, one intra-op thread (callgrind serialises threads), the
same input, weights and number of calls for every path, and Python's string hashing fixed (COUNT_ENV).

callgrind's per-function output (callgrind_annotate), whose names carry their shared object, gives where
the instructions go, by layer of the stack (LAYERS), by shared object and by function. valgrind presents a
CPU without AVX-512 or AMX (its own CPUID) and emulates AVX2's FMA slowly, so the kernels run at the
instruction set of --count-kernels (KERNEL_ISA: AVX and SSE4.2 by default, AVX2 when asked): the
framework's and the language's counts do not depend on that, the kernels' do."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from resx.bench.plan import (
    COUNT_ENV,
    COUNT_WARMUP,
    KERNEL_ISA,
    VALGRIND_INSTALL,
    BenchPath,
    ModelPlan,
    collectors,
    counted_path,
    training_countable,
)
from resx.bench.prepare import Prepared
from resx.bench.registry import RUNTIMES
from resx.bench.results import Counts, Layer
from resx.bench.runners import make_runner
from resx.errors import BenchError

Notify = Callable[[str], None]
START_TIMEOUT = 1800.0  # a worker opening its model under valgrind (torch.compile there takes minutes)
KEEP = 40  # the largest functions and objects kept per path

# The layers of the stack, in the order a call goes down it; the first that matches an entry takes it.
LAYERS = (
    "Python interpreter",
    "torch's Python bindings",
    "resx (extension, resx-cpp) and nanobind",
    "dispatcher and ATen framework",
    "kernels (oneDNN, MKL, ATen native, generated)",
    "allocator",
    "the rest (libc, libstdc++, loader, OpenMP)",
)
_KERNEL = re.compile(
    r"(mkl_|dnnl|mkldnn|xbyak|jit_|sgemm|gemm|Vectorized|vectorized|VectorizedLoop|AVX2|avx2|cpu_kernel|"
    r"unfolded2d|at::native::.*(kernel|_impl|conv|batch_norm|pool|relu|add|copy|fill)|im2col|col2im)"
)
_XNN_KERNEL = re.compile(r"(xnn_.*(ukernel|gemm|igemm|dwconv|vbinary|vunary|conv|pool|clamp|copy))|pthreadpool_")
_ALLOC = re.compile(r"(malloc|free|calloc|realloc|memalign|c10::alloc_cpu|c10::free_cpu|CPUAllocator|_int_)")


def layer(obj: str, function: str, file: str = "") -> str:
    """Which layer of LAYERS an entry of callgrind's output (its shared object, function and file) is in."""
    name = os.path.basename(obj)
    if name.startswith("libpython") or name.startswith("python") or "Python-3" in file:
        return LAYERS[0]
    if name.startswith("libtorch_python"):
        return LAYERS[1]
    if name.startswith(("_cpp.", "_valgrind.", "resx-cpp", "_executorch.", "resx-executorch")):
        return LAYERS[2]
    if _ALLOC.search(function) or "malloc" in file:
        return LAYERS[5]
    if name.startswith("libexecutorch"):
        # ExecuTorch's runtime is its framework; XNNPACK's micro-kernels its kernels, and the wheel strips
        # their names (static functions): an address alone in XNNPACK's library is a micro-kernel.
        xnn_kernel = name.startswith("libexecutorch_backend_xnnpack") and function.startswith("0x")
        return LAYERS[4] if (xnn_kernel or _XNN_KERNEL.search(function) or _KERNEL.search(function)) else LAYERS[3]
    if name.startswith(("libtorch", "libc10", "libdnnl", "libmkl")) or not obj or obj == "???":
        # Code with no object is generated at run time (oneDNN's JIT): a kernel.
        return LAYERS[4] if (_KERNEL.search(function) or not obj or obj == "???") else LAYERS[3]
    return LAYERS[6]


_LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*?):(.*?)(?:\s+\[(.*)\])?\s*$")


def read(out: Path) -> tuple[float, list[tuple[float, str, str, str]]]:
    """callgrind's output file -> (the total, [(instructions, object, function, file)]) through
    callgrind_annotate (every function: --threshold=100)."""
    proc = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", str(out)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BenchError(f"callgrind_annotate could not read {out}: {proc.stderr.strip().splitlines()[-1:]}")
    total, entries, body = 0.0, [], False
    for line in proc.stdout.splitlines():
        if "PROGRAM TOTALS" in line:
            total = _number(line.split()[0])
        elif line.strip().startswith("Ir") and "file:function" in line:
            body = True
        elif body and line.strip() and not line.startswith("-"):
            m = _LINE.match(line)
            if m:
                count, file, function, obj = m.groups()
                entries.append((_number(count), obj or "", function, file))
    return total, entries


def _number(text: str) -> float:
    """callgrind_annotate's count: digits with commas, or "." for none (a process that collected nothing)."""
    return 0.0 if text == "." else float(text.replace(",", ""))


def split(
    total: float, entries: list[tuple[float, str, str, str]], calls: int, seconds: float, version: str, kernels: str
) -> Counts:
    """A collection's figures per call, by layer, shared object and function."""
    layers, objects, functions = defaultdict(float), defaultdict(float), defaultdict(float)
    for count, obj, function, file in entries:
        layers[layer(obj, function, file)] += count / calls
        objects[os.path.basename(obj) or "(generated code)"] += count / calls
        functions[f"{function} [{os.path.basename(obj) or '?'}]"] += count / calls
    top = lambda d: dict(sorted(d.items(), key=lambda kv: -kv[1])[:KEEP])
    return Counts(
        calls,
        total / calls,
        [Layer(name, layers.get(name, 0.0)) for name in LAYERS],
        top(objects),
        top(functions),
        version,
        seconds,
        kernels,
        COUNT_ENV["PYTHONHASHSEED"],
    )


def valgrind() -> tuple[str, str]:
    """valgrind's path and version; one line saying how to install it when it is not on the PATH."""
    path = shutil.which("valgrind")
    if path is None or shutil.which("callgrind_annotate") is None:
        raise BenchError(f"--counts: valgrind is not on the PATH; {VALGRIND_INSTALL}")
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip()
    return path, version


def count_one(
    make: Callable[[list[str]], object], calls: int, seed: int, work: Path, version: str, kernels: str
) -> Counts:
    """One path in one valgrind process: warm up, count `calls` calls, read what callgrind wrote."""
    out = work / "callgrind.out"
    wrapper = _wrapper(out)
    began = time.monotonic()
    with make(wrapper) as runner:
        runner.set_threads(1)
        runner.warm_up(1, seed, COUNT_WARMUP)
        counted = runner.count(1, seed, calls)
    if not counted.under_valgrind:
        raise BenchError(f"{runner.name}: its worker did not run under valgrind; nothing was counted")
    total, entries = read(out)
    if total <= 0:
        raise BenchError(f"{runner.name}: callgrind counted no instructions (were its client requests compiled in?)")
    return split(total, entries, calls, time.monotonic() - began, version, kernels)


WARM_STEPS = 2  # training steps taken before the counted ones (the first pays one-off costs)


def count_training(model: ModelPlan, work: Path, notify: Notify, warn: Notify) -> dict[str, Counts]:
    """Every path that trains, its training step counted: the run prepared here (exported, configured), then
    trained for WARM_STEPS + N steps under callgrind (resx-cpp itself for cpp-exe, else `resx train --resume`),
    collection on around steps WARM_STEPS+1..WARM_STEPS+N alone ($RESX_COUNT_STEPS, resx.callgrind), at the
    training batch and one intra-op thread. The preparation stays out of valgrind, where it took minutes."""
    from resx.bench.training import synthetic_cifar, train_config
    from resx.callgrind import COUNT_STEPS
    from resx.cpp import executable
    from resx.recipe import TrainConfig
    from resx.rundir import CPP_JOB_FILE, RunDir
    from resx.train.run import prepare_only

    cfg, n = model.config, model.config.counts.steps
    if n == 0:
        return {}
    _, version = valgrind()
    steps = WARM_STEPS + n
    data = synthetic_cifar(work / "count-data", steps * cfg.training.batch, cfg.training.batch, cfg.model.seed)
    paths = []
    for p in [p for p in model.train_paths if counted_path(p, cfg.counts.runtimes)]:
        compiles = "not attempted: torch.compile would compile forward and backward under callgrind"
        why = available(p.runtime) or (None if training_countable(p) else compiles)
        if why:
            warn(f"instruction counts of {p.label}'s training step: {why}")
        else:
            paths.append(p)

    with tempfile.TemporaryDirectory(prefix="resx-callgrind-") as tmp:
        runs = {}
        for p in paths:  # here, one after the other: exports and FLOP counts are not for threads
            spec = RUNTIMES[p.runtime].train
            config = TrainConfig(**train_config(model, spec, p.dtype, steps=steps, threads=1))
            run = prepare_only(config, Path(tmp) / p.label, runtime=spec["runtime"], data=data, module=spec["module"])
            runs[p.label] = (
                [str(executable()), "train", str(run / CPP_JOB_FILE)]
                if spec["runtime"] == "cpp-exe"
                else [sys.executable, "-m", "resx", "train", "--resume", str(run)]
            )

        def one(p: BenchPath) -> Counts:
            notify(f"instruction counts: {model.label} {p.label}'s training step under callgrind")
            run, out = Path(tmp) / p.label, Path(tmp) / f"{p.label}.callgrind.out"
            began = time.monotonic()
            proc = subprocess.run(
                [*_wrapper(out), *runs[p.label]],
                env=os.environ | COUNT_ENV | KERNEL_ISA[cfg.counts.kernels] | {COUNT_STEPS: f"{WARM_STEPS},{n}"},
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                lines = [line for line in proc.stderr.splitlines() if line.strip()]
                raise BenchError(f"counting {p.label}'s training step: {lines[-1] if lines else proc.returncode}")
            taken = len(RunDir(run).read_steps())
            if taken < steps:
                raise BenchError(f"counting {p.label}'s training step: the run took {taken} of {steps} steps")
            total, entries = read(out)
            if total <= 0:
                raise BenchError(f"{p.label}: callgrind counted no instructions of its training steps")
            return split(total, entries, n, time.monotonic() - began, version, cfg.counts.kernels)

        return dict(zip((p.label for p in paths), side_by_side(one, paths), strict=True))


def _wrapper(out: Path) -> list[str]:
    """valgrind under callgrind with instrumentation and collection off until the counted code switches them on."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--collect-atstart=no",
        f"--callgrind-out-file={out}",
        "--quiet",
    ]


def available(runtime: str) -> str | None:
    """Why a runtime's calls cannot be counted in this build (None: they can): its client requests are
    compiled in only where valgrind's callgrind.h was found."""
    if runtime.startswith("py-"):
        from resx import _valgrind

        ok = _valgrind.available()
    else:
        from resx.cpp import _cpp

        ok = _cpp.callgrind_available()
    return None if ok else "unavailable: this build found no valgrind/callgrind.h (install valgrind and rebuild)"


def count_paths(model: ModelPlan, prepared: Prepared, notify: Notify, warn: Notify) -> dict[str, Counts]:
    """Every countable path of a model (or graph of the map), each in a valgrind process of its own, side by
    side (side_by_side)."""
    _, version = valgrind()
    shape, cfg = prepared.source.shape, model.config
    paths = []
    for p in [p for p in model.paths if counted_path(p, cfg.counts.runtimes)]:
        why = available(p.runtime)
        if why:
            warn(f"instruction counts of {p.label}: {why}")
        else:
            paths.append(p)

    def one(p: BenchPath) -> Counts:
        notify(f"instruction counts: {model.label} {p.label} under callgrind")
        options = model.engine_options(p, shape)

        def make(wrapper):
            file = prepared.file(p.engine, p.dtype)
            timeout = max(cfg.rounds.start_timeout, START_TIMEOUT)
            env = p.env | COUNT_ENV | KERNEL_ISA[cfg.counts.kernels]
            return make_runner(p.runtime, file, options, p.label, env, timeout, wrapper)

        with tempfile.TemporaryDirectory(prefix="resx-callgrind-") as work:
            return count_one(make, cfg.counts.calls, cfg.model.seed, Path(work), version, cfg.counts.kernels)

    return dict(zip((p.label for p in paths), side_by_side(one, paths), strict=True))


def side_by_side(count: Callable[[BenchPath], Counts], paths: list[BenchPath]) -> list[Counts]:
    """count(path) for every path, up to one valgrind process per core at once (plan.collectors): an
    instruction count does not depend on what else runs, and each collection is one thread."""
    cores = len(os.sched_getaffinity(0))
    with ThreadPoolExecutor(max_workers=min(collectors(cores), max(1, len(paths)))) as pool:
        return list(pool.map(count, paths))
