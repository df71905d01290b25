"""Training and evaluation in both runtimes.

run        start() and resume(): a run's life, once for every caller; train() runs a prepared job
prepare    every input checked, the model exported, the config files of both runtimes written
trainer    the Python training loop (resx::Trainer mirrors it)
cpp        the C++ loop, through the extension or as resx-cpp train
progress   Progress and Stop, alike in every runtime
evaluate   test loss and top-1 of a checkpoint
"""

from resx.train.evaluate import evaluate_checkpoint
from resx.train.prepare import DEFAULT_MODULE, MODULES, RUNTIMES, Prepared, default_module, prepare
from resx.train.progress import Progress, Stop, parse_progress
from resx.train.run import Outcome, resume, start, train
from resx.train.trainer import EvalResult, Trainer, evaluate

__all__ = [
    "DEFAULT_MODULE",
    "MODULES",
    "RUNTIMES",
    "EvalResult",
    "Outcome",
    "Prepared",
    "Progress",
    "Stop",
    "Trainer",
    "default_module",
    "evaluate",
    "evaluate_checkpoint",
    "parse_progress",
    "prepare",
    "resume",
    "start",
    "train",
]
