"""The fairness gate: before anything is timed, every runtime reports from inside itself what it runs,
and the rows compare those reports. No row is filled in from outside a runtime."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

from resx.bench.runners import Runner
from resx.envinfo import other_cpu_load

OUTPUT_TOLERANCE = 1e-4  # max abs difference of batch-1 logits between runtimes of the same fp32 graph


@dataclass
class GateReport:
    checks: list[dict] = field(default_factory=list)  # {check, ok, detail}
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    other_cpu_load: float | None = None  # cores busy with other processes, just before timing
    cores: int = 1
    loaded: bool = False
    forced: bool = False

    @property
    def failures(self) -> list[dict]:
        return [c for c in self.checks if not c["ok"]]

    def check(self, name: str, values: dict[str, object], ok: bool | None = None) -> None:
        """A row: ok when every value is the same (or as given)."""
        if ok is None:
            ok = len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) == 1
        self.checks.append({"check": name, "ok": bool(ok), "detail": {k: str(v)[:80] for k, v in values.items()}})

    def to_dict(self) -> dict:
        return asdict(self) | {"passed": not self.failures}


def fairness_gate(runners: list[Runner], manifest: dict, threads: int, seed: int, max_load: float) -> GateReport:
    """Record and check that every runtime runs the file's graph with the file's weights on the same
    input and threads, with the same LibTorch; and whether the machine is loaded or oversubscribed.
    Refusing is the caller's decision (--force)."""
    report = GateReport(load_average=os.getloadavg(), cores=os.cpu_count() or 1)
    ids = {r.name: r.identity(seed) for r in runners}
    report.check("fingerprint", {"manifest": manifest["fingerprint"]} | {n: i.fingerprint for n, i in ids.items()})
    report.check("weights", {"manifest": manifest["weights_hash"]} | {n: i.weights_hash for n, i in ids.items()})
    report.check("input", {n: i.input_hash for n, i in ids.items()})
    first = next(iter(ids.values())).output
    diffs = {n: float((i.output - first).abs().max()) if i.output.shape == first.shape else float("inf")
             for n, i in ids.items()}  # fmt: skip
    report.check(f"outputs (max abs diff <= {OUTPUT_TOLERANCE:g})", diffs,
                 all(d <= OUTPUT_TOLERANCE for d in diffs.values()))  # fmt: skip
    report.check("intra-op threads", {"requested": str(threads)} | {n: i.env["intra_op_threads"]
                                                                    for n, i in ids.items()})  # fmt: skip
    report.check(f"threads within the {report.cores} cores", {"requested": threads}, threads <= report.cores)
    builds = {n: (i.env["torch_version"], hashlib.sha1(i.env["build_config"].encode()).hexdigest()[:12])
              for n, i in ids.items()}  # fmt: skip
    report.check("LibTorch build", builds)
    report.other_cpu_load = other_cpu_load(1.0)
    # Other processes' CPU use now where /proc tells it; else the load average (which counts us too).
    load = report.other_cpu_load if report.other_cpu_load is not None else report.load_average[0]
    report.loaded = load > max_load * report.cores
    return report
