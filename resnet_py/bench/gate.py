"""The fairness gate: before anything is timed, every runtime reports from inside itself what it runs,
and the rows compare those reports. No row is filled in from outside a runtime; what an engine can only
state as recorded at export (an AOTInductor package shows neither graph nor weights) is marked so, and
its outputs must then prove it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

from resx.bench.runners import BASELINE, Runner
from resx.engines import tolerance as tolerance_of
from resx.envinfo import CUDA_SETTINGS, other_cpu_load


@dataclass
class GateReport:
    checks: list[dict] = field(default_factory=list)  # {check, ok, detail}
    compiled: dict[str, dict] = field(default_factory=dict)  # per runtime: threads, load and compile seconds
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    other_cpu_load: float | None = None  # cores busy with other processes, just before timing
    cores: int = 1
    loaded: bool = False
    forced: bool = False

    @property
    def failures(self) -> list[dict]:
        return [c for c in self.checks if not c["ok"]]

    def check(self, name: str, values: dict[str, object], ok: bool | None = None, shown: dict | None = None) -> None:
        """A row: ok when every value is the same (or as given); `shown` replaces values in the detail."""
        if ok is None:
            ok = len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) == 1
        detail = {k: str(v)[:80] for k, v in (values | (shown or {})).items()}
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})

    def to_dict(self) -> dict:
        return asdict(self) | {"passed": not self.failures}


def fairness_gate(runners: list[Runner], manifest: dict, threads: int, seed: int, max_load: float) -> GateReport:
    """Record and check that every runtime runs the file's graph with the file's weights on the same
    input and threads, with the same LibTorch, its outputs within its engine's and dtype's tolerance of
    py-eager's (fp32); that compiled code was compiled for the run's threads; whether the machine is
    loaded or oversubscribed. Refusing is the caller's decision (--force)."""
    report = GateReport(load_average=os.getloadavg(), cores=os.cpu_count() or 1)
    ids = {r.name: r.identity(seed) for r in runners}
    report.compiled = {r.name: r.compiled() for r in runners}
    recorded = {n for n, c in report.compiled.items() if c["recorded"]}
    mark = lambda values: {n: f"{v} (recorded)" for n, v in values.items() if n in recorded}
    fps = {"manifest": manifest["fingerprint"]} | {n: i.fingerprint for n, i in ids.items()}
    report.check("fingerprint", fps, shown=mark(fps))
    weights = {"manifest": manifest["weights_hash"]} | {n: i.weights_hash for n, i in ids.items()}
    report.check("weights", weights, shown=mark(weights))
    report.check("input", {n: i.input_hash for n, i in ids.items()})
    reference = ids.get(BASELINE) or next(iter(ids.values()))
    diffs, ok = {}, True
    for r in runners:
        out = ids[r.name].output
        diff = float((out - reference.output).abs().max()) if out.shape == reference.output.shape else float("inf")
        tolerance = tolerance_of(r.options.engine, r.options.dtype, r.options.device)
        diffs[r.name], ok = f"{diff:.2g} (<= {tolerance:g})", ok and diff <= tolerance
    report.check(f"outputs (max abs diff from {BASELINE})", diffs, ok)
    threads_seen = {"requested": str(threads)} | {n: i.env["intra_op_threads"] for n, i in ids.items()}
    cuda = {n: tuple(i.env.get(k, "(absent)") for k in CUDA_SETTINGS) for n, i in ids.items()}
    report.check("CUDA settings (" + ", ".join(CUDA_SETTINGS) + ")", cuda)
    report.check("intra-op threads", threads_seen)
    compiled = {n: c["threads"] for n, c in report.compiled.items() if c["threads"] >= 0}
    report.check(
        "compiled for the run's threads (0: dynamic)", compiled, all(t in (0, threads) for t in compiled.values())
    )
    report.check(f"threads within the {report.cores} cores", {"requested": threads}, threads <= report.cores)
    builds = {n: (i.env["torch_version"], hashlib.sha1(i.env["build_config"].encode()).hexdigest()[:12])
              for n, i in ids.items()}  # fmt: skip
    report.check("LibTorch build", builds)
    report.other_cpu_load = other_cpu_load(1.0)
    # Other processes' CPU use now where /proc tells it; else the load average (which counts us too).
    load = report.other_cpu_load if report.other_cpu_load is not None else report.load_average[0]
    report.loaded = load > max_load * report.cores
    return report
