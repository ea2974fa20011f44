"""The fast codec (`schemas._fast`) accepts exactly what the reference parser accepts, with the
same records, and encodes the same bytes; errors stay the reference parser's."""

from __future__ import annotations

import dataclasses
import json
import random

import orjson
import pytest

from agents.ingest.datasets import banking77, enron, nlupp
from schemas import Annotation, Event, Message, Prediction, SchemaError
from schemas._fast import decoder
from schemas._typed import Record, _max_body_bytes
from tests.schemas.test_schemas import ANNOTATION, MALFORMED, MESSAGE, SmallBodyLimit


def _reference_dict(value):
    """``to_dict`` as the type-hint walk wrote it before the fast codec: the reference."""
    if isinstance(value, Record):
        return {key: _reference_dict(getattr(value, attribute)) for attribute, key, _, _, _ in value._plan()}
    if isinstance(value, tuple):
        return [_reference_dict(v) for v in value]
    if isinstance(value, dict):
        return {k: _reference_dict(v) for k, v in value.items()}
    return value


def _both(kind, raw: bytes):
    """(fast decoder's record or None, reference's record or its error message)."""
    try:
        reference = kind._decode_reference(raw)
    except SchemaError as error:
        reference = str(error)
    return decoder(kind)(raw), reference


def _dataset_events():
    short = [*banking77(), *nlupp("banking"), *nlupp("hotels")]
    pairs = short[::4] + list(enron())  # every 4th chat line (time), every email (long, multi-label)
    for i, (message, review) in enumerate(pairs):
        yield message
        yield dataclasses.replace(review, message=message)
        yield Event(source_topic="refinery.messages", partition=i % 4, offset=i, message=message)
        yield Event(source_topic="refinery.annotations", partition=i % 4, offset=i, annotation=review)


def test_real_data_sets_decode_to_the_same_records_and_encode_to_the_same_bytes():
    count = 0
    for record in _dataset_events():
        kind = type(record)
        raw = orjson.dumps(_reference_dict(record))
        assert record.encode() == raw
        fast, reference = _both(kind, raw)
        assert fast is not None, f"the fast decoder refused a valid {kind.__name__}: {raw[:200]!r}"
        assert fast == reference == record
        assert fast.to_dict() == _reference_dict(fast)
        count += 1
    assert count > 4 * 4_500


@pytest.mark.parametrize(("kind", "raw", "error"), MALFORMED, ids=lambda v: v[:48] if isinstance(v, str) else None)
def test_the_fast_decoder_refuses_every_malformed_case(kind, raw, error):
    record_kind = kind if isinstance(kind, type) and issubclass(kind, Record) else Message
    token = _max_body_bytes.set(10) if kind is SmallBodyLimit else None  # what its decode() sets
    try:
        assert decoder(record_kind)(raw) is None
    finally:
        if token is not None:
            _max_body_bytes.reset(token)
    with pytest.raises(SchemaError) as caught:
        kind.decode(raw)
    assert str(caught.value) == error


def test_the_body_limit_holds_on_the_fast_path():
    raw = orjson.dumps({**MESSAGE, "body": "x" * 11})
    assert Message.decode(raw).body == "x" * 11
    with pytest.raises(SchemaError, match=r"^message\.body: expected at most 10 UTF-8 bytes, got 11 bytes$"):
        Message.decode(raw, max_body_bytes=10)


def test_the_body_limit_counts_utf8_bytes_of_wide_characters_at_the_edge():
    """The check skips encoding a body too short to pass the limit (4 bytes a character at most):
    at the edge, 2 and 4 byte characters are still counted in bytes."""
    for char, width in (("\u00e9", 2), ("\U0001f600", 4)):
        fits = orjson.dumps({**MESSAGE, "body": char * (12 // width)})
        over = orjson.dumps({**MESSAGE, "body": char * (12 // width) + "x"})
        assert Message.decode(fits, max_body_bytes=12).body == char * (12 // width)
        with pytest.raises(SchemaError, match=r"^message\.body: expected at most 12 UTF-8 bytes, got 13 bytes$"):
            Message.decode(over, max_body_bytes=12)
    assert Message.decode(orjson.dumps({**MESSAGE, "body": "x" * 3}), max_body_bytes=12).body == "xxx"


def test_epoch_seconds_at_the_edges_of_the_range():
    for value, expected in ((0, 0.0), (-0.0, 0.0), (1.0000004, 1.0), (32503679999.5, 32503679999.5)):
        assert Message.decode(orjson.dumps({**MESSAGE, "timestamp": value})).timestamp == expected
    for value in (-1e-9, 32503680000, 1e300, True):
        with pytest.raises(SchemaError, match="timestamp"):
            Message.decode(orjson.dumps({**MESSAGE, "timestamp": value}))


#: Values that probe where msgspec and the reference parser could disagree.
ODD_VALUES = [
    None, True, False, 0, -1, 1.0, 1.5, -0.0, 2**53, 2**63, 2**64, 10**30, 1e300, "", " ", "\u2003", "\x1c",
    "x", " a > b ", "a>>b", "a > " * 6 + "a", "1970-01-01", "2026-11-30T09:15:00+01:00", "nope", [], [1], {},
    {"a": 1}, {"": 1}, {" ": "x"}, {"a": True}, {"a": None}, {"a": 2**64}, [{"name": "A"}, {"name": " A"}],
    [{"name": "A", "sentiment": "positive"}], [{"name": "A", "extra": 1}], "review", "remove", "teach", "email",
]  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
def test_odd_values_give_the_same_answer_on_both_paths(seed):
    rng = random.Random(seed)
    bases = [
        (Message, MESSAGE),
        (Annotation, ANNOTATION),
        (Annotation, {**ANNOTATION, "labels": [], "message": {**MESSAGE, "id": ANNOTATION["message_id"]}}),
        (Event, {"source_topic": "t", "partition": 0, "offset": 5, "message": MESSAGE}),
        (
            Prediction,
            {
                "dataset": "d",
                "message_id": "m",
                "timestamp": 1,
                "model_version": 0,
                "confidences": {"A": 0.5},
                "labels": ["A"],
                "informative": True,
            },
        ),
    ]
    for _ in range(1500):
        kind, base = rng.choice(bases)
        data = dict(base)
        for _ in range(rng.randint(1, 2)):
            key = rng.choice([*data, "unknown"])
            if rng.random() < 0.1:
                data.pop(key, None)
            else:
                data[key] = rng.choice(ODD_VALUES)
        raw = json.dumps(data).encode()  # orjson refuses integers past 64 bits
        fast, reference = _both(kind, raw)
        if fast is not None:  # accepted on the fast path: the reference accepts the same record
            assert fast == reference, raw
        with pytest.raises(SchemaError) if isinstance(reference, str) else _nothing():
            assert kind.decode(raw) == reference


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
