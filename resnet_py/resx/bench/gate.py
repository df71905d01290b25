"""The fairness gate: before a path times anything, its runtime reports from inside itself what it runs,
and the rows compare those reports. No row is filled in from outside a runtime; what an engine can only
state as recorded at export (an AOTInductor package shows neither graph nor weights) is marked so, and
its outputs must then prove it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

from resx.bench.registry import BASELINE
from resx.bench.runners import Identity
from resx.engines import EngineOptions
from resx.env import CUDA_SETTINGS
from resx.tolerances import tolerance as tolerance_of


@dataclass
class GateReport:
    checks: list[dict] = field(default_factory=list)  # {check, ok, detail}
    compiled: dict[str, dict] = field(default_factory=dict)  # per path: threads, load and compile seconds
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


def fairness_gate(
    ids: dict[str, Identity], options: dict[str, EngineOptions], manifest: dict, threads: int, baseline: str = BASELINE
) -> GateReport:
    """That every path runs the file's graph with the file's weights on the same input and threads, with
    the same LibTorch, its outputs within its engine's and dtype's tolerance of the baseline's (py-eager
    at fp32, else the first path); that compiled code was compiled for the run's threads. Refusing is
    the caller's decision (--force)."""
    report = GateReport(load_average=os.getloadavg(), cores=os.cpu_count() or 1)
    report.compiled = {n: i.compiled for n, i in ids.items()}
    recorded = {n for n, c in report.compiled.items() if c["recorded"]}
    mark = lambda values: {n: f"{v} (recorded)" for n, v in values.items() if n in recorded}
    # A C++ module (the C++ frontend) has no graph to fingerprint: its state, weights and outputs prove it.
    modules = {n for n, i in ids.items() if not i.fingerprint}
    fps = {"manifest": manifest["fingerprint"]} | {n: i.fingerprint for n, i in ids.items() if n not in modules}
    report.check("fingerprint", fps, shown=mark(fps) | {n: "(a C++ module: no graph)" for n in modules})
    states = {"manifest": manifest["state_fingerprint"]} | {n: i.state for n, i in ids.items()}
    report.check("parameters and buffers (names, shapes, dtypes)", states, shown=mark(states))
    weights = {"manifest": manifest["weights_hash"]} | {n: i.weights_hash for n, i in ids.items()}
    report.check("weights", weights, shown=mark(weights))
    report.check("input", {n: i.input_hash for n, i in ids.items()})
    if manifest.get("derived"):  # a file resx did not write: the rows compare the runtimes with each other
        report.check("manifest", {"file": "none: derived from the file, nothing recorded to check it against"}, True)
    reference = ids.get(baseline) or next(iter(ids.values()))
    diffs, ok = {}, True
    for name, i in ids.items():
        same = i.output.shape == reference.output.shape
        diff = float((i.output - reference.output).abs().max()) if same else float("inf")
        o = options[name]
        limit = tolerance_of(o.engine, o.dtype, o.device)
        diffs[name], ok = f"{diff:.2g} (<= {limit:g})", ok and diff <= limit
    report.check(f"outputs (max abs diff from {baseline if baseline in ids else next(iter(ids))})", diffs, ok)
    threads_seen = {"requested": str(threads)} | {n: i.env["intra_op_threads"] for n, i in ids.items()}
    cuda = {n: tuple(i.env.get(k, "(absent)") for k in CUDA_SETTINGS) for n, i in ids.items()}
    report.check("CUDA settings (" + ", ".join(CUDA_SETTINGS) + ")", cuda)
    report.check("intra-op threads", threads_seen)
    compiled = {n: c["threads"] for n, c in report.compiled.items() if c["threads"] >= 0}
    report.check(
        "compiled for the run's threads (0: dynamic)", compiled, all(t in (0, threads) for t in compiled.values())
    )
    builds = {
        n: (i.env["torch_version"], hashlib.sha1(i.env["build_config"].encode()).hexdigest()[:12])
        for n, i in ids.items()
    }
    report.check("LibTorch build", builds)
    return report
