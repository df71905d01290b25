"""What the machine does around a benchmark: the resident memory of the bench's whole process tree (its
peak, sampled in a thread), and the cores other processes kept busy during a span (a round). Linux /proc;
elsewhere both report nothing."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """VmRSS of one process (field="VmHWM": its peak so far); 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def peak_rss_bytes(pid: int) -> int:
    """The process's resident high-water mark (VmHWM): it never goes down."""
    return rss_bytes(pid, "VmHWM")


def mapped_libraries(pid: int) -> dict[str, int]:
    """The shared libraries a process has mapped, with their sizes on disk: what shipping it takes (for
    resx-cpp, its dependency closure as loaded)."""
    libraries = {}
    try:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and ".so" in Path(parts[5]).name and parts[5] not in libraries:
                with contextlib.suppress(OSError):
                    libraries[parts[5]] = os.path.getsize(parts[5])
    except OSError:
        pass
    return libraries


def descendants(pid: int) -> list[int]:
    """pid and every process below it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def machine_used_bytes() -> int:
    """MemTotal - MemAvailable: what the machine's processes hold, page cache aside."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) * 1024
    except (OSError, KeyError, ValueError):
        return 0


class TreeMemory:
    """The peak of this process tree's summed RSS (and of the machine's used memory), sampled every
    `interval` seconds while the context is open."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak_bytes, self.machine_peak_bytes, self.samples = interval, 0, 0, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resx-memory", daemon=True)

    def _run(self) -> None:
        baseline = machine_used_bytes()
        self.machine_baseline_bytes = baseline
        while True:
            total = sum(rss_bytes(p) for p in descendants(os.getpid()))
            self.peak_bytes = max(self.peak_bytes, total)
            self.machine_peak_bytes = max(self.machine_peak_bytes, machine_used_bytes())
            self.samples += 1
            if self._done.wait(self.interval):
                return

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def report(self) -> dict:
        return {
            "peak_rss_bytes": self.peak_bytes,
            "machine_used_peak_bytes": self.machine_peak_bytes,
            "machine_used_before_bytes": getattr(self, "machine_baseline_bytes", 0),
            "samples": self.samples,
            "interval_s": self.interval,
        }


def _busy_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle, sum(fields[:8])


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system  # children: those waited for


class OtherLoad:
    """Cores kept busy by processes other than this one and the children it waited for, over a span:
    start(), then stop() (after the span's children ended) gives the figure, None without /proc."""

    def start(self) -> None:
        try:
            self._busy, self._total = _busy_ticks()
        except (OSError, ValueError):
            self._busy = None
        self._own, self._wall = _own_seconds(), time.monotonic()

    def stop(self) -> float | None:
        if getattr(self, "_busy", None) is None:
            return None
        busy, total = _busy_ticks()
        cores = os.cpu_count() or 1
        wall = max(1e-9, time.monotonic() - self._wall)
        all_busy = (busy - self._busy) / max(1, total - self._total) * cores  # cores busy on average
        return max(0.0, all_busy - (_own_seconds() - self._own) / wall)
