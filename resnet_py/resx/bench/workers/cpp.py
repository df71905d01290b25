"""The worker of the runtimes whose language is C++ called from Python: resx::Worker through the extension
(GIL released), which answers every request in C++ as `resx-cpp worker` does; the timing loops run in C++
and hand back raw nanoseconds."""

from __future__ import annotations

import json

from resx.bench import protocol as P
from resx.codec import decode, encode
from resx.cpp import _cpp


class CppWorker:
    def __init__(self, opening: P.Open):
        self.worker = _cpp.Worker(json.dumps(encode(opening)))

    def handle(self, request):
        answer = self.worker.handle(json.dumps({"cmd": P.command(request)} | encode(request)))
        return decode(P.ANSWERS[type(request)], json.loads(answer))
