"""`resx bench`: the fair comparison of the runtimes on the same TorchScript file.

Runtimes: py-eager (the nn.Module from Python), py-script (the TorchScript file driven from Python),
cpp (the same file in the C++ runtime through nanobind, GIL released) and cpp-exe (the standalone
resx-cpp, a separate process with no Python). Every runtime returns raw per-call nanoseconds;
resx.stats computes the statistics. Runtimes are interleaved round by round (A B C D, then B C D A,
...) so that drift on a shared machine hits all of them alike.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from resx import stats
from resx.export import export, load, weights_hash
from resx.models import ModelConfig, build
from resx.train import sync

RUNTIMES = ("py-eager", "py-script", "cpp", "cpp-exe")
BASELINE = "py-eager"
# resx train's runtime and py_module for each bench runtime.
TRAIN_RUNTIME = {
    "py-eager": ("py", "eager"),
    "py-script": ("py", "scripted"),
    "cpp": ("cpp", "eager"),
    "cpp-exe": ("cpp-exe", "eager"),
}


class BenchError(Exception):
    """The benchmark cannot run fairly (or at all); the message says why and what to do."""


@dataclass(frozen=True)
class WarmupRule:
    """Mirrors resx::WarmupRule: warm up until the median of the last `window` calls is within
    `tolerance` of the window before, or `max_calls`."""

    window: int = 10
    tolerance: float = 0.05
    max_calls: int = 300

    def for_batch(self, batch: int) -> WarmupRule:
        # Big batches are slow and settle as fast in calls: a smaller window keeps the budget.
        return WarmupRule(max(2, int(self.window / batch**0.5)), self.tolerance, self.max_calls)


@dataclass
class BenchConfig:
    models: list[str] = field(default_factory=lambda: ["resnet18"])
    stem: str = "cifar"
    layers: list[int] | None = None
    runtimes: list[str] = field(default_factory=lambda: list(RUNTIMES))
    device: str = "cpu"
    threads: int = 0  # intra-op threads for every runtime; 0: torch's current default
    seed: int = 0
    rounds: int = 4
    latency_calls: int = 200
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32, 128])
    throughput_calls: int = 8
    thread_counts: list[int] = field(default_factory=lambda: [1, 2, 4])
    thread_seconds: float = 2.0
    warmup: WarmupRule = field(default_factory=WarmupRule)
    inference: bool = True
    training: bool = True
    train_steps: int = 5
    train_batch: int = 128
    epochs: int = 0  # >0: train full epochs (needs --data), reporting losses and accuracies
    train_rounds: int = 1
    data: str | None = None
    max_load: float = 0.5  # load average per core above which the machine counts as loaded
    force: bool = False
    preset: str = "custom"

    def validate(self) -> None:
        bad = [r for r in self.runtimes if r not in RUNTIMES]
        if bad:
            raise BenchError(f"unknown runtime(s) {', '.join(bad)}: choose from {', '.join(RUNTIMES)} or all")
        if not self.runtimes:
            raise BenchError("no runtime selected")
        for name in self.models:
            try:
                ModelConfig(name, stem=self.stem, layers=self.layers)
            except ValueError as e:
                raise BenchError(str(e))
        if self.rounds < 1 or self.latency_calls < self.rounds or self.throughput_calls < 1:
            raise BenchError("rounds must be >= 1 and latency calls >= rounds")
        if self.epochs > 0 and not self.data:
            raise BenchError("--epochs needs real data: pass --data DIR (CIFAR-10)")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BenchError(f"--device {self.device}: CUDA is not available here; use --device cpu")


def make_input(batch: int, seed: int, device: str = "cpu") -> torch.Tensor:
    """The benchmark input; the same ATen call as resx::make_input, so the same numbers."""
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed)).to(device)


# -------------------------------------------------------------------------------------- runners


class Runner:
    """One runtime holding one model. Subclasses: PyRunner, CppRunner, ExeRunner."""

    name: str
    fingerprint: str
    weights_hash: str

    def set_threads(self, n: int) -> None: ...
    def env(self) -> dict[str, str]: ...
    def output(self, batch: int, seed: int) -> torch.Tensor: ...
    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int: ...
    def time(self, batch: int, seed: int, calls: int) -> list[int]: ...
    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]: ...

    def close(self) -> None:
        pass


class PyRunner(Runner):
    """py-eager (nn.Module) or py-script (the TorchScript file), driven from Python."""

    def __init__(self, name: str, model_file: Path, device: str):
        from resx.export import fingerprint

        scripted, manifest = load(model_file)
        if manifest is None:
            raise BenchError(f"{model_file}: not a resx export (no manifest)")
        if name == "py-eager":
            model = build(ModelConfig.from_dict(manifest["model"]))
            model.load_state_dict(scripted.state_dict())
        else:
            model = scripted
        self.name, self.device, self.model = name, device, model.to(device).eval()
        # The eager module has no graph of its own: it is proven to be the file's network by the
        # manifest's fingerprint (made by scripting this very definition) and by equal weights and outputs.
        self.fingerprint = fingerprint(scripted) if name == "py-script" else manifest["fingerprint"]
        self.weights_hash = weights_hash(model)

    def set_threads(self, n: int) -> None:
        torch.set_num_threads(n)

    def env(self) -> dict[str, str]:
        from resx.envinfo import python_env

        return python_env()

    def output(self, batch: int, seed: int) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(make_input(batch, seed, self.device)).cpu()

    def _call_ns(self, x: torch.Tensor) -> int:
        t0 = time.perf_counter_ns()
        self.model(x)
        sync(self.device)
        return time.perf_counter_ns() - t0

    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int:
        x, times = make_input(batch, seed, self.device), []
        with torch.inference_mode():
            while len(times) < rule.max_calls:
                times.append(self._call_ns(x))
                w = rule.window
                if len(times) >= 2 * w and stats.stable(times[-2 * w : -w], times[-w:], rule.tolerance):
                    break
        return len(times)

    def time(self, batch: int, seed: int, calls: int) -> list[int]:
        x = make_input(batch, seed, self.device)
        with torch.inference_mode():
            return [self._call_ns(x) for _ in range(calls)]

    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]:
        x = make_input(1, seed, self.device)
        counts = [0] * threads
        go = threading.Event()

        def work(i: int) -> None:
            xi = x.clone()
            go.wait()
            end = time.perf_counter() + seconds
            with torch.inference_mode():
                while time.perf_counter() < end:
                    self.model(xi)
                    sync(self.device)
                    counts[i] += 1

        pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        t0 = time.perf_counter_ns()
        go.set()
        for t in pool:
            t.join()
        return sum(counts), time.perf_counter_ns() - t0


class CppRunner(Runner):
    """cpp: the file in the C++ runtime, in this process (nanobind, GIL released)."""

    def __init__(self, model_file: Path, device: str):
        from resx import _cpp

        self._cpp, self.name, self.device = _cpp, "cpp", device
        self.model = _cpp.Model(str(model_file), device)
        self.model.eval()
        self.fingerprint, self.weights_hash = self.model.fingerprint(), self.model.weights_hash()

    def set_threads(self, n: int) -> None:
        self._cpp.set_num_threads(n)

    def env(self) -> dict[str, str]:
        return self._cpp.env()

    def output(self, batch: int, seed: int) -> torch.Tensor:
        return self.model.forward(self._cpp.make_input(batch, seed, self.device)).cpu()

    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int:
        x = self._cpp.make_input(batch, seed, self.device)
        return self._cpp.warm_up(self.model, x, rule.window, rule.tolerance, rule.max_calls)

    def time(self, batch: int, seed: int, calls: int) -> list[int]:
        return self._cpp.time_forward(self.model, self._cpp.make_input(batch, seed, self.device), calls)

    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]:
        return self._cpp.time_threads(self.model, self._cpp.make_input(1, seed, self.device), threads, seconds)


class ExeRunner(Runner):
    """cpp-exe: resx-cpp bench-serve, a process with no Python, answering timing commands."""

    def __init__(self, model_file: Path, device: str):
        from resx.cpp import executable

        self.name, self.device = "cpp-exe", device
        self.proc = subprocess.Popen(
            [str(executable()), "bench-serve", str(model_file), device],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        first = self.proc.stdout.readline().split()
        if len(first) != 3 or first[0] != "ready":
            err = self.proc.stderr.read().strip().splitlines()
            raise BenchError(f"resx-cpp bench-serve failed: {err[-1] if err else 'no answer'}")
        self.fingerprint, self.weights_hash = first[1], first[2]

    def _ask(self, line: str, expect: str) -> list[str]:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer.startswith(expect):
            raise BenchError(f"resx-cpp bench-serve: '{line}' answered '{answer[:200]}'")
        return answer[len(expect) :].split()

    def set_threads(self, n: int) -> None:
        self._ask(f"threads {n}", "ok")

    def env(self) -> dict[str, str]:
        self.proc.stdin.write("env\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def output(self, batch: int, seed: int) -> torch.Tensor:
        values = self._ask(f"output {batch} {seed}", "output")[0]
        return torch.tensor([float(v) for v in values.split(",")]).view(batch, -1)

    def warm_up(self, batch: int, seed: int, rule: WarmupRule) -> int:
        return int(self._ask(f"warmup {batch} {seed} {rule.window} {rule.tolerance!r} {rule.max_calls}", "warmup")[0])

    def time(self, batch: int, seed: int, calls: int) -> list[int]:
        return [int(v) for v in self._ask(f"time {batch} {seed} {calls}", "ns")]

    def threads_run(self, threads: int, seconds: float, seed: int) -> tuple[int, int]:
        calls, wall = self._ask(f"threads-run {threads} {seconds!r} {seed}", "calls")
        return int(calls), int(wall)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def make_runner(name: str, model_file: Path, device: str) -> Runner:
    if name in ("py-eager", "py-script"):
        return PyRunner(name, model_file, device)
    return CppRunner(model_file, device) if name == "cpp" else ExeRunner(model_file, device)


# ----------------------------------------------------------------------------------------- gate


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

    def to_dict(self) -> dict:
        return asdict(self) | {"passed": not self.failures}


def fairness_gate(runners: list[Runner], manifest: dict, threads: int, seed: int, max_load: float) -> GateReport:
    """Record and check that every runtime runs the same file, inputs, threads and LibTorch, and
    whether the machine is loaded. Refusing is the caller's decision (BenchConfig.force)."""
    report = GateReport(load_average=os.getloadavg(), cores=os.cpu_count() or 1)

    def check(name: str, values: dict[str, object], ok: bool | None = None) -> None:
        same = len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) == 1 if ok is None else ok
        report.checks.append({"check": name, "ok": bool(same), "detail": {k: str(v)[:80] for k, v in values.items()}})

    check("fingerprint", {"manifest": manifest["fingerprint"]} | {r.name: r.fingerprint for r in runners})
    check("weights", {"manifest": manifest["weights_hash"]} | {r.name: r.weights_hash for r in runners})
    reference = make_input(1, seed)
    from resx import _cpp

    check("input", {"python": "randn", "c++": "randn"}, torch.equal(reference, _cpp.make_input(1, seed, "cpu")))
    outputs = {r.name: r.output(1, seed) for r in runners}
    first = next(iter(outputs.values()))
    diffs = {name: float((o - first).abs().max()) for name, o in outputs.items()}
    check("outputs (same input, max abs diff <= 1e-4)", diffs, all(d <= 1e-4 for d in diffs.values()))
    envs = {r.name: r.env() for r in runners}
    check("intra-op threads", {"requested": str(threads)} | {n: e["intra_op_threads"] for n, e in envs.items()})
    check(
        "LibTorch build",
        {n: (e["torch_version"], hashlib.sha1(e["build_config"].encode()).hexdigest()[:12]) for n, e in envs.items()},
    )
    from resx.envinfo import other_cpu_load

    report.other_cpu_load = other_cpu_load(1.0)
    # Other processes' CPU use now where /proc tells it; else the load average (which counts us too).
    load = report.other_cpu_load if report.other_cpu_load is not None else report.load_average[0]
    report.loaded = load > max_load * report.cores
    return report


# ---------------------------------------------------------------------------------- measurement


Notify = Callable[[str], None]


def _rotations(items: list, rounds: int):
    for r in range(rounds):
        k = r % len(items)
        yield r, items[k:] + items[:k]


def _split(total: int, rounds: int) -> list[int]:
    return [total // rounds + (1 if r < total % rounds else 0) for r in range(rounds)]


def measure_inference(runners: list[Runner], cfg: BenchConfig, notify: Notify) -> dict:
    out: dict = {"warmup_calls": {}, "latency": {}, "throughput": {}, "threads": {}}
    batches = sorted(set([1] + list(cfg.batch_sizes)))
    for batch in batches:
        rule = cfg.warmup.for_batch(batch)
        for r in runners:
            notify(f"warm-up {r.name} batch {batch}")
            out["warmup_calls"].setdefault(r.name, {})[batch] = r.warm_up(batch, cfg.seed, rule)
    # batch-1 latency, interleaved
    samples: dict[str, list[int]] = {r.name: [] for r in runners}
    for rnd, order in _rotations(runners, cfg.rounds):
        for r in order:
            notify(f"latency round {rnd + 1}/{cfg.rounds}: {r.name}")
            samples[r.name] += r.time(1, cfg.seed, _split(cfg.latency_calls, cfg.rounds)[rnd])
    out["latency"] = {name: stats.summarize(ns) | {"samples_ns": ns} for name, ns in samples.items()}
    # throughput per batch size (batch 1 is the latency measurement itself)
    for batch in cfg.batch_sizes:
        if batch == 1:
            per = dict(samples)
        else:
            per = {r.name: [] for r in runners}
            calls = max(1, round(cfg.throughput_calls * max(1.0, 32 / batch)))  # small batches are cheap
            rounds = min(cfg.rounds, calls)
            for rnd, order in _rotations(runners, rounds):
                for r in order:
                    notify(f"throughput batch {batch} round {rnd + 1}/{rounds}: {r.name}")
                    per[r.name] += r.time(batch, cfg.seed, _split(calls, rounds)[rnd])
        for name, ns in per.items():
            out["throughput"].setdefault(name, {})[batch] = {
                "images_per_s": stats.throughput(ns, batch),
                **stats.summarize(ns),
                "samples_ns": ns,
            }
    # concurrent batch-1 inference with one intra-op thread each: the GIL question
    if cfg.thread_counts:
        for r in runners:
            r.set_threads(1)
        for r in runners:
            r.warm_up(1, cfg.seed, cfg.warmup)
        rounds = min(cfg.rounds, 2)
        for threads in cfg.thread_counts:
            rates: dict[str, list[float]] = {r.name: [] for r in runners}
            for rnd, order in _rotations(runners, rounds):
                for r in order:
                    notify(f"{threads} thread(s) round {rnd + 1}/{rounds}: {r.name}")
                    calls, wall = r.threads_run(threads, cfg.thread_seconds / rounds, cfg.seed)
                    rates[r.name].append(calls / (wall / 1e9))
            for name, values in rates.items():
                out["threads"].setdefault(name, {})[threads] = {
                    "images_per_s": float(np.mean(values)),
                    "rounds": values,
                }
        for r in runners:
            r.set_threads(cfg.threads)
    return out


def _synthetic_cifar(root: Path, n_train: int, n_test: int, seed: int) -> Path:
    """Random images in the binary layout: timing does not depend on pixel values."""
    from resx import data as D

    g = torch.Generator().manual_seed(seed)
    out = root / D.BINARY_DIR
    sizes = [n_train // 5 + (1 if i < n_train % 5 else 0) for i in range(5)]
    for name, n in [(f"data_batch_{i + 1}.bin", s) for i, s in enumerate(sizes)] + [("test_batch.bin", n_test)]:
        D.write_binary(
            out / name,
            torch.randint(0, 256, (max(n, 1), 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (max(n, 1),), generator=g),
        )
    return root


def measure_training(model: str, cfg: BenchConfig, work: Path, model_file: Path, notify: Notify) -> dict:
    """Runs resx train for each runtime (rounds interleaved); times come from its steps.csv."""
    from resx import train as T
    from resx.recipe import TrainConfig

    full = cfg.epochs > 0
    steps = cfg.train_steps
    data = (
        Path(cfg.data)
        if cfg.data
        else _synthetic_cifar(work / "synthetic", steps * cfg.train_batch, cfg.train_batch, cfg.seed)
    )
    tc = TrainConfig(
        model=model,
        stem=cfg.stem,
        layers=cfg.layers,
        epochs=max(1, cfg.epochs),
        batch_size=cfg.train_batch,
        seed=cfg.seed,
        threads=cfg.threads,
        device=cfg.device,
        subset=0 if full else steps * cfg.train_batch,
        test_subset=0 if full else cfg.train_batch,
    )
    per: dict[str, dict] = {}
    for rnd, order in _rotations(list(cfg.runtimes), cfg.train_rounds):
        for name in order:
            runtime, py_module = TRAIN_RUNTIME[name]
            notify(f"training round {rnd + 1}/{cfg.train_rounds}: {name}")
            run_dir = work / f"train-{model}-{name}-{rnd}"
            try:
                prepared = T.prepare(tc, runtime, data, run_dir, model_file=model_file)
                T.train(prepared, py_module)
            except T.TrainError as e:
                raise BenchError(f"training {name}: {e}")
            with open(run_dir / "steps.csv") as f:
                rows = [line.split(",") for line in f.read().splitlines()[1:]]
            with open(run_dir / "metrics.csv") as f:
                metrics = [dict(zip(f.readline().strip().split(","), line.strip().split(","))) for line in f]
            entry = per.setdefault(
                name,
                {
                    "step_ns": [],
                    "split_ns": {k: [] for k in ("data", "forward", "backward", "optimizer")},
                    "metrics": [],
                },
            )
            # the first step of each run pays one-off costs (TorchScript profiling, allocator): dropped
            for row in rows[1:] if len(rows) > 1 else rows:
                parts = [float(v) * 1e9 for v in row[5:9]]
                entry["step_ns"].append(int(sum(parts)))
                for key, v in zip(entry["split_ns"], parts):
                    entry["split_ns"][key].append(int(v))
            entry["metrics"] = metrics
            entry["fingerprint"] = prepared.fingerprint
    n_full = 50_000 // cfg.train_batch
    out = {}
    for name, e in per.items():
        step = stats.summarize(e["step_ns"])
        last = e["metrics"][-1] if e["metrics"] else {}
        result = {
            "step": step | {"samples_ns": e["step_ns"]},
            "split_ms": {k: float(np.median(v)) / 1e6 for k, v in e["split_ns"].items()},
            "images_per_s": cfg.train_batch / (step["p50_ms"] / 1e3),
            "fingerprint": e["fingerprint"],
            "data": "CIFAR-10" if cfg.data else "synthetic (random images, timing only)",
        }
        if full:
            times = [float(m["Epoch time"]) for m in e["metrics"]]
            result |= {
                "epoch_time_s": float(np.mean(times)),
                "epoch_time_kind": f"measured over {len(times)} epoch(s)",
                "total_time_s": float(last["Wall Time"]),
                "train_loss": float(last["Train_loss"]),
                "train_top_1": float(last["Train_top_1"]),
                "test_loss": float(last["Test_loss"]),
                "test_top_1": float(last["Test_top_1"]),
            }
        else:
            result |= {
                "epoch_time_s": step["p50_ms"] / 1e3 * n_full,
                "epoch_time_kind": f"extrapolated from {len(e['step_ns'])} step(s) to {n_full} steps",
            }
        out[name] = result
    return out


def ratios(results: dict, baseline: str = BASELINE) -> list[dict]:
    """Every runtime against the baseline, with a 95% bootstrap CI: time ratios (< 1: faster than
    the baseline) for latency, throughput calls and training steps; rate ratios for threads."""
    out = []
    inf, tr = results.get("inference", {}), results.get("training", {})

    def add(measure: str, name: str, a, b, kind: str = "time") -> None:
        r = stats.bootstrap_ratio(a, b, np.median if kind == "time" else np.mean)
        out.append({"measure": measure, "runtime": name, "baseline": baseline, "kind": kind} | r)

    lat = inf.get("latency", {})
    for name in lat:
        if name != baseline and baseline in lat:
            add("latency batch 1", name, lat[name]["samples_ns"], lat[baseline]["samples_ns"])
    thr = inf.get("throughput", {})
    for name in thr:
        if name != baseline and baseline in thr:
            for batch in thr[name]:
                add(
                    f"time per call, batch {batch}",
                    name,
                    thr[name][batch]["samples_ns"],
                    thr[baseline][batch]["samples_ns"],
                )
    th = inf.get("threads", {})
    for name in th:
        if name != baseline and baseline in th:
            for t in th[name]:
                if len(th[name][t]["rounds"]) > 1:
                    add(f"images/s with {t} thread(s)", name, th[name][t]["rounds"], th[baseline][t]["rounds"], "rate")
    for name in tr:
        if name != baseline and baseline in tr:
            add("training step", name, tr[name]["step"]["samples_ns"], tr[baseline]["step"]["samples_ns"])
    return out


def run(cfg: BenchConfig, notify: Notify = lambda _: None, warn: Notify = lambda _: None) -> dict:
    """The whole benchmark; returns the results (resx.report writes them)."""
    from resx import envinfo

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.threads = torch.get_num_threads()
    results: dict = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": asdict(cfg),
        "env": envinfo.collect(cfg.threads),
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="resx-bench-") as tmp:
        work = Path(tmp)
        for model in cfg.models:
            model_file = work / f"{model}.pt"
            notify(f"exporting {model}")
            manifest = export(ModelConfig(model, stem=cfg.stem, layers=cfg.layers), model_file, seed=cfg.seed)
            entry: dict = {"manifest": manifest}
            runners: list[Runner] = []
            try:
                for name in cfg.runtimes:
                    notify(f"loading {name}")
                    runners.append(make_runner(name, model_file, cfg.device))
                for r in runners:
                    r.set_threads(cfg.threads)
                gate = fairness_gate(runners, manifest, cfg.threads, cfg.seed, cfg.max_load)
                gate.forced = cfg.force
                entry["gate"] = gate.to_dict()
                if gate.failures and not cfg.force:
                    failed = "; ".join(f"{c['check']}: {c['detail']}" for c in gate.failures)
                    raise BenchError(f"fairness gate refused {model}: {failed} (--force runs anyway and records it)")
                if gate.loaded:
                    busy = gate.other_cpu_load if gate.other_cpu_load is not None else gate.load_average[0]
                    warn(
                        f"machine is loaded: other processes keep {busy:.2f} of {gate.cores} cores busy "
                        f"(above {cfg.max_load} per core); timings are marked as taken under load"
                    )
                if cfg.inference:
                    entry["inference"] = measure_inference(runners, cfg, notify)
            finally:
                for r in runners:
                    r.close()
            if cfg.training:
                entry["training"] = measure_training(model, cfg, work, model_file, notify)
            entry["ratios"] = ratios(entry)
            results["models"][model] = entry
    results["loaded"] = any(m["gate"]["loaded"] for m in results["models"].values())
    results["forced"] = cfg.force
    return results
