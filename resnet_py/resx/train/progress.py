"""What a run shows while it trains and how it is asked to stop, alike in every runtime: Progress (mirrors
resx::Progress) and Stop (SIGINT, SIGTERM or a request)."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields


@dataclass
class Progress:
    """Mirrors resx::Progress: what the one progress display shows for every runtime."""

    phase: str = "starting"  # starting, compile, train, eval, done, stopped
    epoch: int = 0  # epochs done
    epochs: int = 0
    step: int = 0  # steps done in the current epoch
    steps: int = 0
    loss: float = 0.0  # of the last step
    images_per_s: float = 0.0  # in the current epoch so far


ProgressFn = Callable[[Progress], None]


def progress_of(source) -> Progress:
    """A Progress from anything with its fields (resx._cpp.Progress, a Progress being updated)."""
    return Progress(**{f.name: getattr(source, f.name) for f in fields(Progress)})


def parse_progress(line: str) -> Progress | None:
    """resx-cpp train's progress line on stderr, {"progress": {...}} (resx::progress_json), by field name;
    None for any other line (the executable's error message, say)."""
    try:
        values = json.loads(line)["progress"]
        return Progress(**{f.name: type(getattr(Progress(), f.name))(values[f.name]) for f in fields(Progress)})
    except (ValueError, TypeError, KeyError):
        return None


class Stop:
    """How a run is asked to stop: SIGINT or SIGTERM alike in every runtime, or request(). The run ends
    after the current step and keeps its last complete epoch; a second signal interrupts at once."""

    def __init__(self) -> None:
        self.signal = 0
        self.listeners: list[Callable[[int], None]] = []  # the C++ trainer, a resx-cpp child
        self._saved: dict[int, object] = {}

    def request(self, signum: int = signal.SIGINT) -> bool:
        """Ask the run to stop; False when it had already been asked."""
        first = not self.signal
        self.signal = self.signal or signum
        for listener in self.listeners:
            listener(signum)
        return first

    def _handle(self, signum: int, _frame) -> None:
        if not self.request(signum):
            raise KeyboardInterrupt

    def __enter__(self) -> Stop:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._saved[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._saved.items():
            signal.signal(s, handler)
        self._saved.clear()
