"""Counting under callgrind from Python: instrumentation (resx._valgrind) and collection (torch's own client
request, what Timer.collect_callgrind uses) switched on around what is counted alone. resnet_cpp/callgrind.h
is the same for C++. The bench's worker counts calls with it, the trainer steps (COUNT_STEPS)."""

from __future__ import annotations

import os

import torch

# Set by the bench for a `resx train` it runs under callgrind: "FIRST,N" counts steps FIRST+1..FIRST+N of the
# run (the steps before warm it up). resx::kCountSteps reads the same variable.
COUNT_STEPS = "RESX_COUNT_STEPS"


def running() -> bool:
    """Whether this process runs under valgrind."""
    from resx import _valgrind

    return _valgrind.running()


def count_on() -> None:
    from resx import _valgrind

    _valgrind.start_instrumentation()
    if _valgrind.running():
        torch._C._valgrind_toggle()


def count_off() -> None:
    from resx import _valgrind

    if _valgrind.running():
        torch._C._valgrind_toggle()
    _valgrind.stop_instrumentation()


def counted_steps() -> tuple[int, int] | None:
    """(the steps taken before counting, the steps counted) that $RESX_COUNT_STEPS asks for, or None."""
    text = os.environ.get(COUNT_STEPS, "")
    if not text:
        return None
    try:
        first, n = (int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"${COUNT_STEPS} '{text}': give FIRST,N (steps before counting, steps counted)") from None
    if first < 0 or n < 1:
        raise ValueError(f"${COUNT_STEPS} '{text}': FIRST must be at least 0 and N at least 1")
    return first, n
