"""Strict parsing, serialisation and JSON Schema of frozen dataclasses, driven by their type hints.

One description (the annotated fields of each event type) gives three things that must agree:
``from_dict`` (strict, with errors that name the field path), ``to_dict`` and the JSON Schema
that producers in other languages validate against.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, Union

import orjson

from schemas.errors import SchemaError

#: Largest accepted message body in UTF-8 bytes; ``decode(..., max_body_bytes=N)`` overrides it.
DEFAULT_MAX_BODY_BYTES = 1_000_000
_max_body_bytes: contextvars.ContextVar[int] = contextvars.ContextVar("max_body_bytes", default=DEFAULT_MAX_BODY_BYTES)


def body_limit() -> int:
    """The body size limit in force for the current parse."""
    return _max_body_bytes.get()


__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "NonEmpty",
    "Timestamp",
    "LabelName",
    "Range",
    "Record",
    "body_limit",
    "describe",
    "normalise_label",
    "parse_timestamp",
]


class NonEmpty:
    """A string that is not empty (nor only whitespace)."""


class Timestamp:
    """A time: ISO-8601 string or epoch seconds on input, epoch seconds (float) in Python."""


class LabelName:
    """A label name; ``Parent > Child`` is a hierarchy, every part non-empty. Normalised."""

    MAX_LEVELS = 5
    MAX_LENGTH = 256


@dataclasses.dataclass(frozen=True)
class Range:
    """A numeric range constraint (inclusive)."""

    low: float | None = None
    high: float | None = None


def describe(value: Any) -> str:
    """How a found value is shown in an error message."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return repr(shown)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def normalise_label(raw: str, path: str) -> str:
    parts = [part.strip() for part in raw.split(">")]
    if any(not part for part in parts):
        raise SchemaError(path, "a label name whose parts ('Parent > Child') are all non-empty", describe(raw))
    if len(parts) > LabelName.MAX_LEVELS:
        raise SchemaError(path, f"a label name of at most {LabelName.MAX_LEVELS} levels", f"{len(parts)} levels")
    name = " > ".join(parts)
    if len(name) > LabelName.MAX_LENGTH:
        raise SchemaError(path, f"a label name of at most {LabelName.MAX_LENGTH} characters", f"{len(name)} characters")
    return name


def parse_timestamp(value: Any, path: str) -> float:
    kind = type(value)
    if (kind is float or kind is int) and 0 <= value < 32503680000:  # epoch seconds in range (not NaN)
        return round(float(value), 6)  # per record in the sequencer: the checks below, in one test
    expected = "an ISO-8601 timestamp or epoch seconds"
    if isinstance(value, bool) or value is None:
        raise SchemaError(path, expected, describe(value))
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise SchemaError(path, expected, describe(value)) from None
        if moment.tzinfo is None:  # a timestamp without offset is read as UTC
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp()
    else:
        raise SchemaError(path, expected, describe(value))
    if not math.isfinite(seconds) or not 0 <= seconds < 32503680000:  # years 1970..2999
        raise SchemaError(path, "a time between 1970 and 2999", describe(value))
    return round(seconds, 6)


#: Per record class: its fast decoder and its ``to_dict`` (`schemas._fast`), compiled on first use.
_decoders: dict[type, Callable[[Any], Any]] = {}
_dumpers: dict[type, Callable[[Any], dict[str, Any]]] = {}


class Record:
    """Mixin for frozen dataclasses: ``from_dict``, ``to_dict``, ``json_schema``.

    Field metadata ``{"key": "from"}`` maps a Python attribute to another JSON key.

    Subclasses are slotted (``slots=True``): a record is one object the garbage collector
    tracks, with no ``__dict__`` (bench/README.md, *Garbage-collector pauses*). The mixin has
    no slots of its own, so it gives them no ``__dict__`` either. Assigning a field raises
    ``FrozenInstanceError``; assigning any other name raises ``TypeError`` on Python 3.11 (a
    frozen slotted dataclass's ``__setattr__``, CPython gh-105936): neither can be set.
    """

    __slots__ = ()

    _plan_cache: dict[type, list[tuple[str, str, Any, bool, Any]]] = {}

    @classmethod
    def _root(cls) -> str:
        return getattr(cls, "ROOT", cls.__name__.lower())

    @classmethod
    def _plan(cls) -> list[tuple[str, str, Any, bool, Any]]:
        """(attribute, json key, type hint, required, default) for every field."""
        plan = Record._plan_cache.get(cls)
        if plan is None:
            hints = typing.get_type_hints(cls, include_extras=True)
            plan = []
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # subclasses are dataclasses
                required = False
                if f.default is not dataclasses.MISSING:
                    default = f.default
                elif f.default_factory is not dataclasses.MISSING:
                    default = f.default_factory()
                else:
                    required, default = True, None
                plan.append((f.name, f.metadata.get("key", f.name), hints[f.name], required, default))
            Record._plan_cache[cls] = plan
        return plan

    @classmethod
    def from_dict(cls, data: Any, path: str | None = None) -> Self:
        """Parse ``data`` strictly; raise :class:`SchemaError` naming the first wrong field."""
        path = path or cls._root()
        if not isinstance(data, dict):
            raise SchemaError(path, "an object", describe(data))
        plan = cls._plan()
        known = {key for _, key, _, _, _ in plan}
        for key in data:
            if key not in known:
                raise SchemaError(f"{path}.{key}", f"a known field ({', '.join(sorted(known))})", "an unknown field")
        values = {}
        for attribute, key, hint, required, default in plan:
            if key not in data:
                if required:
                    raise SchemaError(f"{path}.{key}", "a value (the field is required)", "nothing")
                values[attribute] = default
                continue
            values[attribute] = _parse(hint, data[key], f"{path}.{key}")
        record = cls(**values)
        record._check(path)
        return record

    def _check(self, path: str) -> None:
        """Cross-field rules; subclasses override."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this record (JSON keys; records as dicts, tuples as lists)."""
        dump = _dumpers.get(type(self))
        if dump is None:
            from schemas._fast import dumper

            dump = _dumpers[type(self)] = dumper(type(self))
        return dump(self)

    def encode(self) -> bytes:
        """JSON bytes (orjson) of :meth:`to_dict`."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def decode(cls, raw: bytes | bytearray | memoryview | str, *, max_body_bytes: int | None = None) -> Self:
        """Parse JSON bytes strictly; every failure is a :class:`SchemaError`.

        Valid input takes the fast path (`schemas._fast`: msgspec, in C); anything it does not
        accept is parsed again here, by the reference parser, which accepts it too or says why not.
        """
        fast = _decoders.get(cls)
        if fast is None:
            from schemas._fast import decoder

            fast = _decoders[cls] = decoder(cls)
        token = _max_body_bytes.set(max_body_bytes) if max_body_bytes is not None else None
        try:
            record = fast(raw)
        finally:
            if token is not None:
                _max_body_bytes.reset(token)
        if record is not None:
            return record  # type: ignore[return-value]  # the decoder of cls builds a cls
        return cls._decode_reference(raw, max_body_bytes=max_body_bytes)

    @classmethod
    def _decode_reference(cls, raw: bytes | bytearray | memoryview | str, *, max_body_bytes: int | None = None) -> Self:
        """`decode` by the type-hint-driven parser: the reference for what is accepted, and the errors."""
        root = cls._root()
        if isinstance(raw, str):
            try:
                raw = raw.encode("utf-8")
            except UnicodeEncodeError as error:  # a lone surrogate: no UTF-8 bytes could carry it
                raise SchemaError(
                    root, "UTF-8 encodable text", f"a lone surrogate at position {error.start}", kind="decode"
                ) from None
        elif not isinstance(raw, (bytes, bytearray, memoryview)):
            raise SchemaError(root, "JSON bytes", type(raw).__name__, kind="decode")
        raw = bytes(raw)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise SchemaError(
                root,
                "UTF-8 encoded JSON",
                f"invalid byte 0x{raw[error.start]:02x} at position {error.start}",
                kind="decode",
            ) from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            found = "empty input" if not raw.strip() else f"invalid JSON ({error})"
            raise SchemaError(root, "a JSON object", found, kind="decode") from None
        token = _max_body_bytes.set(max_body_bytes) if max_body_bytes is not None else None
        try:
            return cls.from_dict(data)
        finally:
            if token is not None:
                _max_body_bytes.reset(token)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON Schema (draft 2020-12) of this type."""
        definitions: dict[str, Any] = {}
        root = _object_schema(cls, definitions)
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://refinery.local/schemas/{cls._root()}.schema.json",
            "title": cls.__name__,
            "description": (cls.__doc__ or "").strip().split("\n\n")[0],
            **root,
        }
        definitions.pop(cls.__name__, None)
        if definitions:
            schema["$defs"] = dict(sorted(definitions.items()))
        return schema


def _unwrap(hint: Any) -> tuple[Any, tuple]:
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        return base, tuple(extras)
    return hint, ()


def _is_union(origin: Any) -> bool:
    return origin is Union or origin is types.UnionType


@functools.cache
def _shape(hint: Any) -> tuple[Any, tuple, Any, tuple]:
    """``(base, extras, origin, args)`` of a type hint, worked out once per hint (the typing
    module's introspection is slow, and every field of every record asks)."""
    base, extras = _unwrap(hint)
    return base, extras, typing.get_origin(base), typing.get_args(base)


@functools.cache
def _optional(hint: Any) -> Any:
    """The hint an ``X | None`` union parses a non-None value with (its extras kept), or None
    for a union of several types."""
    base, extras, _, options = _shape(hint)
    concrete = [o for o in options if o is not type(None)]
    if len(concrete) != 1:
        return None
    return Annotated[(concrete[0], *extras)] if extras else concrete[0]


def _parse(hint: Any, value: Any, path: str) -> Any:
    base, extras, origin, args = _shape(hint)
    if _is_union(origin):
        options = args
        if value is None and type(None) in options:
            return None
        single = _optional(hint)
        if single is not None:
            return _parse(single, value, path)
        concrete = [o for o in options if o is not type(None)]
        for option in concrete:  # scalar unions: first exact type match
            if _matches(option, value):
                return value
        raise SchemaError(path, " or ".join(_name(o) for o in concrete), describe(value))
    if Timestamp in extras:
        return parse_timestamp(value, path)
    if origin is Literal:
        allowed = args
        if value not in allowed or isinstance(value, bool):
            raise SchemaError(path, "one of " + ", ".join(repr(a) for a in allowed), describe(value))
        return value
    if isinstance(base, type) and issubclass(base, Record):
        return base.from_dict(value, path)
    if origin is tuple:
        item_hint = args[0]
        if not isinstance(value, list):
            raise SchemaError(path, "a list", describe(value))
        return tuple(_parse(item_hint, item, f"{path}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        _, value_hint = args
        if not isinstance(value, dict):
            raise SchemaError(path, "an object", describe(value))
        return {k: _parse(value_hint, v, f"{path}.{k}") for k, v in value.items()}
    if base is str:
        if not isinstance(value, str):
            raise SchemaError(
                path, "a non-empty string" if NonEmpty in extras or LabelName in extras else "a string", describe(value)
            )
        if LabelName in extras:
            return normalise_label(value, path)
        if NonEmpty in extras and not value.strip():
            raise SchemaError(path, "a non-empty string", describe(value))
        return value
    if base is bool:
        if not isinstance(value, bool):
            raise SchemaError(path, "true or false", describe(value))
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(path, "an integer", describe(value))
        _check_range(value, extras, path)
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaError(path, "a number", describe(value))
        _check_range(value, extras, path)
        return float(value)
    if base is Any:
        return value
    raise TypeError(f"{path}: unsupported type hint {hint!r}")  # a programming error, not bad input


def _check_range(value: float, extras: tuple, path: str) -> None:
    for extra in extras:
        if isinstance(extra, Range):
            if extra.low is not None and value < extra.low or extra.high is not None and value > extra.high:
                bounds = (
                    f"between {extra.low} and {extra.high}"
                    if extra.low is not None and extra.high is not None
                    else (f"at least {extra.low}" if extra.low is not None else f"at most {extra.high}")
                )
                raise SchemaError(path, f"a number {bounds}", describe(value))


def _matches(option: Any, value: Any) -> bool:
    if option is str:
        return isinstance(value, str)
    if option is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if option is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if option is bool:
        return isinstance(value, bool)
    return False


def _name(option: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(option, str(option))


def _object_schema(cls: type[Record], definitions: dict[str, Any]) -> dict[str, Any]:
    properties, required = {}, []
    for _attribute, key, hint, is_required, default in cls._plan():
        prop = _schema(hint, definitions)
        if not is_required and default is not None and not isinstance(default, (dict, tuple)):
            prop = {**prop, "default": default}
        properties[key] = prop
        if is_required:
            required.append(key)
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _schema(hint: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    base, extras = _unwrap(hint)
    origin = typing.get_origin(base)
    if _is_union(origin):
        options = [_schema(Annotated[(o, *extras)] if extras else o, definitions) for o in typing.get_args(base)]
        return {"anyOf": options}
    if base is type(None):
        return {"type": "null"}
    if Timestamp in extras:
        iso = r"^\s*\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}([.,]\d+)?)?)?)?\s*([Zz]|[+-]\d{2}(:?\d{2})?)?\s*$"
        return {
            "anyOf": [{"type": "string", "format": "date-time", "pattern": iso}, {"type": "number", "minimum": 0}],
            "description": "ISO-8601 timestamp or epoch seconds",
        }
    if origin is Literal:
        return {"enum": list(typing.get_args(base))}
    if isinstance(base, type) and issubclass(base, Record):
        name = base.__name__
        if name not in definitions:
            definitions[name] = {}  # placeholder against recursion
            definitions[name] = {
                "description": (base.__doc__ or "").strip().split("\n\n")[0],
                **_object_schema(base, definitions),
            }
        return {"$ref": f"#/$defs/{name}"}
    if origin is tuple:
        return {"type": "array", "items": _schema(typing.get_args(base)[0], definitions)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(typing.get_args(base)[1], definitions)}
    if base is str:
        schema: dict[str, Any] = {"type": "string"}
        if LabelName in extras:
            schema.update(
                minLength=1, maxLength=LabelName.MAX_LENGTH, pattern=r"^\s*[^>\s][^>]*(>\s*[^>\s][^>]*){0,4}$"
            )
        elif NonEmpty in extras:
            schema.update(minLength=1, pattern=r"\S")
        return schema
    if base in (int, float):
        schema = {"type": "integer" if base is int else "number"}
        for extra in extras:
            if isinstance(extra, Range):
                if extra.low is not None:
                    schema["minimum"] = extra.low
                if extra.high is not None:
                    schema["maximum"] = extra.high
        return schema
    if base is bool:
        return {"type": "boolean"}
    if base is Any:
        return {}
    raise TypeError(f"unsupported type hint {hint!r}")
