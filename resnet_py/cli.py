"""The `resx` command line (typer + rich)."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Optional

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
        Optional[bool],
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
    threads: Annotated[
        Optional[int], typer.Option(min=1, help="Set intra-op threads in every runtime first.")
    ] = None,
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


def main() -> None:
    app()
