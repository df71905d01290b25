"""`python -m resx.bench.runners.serve RUNTIME FILE [--device D --engine E --dtype T ...]`: a runtime
that lives in Python (the py and cpp languages) as a timing server, speaking the protocol of `resx-cpp
bench-serve` (resnet_cpp/main.cpp), so that every runtime is measured in a fresh process of its own per
round alike."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from resx.bench.config import WarmupRule
from resx.bench.runners import make_local_runner
from resx.bench.runners.base import Runner
from resx.engines import EngineOptions
from resx.errors import ResxError


def answer(runner: Runner, words: list[str]) -> str:
    """One command -> its answer line (the formats of resx-cpp bench-serve)."""
    command, args = words[0], words[1:]
    if command == "fingerprint":
        return f"fingerprint {runner.fingerprint()}"
    if command == "weights":
        return f"weights {runner.weights_hash()}"
    if command == "compiled":
        c = runner.compiled()
        return f"compiled {c['threads']} {c['load_seconds']!r} {c['compile_seconds']!r} {int(c['recorded'])}"
    if command == "threads":
        runner.set_threads(int(args[0]))
        return f"ok {args[0]}"
    if command == "env":
        return f"env {json.dumps(runner.env())}"
    if command == "input":
        return f"input {runner.input_hash(int(args[0]), int(args[1]))}"
    if command == "output":
        logits = runner.output(int(args[0]), int(args[1])).reshape(-1).tolist()
        return "output " + ",".join("%.9g" % v for v in logits)  # noqa: UP031  (C's "%.9g", as resx-cpp)
    if command == "warmup":
        batch, seed, window, tolerance, max_calls = (
            int(args[0]),
            int(args[1]),
            int(args[2]),
            float(args[3]),
            int(args[4]),
        )
        return f"warmup {runner.warm_up(batch, seed, WarmupRule(window, tolerance, max_calls))}"
    if command == "time":
        return "ns " + " ".join(map(str, runner.time(int(args[0]), int(args[1]), int(args[2]))))
    if command == "threads-run":
        calls, wall = runner.threads_run(int(args[0]), float(args[1]), int(args[2]))
        return f"calls {calls} {wall}"
    return f"error unknown command '{command}'"


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
    a = parser.parse_args(argv)
    options = EngineOptions(a.engine, a.device, a.dtype, a.channels_last, a.runners, a.deterministic, a.cuda_graphs)
    runner = make_local_runner(a.runtime, a.file, options)
    try:
        runner.start()
    except ResxError as e:  # one line for the parent, which names the runtime
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("ready", flush=True)
    for line in sys.stdin:  # ends when the parent closes the pipe, or dies
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        try:
            print(answer(runner, words), flush=True)
        except Exception as e:  # noqa: BLE001  (one line back to the parent, which names the runtime)
            print(f"error {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}", flush=True)
    runner.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
