"""What resx's commands print, and how: one line per error or warning on stderr, tables that fold rather than
cut, and the progress displays of training and of the bench (rich in a terminal; plain lines when stderr
is a file or a CI log, so that a long run says where it is there too)."""

from __future__ import annotations

import os
import sys
import time

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# Piped to a file or a CI log, rich would cut tables at 80 columns: there, a table takes the width it needs.
console = Console(width=None if sys.stdout.isatty() else 1000)
err_console = Console(stderr=True)


def rank_prefix() -> str:
    """'rank R: ' in a data-parallel rank other than 0 (torchrun's RANK), else nothing."""
    rank = os.environ.get("RANK", "0") if "WORLD_SIZE" in os.environ else "0"
    return "" if rank == "0" else f"rank {rank}: "


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, markup=True)


def warn(message: str) -> None:
    err_console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    """A table whose cells fold rather than being cut, in a terminal of any width."""
    t = Table(title=title)
    for i, column in enumerate(header):
        t.add_column(column, justify="left" if i < 2 else "right", overflow="fold")
    for row in rows:
        t.add_row(*row)
    return t


def fmt_time(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s"


class TrainDisplay:
    """One rich progress display for every runtime: epoch, step, loss, img/s, ETA."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:,.0f} img/s"),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        )
        self.task = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):  # the display starts with the first progress: a run refused at once shows none
        return self.progress.__exit__(*exc) if self.task is not None else None

    def __call__(self, p) -> None:
        if p.steps == 0:
            return
        total = p.steps * p.epochs
        done = min(total, p.epoch * p.steps + (p.step if p.phase in ("train", "stopped") and p.step < p.steps else 0))
        description = f"epoch {min(p.epoch + 1, p.epochs)}/{p.epochs} {p.phase}"
        if self.task is None:
            self.progress.__enter__()
            self.task = self.progress.add_task(description, total=total, loss=0.0, rate=0.0)
        fields = {"loss": p.loss, "rate": p.images_per_s} if p.images_per_s > 0 else {}
        self.progress.update(self.task, completed=done, description=description, **fields)


class BenchDisplay:
    """Where a bench run is: the step (a round, a path, a scenario), the time since it began and what is
    left of the plan's estimate. In a terminal a rich progress line; elsewhere one plain line per step,
    with the time, so that a log shows the run moving."""

    def __init__(self, expected_s: float, live: bool | None = None) -> None:
        self.expected, self.began = expected_s, time.monotonic()
        self.live = err_console.is_terminal if live is None else live
        self.progress = None
        if self.live:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                TextColumn("of about {task.fields[expected]}"),
                console=err_console,
                transient=True,
            )

    def __enter__(self) -> BenchDisplay:
        if self.progress is not None:
            self.progress.__enter__()
            self.task = self.progress.add_task(
                "starting", total=max(self.expected, 1.0), expected=fmt_time(self.expected)
            )
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def __call__(self, text: str) -> None:
        elapsed = time.monotonic() - self.began
        if self.progress is not None:
            self.progress.update(self.task, description=text, completed=min(elapsed, self.expected))
        else:
            left = self.expected - elapsed
            where = f"about {fmt_time(left)} left" if left > 0 else f"{fmt_time(-left)} past the estimate"
            err_console.print(f"[{fmt_time(elapsed)} in, {where}] {escape(text)}", highlight=False, soft_wrap=True)
