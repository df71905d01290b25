"""The bench worker protocol, defined once in Python; resnet_cpp/protocol.h mirrors it name for name (a
test compares the two). Every runtime `resx bench` measures runs in a worker process of its own, new each
round: `resx-cpp worker` for exe (`resx-executorch worker` for exe-executorch), `python -m resx.bench.workers`
for the runtimes that live in Python.

The protocol has a channel of its own: two pipes whose descriptors the worker finds in $RESX_WORKER_FDS
("requests,answers"), so that whatever a model prints to stdout or stderr goes to the worker's log and
never into the protocol. One JSON object per line each way: the first request is Open (the runtime, the
file, the engine's options as one message), answered by Ready once the model is loaded; then one request
{"cmd": NAME, ...fields}, one answer (its fields, or {"error": "one line"}) until Quit or the end of the
requests. NAME is the request's class name in snake case. A leaf module: the worker imports it first."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

WORKER_FDS = "RESX_WORKER_FDS"  # "requests,answers": the worker's ends of the two pipes


@dataclass(frozen=True)
class EngineOptions:
    """How an engine runs a model (resx.engines.Engine, resx::EngineOptions)."""

    engine: str = "script"
    device: str = "cpu"
    dtype: str = "fp32"
    channels_last: bool = False
    runners: int = 1  # aoti: models that may run at once (concurrent callers)
    deterministic: bool = False  # resx.device.set_deterministic for the process (CUDA)
    cuda_graphs: bool = False  # capture the forward in a CUDA graph per batch size, replay it
    input_shape: tuple[int, int, int] = (3, 32, 32)  # C, H, W of one input


@dataclass(frozen=True)
class Compiled:
    """What a runtime's engine was compiled for and what opening it took, from inside the runtime: threads
    (0 dynamic, -1 nothing compiled), load and compile seconds, and whether fingerprint and weights are the
    ones recorded at export (compiled code shows neither)."""

    threads: int
    load_seconds: float
    compile_seconds: float
    recorded: bool


# ------------------------------------------------------------------------------------------ requests


@dataclass(frozen=True)
class Open:
    """The first request: the runtime (its language decides which worker), the model file, the options."""

    runtime: str
    file: str
    options: EngineOptions


@dataclass(frozen=True)
class Identify:
    """What the runtime runs, computed inside it, on the batch-1 input of `seed` (the fairness gate)."""

    seed: int


@dataclass(frozen=True)
class Threads:
    """Set the intra-op threads."""

    n: int


@dataclass(frozen=True)
class Warmup:
    batch: int
    seed: int
    window: int
    tolerance: float
    max_calls: int


@dataclass(frozen=True)
class Time:
    """Nanoseconds of each of `calls` forward calls on the input of `batch` and `seed`."""

    batch: int
    seed: int
    calls: int


@dataclass(frozen=True)
class ThreadsRun:
    """`threads` callers (Python threads or std::threads), each calling batch-1 forward for `seconds`."""

    threads: int
    seconds: float
    seed: int


@dataclass(frozen=True)
class Profile:
    """Every operator `calls` forward calls dispatch, recorded inside the runtime (torch.profiler in
    Python, a RecordFunction callback in C++)."""

    batch: int
    seed: int
    calls: int


@dataclass(frozen=True)
class DeviceMemory:
    """The CUDA caching allocator's figures since the process started (zeros off CUDA)."""


@dataclass(frozen=True)
class Loadgen:
    """One LoadGen test served in the runtime's own language (resx.bench.serving.LoadgenRun.request)."""

    settings: dict
    workers: int
    batch: int
    samples: int
    seed: int
    outdir: str


@dataclass(frozen=True)
class Count:
    """`calls` forward calls with callgrind's collection switched on around them alone (valgrind's client
    requests), after the warm-up the parent asked for; under valgrind only (resx.bench.counts)."""

    batch: int
    seed: int
    calls: int


@dataclass(frozen=True)
class Input:
    """The input of `batch` and `seed`, for a runtime that cannot make it (ExecuTorch's C++ runtime has no
    ATen generator): `file` holds the tensor every other runtime makes itself (resx.bench.workers.python.
    make_input), raw float32 in C order. The runtime hashes what it received (Received), and the gate
    compares that hash with the others'. Sent by the Runner before the first request that needs it."""

    batch: int
    seed: int
    file: str


@dataclass(frozen=True)
class Quit:
    pass


# ------------------------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Ready:
    load_s: float  # the model's load (the parent's spawn-to-ready time includes it)


@dataclass(frozen=True)
class Identity:
    fingerprint: str  # of the graph it runs (the eager module: scripted for this purpose; "" for a C++ module)
    weights_hash: str  # of the weights it holds
    state: str  # of its parameters' and buffers' names, shapes and dtypes (resx.export.state_fingerprint)
    input_hash: str  # of the batch-1 input it makes itself
    output: list[float]  # its batch-1 logits on that input
    env: dict[str, str]  # resx env's keys, from inside the runtime
    compiled: Compiled


@dataclass(frozen=True)
class ThreadsSet:
    threads: int  # as the runtime now reports them


@dataclass(frozen=True)
class Warmed:
    calls: int


@dataclass(frozen=True)
class Times:
    ns: list[int]


@dataclass(frozen=True)
class ThreadsDone:
    calls: int
    wall_ns: int


@dataclass(frozen=True)
class Profiled:
    calls: int
    wall_ns: int
    ops: list[tuple[str, int, int, int]]  # name, start ns, end ns, the enclosing record's index (-1: none)


@dataclass(frozen=True)
class Held:
    allocated_bytes: int = 0
    reserved_bytes: int = 0
    peak_allocated_bytes: int = 0
    peak_reserved_bytes: int = 0


@dataclass(frozen=True)
class Served:
    seconds: float  # the test's wall time, from inside the runtime
    sut: str


@dataclass(frozen=True)
class Counted:
    calls: int
    under_valgrind: bool  # False: the calls ran, but nothing counted them (no valgrind around the process)


@dataclass(frozen=True)
class Received:
    input_hash: str  # SHA-1 of the bytes received, as resx.export.tensor_sha1 hashes a tensor's


# Each request and the type of its answer.
ANSWERS: dict[type, type | None] = {
    Open: Ready,
    Identify: Identity,
    Threads: ThreadsSet,
    Warmup: Warmed,
    Time: Times,
    ThreadsRun: ThreadsDone,
    Profile: Profiled,
    DeviceMemory: Held,
    Loadgen: Served,
    Count: Counted,
    Input: Received,
    Quit: None,
}


def command(request: type | object) -> str:
    """A request's name on the wire: its class name in snake case (ThreadsRun -> threads_run)."""
    name = request.__name__ if isinstance(request, type) else type(request).__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


REQUESTS: dict[str, type] = {command(r): r for r in ANSWERS}


def input_of(request) -> tuple[int, int] | None:
    """The (batch, seed) input a request runs on, if any: what a runtime that takes its inputs needs first."""
    if isinstance(request, (Warmup, Time, Profile, Count)):
        return request.batch, request.seed
    if isinstance(request, (Identify, ThreadsRun)):
        return 1, request.seed
    if isinstance(request, Loadgen):
        return request.samples, request.seed
    return None


def schema() -> dict[str, list[str]]:
    """Every message and its fields, as resx::protocol_schema lists the C++ side's."""
    messages = [*ANSWERS, *(a for a in ANSWERS.values() if a), EngineOptions, Compiled]
    return {m.__name__: [f.name for f in fields(m)] for m in messages}
