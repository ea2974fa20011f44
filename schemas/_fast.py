"""The fast codec of the contract: msgspec decodes and validates JSON in C, orjson encodes.

`schemas._typed.Record` keeps one description of each event type (its annotated fields); this
module compiles that description twice, once per class:

- a **decoder**: a `msgspec.Struct` mirroring the record's fields (same JSON keys, unknown keys
  forbidden, the same types, ranges and non-empty rules as msgspec constraints), decoded by
  ``msgspec.json.Decoder`` in C, then turned into the frozen dataclass by a few Python steps for
  what msgspec cannot say (label names are normalised, timestamps parsed, cross-field ``_check``);
- an **encoder**: ``to_dict`` as one generated function per class (no type-hint walk per value).

The fast decoder only ever *accepts*: any input it does not take (a msgspec error, a failed rule,
anything unusual) goes to the reference parser (`schemas._typed.Record.from_dict` on
``orjson.loads``), which either accepts it too or raises the `schemas.errors.SchemaError` with
the wording users and tests know. So the error messages are the reference parser's, and the fast
path is checked against it on the real data sets (tests/schemas/test_fast_codec.py).

Where the two JSON parsers differ, the decoder is made stricter, so the reference decides:
integers outside orjson's range (orjson reads them as floats) are refused here.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

import msgspec

from schemas._typed import LabelName, NonEmpty, Range, Record, Timestamp, normalise_label, parse_timestamp

__all__ = ["decoder", "dumper"]

#: Integers msgspec may bound (int64; orjson reads up to uint64, larger as floats): larger go to the reference.
_INT_LIMITS = {"ge": -(2**63), "le": 2**63 - 1}

Convert = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


class _Compiled:
    """A record class's msgspec Struct and how to turn a decoded Struct into the record."""

    def __init__(self, cls: type[Record]) -> None:
        self.cls = cls
        fields: list[tuple[str, Any, Any]] = []
        steps: list[tuple[str, Convert | None]] = []
        for attribute, key, hint, required, default in cls._plan():
            spec, convert = _spec(hint)
            if required:
                fields.append((attribute, spec, msgspec.field(name=key)))
            elif isinstance(default, (dict, list)):
                factory = type(default)
                fields.append((attribute, spec, msgspec.field(name=key, default_factory=factory)))
            else:
                fields.append((attribute, spec, msgspec.field(name=key, default=default)))
            steps.append((attribute, None if convert is _identity else convert))
        self.struct = msgspec.defstruct(
            f"_{cls.__name__}Wire", fields, forbid_unknown_fields=True, kw_only=True, module=__name__
        )
        self.build = self._builder(steps, cls._check is not Record._check)

    def _builder(self, steps: list[tuple[str, Convert | None]], check: bool) -> Callable[[Any], Record]:
        """``build(wire)`` -> the record of a decoded Struct, one generated function per class.

        It raises (anything) where the reference parser must decide. The frozen, slotted
        dataclass is filled slot by slot through each field's member descriptor (``__set__``),
        as its own ``__init__`` does with ``object.__setattr__``, without looking the attribute up.
        """
        scope: dict[str, Any] = {"new": object.__new__, "cls": self.cls, "root": self.cls._root()}
        lines = []
        for i, (attribute, convert) in enumerate(steps):
            scope[f"_s{i}"] = getattr(self.cls, attribute).__set__  # the slot's member descriptor
            if convert is None:
                lines.append(f"    _s{i}(record, wire.{attribute})\n")
            else:
                scope[f"_c{i}"] = convert
                lines.append(f"    _s{i}(record, _c{i}(wire.{attribute}))\n")
        source = (
            "def build(wire):\n"
            "    record = new(cls)\n"
            + "".join(lines)
            + ("    record._check(root)\n" if check else "")
            + "    return record\n"
        )
        exec(compile(source, f"<{self.cls.__name__} build>", "exec"), scope)  # noqa: S102  # from the type hints
        return scope["build"]


_compiled: dict[type, _Compiled] = {}


def _compile(cls: type[Record]) -> _Compiled:
    compiled = _compiled.get(cls)
    if compiled is None:
        compiled = _compiled[cls] = _Compiled(cls)
    return compiled


def _unwrap(hint: Any) -> tuple[Any, tuple]:
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        return base, tuple(extras)
    return hint, ()


def _range_meta(extras: tuple, integer: bool) -> dict[str, Any]:
    limits: dict[str, Any] = dict(_INT_LIMITS) if integer else {}
    for extra in extras:
        if isinstance(extra, Range):
            if extra.low is not None:
                limits["ge"] = max(limits.get("ge", extra.low), extra.low)
            if extra.high is not None:
                limits["le"] = min(limits.get("le", extra.high), extra.high)
    return limits


def _spec(hint: Any) -> tuple[Any, Convert]:
    """(the msgspec type of ``hint``, the conversion of its decoded value into the record's)."""
    base, extras = _unwrap(hint)
    origin = typing.get_origin(base)
    if origin is Union or origin is types.UnionType:
        options = typing.get_args(base)
        concrete = [o for o in options if o is not type(None)]
        nullable = len(concrete) < len(options)
        if len(concrete) == 1:
            spec, convert = _spec(Annotated[(concrete[0], *extras)] if extras else concrete[0])
        else:  # scalar unions (str | int | float): each member as msgspec reads it
            spec, convert = Union[tuple(_spec(o)[0] for o in concrete)], _identity  # noqa: UP007
        if not nullable:
            return spec, convert
        if convert is _identity:
            return spec | None, _identity
        return spec | None, lambda value: None if value is None else convert(value)
    if Timestamp in extras:
        return str | float, lambda value: parse_timestamp(value, "")
    if origin is Literal:
        return base, _identity
    if isinstance(base, type) and issubclass(base, Record):
        compiled = _compile(base)
        return compiled.struct, compiled.build
    if origin is tuple:
        spec, convert = _spec(typing.get_args(base)[0])
        if convert is _identity:
            return types.GenericAlias(tuple, (spec, ...)), _identity
        return types.GenericAlias(tuple, (spec, ...)), lambda value: tuple(map(convert, value))
    if origin is dict:
        spec, convert = _spec(typing.get_args(base)[1])
        if convert is _identity:
            return types.GenericAlias(dict, (str, spec)), _identity
        return types.GenericAlias(dict, (str, spec)), lambda value: {k: convert(v) for k, v in value.items()}
    if base is str:
        if LabelName in extras:
            return str, lambda value: normalise_label(value, "")
        if NonEmpty in extras:
            return Annotated[str, msgspec.Meta(pattern=r"\S")], _identity
        return str, _identity
    if base is int:
        return Annotated[int, msgspec.Meta(**_range_meta(extras, True))], _identity
    if base is float:
        limits = _range_meta(extras, False)
        return (Annotated[float, msgspec.Meta(**limits)] if limits else float), _identity
    if base is bool:
        return bool, _identity
    if base is Any:
        return Any, _identity
    raise TypeError(f"unsupported type hint {hint!r}")


def decoder(cls: type[Record]) -> Callable[[Any], Record | None]:
    """``decode(raw)`` -> the record, or None when the reference parser must decide.

    >>> from schemas.events import Message
    >>> decode = decoder(Message)
    >>> decode(b'{"dataset": "d", "id": "m", "timestamp": "1970-01-01T00:00:01Z", "from": "a"}').sender
    'a'
    >>> decode(b'{"dataset": "d", "id": " ", "timestamp": 1}') is None  # not valid: the reference says why
    True
    """
    compiled = _compile(cls)
    json_decoder = msgspec.json.Decoder(compiled.struct)
    build = compiled.build

    def decode(raw: Any) -> Record | None:
        try:
            return build(json_decoder.decode(raw))
        except Exception:  # msgspec's error, a rule, a conversion: the reference parser decides
            return None

    return decode


def dumper(cls: type[Record]) -> Callable[[Record], dict[str, Any]]:
    """``to_dict`` of ``cls`` as one function: the JSON keys, records as dicts, tuples as lists.

    >>> from schemas.events import LabelAssignment
    >>> dumper(LabelAssignment)(LabelAssignment(name="Card"))
    {'name': 'Card', 'sentiment': None}
    """
    lines: list[str] = []
    scope: dict[str, Any] = {}
    for i, (attribute, key, hint, _, _) in enumerate(cls._plan()):
        getter = f"self.{attribute}"
        dump = _dump_expression(hint, getter, scope, f"_d{i}")
        lines.append(f"        {key!r}: {dump},")
    source = "def to_dict(self):\n    return {\n" + "\n".join(lines) + "\n    }\n"
    exec(compile(source, f"<{cls.__name__}.to_dict>", "exec"), scope)  # noqa: S102  # generated from the type hints
    return scope["to_dict"]


def _dump_expression(hint: Any, getter: str, scope: dict[str, Any], name: str) -> str:
    base, _ = _unwrap(hint)
    origin = typing.get_origin(base)
    if origin is Union or origin is types.UnionType:
        concrete = [o for o in typing.get_args(base) if o is not type(None)]
        if len(concrete) == 1:
            inner = _dump_expression(concrete[0], "v", scope, name)
            if inner == "v":
                return getter
            scope[name] = eval(f"lambda v: {inner}", scope)  # noqa: S307  # generated from the type hints
            return f"(None if {getter} is None else {name}({getter}))"
        return getter
    if isinstance(base, type) and issubclass(base, Record):
        return f"{getter}.to_dict()"
    if origin is tuple:
        inner = _dump_expression(typing.get_args(base)[0], "v", scope, name + "i")
        return f"list({getter})" if inner == "v" else f"[{inner} for v in {getter}]"
    if origin is dict:
        inner = _dump_expression(typing.get_args(base)[1], "v", scope, name + "i")
        return f"dict({getter})" if inner == "v" else f"{{k: {inner} for k, v in {getter}.items()}}"
    return getter
