"""Typed objects <-> JSON-ready data, by their dataclass fields and type hints: the one codec of results.json
and of the bench's config file, so that no type writes a to_dict/from_dict of its own.

encode(obj) gives dicts, lists and scalars (a dict's keys as strings); decode(cls, data) builds `cls` back,
checking each value against its field's type, and names the field that does not fit (ValueError)."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Union, get_args, get_origin, get_type_hints


def encode(obj: Any) -> Any:
    """Dataclasses to dicts of their fields, tuples to lists, dict keys to strings; the rest as it is."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    return obj


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def decode(tp: Any, data: Any, where: str = "") -> Any:
    """`data` (as encode wrote it, or as JSON read it) as an object of type `tp`."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any or tp is object:
        return data
    if origin in (Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return decode(option, data, where)
            except (ValueError, TypeError) as e:
                errors.append(str(e))
        raise ValueError(errors[0] if errors else f"{where or 'value'}: {data!r} fits none of {tp}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ValueError(f"{where or tp.__name__}: expected an object, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{where or tp.__name__}: unknown key {unknown[0]!r}")
        types_ = hints(tp)
        values = {k: decode(types_[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
        missing = [
            n
            for n, f in known.items()
            if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ValueError(f"{where or tp.__name__}: missing {missing[0]!r}")
        return tp(**values)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(data, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {type(data).__name__}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(data):
                raise ValueError(f"{where}: expected {len(args)} values, got {len(data)}")
            return tuple(decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, data, strict=True)))
        item = args[0] if args else Any
        values = [decode(item, v, f"{where}[{i}]") for i, v in enumerate(data)]
        return tuple(values) if (origin or tp) is tuple else values
    if origin is dict or tp is dict:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        key, value = args if args else (Any, Any)
        return {_key(key, k, where): decode(value, v, f"{where}[{k}]") for k, v in data.items()}
    if origin is typing.Literal:
        if data not in args:
            raise ValueError(f"{where}: {data!r} is not one of {', '.join(map(repr, args))}")
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise ValueError(f"{where}: expected a number, got {data!r}")
        return float(data)
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise ValueError(f"{where}: expected a whole number, got {data!r}")
        return data
    if tp in (str, bool):
        if not isinstance(data, tp):
            raise ValueError(f"{where}: expected {'true or false' if tp is bool else 'a string'}, got {data!r}")
        return data
    raise TypeError(f"{where}: the codec has no rule for {tp}")


def _key(tp: Any, key: str, where: str) -> Any:
    if tp in (str, Any):
        return key
    try:
        return tp(key)
    except ValueError:
        raise ValueError(f"{where}: key {key!r} is not a {tp.__name__}") from None
