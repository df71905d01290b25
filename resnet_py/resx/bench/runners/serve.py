"""`python -m resx.bench.runners.serve RUNTIME FILE [--device D --engine E --dtype T ...]`: a runtime
that lives in Python (the py and cpp languages) as a timing server, speaking the JSON-lines protocol of
`resx-cpp bench-serve` (resnet_cpp/main.cpp), so that every runtime is measured in a fresh process of
its own per round alike."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from resx.bench.config import WarmupRule
from resx.bench.runners import make_local_runner
from resx.bench.runners.base import Runner
from resx.engines import EngineOptions
from resx.errors import ResxError


def answer(runner: Runner, request: dict) -> dict:
    """One request -> its answer (the keys of resx-cpp bench-serve's)."""
    cmd, seed, batch = request["cmd"], int(request.get("seed", 0)), int(request.get("batch", 1))
    if cmd == "identity":
        return runner.identity(seed).to_json()
    if cmd == "threads":
        return {"threads": runner.set_threads(int(request["n"]))}
    if cmd == "warmup":
        rule = WarmupRule(int(request["window"]), float(request["tolerance"]), int(request["max_calls"]))
        return {"calls": runner.warm_up(batch, seed, rule)}
    if cmd == "time":
        return {"ns": runner.time(batch, seed, int(request["calls"]))}
    if cmd == "threads_run":
        calls, wall = runner.threads_run(int(request["threads"]), float(request["seconds"]), seed)
        return {"calls": calls, "wall_ns": wall}
    if cmd == "profile":
        return runner.profile(batch, seed, int(request["calls"]))
    if cmd == "device_memory":
        return runner.device_memory()
    if cmd == "loadgen":
        return runner.loadgen({k: v for k, v in request.items() if k != "cmd"})
    return {"error": f"unknown command '{cmd}'"}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m resx.bench.runners.serve", description=__doc__)
    parser.add_argument("runtime")
    parser.add_argument("file", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--engine", default="script")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--runners", type=int, default=1)
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--cuda-graphs", action="store_true")
    parser.add_argument("--input-shape", default="3,32,32")
    a = parser.parse_args(argv)
    shape = tuple(int(v) for v in a.input_shape.split(","))
    options = EngineOptions(
        a.engine, a.device, a.dtype, a.channels_last, a.runners, a.deterministic, a.cuda_graphs, shape
    )
    runner = make_local_runner(a.runtime, a.file, options)
    began = time.perf_counter()
    try:
        runner.start()
    except ResxError as e:  # one line for the parent, which names the runtime
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"ready": True, "load_s": time.perf_counter() - began}), flush=True)
    for line in sys.stdin:  # ends when the parent closes the pipe, or dies
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if request.get("cmd") == "quit":
                break
            reply = answer(runner, request)
        except Exception as e:  # noqa: BLE001  (one line back to the parent, which names the runtime)
            reply = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
        print(json.dumps(reply), flush=True)
    runner.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
