"""`python -m resx.bench.workers`: the bench worker of a runtime that lives in Python (the py and cpp
languages), speaking the protocol of resx.bench.protocol on the pipes $RESX_WORKER_FDS names, as `resx-cpp
worker` does for exe. It imports only the runtime it serves: the Python engines (resx.bench.workers.python)
or the C++ runtime through an extension (resx.bench.workers.cpp: resx._cpp, or resx._executorch for
ExecuTorch), never the rest of the bench.

A model that prints goes to the worker's log (its stdout and stderr); one that raises, exits or aborts
while it is built is one line for the bench, which names the runtime."""

from __future__ import annotations

import json
import os
import sys
import time

from resx.bench import protocol as P
from resx.codec import decode, encode


def worker_class(runtime: str) -> type:
    """The worker of a runtime's language, imported (the runtime's libraries with it)."""
    language, _, engine = runtime.partition("-")
    if language == "py":
        from resx.bench.workers.python import PyWorker

        return PyWorker
    if engine == "executorch":
        from resx.bench.workers.cpp import EtWorker

        return EtWorker
    from resx.bench.workers.cpp import CppWorker

    return CppWorker


def handler(opening: P.Open):
    """The in-process worker of the runtime `opening` names: handle(request) -> answer."""
    return worker_class(opening.runtime)(opening)


def _error(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"the model's code called sys.exit({e.code!r}) while it was built (SystemExit)"
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def main() -> int:
    ends = os.environ.get(P.WORKER_FDS, "")
    if "," not in ends:
        print("python -m resx.bench.workers: $RESX_WORKER_FDS is not set (resx bench starts workers)", file=sys.stderr)
        return 2
    read_fd, write_fd = (int(x) for x in ends.split(","))
    requests, answers = os.fdopen(read_fd, "r"), os.fdopen(write_fd, "w", buffering=1)

    def answer(value: dict) -> None:
        answers.write(json.dumps(value) + "\n")
        answers.flush()

    first = requests.readline()
    if not first.strip():
        return 0
    try:
        opened = json.loads(first)
        opened.pop("cmd", None)
        opening = decode(P.Open, opened)
        cls = worker_class(opening.runtime)  # the libraries: spawn to ready counts them, the load does not
        began = time.perf_counter()
        worker = cls(opening)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001  (the user's model may raise anything, or exit: one line)
        answer({"error": _error(e)})
        return 1
    answer(encode(P.Ready(time.perf_counter() - began)))
    for line in requests:  # ends when the bench closes the pipe, or dies
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
            cmd = fields.pop("cmd", "")
            if cmd == "quit":
                break
            if cmd not in P.REQUESTS:
                raise ValueError(f"unknown request '{cmd}'")
            reply = encode(worker.handle(decode(P.REQUESTS[cmd], fields)))
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001  (one line back to the bench, which names the runtime)
            reply = {"error": _error(e)}
        answer(reply)
    return 0
