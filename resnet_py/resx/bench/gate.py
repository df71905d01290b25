"""The fairness gate: before a path times anything, its runtime reports from inside itself what it runs,
and the rows compare those reports. No row is filled in from outside a runtime; what an engine can only
state as recorded at export (an AOTInductor package shows neither graph nor weights) is marked so, and
its outputs must then prove it. The rounds hand each path's identity to Gate.admit as it arrives."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from resx.bench.protocol import EngineOptions, Identity
from resx.bench.registry import BASELINE
from resx.bench.results import GateCheck, GateReport
from resx.env import CUDA_SETTINGS
from resx.errors import BenchError
from resx.tolerances import tolerance as tolerance_of


def check(report: GateReport, name: str, values: dict[str, object], ok: bool | None = None, shown: dict | None = None):
    """A row: ok when every value is the same (or as given); `shown` replaces values in the detail."""
    if ok is None:
        ok = len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) == 1
    detail = {k: str(v)[:80] for k, v in (values | (shown or {})).items()}
    report.checks.append(GateCheck(name, bool(ok), detail))


def fairness_gate(
    ids: dict[str, Identity], options: dict[str, EngineOptions], manifest: dict, threads: int, baseline: str = BASELINE
) -> GateReport:
    """That every path runs the file's graph with the file's weights on the same input and threads, with
    the same LibTorch, its outputs within its engine's and dtype's tolerance of the baseline's (py-eager
    at fp32, else the first path); that compiled code was compiled for the run's threads. Refusing is
    the caller's decision (--force)."""
    report = GateReport(load_average=os.getloadavg(), cores=os.cpu_count() or 1)
    report.compiled = {n: i.compiled for n, i in ids.items()}
    recorded = {n for n, c in report.compiled.items() if c.recorded}
    mark = lambda values: {n: f"{v} (recorded)" for n, v in values.items() if n in recorded}
    # A C++ module (the C++ frontend) has no graph to fingerprint: its state, weights and outputs prove it.
    modules = {n for n, i in ids.items() if not i.fingerprint}
    fps = {"manifest": manifest["fingerprint"]} | {n: i.fingerprint for n, i in ids.items() if n not in modules}
    check(report, "fingerprint", fps, shown=mark(fps) | {n: "(a C++ module: no graph)" for n in modules})
    states = {"manifest": manifest["state_fingerprint"]} | {n: i.state for n, i in ids.items()}
    check(report, "parameters and buffers (names, shapes, dtypes)", states, shown=mark(states))
    weights = {"manifest": manifest["weights_hash"]} | {n: i.weights_hash for n, i in ids.items()}
    check(report, "weights", weights, shown=mark(weights))
    check(report, "input", {n: i.input_hash for n, i in ids.items()})
    if manifest.get("derived"):  # a file resx did not write: the rows compare the runtimes with each other
        check(report, "manifest", {"file": "none: derived from the file, nothing recorded to check it against"}, True)
    reference = ids.get(baseline) or next(iter(ids.values()))
    ref = np.asarray(reference.output, dtype=np.float64)
    diffs, ok = {}, True
    for name, i in ids.items():
        out = np.asarray(i.output, dtype=np.float64)
        diff = float(np.abs(out - ref).max()) if out.shape == ref.shape else float("inf")
        o = options[name]
        limit = tolerance_of(o.engine, o.dtype, o.device)
        diffs[name], ok = f"{diff:.2g} (<= {limit:g})", ok and diff <= limit
    check(report, f"outputs (max abs diff from {baseline if baseline in ids else next(iter(ids))})", diffs, ok)
    threads_seen = {"requested": str(threads)} | {n: i.env["intra_op_threads"] for n, i in ids.items()}
    # LibTorch's rows compare the runtimes that load it; ExecuTorch's C++ runtime loads none.
    libtorch = {n: i for n, i in ids.items() if "torch_version" in i.env}
    cuda = {n: tuple(i.env.get(k, "(absent)") for k in CUDA_SETTINGS) for n, i in libtorch.items()}
    check(report, "CUDA settings (" + ", ".join(CUDA_SETTINGS) + ")", cuda)
    check(report, "intra-op threads", threads_seen)
    compiled = {n: c.threads for n, c in report.compiled.items() if c.threads >= 0}
    check(
        report,
        "compiled for the run's threads (0: dynamic)",
        compiled,
        all(t in (0, threads) for t in compiled.values()),
    )
    builds = {
        n: (i.env["torch_version"], hashlib.sha1(i.env["build_config"].encode()).hexdigest()[:12])
        for n, i in libtorch.items()
    }
    check(report, "LibTorch build", builds)
    releases = {n: i.env["executorch_version"] for n, i in ids.items() if "executorch_version" in i.env}
    if releases:
        check(report, "ExecuTorch release", releases)
    return report


class Gate:
    """The gate of one model's rounds: each path's identity as its first process reports it, checked at
    once with those before; a path that fails is refused before it times anything (unless forced)."""

    def __init__(
        self,
        label: str,
        manifest: dict,
        options: dict[str, EngineOptions],
        threads: int,
        baseline: str,
        force: bool,
        other_load: float | None,
    ):
        self.label, self.manifest, self.options, self.threads = label, manifest, options, threads
        self.baseline, self.force, self.other_load = baseline, force, other_load
        self.identities: dict[str, Identity] = {}
        self.report = GateReport()

    def admitted(self, path: str) -> bool:
        return path in self.identities

    def admit(self, path: str, identity: Identity) -> None:
        self.identities[path] = identity
        self.report = fairness_gate(self.identities, self.options, self.manifest, self.threads, self.baseline)
        self.report.other_cpu_load, self.report.forced = self.other_load, self.force
        if self.report.failures and not self.force:
            failed = "; ".join(f"{c.check}: {c.detail}" for c in self.report.failures)
            raise BenchError(f"fairness gate refused {self.label}: {failed} (--force runs anyway and records it)")
