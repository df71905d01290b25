"""`resx env`: what each runtime reports of LibTorch and the machine, side by side.

The Python side reads torch's Python API, the C++ side asks LibTorch from C++ (in this process through
the extension, and in a process with no Python through resx-cpp). Keys mirror resnet_cpp/env.cpp.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

import torch

# Keys that describe the machine now, not the runtime: shown, never a parity failure.
INFORMATIONAL = frozenset({"load_average"})


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return ""


def other_cpu_load(seconds: float = 1.0) -> float | None:
    """Cores kept busy by *other* processes over the next `seconds` (this process excluded), from
    /proc/stat and /proc/self/stat; None where /proc is unavailable. The load average lags by
    minutes and counts this process too; this is the competition a timing run would face now."""

    def busy_ticks() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields[:8]) - idle, sum(fields[:8])

    def own_ticks() -> int:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    try:
        b0, t0, o0 = *busy_ticks(), own_ticks()
        time.sleep(seconds)
        b1, t1, o1 = *busy_ticks(), own_ticks()
    except (OSError, ValueError, IndexError):
        return None
    cores = os.cpu_count() or 1
    return max(0.0, ((b1 - b0) - (o1 - o0)) / max(1, t1 - t0) * cores)


# What decides CUDA's numerics and algorithm choices: the gate compares these across runtimes.
CUDA_SETTINGS = (
    "cuda_device",
    "cudnn_version",
    "cudnn_benchmark",
    "cudnn_deterministic",
    "deterministic_algorithms",
    "tf32_matmul",
    "tf32_cudnn",
)


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def python_env() -> dict[str, str]:
    cuda = torch.cuda.is_available()
    return {
        "torch_version": torch.__version__.split("+")[0],
        "build_config": torch.__config__.show(),
        "intra_op_threads": str(torch.get_num_threads()),
        "inter_op_threads": str(torch.get_num_interop_threads()),
        "mkldnn": "yes" if torch.backends.mkldnn.is_available() else "no",
        "openmp": "yes" if torch.backends.openmp.is_available() else "no",
        "cuda_available": "yes" if cuda else "no",
        "cuda_device_count": str(torch.cuda.device_count() if cuda else 0),
        "cuda_device": torch.cuda.get_device_name(0) if cuda else "",
        "cudnn_version": str(torch.backends.cudnn.version() or "") if cuda else "",
        "cudnn_benchmark": yes_no(torch.backends.cudnn.benchmark),
        "cudnn_deterministic": yes_no(torch.backends.cudnn.deterministic),
        "deterministic_algorithms": yes_no(torch.are_deterministic_algorithms_enabled()),
        "tf32_matmul": yes_no(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": yes_no(torch.backends.cudnn.allow_tf32),
        "cpu_model": cpu_model(),
        "cpu_cores": str(os.cpu_count()),
        "load_average": load_average(),
    }


@dataclass(frozen=True)
class EnvRow:
    key: str
    values: dict[str, str]  # runtime name -> value

    @property
    def differs(self) -> bool:
        return self.key not in INFORMATIONAL and len(set(self.values.values())) > 1


def collect(threads: int | None = None, executable: bool = True) -> dict[str, dict[str, str]]:
    """Reports per runtime: 'python', 'cpp' (extension, same process), 'cpp-exe' (no Python)."""
    from resx import cpp

    if threads:
        torch.set_num_threads(threads)
    reports = {"python": python_env(), "cpp": cpp._cpp.env()}
    if executable:
        reports["cpp-exe"] = cpp.executable_env(threads)
    return reports


def compare(reports: dict[str, dict[str, str]]) -> list[EnvRow]:
    keys = list(next(iter(reports.values())))
    for report in reports.values():
        keys += [k for k in report if k not in keys]
    return [EnvRow(k, {name: r.get(k, "<missing>") for name, r in reports.items()}) for k in keys]


def differing(reports: dict[str, dict[str, str]]) -> list[str]:
    return [row.key for row in compare(reports) if row.differs]
