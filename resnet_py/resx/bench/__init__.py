"""`resx bench`: the fair comparison of the runtimes on one exported model.

config     BenchConfig, presets, configure(): what to measure
registry   the runtimes, named language-engine
results    the typed results: Scenario, Measurement, Ratio (results.json, resx-bench/2)
runners    one Runner per language (py, cpp, exe), each in a process of its own
gate       the fairness gate: every row computed inside each runtime
measure    adaptive rounds: a fresh process per path and round, until the intervals are narrow
training   the training step, through `resx train` in a fresh process per round
monitor    the process tree's peak memory, other processes' load
compare    run(): the whole benchmark, and the ratios
report     results.json, results.csv, report.md, plots
"""

from resx.bench import report
from resx.bench.compare import ratios, run
from resx.bench.config import PRESETS, BenchConfig, WarmupRule, configure
from resx.bench.registry import ALIASES, BASELINE, RUNTIMES
from resx.bench.results import Measurement, Ratio, Results, Scenario
from resx.bench.runners import make_input, make_runner
from resx.errors import BenchError

__all__ = [
    "ALIASES",
    "BASELINE",
    "PRESETS",
    "RUNTIMES",
    "BenchConfig",
    "BenchError",
    "Measurement",
    "Ratio",
    "Results",
    "Scenario",
    "WarmupRule",
    "configure",
    "make_input",
    "make_runner",
    "ratios",
    "report",
    "run",
]
