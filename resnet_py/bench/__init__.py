"""`resx bench`: the fair comparison of the runtimes on one exported model.

config    BenchConfig, presets, configure(): what to measure
runners   one Runner per language (py, cpp, exe) and the registry of runtimes
gate      the fairness gate: every row computed inside each runtime
measure   latency, throughput, concurrency (interleaved rounds, fresh state per latency round)
training  the training step, through `resx train` and the run directory's records
compare   run(): the whole benchmark, and the ratios with their hierarchical-bootstrap CIs
report    results.json, results.csv, report.md, plots
"""

from resx.bench import report
from resx.bench.compare import ratios, run
from resx.bench.config import PRESETS, BenchConfig, BenchError, WarmupRule, configure
from resx.bench.runners import ALIASES, BASELINE, RUNTIMES, make_input, make_runner

__all__ = [
    "ALIASES", "BASELINE", "PRESETS", "RUNTIMES", "BenchConfig", "BenchError", "WarmupRule", "configure",
    "make_input", "make_runner", "ratios", "report", "run",
]  # fmt: skip
