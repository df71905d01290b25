"""Command-line options derived from config dataclasses, so that each option is written once: its field.

A field made with `option(default, help, ...)` becomes a typer option of its command: the flag (--name by
default, or `flag`), the help text, the panel of its concern, the default shown from the field itself, and
the parser of its text (comma lists, C,H,W, JSON, ...). Every option is optional on the command line (None:
not given), so a preset or a config file can set it and the command line can still set it back; a switch
is --name/--no-name.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import types
from collections.abc import Callable
from typing import Annotated, Any, Union, get_args, get_origin

import typer

from resx.codec import hints
from resx.errors import ConfigError


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    flag: str | None = None,
    parse: Callable[[str, str], Any] | None = None,
    show: str | None = None,
    cli: bool = True,
) -> Any:
    """A config field with its command-line option. Mutable defaults are copied per instance; `parse`
    turns the option's text into the value (one line naming the option otherwise); `show` is the default
    as shown in --help when the value's own text would not do."""
    meta = {"help": help, "flag": flag, "parse": parse, "show": show, "cli": cli}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# -------------------------------------------------------------------------------------------- parsers


def words(text: str, option: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(",") if w.strip())


def positive_ints(text: str, option: str, count: int | None = None) -> tuple[int, ...]:
    """'1,8,32' -> (1, 8, 32); anything else is one line naming the option."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1 or (count is not None and len(values) != count):
        what, example = (
            (f"{count} positive whole numbers", ",".join(["2"] * count))
            if count
            else ("positive whole numbers", "1,8,32")
        )
        raise ConfigError(f"{option} '{text}': give {what} separated by commas, e.g. {example}")
    return values


def positive_floats(text: str, option: str) -> tuple[float, ...]:
    """'50,100.5' -> (50.0, 100.5); anything else is one line naming the option."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or not all(0 < v < math.inf for v in values):
        raise ConfigError(f"{option} '{text}': give positive numbers separated by commas, e.g. 50,100,200")
    return values


def stages(text: str, option: str) -> tuple[int, ...]:
    return positive_ints(text, option, 4)


def json_object(text: str, option: str) -> dict:
    """'{"width_mult": 0.5}' -> dict; anything but a JSON object is one line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        example = '{"width_mult": 0.5}'
        raise ConfigError(f"{option} '{text}': not JSON ({e.msg}); give an object, e.g. '{example}'") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{option} '{text}': give a JSON object of keyword arguments")
    return value


def shown(value: Any) -> str:
    """A value as its option would be written."""
    if isinstance(value, (list, tuple)):
        return (
            "/".join(shown(v) for v in value)
            if value and isinstance(value[0], (list, tuple))
            else ",".join(map(str, value))
        )
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


# ------------------------------------------------------------------------------------------ the CLI


@dataclasses.dataclass(frozen=True)
class Flag:
    """One field of a config as a command-line option: `path` is where it lives in the config
    (concern, field), `name` its parameter's name in the command function."""

    path: tuple[str, ...]
    name: str
    flag: str
    kind: type
    parse: Callable[[str, str], Any] | None


def _plain(tp: Any) -> Any:
    """The type without None: int | None -> int."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def flags(cls: type, panels: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> list[Flag]:
    """The options of a config dataclass: its own option() fields, and those of the dataclasses it
    composes (one level per concern)."""
    out = []
    own = inspect.get_annotations(cls)
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name not in own):  # its own options first
        tp = _plain(hints(cls)[f.name])
        if f.metadata.get("concern"):
            out += flags(tp, panels, (*prefix, f.name))
            continue
        if not f.metadata.get("cli"):
            continue
        flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
        flag = flag.partition("/")[0] if kind_of(tp) is not bool else flag
        kind = kind_of(tp)
        parse = f.metadata["parse"] or (_text if kind is str else None)
        out.append(Flag((*prefix, f.name), "__".join((*prefix, f.name)), flag, kind, parse))
    return out


def argv(cls: type, values: dict[str, Any]) -> list[str]:
    """The command-line options that give `cls`'s own fields these values ({field: value}), in field order:
    what a command line of its command would say (a switch by its --name or --no-name)."""
    out = []
    for fl in flags(cls):
        if fl.name not in values:
            continue
        value = values[fl.name]
        if fl.kind is bool:
            on, _, off = fl.flag.partition("/")
            out.append(on if value else off or "--no-" + on.removeprefix("--"))
        else:
            out += [fl.flag, shown(value)]
    return out


def kind_of(tp: Any) -> type:
    """What the command line reads an option as: a switch, a number, or text its parser turns into the value."""
    return tp if tp in (bool, int, float) else str


def concern(cls: type) -> Any:
    """A field of a config that composes another config dataclass (one concern), whose options it shares."""
    return dataclasses.field(default_factory=cls, metadata={"concern": True})


def _text(text: str, option: str) -> str:
    return text


def parameters(cls: type, panels: dict[str, str]) -> list[inspect.Parameter]:
    """The command function's parameters for every option of `cls`, each in its concern's panel."""
    out = []
    defaults = cls()
    for fl in flags(cls):
        owner = defaults
        for part in fl.path[:-1]:
            owner = getattr(owner, part)
        f = next(x for x in dataclasses.fields(owner) if x.name == fl.path[-1])
        default = getattr(owner, f.name)
        show = f.metadata["show"] or shown(default)
        decls = (
            [fl.flag if "/" in fl.flag else f"{fl.flag}/--no-{fl.flag.removeprefix('--')}"]
            if fl.kind is bool
            else [fl.flag]
        )
        info = typer.Option(
            *decls,
            help=f.metadata["help"],
            show_default=show,
            rich_help_panel=panels.get(fl.path[0]) if len(fl.path) > 1 else None,
        )
        annotation = Annotated[fl.kind | None, info]
        out.append(inspect.Parameter(fl.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation))
    return out


def given(cls: type, values: dict[str, Any]) -> dict:
    """The options given on the command line (not None), parsed, as nested overrides {concern: {field:
    value}} of `cls`."""
    out: dict = {}
    for fl in flags(cls):
        value = values.get(fl.name)
        if value is None:
            continue
        node = out
        for part in fl.path[:-1]:
            node = node.setdefault(part, {})
        node[fl.path[-1]] = fl.parse(value, fl.flag) if fl.parse and isinstance(value, str) else value
    return out


def build(cls: type, overrides: dict) -> Any:
    """`cls` at its defaults with `overrides` ({concern: {field: value}}, as given() returns) on top."""
    base = cls()
    changes = {
        k: dataclasses.replace(getattr(base, k), **v)
        if isinstance(v, dict) and dataclasses.is_dataclass(getattr(base, k))
        else v
        for k, v in overrides.items()
    }
    return dataclasses.replace(base, **changes)


def command(classes: type | tuple[type, ...], panels: dict[str, str], own: Callable) -> Callable:
    """`own` (a command function whose **options receive the configs' options by parameter name) with
    the options of each config class added to its signature, for typer to read."""
    signature = inspect.signature(own, eval_str=True)
    params = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    for cls in classes if isinstance(classes, tuple) else (classes,):
        params += parameters(cls, panels)
    own.__signature__ = signature.replace(parameters=params)
    return own


def shape3(text: str, option: str) -> tuple[int, int, int]:
    """'3,224,224' -> (3, 224, 224); anything else is one line naming the option."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise ConfigError(f"{option} '{text}': give C,H,W, three positive whole numbers, e.g. 3,224,224")
    return values  # type: ignore[return-value]
