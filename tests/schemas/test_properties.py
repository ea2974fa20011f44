"""Properties of the contract over generated input (Hypothesis): every event type round-trips, and
no input whatsoever makes a parser raise anything but `SchemaError`.

Example counts come from the Hypothesis profile (``tests/conftest.py``): moderate by default,
more under ``CI=true``.
"""

from __future__ import annotations

import functools

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas import SchemaError
from tests.schemas.strategies import EVENT_TYPES, json_text, mutated, valid_dict

TYPES = pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.__name__)
SLOW_DATA = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _parses_or_refuses(cls, raw) -> None:
    """``raw`` either parses as ``cls`` (and the record then round-trips) or raises SchemaError."""
    try:
        record = cls.decode(raw)
    except SchemaError as error:
        assert error.kind in ("decode", "schema") and str(error).startswith(cls._root())
        return
    assert cls.decode(record.encode()) == record


@functools.cache
def _validator(cls) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(cls.json_schema())


@TYPES
@SLOW_DATA
@given(data=st.data())
def test_every_valid_event_round_trips_and_its_published_json_schema_accepts_it(cls, data):
    raw = data.draw(valid_dict(cls))
    record = cls.from_dict(raw)
    assert cls.decode(record.encode()) == record
    assert cls.from_dict(record.to_dict()) == record
    _validator(cls).validate(record.to_dict())


@TYPES
@given(raw=st.binary(max_size=200))
def test_any_bytes_parse_or_raise_a_schema_error(cls, raw):
    _parses_or_refuses(cls, raw)


@TYPES
@SLOW_DATA
@given(raw=json_text())
def test_any_json_ish_text_parses_or_raises_a_schema_error(cls, raw):
    """Deep nesting, integers far beyond 64 bits, 1e999, lone surrogates, duplicate keys, invalid UTF-8."""
    _parses_or_refuses(cls, raw)


@TYPES
@SLOW_DATA
@given(data=st.data())
def test_a_mutated_valid_event_parses_or_raises_a_schema_error(cls, data):
    _parses_or_refuses(cls, data.draw(mutated(cls)))


@TYPES
@given(raw=st.text(st.characters(codec=None, categories=None), max_size=50))
@example(raw="\ud800")
def test_any_python_string_parses_or_raises_a_schema_error(cls, raw):
    """``decode`` also takes str (lone surrogates included, which no UTF-8 bytes can carry)."""
    _parses_or_refuses(cls, raw)


@pytest.mark.parametrize("depth", [10, 900, 1100, 100_000])
def test_deep_nesting_is_refused_with_a_schema_error_at_any_depth(depth):
    from schemas import Message

    raw = b'{"dataset": "d", "id": "1", "timestamp": 0, "metadata": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(SchemaError) as error:
        Message.decode(raw)
    assert error.value.kind == ("schema" if depth < 1000 else "decode")  # orjson's limit is 1,024 levels
