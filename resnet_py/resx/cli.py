"""The `resx` command line (typer + rich). Each command parses, calls one function and prints; the options
of export, train and bench are derived from their config dataclasses (resx.options), each written once.

Every command lets resx's own errors (resx.errors.ResxError) propagate: the group below prints them as one
line and exits 1. Any other exception is a bug: it keeps its traceback, with a note to report it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

import resx
from resx import options as O
from resx.bench.config import MODEL_HELP, PANELS, PRESETS, BenchConfig
from resx.console import TrainDisplay, console, err_console, error, rank_prefix, say, table, warn
from resx.distributed import Launch
from resx.errors import PeerError, ResxError, first_line
from resx.export.aoti import CompileSettings
from resx.export.executorch import ProgramSettings
from resx.recipe import TrainConfig
from resx.sources import SourceOptions

EXIT_BUG = 70  # EX_SOFTWARE, as resx-cpp


class ResxGroup(TyperGroup):
    """Turns resx's errors into one line and exit 1, for every command and subcommand."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ResxError as e:
            if isinstance(e, PeerError):
                raise typer.Exit(1) from None
            error(rank_prefix() + first_line(e, None))
            raise typer.Exit(1) from None
        except (TyperException, typer.Exit, typer.Abort):  # usage errors: click prints them itself
            raise
        except Exception:  # noqa: BLE001  (anything else is a bug: show it whole)
            traceback.print_exc()
            error(f"this is a bug in resx {resx.__version__}; please report it with the command you ran")
            raise typer.Exit(EXIT_BUG) from None


app = typer.Typer(
    name="resx",
    help="Python vs LibTorch C++ for ResNets, measured like for like.",
    cls=ResxGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        console.print(f"resx {resx.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    pass


def check_threads(threads: int | None) -> None:
    cores = os.cpu_count() or 1
    if threads and threads > cores:
        warn(f"--threads {threads} is more than the {cores} cores here: the runtimes will be oversubscribed")


# ------------------------------------------------------------------------------------ env, export


@app.command()
def env(
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="Set intra-op threads in every runtime first.")] = None,
) -> None:
    """What Python, the C++ extension and the standalone C++ executable report, side by side."""
    from resx import env as reports_of

    check_threads(threads)
    reports = reports_of.collect(threads)
    diff = reports_of.differing(reports)
    if as_json:
        print(json.dumps({"runtimes": reports, "differing": diff}, indent=2))
        return
    mark = lambda row: "DIFFERS" if row.differs else ("" if row.key in reports_of.INFORMATIONAL else "=")
    rows = [[r.key, *(_short(r.key, v) for v in r.values.values()), mark(r)] for r in reports_of.compare(reports)]
    console.print(table("resx env: what each runtime sees", ["", *reports, ""], rows))
    if diff:
        console.print(f"[bold red]{len(diff)} line(s) differ between runtimes:[/] {', '.join(diff)}")
    else:
        console.print("[green]All runtimes agree.[/]")


def _short(key: str, value: str) -> str:
    if key == "build_config":  # many lines: show a digest, the full text is in --json
        return f"sha256:{hashlib.sha256(value.encode()).hexdigest()[:12]} ({len(value.splitlines())} lines)"
    return value


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    source: SourceOptions = O.concern(SourceOptions)
    compile: CompileSettings = O.concern(CompileSettings)
    program: ProgramSettings = O.concern(ProgramSettings)


def export_cmd(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="FILE.pt (TorchScript), .pt2 (AOTInductor), .pth (weights) or .pte (ExecuTorch)."
        ),
    ],
    kind: Annotated[
        str | None, typer.Option("--format", help="torchscript, aoti, weights, executorch. [the suffix's]")
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="Weights to put in (export, checkpoint or state dict).")] = None,
    **given,
) -> None:
    """Export a model with its manifest: a TorchScript file (scripted, or traced where the model does not
    script), a weights file (the state dict, for the eager module in either language), an AOTInductor
    package (compiled ahead of time) or an ExecuTorch program (PyTorch's runtime without libtorch)."""
    from resx.export import format_of, write

    opts = O.build(ExportOptions, O.given(ExportOptions, given))
    kind = format_of(output, kind)
    source = opts.source.source(model)
    if not source.buildable:
        raise ResxError(f"{model}: a model file is exported already; run it with `resx bench --model {model}`")
    weights = weights or (Path(source.weights) if source.weights else None)  # a resx file: its own weights
    if kind == "aoti":
        check_threads(opts.compile.threads)
    say(write(kind, source, output, opts.source.seed, weights, opts.compile, opts.program.backend))


EXPORT_PANELS = {"source": "Model", "compile": "AOTInductor (.pt2)", "program": "ExecuTorch (.pte)"}
app.command("export")(O.command(ExportOptions, EXPORT_PANELS, export_cmd))


@app.command()
def inspect(
    file: Annotated[
        Path, typer.Argument(help="A model file: one resx export wrote (.pt, .pth, .pt2), or any .pt or .pt2.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print manifest and checks as JSON.")] = False,
    input_shape: Annotated[
        str | None, typer.Option(help="C,H,W: for a file resx did not write, its input (FLOPs, classes).")
    ] = None,
) -> None:
    """Print a file's manifest and re-verify it, in Python and in C++: a TorchScript file against its graph
    and parameters, a weights file against the module rebuilt from its source, an AOTInductor package by
    running it. A file resx did not write is described, Python against C++."""
    from resx.export import inspect as inspect_file

    result = inspect_file(file, shape=O.shape3(input_shape, "--input-shape") if input_shape else None)
    if as_json:
        keys = ("manifest", "checks", "failures", "foreign")
        print(json.dumps({k: getattr(result, k) for k in keys}, indent=2))
    else:
        if result.manifest is not None:
            title = "manifest derived from the file" if result.foreign else "resx manifest"
            rows = [[k, v if isinstance(v, str) else json.dumps(v)] for k, v in result.manifest.items()]
            console.print(table(f"{file}: {title}", ["", ""], rows))
        sources = list(dict.fromkeys(src for values in result.checks.values() for src in values))
        rows = [
            [what, *(values.get(src, "—")[:16] for src in sources), "MISMATCH" if what in result.failures else "agree"]
            for what, values in result.checks.items()
        ]
        how = "by running it" if file.suffix in (".pt2", ".pte") else "from the graph and the parameters"
        console.print(table(f"re-verified {how}", ["", *sources, ""], rows))
        if result.foreign:
            say(f"{file}: no resx manifest (resx did not write it): the values above are derived from the file")
    if result.failures:
        verb = "does" if len(result.failures) == 1 else "do"
        raise ResxError(f"{file}: {', '.join(result.failures)} {verb} not match the manifest; re-export the file")


# ----------------------------------------------------------------------------------------- train


def _print_epochs(outcome) -> None:
    columns = ["wall_time", "epoch_time", "train_loss", "train_top_1", "test_loss", "test_top_1", "eval_time"]
    header = ["Epoch", "Wall Time", "Epoch time", "Train_loss", "Train_top_1", "Test_loss", "Test_top_1", "Eval time"]
    rows = [
        [str(r.epoch), *("" if getattr(r, f) is None else f"{getattr(r, f):.4g}" for f in columns)]
        for r in outcome.epochs
    ]
    console.print(table(f"{outcome.runtime}: {outcome.config.model} on CIFAR-10 ({outcome.run_dir})", header, rows))


def train(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Run directory to create.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue this run from its last checkpoint.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run already in -o.")] = False,
    runtime: Annotated[str | None, typer.Option(help="py, cpp (C++ loop via the extension) or cpp-exe. [py]")] = None,
    data: Annotated[Path | None, typer.Option(help="CIFAR-10 directory. [$RESX_DATA or the cache]")] = None,
    module: Annotated[
        str | None,
        typer.Option(
            help="eager: the module written in the runtime's language (Python's nn.Module, C++'s torch::nn mirror, "
            "from a weights export, no TorchScript); scripted: the TorchScript file. [eager]"
        ),
    ] = None,
    py_module: Annotated[
        str | None, typer.Option(hidden=True, help="The name --module had before C++ had one.")
    ] = None,
    **given,
) -> None:
    """Train a ResNet on CIFAR-10 in the Python or the C++ runtime, with the same recipe, data and seeds;
    in one process or data-parallel in several (--nproc-per-node, --nnodes: DDP in both runtimes)."""
    from resx import train as T

    settings, launching = O.given(TrainConfig, given), O.given(Launch, given)
    launch = Launch(**launching) if launching else None
    display, argv = None if rank_prefix() else TrainDisplay(), sys.argv[1:]
    if resume is not None:
        if output is not None:
            raise ResxError("give either -o RUN (a new run) or --resume RUN (an existing one), not both")
        others = {"runtime": runtime, "data": data, "module": module or py_module, "overwrite": overwrite or None}
        fixed = [k for k in settings if k != "epochs"] + [k for k, v in others.items() if v is not None]
        how = dict(epochs=settings.get("epochs"), fixed=fixed)
        go = lambda: T.resume(resume, **how, launch=launch, argv=argv, progress=display)
    else:
        if output is None:
            raise ResxError("give a run directory with -o RUN (or continue one with --resume RUN)")
        config = TrainConfig(**settings)
        config.validate()
        check_threads(config.threads)
        how = dict(runtime=runtime or "py", data=data, module=module or py_module, overwrite=overwrite)
        go = lambda: T.start(config, output, **how, launch=launch, argv=argv, progress=display)
    with display or contextlib.nullcontext():
        outcome = go()
    if not outcome.writes:
        raise typer.Exit(outcome.exit_code)
    if outcome.note:
        say(outcome.note)
    elif outcome.exit_code:
        if outcome.message:
            error(outcome.message)
        raise typer.Exit(outcome.exit_code)
    else:
        _print_epochs(outcome)


app.command()(O.command((TrainConfig, Launch), {}, train))


@app.command("eval")
def eval_cmd(
    weights: Annotated[Path, typer.Argument(help="A checkpoint written by resx train (final.pt or checkpoint.pt).")],
    runtime: Annotated[str, typer.Option(help="py or cpp.")] = "py",
    data: Annotated[Path | None, typer.Option(help="CIFAR-10 directory (default: $RESX_DATA or the cache).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 128,
    test_subset: Annotated[int, typer.Option(help="First M test images (0: all).")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Test loss and accuracy of trained weights, in either runtime (whichever trained them)."""
    from resx import data as D
    from resx import train as T

    result = T.evaluate_checkpoint(weights, data or D.default_data_dir(), runtime, batch_size, test_subset, device)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        say(
            f"{runtime}: {result['model']} {weights}: test loss {result['test_loss']:.6f}, "
            f"top-1 {result['test_top_1']:.2f}% on {result['images']} images"
        )


# ----------------------------------------------------------------------------------------- bench


def bench(
    output: Annotated[Path, typer.Option("-o", "--output", help="Report directory.")] = Path("resx-bench"),
    quick: Annotated[bool, typer.Option("--quick", help="The short preset (what make demo runs).")] = False,
    preset: Annotated[
        str,
        typer.Option(
            help=f"{', '.join(PRESETS)}: quick (make demo's), gpu (for a GPU), seed (ResNet18/34, 50 epochs; a GPU "
            "job), language (where the language matters: the map and the instruction counts at 1 thread)."
        ),
    ] = "custom",
    config: Annotated[
        Path | None,
        typer.Option(
            help="A TOML file of options by section (a run's config.toml measures that run again), over the preset."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the plan and its estimate, write them to -o (plan.txt, config.toml), stop."
        ),
    ] = False,
    **given,
) -> None:
    """The fair comparison: latency, throughput, concurrency, serving and training per runtime, with a report."""
    import torch

    from resx.bench import config as C
    from resx.bench import plan as P
    from resx.bench import report
    from resx.bench.run import run
    from resx.console import BenchDisplay

    cfg = C.configure("quick" if quick else preset, config, O.given(BenchConfig, given))
    plan = P.make(cfg, os.cpu_count() or 1, torch.get_num_threads(), torch.cuda.is_available())
    estimate = P.estimate(plan, P.gflop(plan))
    lines = report.plan_lines(plan, estimate)
    for line in lines:
        err_console.print(line, highlight=False, soft_wrap=True, markup=False)
    if dry_run:
        report.write_plan(cfg, lines, output)
        return
    with BenchDisplay(estimate.expected_s) as display:
        results = run(plan, notify=display, warn=warn)
    files = report.write(results, output)
    for item in report.summary(results, plan, f"report: {output / 'report.md'} ({len(files)} files)"):
        console.print(table(*item)) if isinstance(item, tuple) else say(item)


app.command()(O.command(BenchConfig, PANELS, bench))


@app.command("report")
def report_cmd(
    results: Annotated[Path, typer.Argument(help="A run's results.json (resx bench -o DIR writes DIR/results.json).")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Where to write the report. [beside results.json]")
    ] = None,
) -> None:
    """Render a run's report again from its results.json alone: report.md (identical to the run's own),
    results.csv and the plots."""
    from resx.bench import report
    from resx.bench.results import read_json

    out = output or results.parent
    files = report.render(read_json(results), out)
    say(f"wrote {out / 'report.md'} ({len(files)} files)")


@app.command("compare")
def compare_cmd(
    a: Annotated[Path, typer.Argument(help="The first run's results.json (before).")],
    b: Annotated[Path, typer.Argument(help="The second run's results.json (after, or another machine).")],
    changed: Annotated[
        bool, typer.Option("--changed", help="Only the ratios that changed beyond both intervals.")
    ] = False,
) -> None:
    """Two runs side by side: each ratio of each with its 95% interval, how it moved, and which changed
    beyond both intervals ("did my change make it faster?", or one machine against another)."""
    from resx.bench import report
    from resx.bench.results import read_json

    header, rows = report.compare(read_json(a), read_json(b), (a.parent.name or "A", b.parent.name or "B"))
    shown = [r for r in rows if r[-1] == "**yes**"] if changed else rows
    console.print(table(f"resx compare: {a} against {b}", header, [[c.replace("**", "") for c in r] for r in shown]))
    moved = sum(r[-1] == "**yes**" for r in rows)
    say(f"{moved} of {len(rows)} ratios changed beyond both intervals")


# ------------------------------------------------------------------------------------------ data

data_app = typer.Typer(help="CIFAR-10: download, check, convert.", no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(data_app, name="data")


def _data_dir(value: Path | None) -> Path:
    from resx.data import default_data_dir

    return value if value is not None else default_data_dir()


@data_app.command("fetch")
def data_fetch(
    directory: Annotated[
        Path | None, typer.Argument(help="Where to put it (default: $RESX_DATA or ~/.cache/resx/cifar10).")
    ] = None,
) -> None:
    """Download the official CIFAR-10 binary release (md5-checked, resumable, atomic)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from resx.data import URL, fetch

    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(f"CIFAR-10 from {URL}", total=None)
        path = fetch(
            _data_dir(directory), progress=lambda done, total: progress.update(task, completed=done, total=total)
        )
    console.print(f"CIFAR-10 ready in {path}")


@data_app.command("check")
def data_check(
    directory: Annotated[Path | None, typer.Argument(help="A CIFAR-10 directory (default: the cache).")] = None,
) -> None:
    """Validate a CIFAR-10 directory: file sizes, labels, images per class."""
    from resx.data import check, class_names

    directory = _data_dir(directory)
    found = check(directory)
    rows = [[name, *(str(c[i]) for c in found.counts.values())] for i, name in enumerate(class_names(directory))]
    console.print(table(f"{found.layout} layout: {found.directory}", ["class", *found.counts], rows))
    for problem in found.problems:
        err_console.print(f"[bold red]problem:[/] {problem}", highlight=False, soft_wrap=True)
    if not found.ok:
        raise ResxError(f"{directory}: {len(found.problems)} problem(s), see above")
    console.print("[green]CIFAR-10 is complete and valid.[/]")


@data_app.command("convert")
def data_convert(
    source: Annotated[Path, typer.Argument(help="A directory with the pickled layout (cifar-10-batches-py).")],
    dest: Annotated[Path, typer.Argument(help="Where to write cifar-10-batches-bin/.")],
) -> None:
    """Write the binary layout from the pickled one, for the C++ runtime's reader."""
    from resx.data import convert_pickled_to_binary

    console.print(f"wrote {convert_pickled_to_binary(source, dest)}")


def main() -> None:
    app()
