"""The `resx` command line (typer + rich).

Every command lets resx's own errors (resx.errors.ResxError) propagate: the group below prints them as
one line and exits 1. Any other exception is a bug: it keeps its traceback, with a note to report it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup
from typer.exceptions import TyperException

import resx
from resx.errors import PeerError, ResxError, first_line

# Piped to a file or a CI log, rich would cut tables at 80 columns: there, a table takes the width it needs.
console = Console(width=None if sys.stdout.isatty() else 1000)
err_console = Console(stderr=True)
EXIT_BUG = 70  # EX_SOFTWARE, as resx-cpp


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, markup=True)


def _rank_prefix() -> str:
    """'rank R: ' in a data-parallel rank other than 0 (torchrun's RANK), else nothing."""
    rank = os.environ.get("RANK", "0") if "WORLD_SIZE" in os.environ else "0"
    return "" if rank == "0" else f"rank {rank}: "


def _table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    """A table whose cells fold rather than being cut, in a terminal of any width."""
    table = Table(title=title)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i < 2 else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def warn(message: str) -> None:
    err_console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


class ResxGroup(TyperGroup):
    """Turns resx's errors into one line and exit 1, for every command and subcommand."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ResxError as e:
            if isinstance(e, PeerError):
                raise typer.Exit(1) from None
            error(_rank_prefix() + first_line(e, None))
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
    rich_markup_mode=None,
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


def floats(text: str | None, option: str) -> list[float] | None:
    """'50,100.5' -> [50.0, 100.5]; anything else is one line naming the option."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(0 < v < float("inf") for v in values):
        raise ResxError(f"{option} '{text}': give positive numbers separated by commas, e.g. 50,100,200")
    return values


def _serve_scenarios(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [] if text.strip() == "none" else [s.strip() for s in text.split(",") if s.strip()]


def ints(text: str | None, option: str, count: int | None = None) -> list[int] | None:
    """'1,8,32' -> [1, 8, 32]; anything else is one line naming the option."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1 or (count is not None and len(values) != count):
        what, example = (
            (f"{count} positive whole numbers", ",".join(["2"] * count))
            if count
            else ("positive whole numbers", "1,8,32")
        )
        raise ResxError(f"{option} '{text}': give {what} separated by commas, e.g. {example}")
    return values


def check_threads(threads: int | None) -> None:
    cores = os.cpu_count() or 1
    if threads and threads > cores:
        warn(f"--threads {threads} is more than the {cores} cores here: the runtimes will be oversubscribed")


# ------------------------------------------------------------------------------------ env, export


def _short(key: str, value: str) -> str:
    if key == "build_config":  # many lines: show a digest, the full text is in --json
        return f"sha256:{hashlib.sha256(value.encode()).hexdigest()[:12]} ({len(value.splitlines())} lines)"
    return value


@app.command()
def env(
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="Set intra-op threads in every runtime first.")] = None,
) -> None:
    """What Python, the C++ extension and the standalone C++ executable report, side by side."""
    from resx import env as envinfo

    check_threads(threads)
    reports = envinfo.collect(threads)
    diff = envinfo.differing(reports)
    if as_json:
        print(json.dumps({"runtimes": reports, "differing": diff}, indent=2))
        return
    table = Table(title="resx env: what each runtime sees", show_lines=False)
    table.add_column("")
    for name in reports:
        table.add_column(name)
    table.add_column("")
    for row in envinfo.compare(reports):
        mark = "[bold red]DIFFERS[/]" if row.differs else ("" if row.key in envinfo.INFORMATIONAL else "[green]=[/]")
        table.add_row(row.key, *(_short(row.key, v) for v in row.values.values()), mark)
    console.print(table)
    if diff:
        console.print(f"[bold red]{len(diff)} line(s) differ between runtimes:[/] {', '.join(diff)}")
    else:
        console.print("[green]All runtimes agree.[/]")


# Typed here so that the CLI starts without torch; tests/test_hostile.py checks them against the registry.
RUNTIME_HELP = (
    "py-eager, py-script, py-frozen, py-compile, py-aoti, cpp-eager, cpp-script (cpp), cpp-frozen, cpp-aoti, "
    "exe-eager, exe-script (cpp-exe), exe-frozen, exe-aoti"
)
MODEL_HELP = (
    "resnet18, resnet34, resnet50, resnet101, resnet152; torchvision:NAME (a classification builder); "
    "package.module:callable or file.py:callable (your factory); a .pt or .pt2 file resx did not write."
)


def _source(
    model: str,
    model_kwargs: str | None,
    num_classes: int | None,
    input_shape: str | None,
    stem: str | None,
    layers: str | None,
    width: int | None,
):
    """The model the options name (resx.sources), each option's default the config objects' own."""
    from resx.models import DEFAULT_WIDTH
    from resx.sources import Source, parse_kwargs
    from resx.sources import input_shape as shape_of

    return Source.parse(
        model,
        parse_kwargs(model_kwargs),
        num_classes,
        shape_of(input_shape),
        stem=stem or "cifar",
        layers=ints(layers, "--layers", 4),
        width=width or DEFAULT_WIDTH,
    )


def _describe(source, manifest: dict) -> str:
    flops = manifest.get("flops_per_image")
    shape = "x".join(map(str, source.shape))
    how = (manifest.get("export") or {}).get("note")
    return (
        f"{source.spec}, input {shape}, {manifest['parameters']:,} parameters"
        + (f", {flops['forward'] / 1e9:.3f} GFLOP/img forward" if flops else "")
        + f", fingerprint {manifest['fingerprint'][:12]}"
        + (f"; {how}" if how else "")
    )


@app.command("export")
def export_cmd(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="File to write: FILE.pt (TorchScript), FILE.pt2 (AOTInductor) or FILE.pth (weights)."
        ),
    ],
    kind: Annotated[
        str | None, typer.Option("--format", help="torchscript, aoti or weights. [from the file's suffix]")
    ] = None,
    model_kwargs: Annotated[
        str | None, typer.Option(help="torchvision or factory models: keyword arguments as a JSON object.")
    ] = None,
    num_classes: Annotated[
        int | None, typer.Option(help="Classes of the head. [10 for the ResNets, the builder's own otherwise]")
    ] = None,
    input_shape: Annotated[
        str | None,
        typer.Option(help="C,H,W of one input. [3,32,32 for the ResNets and factories, 3,224,224 for torchvision]"),
    ] = None,
    stem: Annotated[
        str | None, typer.Option(help="ResNets: cifar (3x3 conv) or imagenet (7x7/2 conv + max-pool). [cifar]")
    ] = None,
    layers: Annotated[
        str | None, typer.Option(help="ResNets: blocks per stage, e.g. 3,3,3,3. [the depth's own]")
    ] = None,
    width: Annotated[
        int | None, typer.Option(help="ResNets: channels of the first stage. [64: the published ResNets]")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights.")] = 0,
    weights: Annotated[Path | None, typer.Option(help="Weights to put in (export, checkpoint or state dict).")] = None,
    device: Annotated[str, typer.Option(help="aoti: the device compiled for, cpu or cuda.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="aoti: fp32, or bf16 (autocast compiled in).")] = "fp32",
    threads: Annotated[int, typer.Option(help="aoti: intra-op threads compiled in (0: dynamic, the runtime's).")] = 0,
    freezing: Annotated[
        bool, typer.Option("--freezing/--no-freezing", help="aoti: Inductor folds BatchNorm and prepacks weights.")
    ] = True,
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="aoti: compiled for channels-last inputs.")
    ] = False,
) -> None:
    """Export a model with its manifest: a TorchScript file (what LibTorch loads; scripted, or traced where
    the model does not script), a weights file (the state dict, for the eager module in either language)
    or an AOTInductor package (compiled ahead of time, loaded by Python and C++ alike)."""
    from resx.export import CompileSettings, export, export_aoti, export_weights, format_of

    kind = format_of(output, kind)
    source = _source(model, model_kwargs, num_classes, input_shape, stem, layers, width)
    if not source.buildable:
        raise ResxError(f"{model}: a model file is exported already; run it with `resx bench --model {model}`")
    if kind == "aoti":
        check_threads(threads)
        settings = CompileSettings(device, dtype, threads, freezing, channels_last)
        manifest = export_aoti(source, output, seed, weights, settings)
        how = f"AOTInductor for {device} {dtype}, threads {threads or 'dynamic'}, compiled in {manifest['compile_seconds']:.1f} s"
    elif kind == "weights":
        manifest = export_weights(source, output, seed=seed, weights=weights)
        how = "weights: state dict and manifest, for the eager module in either language"
    else:
        manifest = export(source, output, seed=seed, weights=weights)
        how = "TorchScript, " + ("traced" if manifest["export"]["graph"] == "trace" else "scripted")
    console.print(f"wrote {output} ({how}): {_describe(source, manifest)}", highlight=False, soft_wrap=True)


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
    from resx.sources import input_shape as shape_of

    result = inspect_file(file, shape=shape_of(input_shape))
    if as_json:
        print(
            json.dumps(
                {
                    "manifest": result.manifest,
                    "checks": result.checks,
                    "failures": result.failures,
                    "foreign": result.foreign,
                },
                indent=2,
            )
        )
    else:
        if result.manifest is not None:
            title = "manifest derived from the file" if result.foreign else "resx manifest"
            table = Table(title=f"{file}: {title}", show_header=False)
            for key, value in result.manifest.items():
                table.add_row(key, value if isinstance(value, str) else json.dumps(value))
            console.print(table)
        how = "by running it" if file.suffix == ".pt2" else "from the graph and the parameters"
        checks = Table(title=f"re-verified {how}")
        checks.add_column("")
        sources = list(dict.fromkeys(src for values in result.checks.values() for src in values))
        for source in sources:
            checks.add_column(source)
        checks.add_column("")
        for what, values in result.checks.items():
            mark = "[green]agree[/]" if what not in result.failures else "[bold red]MISMATCH[/]"
            checks.add_row(what, *(values.get(src, "—")[:16] for src in sources), mark)
        console.print(checks)
    if result.foreign and not as_json:
        console.print(
            f"{file}: no resx manifest (a file resx did not write): the values above are derived from the "
            f"file, Python against C++; nothing recorded to check them against",
            highlight=False,
            soft_wrap=True,
        )
    if result.failures:
        verb = "does" if len(result.failures) == 1 else "do"
        raise ResxError(f"{file}: {', '.join(result.failures)} {verb} not match the manifest; re-export the file")


# ----------------------------------------------------------------------------------------- train


class _TrainDisplay:
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


def _default(field: str, shown=None) -> str:
    """A TrainConfig default for a help string, from the config object itself: `[0.1]`."""
    from dataclasses import fields

    from resx.recipe import TrainConfig

    value = next(f.default for f in fields(TrainConfig) if f.name == field)
    return f"[{shown(value) if shown else value}]"


def _print_epochs(outcome) -> None:
    table = Table(title=f"{outcome.runtime}: {outcome.config.model} on CIFAR-10 ({outcome.run_dir})")
    columns = [
        ("Epoch", "epoch"),
        ("Wall Time", "wall_time"),
        ("Epoch time", "epoch_time"),
        ("Train_loss", "train_loss"),
        ("Train_top_1", "train_top_1"),
        ("Test_loss", "test_loss"),
        ("Test_top_1", "test_top_1"),
        ("Eval time", "eval_time"),
    ]
    for header, _ in columns:
        table.add_column(header, justify="right")
    for r in outcome.epochs:
        values = [getattr(r, f) for _, f in columns]
        table.add_row(str(r.epoch), *("" if v is None else f"{v:.4g}" for v in values[1:]))
    console.print(table)


@app.command()
def train(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Run directory to create.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue this run from its last checkpoint.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run already in -o.")] = False,
    runtime: Annotated[str | None, typer.Option(help="py, cpp (C++ loop via the extension) or cpp-exe. [py]")] = None,
    data: Annotated[Path | None, typer.Option(help="CIFAR-10 directory. [$RESX_DATA or the cache]")] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help=f"A resx ResNet, torchvision:NAME or a factory (see resx export --help). {_default('model')}"
        ),
    ] = None,
    model_kwargs: Annotated[
        str | None, typer.Option(help="torchvision or factory models: keyword arguments as a JSON object.")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help=f"Epochs to train; with --resume, a larger number extends. {_default('epochs')}")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Images per step (per process). {_default('batch_size')}")
    ] = None,
    lr: Annotated[float | None, typer.Option(help=f"Base learning rate. {_default('lr')}")] = None,
    schedule: Annotated[
        str | None, typer.Option(help=f"cosine, step, onecycle or constant, per step. {_default('schedule')}")
    ] = None,
    warmup_epochs: Annotated[
        float | None, typer.Option(help=f"Linear warm-up, in epochs. {_default('warmup_epochs')}")
    ] = None,
    momentum: Annotated[float | None, typer.Option(help=f"SGD momentum. {_default('momentum')}")] = None,
    weight_decay: Annotated[float | None, typer.Option(help=f"SGD weight decay. {_default('weight_decay')}")] = None,
    nesterov: Annotated[
        bool | None, typer.Option("--nesterov/--no-nesterov", help=f"Nesterov momentum. {_default('nesterov')}")
    ] = None,
    label_smoothing: Annotated[
        float | None, typer.Option(help=f"Cross-entropy label smoothing. {_default('label_smoothing')}")
    ] = None,
    subset: Annotated[
        int | None, typer.Option(help=f"Train on the first N images (0: all). {_default('subset')}")
    ] = None,
    test_subset: Annotated[
        int | None, typer.Option(help=f"Evaluate on the first M test images (0: all). {_default('test_subset')}")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help=f"Seed of weights, shuffle and augmentation. {_default('seed')}")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help=f"Intra-op threads (0: LibTorch's default). {_default('threads')}")
    ] = None,
    device: Annotated[str | None, typer.Option(help=f"cpu or cuda. {_default('device')}")] = None,
    stem: Annotated[str | None, typer.Option(help=f"cifar or imagenet. {_default('stem')}")] = None,
    layers: Annotated[str | None, typer.Option(help="Blocks per stage, e.g. 3,3,3,3. [the depth's own]")] = None,
    width: Annotated[int | None, typer.Option(help=f"Channels of the first stage. {_default('width')}")] = None,
    num_classes: Annotated[int | None, typer.Option(help=f"Classes of the head. {_default('num_classes')}")] = None,
    keep_last: Annotated[
        bool | None,
        typer.Option(
            "--keep-last/--drop-last",
            help=f"The last partial batch. {_default('drop_last', lambda d: 'drop' if d else 'keep')}",
        ),
    ] = None,
    eval_every: Annotated[
        int | None, typer.Option(help=f"Evaluate every N epochs (and after the last). {_default('eval_every')}")
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help=f"fp32, or bf16 (autocast around forward and loss). {_default('dtype')}")
    ] = None,
    channels_last: Annotated[
        bool | None,
        typer.Option(
            "--channels-last/--contiguous",
            help=f"Memory format of weights and inputs. {_default('channels_last', lambda c: 'channels-last' if c else 'contiguous')}",
        ),
    ] = None,
    compile: Annotated[
        bool | None,
        typer.Option("--compile/--no-compile", help=f"py runtime: torch.compile the forward. {_default('compile')}"),
    ] = None,
    deterministic: Annotated[
        bool | None,
        typer.Option(
            "--deterministic/--nondeterministic",
            help=f"Deterministic algorithms (CUDA: cuDNN, cuBLAS). {_default('deterministic')}",
        ),
    ] = None,
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
    nproc_per_node: Annotated[
        int | None, typer.Option(help="Data-parallel processes on this node (DDP, launched by torchrun). [1]")
    ] = None,
    nnodes: Annotated[
        int | None, typer.Option(help="Nodes: run the same command on each, with its --node-rank. [1]")
    ] = None,
    node_rank: Annotated[int | None, typer.Option(help="This node's rank, 0 to --nnodes - 1. [0]")] = None,
    rdzv_endpoint: Annotated[
        str | None, typer.Option(help="HOST:PORT of node 0, on every node (--nnodes > 1).")
    ] = None,
) -> None:
    """Train a ResNet on CIFAR-10 in the Python or the C++ runtime, with the same recipe, data and seeds;
    in one process or data-parallel in several (--nproc-per-node, --nnodes: DDP in both runtimes)."""
    from resx import distributed
    from resx import train as T
    from resx.recipe import TrainConfig
    from resx.sources import parse_kwargs

    settings = {
        k: v
        for k, v in dict(
            model=model,
            model_kwargs=None if model_kwargs is None else parse_kwargs(model_kwargs),
            num_classes=num_classes,
            stem=stem,
            layers=ints(layers, "--layers", 4),
            width=width,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
            schedule=schedule,
            warmup_epochs=warmup_epochs,
            label_smoothing=label_smoothing,
            seed=seed,
            threads=threads,
            device=device,
            subset=subset,
            test_subset=test_subset,
            drop_last=None if keep_last is None else not keep_last,
            eval_every=eval_every,
            dtype=dtype,
            channels_last=channels_last,
            compile=compile,
            deterministic=deterministic,
        ).items()
        if v is not None
    }
    launch_options = {
        "nproc_per_node": nproc_per_node,
        "nnodes": nnodes,
        "node_rank": node_rank,
        "rdzv_endpoint": rdzv_endpoint,
    }
    given = {k: v for k, v in launch_options.items() if v is not None}
    launch = distributed.Launch(**given) if given else None
    display = None if _rank_prefix() else _TrainDisplay()  # rank 0 alone shows progress
    if resume is not None:
        if output is not None:
            raise ResxError("give either -o RUN (a new run) or --resume RUN (an existing one), not both")
        fixed = [k for k in settings if k != "epochs"] + [
            k
            for k, v in {
                "runtime": runtime,
                "data": data,
                "module": module or py_module,
                "overwrite": overwrite or None,
            }.items()
            if v is not None
        ]
        with display or contextlib.nullcontext():
            outcome = T.resume(resume, epochs=epochs, fixed=fixed, launch=launch, argv=sys.argv[1:], progress=display)
    else:
        if output is None:
            raise ResxError("give a run directory with -o RUN (or continue one with --resume RUN)")
        config = TrainConfig(**settings)
        config.validate()
        check_threads(config.threads)
        with display or contextlib.nullcontext():
            outcome = T.start(
                config,
                output,
                runtime=runtime or "py",
                data=data,
                module=module or py_module,
                overwrite=overwrite,
                launch=launch,
                argv=sys.argv[1:],
                progress=display,
            )
    if not outcome.writes:
        raise typer.Exit(outcome.exit_code)
    if outcome.note:
        console.print(outcome.note, highlight=False)
    elif outcome.exit_code:
        if outcome.message:
            error(outcome.message)
        raise typer.Exit(outcome.exit_code)
    else:
        _print_epochs(outcome)


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
        console.print(
            f"{runtime}: {result['model']} {weights}: test loss {result['test_loss']:.6f}, "
            f"top-1 {result['test_top_1']:.2f}% on {result['images']} images",
            highlight=False,
        )


# ----------------------------------------------------------------------------------------- bench


def _bench_default(field: str) -> str:
    """A BenchConfig default for a help string, from the config object itself."""
    from dataclasses import MISSING, fields

    from resx.bench.config import BenchConfig

    f = next(f for f in fields(BenchConfig) if f.name == field)
    value = f.default_factory() if f.default is MISSING else f.default
    return "[" + (",".join(map(str, value)) if isinstance(value, list) else str(value)) + "]"


@app.command()
def bench(
    output: Annotated[Path, typer.Option("-o", "--output", help="Report directory.")] = Path("resx-bench"),
    runtime: Annotated[
        str,
        typer.Option(
            help=f"all, or a comma list of language-engine runtimes: {RUNTIME_HELP}; NAME@bf16 runs that one at bf16 alone."
        ),
    ] = "all",
    quick: Annotated[bool, typer.Option("--quick", help="The short preset (what make demo runs).")] = False,
    preset: Annotated[
        str,
        typer.Option(
            help="quick, gpu (for a GPU), seed (ResNet18/34, 50 epochs, batch 128; a GPU job), language (where the "
            "language matters: --language-map at 1 thread) or custom."
        ),
    ] = "custom",
    model: Annotated[
        str | None, typer.Option(help=f"Comma list of models, kinds mixed: {MODEL_HELP} {_bench_default('models')}")
    ] = None,
    model_kwargs: Annotated[
        str | None,
        typer.Option(help="Keyword arguments (a JSON object) for every torchvision or factory model of --model."),
    ] = None,
    input_shape: Annotated[
        str | None,
        typer.Option(
            help="C,H,W of one input. [each model's own: 3,32,32 for the ResNets and factories, 3,224,224 for torchvision]"
        ),
    ] = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of the head. [each model's own]")] = None,
    stem: Annotated[
        str | None,
        typer.Option(
            help=f"ResNets: cifar, or imagenet to see what a mismatched architecture measures. {_bench_default('stem')}"
        ),
    ] = None,
    layers: Annotated[str | None, typer.Option(help="ResNets: blocks per stage, e.g. 3,3,3,3.")] = None,
    width: Annotated[
        int | None, typer.Option(help=f"ResNets: channels of the first stage. {_bench_default('width')}")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="CIFAR-10 for training (default: synthetic images, timing only).")
    ] = None,
    device: Annotated[str | None, typer.Option(help=f"cpu or cuda. {_bench_default('device')}")] = None,
    dtype: Annotated[
        str | None, typer.Option(help=f"fp32, bf16 or fp32,bf16: every runtime at each. {_bench_default('dtypes')}")
    ] = None,
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="Channels-last weights and inputs everywhere.")
    ] = False,
    cuda_graphs: Annotated[
        bool, typer.Option("--cuda-graphs", help="CUDA: also every runtime replayed from a CUDA graph.")
    ] = False,
    aoti_freezing: Annotated[
        str | None,
        typer.Option(
            help="AOTInductor packages with Inductor's freezing: on, off, or auto (both compiled once, the faster "
            "at batch 1 kept; freezing's prepacked convolutions cost a fixed time per call). [auto]"
        ),
    ] = None,
    deterministic: Annotated[
        bool, typer.Option("--deterministic", help="Deterministic algorithms in every runtime (CUDA).")
    ] = False,
    compile_cold: Annotated[
        bool,
        typer.Option(
            "--compile-cold",
            help="Also every torch.compile runtime with Inductor's caches off (NAME+cold): what a first start takes.",
        ),
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            help="Intra-op threads in every runtime, at most the cores (0: torch's default). [0; 1 for the language preset]"
        ),
    ] = None,
    target: Annotated[
        float | None,
        typer.Option(help=f"Stop a path once each ratio's 95% interval is within +-this. {_bench_default('target')}"),
    ] = None,
    min_rounds: Annotated[
        int | None, typer.Option(help=f"Rounds before a path may stop. {_bench_default('min_rounds')}")
    ] = None,
    max_rounds: Annotated[int | None, typer.Option(help=f"Rounds at most. {_bench_default('max_rounds')}")] = None,
    rounds: Annotated[int | None, typer.Option(help="Exactly this many rounds (no adaptive stop).")] = None,
    budget: Annotated[
        float | None, typer.Option(help=f"Seconds for the inference rounds. {_bench_default('budget')}")
    ] = None,
    latency_calls: Annotated[
        int | None, typer.Option(help=f"Timed batch-1 calls per path and round. {_bench_default('latency_calls')}")
    ] = None,
    batch_sizes: Annotated[
        str | None, typer.Option(help=f"Batch sizes, e.g. 1,8,32,128. {_bench_default('batch_sizes')}")
    ] = None,
    throughput_calls: Annotated[
        int | None,
        typer.Option(help=f"Timed calls per batch size, path and round. {_bench_default('throughput_calls')}"),
    ] = None,
    thread_counts: Annotated[
        str | None, typer.Option(help=f"Concurrent callers, e.g. 1,2. {_bench_default('thread_counts')}")
    ] = None,
    thread_seconds: Annotated[
        float | None, typer.Option(help=f"Seconds per caller count, path and round. {_bench_default('thread_seconds')}")
    ] = None,
    drift_calls: Annotated[
        int | None,
        typer.Option(
            help="Batch-1 calls in one long run per path (its first process), resident memory sampled: a "
            f"leak or a growing cache shows as drift. 0: off. {_bench_default('drift_calls')}"
        ),
    ] = None,
    serve: Annotated[
        str | None,
        typer.Option(
            help="Serving under load with MLPerf's LoadGen, in each runtime's own language: none, or a comma list "
            "of singlestream, server, offline. [none]"
        ),
    ] = None,
    serve_workers: Annotated[
        str | None,
        typer.Option(help=f"Workers answering LoadGen's queries, e.g. 1,2. {_bench_default('serve_workers')}"),
    ] = None,
    serve_rates: Annotated[
        str | None,
        typer.Option(
            help="Server: offered queries/s, e.g. 50,100,200. [steps from 1/8x to 4x the fastest path's batch-1 rate]"
        ),
    ] = None,
    serve_bound_ms: Annotated[
        float | None, typer.Option(help="Server: the p99 latency bound, ms. [8x the baseline's batch-1 p50]")
    ] = None,
    serve_seconds: Annotated[
        float | None,
        typer.Option(help=f"LoadGen's minimum duration per test (MLPerf's: 600). {_bench_default('serve_seconds')}"),
    ] = None,
    serve_rounds: Annotated[
        int | None,
        typer.Option(help=f"Serving rounds, a fresh process per path each. {_bench_default('serve_rounds')}"),
    ] = None,
    language_map: Annotated[
        bool,
        typer.Option(
            "--language-map",
            help="Where the language matters: sweep a ResNet over depth and width at batch 1, take each runtime's "
            "call apart (fixed, per operator, operator time), the crossover, the GIL under contention, and "
            "predict each --model's ratios from its profile.",
        ),
    ] = False,
    map_layers: Annotated[
        str | None,
        typer.Option(help="The map's depths: blocks per stage, '/'-separated, e.g. 1,1,1,1/2,2,2,2/3,4,6,3."),
    ] = None,
    map_widths: Annotated[
        str | None, typer.Option(help=f"The map's fitted widths. {_bench_default('map_widths')}")
    ] = None,
    map_held_out: Annotated[
        str | None,
        typer.Option(
            help=f"Widths at the middle depth the fit does not use (its check). {_bench_default('map_held_out')}"
        ),
    ] = None,
    map_rounds: Annotated[
        int | None, typer.Option(help=f"Rounds per graph of the map. {_bench_default('map_rounds')}")
    ] = None,
    profile_calls: Annotated[
        int | None,
        typer.Option(help="Calls whose operators are recorded once per path (0: none; 10 with --language-map)."),
    ] = None,
    train_runtime: Annotated[
        str | None,
        typer.Option(help="Comma list of the paths whose training step is measured. [every measured path that trains]"),
    ] = None,
    train_steps: Annotated[
        int | None,
        typer.Option(
            help=f"Training steps per run (without --epochs); the first is dropped. {_bench_default('train_steps')}"
        ),
    ] = None,
    train_batch: Annotated[
        int | None, typer.Option(help=f"Training batch size. {_bench_default('train_batch')}")
    ] = None,
    train_rounds: Annotated[
        int | None, typer.Option(help=f"Training runs per path at most. {_bench_default('train_rounds')}")
    ] = None,
    train_budget: Annotated[
        float | None, typer.Option(help=f"Seconds for the training rounds. {_bench_default('train_budget')}")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Train full epochs (needs --data) and report accuracy.")] = None,
    inference: Annotated[
        bool | None, typer.Option("--inference/--no-inference", help="Measure inference. [yes]")
    ] = None,
    training: Annotated[
        bool | None,
        typer.Option("--training/--no-training", help="Measure training. [yes]"),
    ] = None,
    max_load: Annotated[
        float | None,
        typer.Option(
            help=f"Other processes' busy cores per core above which the run is marked loaded. {_bench_default('max_load')}"
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Run even when the fairness gate fails (recorded).")] = False,
) -> None:
    """The fair comparison: latency, throughput, concurrency and training per runtime, with a report."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from resx import bench as B
    from resx.sources import input_shape as shape_of
    from resx.sources import parse_kwargs

    if rounds is not None:
        min_rounds = max_rounds = rounds
    cfg = B.configure(
        "quick" if quick else preset,
        runtimes=runtime,
        models=[m.strip() for m in model.split(",") if m.strip()] if model else None,
        model_kwargs=parse_kwargs(model_kwargs) if model_kwargs else None,
        input_shape=shape_of(input_shape),
        num_classes=num_classes,
        stem=stem,
        layers=ints(layers, "--layers", 4),
        width=width,
        data=str(data) if data else None,
        device=device,
        dtypes=[d.strip() for d in dtype.split(",")] if dtype else None,
        channels_last=channels_last,
        cuda_graphs=cuda_graphs or None,
        aoti_freezing=aoti_freezing,
        deterministic=deterministic or None,
        compile_cold=compile_cold or None,
        threads=threads,
        target=target,
        min_rounds=min_rounds,
        max_rounds=max_rounds,
        budget=budget,
        latency_calls=latency_calls,
        batch_sizes=ints(batch_sizes, "--batch-sizes"),
        throughput_calls=throughput_calls,
        thread_counts=ints(thread_counts, "--thread-counts"),
        thread_seconds=thread_seconds,
        drift_calls=drift_calls,
        serve=_serve_scenarios(serve),
        serve_workers=ints(serve_workers, "--serve-workers"),
        serve_rates=floats(serve_rates, "--serve-rates"),
        serve_bound_ms=serve_bound_ms,
        serve_seconds=serve_seconds,
        serve_rounds=serve_rounds,
        language_map=language_map or None,
        map_layers=[ints(x, "--map-layers", 4) for x in map_layers.split("/")] if map_layers else None,
        map_widths=ints(map_widths, "--map-widths"),
        map_held_out=ints(map_held_out, "--map-held-out") if map_held_out != "" else [],
        map_rounds=map_rounds,
        profile_calls=profile_calls,
        train_runtimes=[r.strip() for r in train_runtime.split(",")] if train_runtime else None,
        train_steps=train_steps,
        train_batch=train_batch,
        train_rounds=train_rounds,
        train_budget=train_budget,
        epochs=epochs,
        inference=inference,
        training=training,
        max_load=max_load,
        force=force,
    )
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console, transient=True
    ) as progress:
        task = progress.add_task("starting", total=None)
        results = B.run(cfg, notify=lambda text: progress.update(task, description=text), warn=warn)
    files = B.report.write(results, output)
    title = f"resx bench ({cfg.preset}): {', '.join(cfg.models)}, {cfg.device}, {cfg.threads} intra-op threads"
    header, rows = B.report.comparison(results)
    console.print(_table(title + (" [LOADED]" if results.loaded else ""), header, rows))
    for line in B.report.headline(results):
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    for name, entry in results.models.items():
        console.print(_table(f"{name}: what should I ship?", B.report.ship_columns(entry), B.report.ship(entry)))
        short = B.report.missed(entry)
        if short:
            console.print(
                f"  not within ±{cfg.target:.0%} when the budget ended: {', '.join(short)}",
                highlight=False,
                soft_wrap=True,
            )
    mem = results.memory.get("peak_rss_bytes", 0) / 2**30
    console.print(
        f"took {B.report.fmt_time(results.seconds)}, at most {mem:.2f} GB resident; report: "
        f"{output / 'report.md'} ({len(files)} files)",
        highlight=False,
        soft_wrap=True,
    )


# ------------------------------------------------------------------------------------------ data

data_app = typer.Typer(help="CIFAR-10: download, check, convert.", no_args_is_help=True, rich_markup_mode=None)
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

    dest = _data_dir(directory)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"CIFAR-10 from {URL}", total=None)
        path = fetch(dest, progress=lambda done, total: progress.update(task, completed=done, total=total))
    console.print(f"CIFAR-10 ready in {path}")


@data_app.command("check")
def data_check(
    directory: Annotated[Path | None, typer.Argument(help="A CIFAR-10 directory (default: the cache).")] = None,
) -> None:
    """Validate a CIFAR-10 directory: file sizes, labels, images per class."""
    from resx.data import check, class_names

    directory = _data_dir(directory)
    report = check(directory)
    names = class_names(directory)
    table = Table(title=f"{report.layout} layout: {report.directory}")
    table.add_column("class")
    for split in report.counts:
        table.add_column(split, justify="right")
    for i, name in enumerate(names):
        table.add_row(name, *(str(c[i]) for c in report.counts.values()))
    console.print(table)
    for problem in report.problems:
        err_console.print(f"[bold red]problem:[/] {problem}", highlight=False, soft_wrap=True)
    if not report.ok:
        raise ResxError(f"{directory}: {len(report.problems)} problem(s), see above")
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


if __name__ == "__main__":
    sys.exit(main())
