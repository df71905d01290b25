"""The workers of the runtimes whose language is C++ called from Python: resx::Worker through resx._cpp
(LibTorch's engines) or resx::et::Worker through resx._executorch (ExecuTorch's runtime, no torch in the
extension), each answering every request in C++ with the GIL released, as `resx-cpp worker` and
`resx-executorch worker` do; the timing loops run in C++ and hand back raw nanoseconds."""

from __future__ import annotations

import json

from resx.bench import protocol as P
from resx.codec import decode, encode


class CppWorker:
    def __init__(self, opening: P.Open):
        self.worker = self.extension().Worker(json.dumps(encode(opening)))

    @staticmethod
    def extension():
        from resx.cpp import _cpp

        return _cpp

    def handle(self, request):
        answer = self.worker.handle(json.dumps({"cmd": P.command(request)} | encode(request)))
        return decode(P.ANSWERS[type(request)], json.loads(answer))


class EtWorker(CppWorker):
    @staticmethod
    def extension():
        from resx.executorch_cpp import extension

        return extension()
