"""The `resx` command line (typer + rich)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import resx

app = typer.Typer(
    name="resx",
    help="Python vs LibTorch C++ for ResNets, measured like for like.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """One clear line on stderr and a non-zero exit."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        console.print(f"resx {resx.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    pass


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
    from resx import envinfo
    from resx.cpp import CppRuntimeError

    try:
        reports = envinfo.collect(threads)
    except CppRuntimeError as e:
        raise fail(f"C++ runtime: {e}")
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


@app.command("export")
def export_cmd(
    model: Annotated[str, typer.Argument(help="resnet18, resnet34, resnet50, resnet101 or resnet152.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="TorchScript file to write.")],
    num_classes: Annotated[int, typer.Option(help="Classes of the linear head.")] = 10,
    stem: Annotated[str, typer.Option(help="cifar (3x3 conv) or imagenet (7x7/2 conv + max-pool).")] = "cifar",
    layers: Annotated[
        str | None, typer.Option(help="Blocks per stage, e.g. 3,3,3,3 (default: the depth's own).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights.")] = 0,
    weights: Annotated[
        Path | None, typer.Option(help="Weights to put in (export, checkpoint or state dict).")
    ] = None,
) -> None:
    """Script a resx ResNet to a TorchScript file with its manifest (what the C++ runtime loads)."""
    from resx.export import ExportError, export
    from resx.models import ModelConfig

    try:
        block_layers = [int(n) for n in layers.split(",")] if layers else None
    except ValueError:
        raise fail(f"--layers '{layers}': give four block counts such as 2,2,2,2")
    try:
        config = ModelConfig(model, num_classes, stem, block_layers)
        manifest = export(config, output, seed=seed, weights=weights)
    except (ValueError, ExportError) as e:
        raise fail(str(e))
    flops = manifest["flops_per_image"]
    console.print(
        f"wrote {output}: {model} ({config.stem} stem, layers {config.block_layers}), "
        f"{manifest['parameters']:,} parameters, {flops['forward'] / 1e9:.3f} GFLOP/img forward, "
        f"fingerprint {manifest['fingerprint'][:12]}",
        highlight=False,
    )


@app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="A TorchScript file written by resx export.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print manifest and checks as JSON.")] = False,
) -> None:
    """Print a file's manifest and re-verify it in Python and in C++."""
    from resx.export import ExportError
    from resx.export import inspect as inspect_file

    try:
        result = inspect_file(file)
    except (ExportError, RuntimeError) as e:
        raise fail(str(e))
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
            table = Table(title=f"{file}: resx manifest", show_header=False)
            for key, value in result.manifest.items():
                table.add_row(key, value if isinstance(value, str) else json.dumps(value))
            console.print(table)
        checks = Table(title="re-verified")
        checks.add_column("")
        sources = list(next(iter(result.checks.values())))
        for source in sources:
            checks.add_column(source)
        checks.add_column("")
        for what, values in result.checks.items():
            ok = what not in result.failures
            checks.add_row(
                what, *(v[:16] for v in values.values()), "[green]agree[/]" if ok else "[bold red]MISMATCH[/]"
            )
        console.print(checks)
    if result.foreign:
        raise fail(f"{file}: a TorchScript file without a resx manifest (foreign); export it with `resx export`")
    if result.failures:
        raise fail(f"{file}: {', '.join(result.failures)} do not match the manifest; re-export the file")


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
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, p) -> None:
        if p.steps == 0:
            return
        total = p.steps * p.epochs
        done = min(total, p.epoch * p.steps + (p.step if p.phase == "train" and p.step < p.steps else 0))
        shown_epoch = min(p.epoch + 1, p.epochs)
        description = f"epoch {shown_epoch}/{p.epochs} {p.phase}"
        if self.task is None:
            self.task = self.progress.add_task(description, total=total, loss=0.0, rate=0.0)
        fields = {"loss": p.loss, "rate": p.images_per_s} if p.phase == "train" and p.images_per_s > 0 else {}
        self.progress.update(self.task, completed=done, description=description, **fields)


@app.command()
def train(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Run directory to write.")] = None,
    runtime: Annotated[
        str, typer.Option(help="py (Python loop), cpp (C++ loop via the extension) or cpp-exe (resx-cpp).")
    ] = "py",
    model: Annotated[str, typer.Option(help="resnet18, resnet34, resnet50, resnet101, resnet152.")] = "resnet18",
    epochs: Annotated[int, typer.Option(help="Epochs to train.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 128,
    lr: Annotated[float, typer.Option(help="Base learning rate.")] = 0.1,
    schedule: Annotated[str, typer.Option(help="cosine, step, onecycle or constant (per step).")] = "cosine",
    warmup_epochs: Annotated[float, typer.Option(help="Linear warm-up, in epochs.")] = 0.0,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    weight_decay: Annotated[float, typer.Option(help="SGD weight decay.")] = 5e-4,
    nesterov: Annotated[bool, typer.Option(help="Nesterov momentum.")] = False,
    label_smoothing: Annotated[float, typer.Option(help="Cross-entropy label smoothing.")] = 0.0,
    data: Annotated[Path | None, typer.Option(help="CIFAR-10 directory (default: $RESX_DATA or the cache).")] = None,
    subset: Annotated[int, typer.Option(help="Train on the first N images (0: all).")] = 0,
    test_subset: Annotated[int, typer.Option(help="Evaluate on the first M test images (0: all).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of weights, shuffle and augmentation.")] = 0,
    threads: Annotated[int, typer.Option(help="Intra-op threads (0: LibTorch's default).")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    stem: Annotated[str, typer.Option(help="cifar or imagenet.")] = "cifar",
    num_classes: Annotated[int, typer.Option(help="Classes of the head.")] = 10,
    keep_last: Annotated[
        bool, typer.Option("--keep-last", help="Keep the last partial batch (default: drop it).")
    ] = False,
    eval_every: Annotated[int, typer.Option(help="Evaluate every N epochs (and after the last).")] = 1,
    py_module: Annotated[str, typer.Option(help="py runtime: eager nn.Module or the scripted file.")] = "eager",
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this directory from its last checkpoint.")
    ] = None,
) -> None:
    """Train a ResNet on CIFAR-10 in the Python or the C++ runtime, with the same recipe, data and seeds."""
    from resx import data as D
    from resx import train as T
    from resx.recipe import TrainConfig

    try:
        if resume is not None:
            config, runtime, data_dir = T.load_run(resume)
            run_dir = resume
        else:
            if output is None:
                raise T.TrainError("give a run directory with -o RUN_DIR (or --resume RUN_DIR)")
            config = TrainConfig(
                model=model,
                num_classes=num_classes,
                stem=stem,
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
                drop_last=not keep_last,
                eval_every=eval_every,
            )
            data_dir, run_dir = (data if data is not None else D.default_data_dir()), output
        prepared = T.prepare(config, runtime, data_dir, run_dir, resume=resume is not None)
        with _TrainDisplay() as display:
            result = T.train(prepared, py_module, display)
    except T.TrainError as e:
        raise fail(str(e))
    except KeyboardInterrupt:
        raise fail(
            f"interrupted; the last complete epoch is kept in {run_dir}/checkpoint.pt: continue with "
            f"`resx train --resume {run_dir}`",
            code=130,
        )
    if not result.complete:
        raise fail(f"stopped; continue with `resx train --resume {run_dir}`", code=130)
    metrics = (Path(run_dir) / "metrics.csv").read_text().splitlines()
    table = Table(title=f"{runtime}: {config.model} on CIFAR-10 ({run_dir})")
    header = metrics[0].split(",")[:8]
    for name in header:
        table.add_column(name, justify="right")
    for row in metrics[1:]:
        cells = row.split(",")[:8]
        table.add_row(*(c if i == 0 or not c else f"{float(c):.4g}" for i, c in enumerate(cells)))
    console.print(table)


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

    try:
        result = T.evaluate_checkpoint(
            weights, data if data is not None else D.default_data_dir(), runtime, batch_size, test_subset, device
        )
    except T.TrainError as e:
        raise fail(str(e))
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        console.print(
            f"{runtime}: {result['model']} {weights}: test loss {result['test_loss']:.6f}, "
            f"top-1 {result['test_top_1']:.2f}% on {result['images']} images",
            highlight=False,
        )


def _ints(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise fail(f"{option} '{text}': give positive whole numbers separated by commas, e.g. 1,8,32")
    return values


PRESETS = {
    # What `make demo` runs: about 3-5 minutes on a 2-core machine.
    "quick": dict(
        models=["resnet18"],
        rounds=4,
        latency_calls=200,
        batch_sizes=[1, 8, 32, 128],
        throughput_calls=2,
        thread_counts=[1, 2, 4],
        thread_seconds=1.0,
        train_steps=3,
        train_batch=32,
        epochs=0,
        train_rounds=2,
    ),
    # The structure of the well-known comparison: ResNet18 and ResNet34, 50 epochs at batch 128 (a GPU job).
    "seed": dict(models=["resnet18", "resnet34"], epochs=50, train_batch=128),
    "custom": {},
}


@app.command()
def bench(
    output: Annotated[Path, typer.Option("-o", "--output", help="Report directory.")] = Path("resx-bench"),
    runtime: Annotated[str, typer.Option(help="all, or a comma list of py-eager, py-script, cpp, cpp-exe.")] = "all",
    quick: Annotated[bool, typer.Option("--quick", help="The short preset (what make demo runs).")] = False,
    preset: Annotated[
        str, typer.Option(help="quick, seed (ResNet18/34, 50 epochs, batch 128; for a GPU) or custom.")
    ] = "custom",
    model: Annotated[
        str | None, typer.Option(help="Comma list of models (default: the preset's, resnet18).")
    ] = None,
    stem: Annotated[
        str, typer.Option(help="cifar, or imagenet to see what a mismatched architecture measures.")
    ] = "cifar",
    layers: Annotated[str | None, typer.Option(help="Blocks per stage, e.g. 3,3,3,3.")] = None,
    data: Annotated[
        Path | None, typer.Option(help="CIFAR-10 for training (default: synthetic images, timing only).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Annotated[int, typer.Option(help="Intra-op threads in every runtime (0: torch's default).")] = 0,
    rounds: Annotated[int | None, typer.Option(help="Interleaved rounds.")] = None,
    latency_calls: Annotated[
        int | None, typer.Option(help="Timed batch-1 calls per runtime (>= 200 advised).")
    ] = None,
    batch_sizes: Annotated[str | None, typer.Option(help="Throughput batch sizes, e.g. 1,8,32,128.")] = None,
    throughput_calls: Annotated[int | None, typer.Option(help="Timed calls per runtime and batch size.")] = None,
    thread_counts: Annotated[str | None, typer.Option(help="Concurrent callers, e.g. 1,2,4.")] = None,
    thread_seconds: Annotated[float | None, typer.Option(help="Seconds per runtime and thread count.")] = None,
    train_steps: Annotated[int | None, typer.Option(help="Training steps per runtime (without --epochs).")] = None,
    train_batch: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Train full epochs (needs --data) and report accuracy.")] = None,
    inference: Annotated[bool, typer.Option(help="Measure inference.")] = True,
    training: Annotated[bool, typer.Option(help="Measure training.")] = True,
    max_load: Annotated[float, typer.Option(help="Load average per core above which the run is marked loaded.")] = 0.5,
    force: Annotated[bool, typer.Option("--force", help="Run even when the fairness gate fails (recorded).")] = False,
) -> None:
    """The fair comparison: latency, throughput, threads and training per runtime, with a report."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from resx import report
    from resx.bench import RUNTIMES, BenchConfig, BenchError, run

    preset = "quick" if quick else preset
    if preset not in PRESETS:
        raise fail(f"unknown preset '{preset}': quick, seed or custom")
    values = dict(PRESETS[preset])
    explicit = dict(
        models=model.split(",") if model else None,
        rounds=rounds,
        latency_calls=latency_calls,
        batch_sizes=_ints(batch_sizes, "--batch-sizes"),
        throughput_calls=throughput_calls,
        thread_counts=_ints(thread_counts, "--thread-counts"),
        thread_seconds=thread_seconds,
        train_steps=train_steps,
        train_batch=train_batch,
        epochs=epochs,
    )
    values |= {k: v for k, v in explicit.items() if v is not None}
    runtimes = list(RUNTIMES) if runtime == "all" else [r.strip() for r in runtime.split(",")]
    cfg = BenchConfig(
        **values,
        runtimes=runtimes,
        stem=stem,
        layers=_ints(layers, "--layers"),
        data=str(data) if data else None,
        device=device,
        threads=threads,
        inference=inference,
        training=training,
        max_load=max_load,
        force=force,
        preset=preset,
    )
    if preset == "seed" and data is None:
        raise fail("--preset seed trains 50 epochs on CIFAR-10: pass --data DIR (see `resx data fetch`)")
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console, transient=True
    ) as progress:
        task = progress.add_task("starting", total=None)
        try:
            results = run(
                cfg,
                notify=lambda text: progress.update(task, description=text),
                warn=lambda text: err_console.print(f"[bold yellow]warning:[/] {text}", highlight=False),
            )
        except BenchError as e:
            raise fail(str(e))
    files = report.write(results, output)
    table = Table(
        title=f"resx bench ({preset}): {', '.join(cfg.models)}, {cfg.device}, {cfg.threads} intra-op threads"
        + (" [LOADED]" if results["loaded"] else "")
    )
    for column in report.SEED_COLUMNS:
        table.add_column(column, justify="left" if column in ("Runtime", "Model") else "right")
    for row in report.seed_table(results):
        table.add_row(*row)
    console.print(table)
    for name, entry in results["models"].items():
        for r in entry["ratios"]:
            if r["measure"] in ("latency batch 1", "training step") or r["measure"].startswith("images/s with"):
                console.print(
                    f"  {name} {r['measure']}: {r['runtime']} / {r['baseline']} = {r['ratio']:.3f} "
                    f"(95% CI {r['ci_low']:.3f}-{r['ci_high']:.3f})",
                    highlight=False,
                    soft_wrap=True,
                )
    console.print(f"report: {output / 'report.md'} ({len(files)} files)")


data_app = typer.Typer(help="CIFAR-10: download, check, convert.", no_args_is_help=True)
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

    from resx.data import URL, DataError, fetch

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
        try:
            path = fetch(dest, progress=lambda done, total: progress.update(task, completed=done, total=total))
        except DataError as e:
            raise fail(str(e))
    console.print(f"CIFAR-10 ready in {path}")


@data_app.command("check")
def data_check(
    directory: Annotated[Path | None, typer.Argument(help="A CIFAR-10 directory (default: the cache).")] = None,
) -> None:
    """Validate a CIFAR-10 directory: file sizes, labels, images per class."""
    from resx.data import DataError, check, class_names

    directory = _data_dir(directory)
    try:
        report = check(directory)
        names = class_names(directory)
    except DataError as e:
        raise fail(str(e))
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
        raise fail(f"{directory}: {len(report.problems)} problem(s), see above")
    console.print("[green]CIFAR-10 is complete and valid.[/]")


@data_app.command("convert")
def data_convert(
    source: Annotated[Path, typer.Argument(help="A directory with the pickled layout (cifar-10-batches-py).")],
    dest: Annotated[Path, typer.Argument(help="Where to write cifar-10-batches-bin/.")],
) -> None:
    """Write the binary layout from the pickled one, for the C++ runtime's reader."""
    from resx.data import DataError, convert_pickled_to_binary

    try:
        out = convert_pickled_to_binary(source, dest)
    except DataError as e:
        raise fail(str(e))
    console.print(f"wrote {out}")


def main() -> None:
    app()
