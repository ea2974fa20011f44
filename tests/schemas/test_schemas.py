"""The event contract: strict parsing with errors that name the field, and a faithful codec."""

from __future__ import annotations

import base64
import copy
import dataclasses
import pickle

import jsonschema
import orjson
import pytest

import schemas
from schemas import (
    Annotation,
    DeadLetter,
    Event,
    Message,
    MetricsSnapshot,
    Prediction,
    SchemaError,
    SuggestionList,
)
from schemas._typed import Record
from schemas.jsonschema import TOPIC_TYPES, rendered, stale

MESSAGE = {
    "dataset": "support",
    "id": "m-1042",
    "timestamp": "2026-11-30T09:15:00Z",
    "channel": "email",
    "subject": "Card not arrived",
    "body": "Hello, I ordered a card two weeks ago...",
    "from": "ann@example.com",
    "to": "help@bank.example",
    "cc": "",
    "thread_id": "t-77",
    "language": "en",
    "metadata": {"country": "UK", "amount": 120.5},
}
ANNOTATION = {
    "dataset": "support",
    "message_id": "m-1042",
    "timestamp": "2026-11-30T09:20:00Z",
    "labels": [{"name": "Card > Delivery"}, {"name": "Urgent", "sentiment": "negative"}],
    "mode": "teach",
    "annotator": "ann",
    "action": "review",
}


def with_(base: dict, **changes) -> bytes:
    data = {**base}
    for key, value in changes.items():
        key = key.rstrip("_")
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return orjson.dumps(data)


class SmallBodyLimit:
    """Decodes messages with a 10-byte body limit (the limit is configurable)."""

    @staticmethod
    def decode(raw: bytes):
        return Message.decode(raw, max_body_bytes=10)


MALFORMED = [
    # (type, raw bytes, exact error)
    (Message, b"", "message: expected a JSON object, got empty input"),
    (Message, b"\xff\xfe{}", "message: expected UTF-8 encoded JSON, got invalid byte 0xff at position 0"),
    (
        Message,
        b'{"dataset": "d", "id": "caf\xc3", "timestamp": 0}',
        "message: expected UTF-8 encoded JSON, got invalid byte 0xc3 at position 27",
    ),
    (Message, b"[1, 2]", "message: expected an object, got a list"),
    (Message, b'"just text"', "message: expected an object, got 'just text'"),
    (Message, with_(MESSAGE, id=...), "message.id: expected a value (the field is required), got nothing"),
    (Message, with_(MESSAGE, id=""), "message.id: expected a non-empty string, got ''"),
    (Message, with_(MESSAGE, id="   "), "message.id: expected a non-empty string, got '   '"),
    (Message, with_(MESSAGE, id=42), "message.id: expected a non-empty string, got 42"),
    (Message, with_(MESSAGE, dataset=None), "message.dataset: expected a non-empty string, got null"),
    (
        Message,
        with_(MESSAGE, timestamp="yesterday"),
        "message.timestamp: expected an ISO-8601 timestamp or epoch seconds, got 'yesterday'",
    ),
    (
        Message,
        with_(MESSAGE, timestamp=True),
        "message.timestamp: expected an ISO-8601 timestamp or epoch seconds, got true",
    ),
    (Message, with_(MESSAGE, timestamp=-5), "message.timestamp: expected a time between 1970 and 2999, got -5"),
    (
        Message,
        with_(MESSAGE, channel="fax"),
        "message.channel: expected one of 'email', 'chat', 'call', 'other', got 'fax'",
    ),
    (Message, with_(MESSAGE, body=["a", "b"]), "message.body: expected a string, got a list"),
    (
        Message,
        with_(MESSAGE, sender="x@y"),
        "message.sender: expected a known field (body, cc, channel, dataset, from, id, language, metadata, "
        "subject, thread_id, timestamp, to), got an unknown field",
    ),
    (
        Message,
        with_(MESSAGE, metadata={"vip": True}),
        "message.metadata.vip: expected a string or an integer or a number, got true",
    ),
    (
        Message,
        with_(MESSAGE, metadata={"nested": {"a": 1}}),
        "message.metadata.nested: expected a string or an integer or a number, got an object",
    ),
    (Message, with_(MESSAGE, metadata=[1]), "message.metadata: expected an object, got a list"),
    (
        SmallBodyLimit,
        b'{"dataset": "d", "id": "1", "timestamp": 0, "body": "' + b"x" * 11 + b'"}',
        "message.body: expected at most 10 UTF-8 bytes, got 11 bytes",
    ),
    (
        SmallBodyLimit,
        b'{"dataset": "d", "id": "1", "timestamp": 0, "body": "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"}',
        "message.body: expected at most 10 UTF-8 bytes, got 12 bytes",
    ),
    (
        Annotation,
        with_(ANNOTATION, labels=[{"name": "A"}, {"name": "B"}, {"name": 42}]),
        "annotation.labels[2].name: expected a non-empty string, got 42",
    ),
    (
        Annotation,
        with_(ANNOTATION, labels=[{"name": "A > > B"}]),
        "annotation.labels[0].name: expected a label name whose parts ('Parent > Child') are all non-empty, got 'A > > B'",
    ),
    (
        Annotation,
        with_(ANNOTATION, labels=[{"name": "Billing >"}]),
        "annotation.labels[0].name: expected a label name whose parts ('Parent > Child') are all non-empty, got 'Billing >'",
    ),
    (
        Annotation,
        with_(ANNOTATION, labels=[{"name": "A>B>C>D>E>F"}]),
        "annotation.labels[0].name: expected a label name of at most 5 levels, got 6 levels",
    ),
    (
        Annotation,
        with_(ANNOTATION, labels=[{"name": "Urgent"}, {"name": " Urgent "}]),
        "annotation.labels[1].name: expected each label once, got 'Urgent' again",
    ),
    (Annotation, with_(ANNOTATION, labels="Urgent"), "annotation.labels: expected a list, got 'Urgent'"),
    (Annotation, with_(ANNOTATION, labels=["Urgent"]), "annotation.labels[0]: expected an object, got 'Urgent'"),
    (
        Annotation,
        with_(ANNOTATION, labels=[{"name": "Urgent", "sentiment": "angry"}]),
        "annotation.labels[0].sentiment: expected one of 'positive', 'negative', got 'angry'",
    ),
    (
        Annotation,
        with_(ANNOTATION, mode="guess"),
        "annotation.mode: expected one of 'shuffle', 'teach', 'check', 'missed', 'low_confidence', 'rebalance', "
        "'search', 'label', 'other', got 'guess'",
    ),
    (
        Annotation,
        with_(ANNOTATION, action="delete"),
        "annotation.action: expected one of 'review', 'remove', got 'delete'",
    ),
    (
        Annotation,
        with_(ANNOTATION, action="remove"),
        "annotation.labels: expected no labels when action is 'remove', got 2 labels",
    ),
    (
        Annotation,
        with_(ANNOTATION, message_id=...),
        "annotation.message_id: expected a value (the field is required), got nothing",
    ),
    (
        Annotation,
        with_(ANNOTATION, message={**MESSAGE, "id": "m-9"}),
        "annotation.message.id: expected 'm-1042' (the annotation's message_id), got 'm-9'",
    ),
    (
        Annotation,
        with_(ANNOTATION, message={**MESSAGE, "dataset": "other"}),
        "annotation.message.dataset: expected 'support' (the annotation's dataset), got 'other'",
    ),
    (
        Annotation,
        with_(ANNOTATION, message={**MESSAGE, "channel": "sms"}),
        "annotation.message.channel: expected one of 'email', 'chat', 'call', 'other', got 'sms'",
    ),
    (
        Annotation,
        with_(ANNOTATION, fields=[{"name": "amount", "start": 5, "end": 2}]),
        "annotation.fields[0].end: expected a position at or after start (5), got 2",
    ),
    (
        Annotation,
        with_(ANNOTATION, fields=[{"name": "amount", "start": -1, "end": 2}]),
        "annotation.fields[0].start: expected a number at least 0, got -1",
    ),
]


def _case_id(value):
    return value[:48] if isinstance(value, str) else None


@pytest.mark.parametrize(("kind", "raw", "error"), MALFORMED, ids=_case_id)
def test_malformed_input_is_rejected_with_an_exact_error(kind, raw, error):
    with pytest.raises(SchemaError) as caught:
        kind.decode(raw)
    assert str(caught.value) == error


def test_there_are_at_least_25_malformed_cases():
    assert len(MALFORMED) >= 25


def test_invalid_json_names_the_parser_position():
    with pytest.raises(SchemaError, match=r"^message: expected a JSON object, got invalid JSON \(.*char \d+"):
        Message.decode(b'{"dataset": "d", "id": "1", "timestamp": 0,')


def test_schema_error_keeps_its_parts():
    with pytest.raises(SchemaError) as caught:
        Annotation.decode(with_(ANNOTATION, labels=[{"name": 42}]))
    assert (caught.value.path, caught.value.expected, caught.value.found) == (
        "annotation.labels[0].name",
        "a non-empty string",
        "42",
    )


def test_the_design_examples_parse():
    message = Message.decode(orjson.dumps(MESSAGE))
    assert message.sender == "ann@example.com"
    assert message.metadata == {"country": "UK", "amount": 120.5}
    annotation = Annotation.decode(orjson.dumps({**ANNOTATION, "message": MESSAGE}))
    assert annotation.message == message
    assert annotation.pinned_labels() == ("Card", "Card > Delivery", "Urgent")


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-30T09:15:00Z",
        "2026-11-30T09:15:00+00:00",
        "2026-11-30T10:15:00+01:00",
        "2026-11-30 09:15:00",
        1796030100,
        1796030100.0,
    ],
)
def test_timestamps_in_iso_8601_or_epoch_seconds_mean_the_same_time(stamp):
    assert Message.decode(with_(MESSAGE, timestamp=stamp)).timestamp == 1796030100.0


def test_label_names_are_normalised():
    annotation = Annotation.decode(with_(ANNOTATION, labels=[{"name": "  Card>Delivery "}]))
    assert annotation.labels[0].name == "Card > Delivery"


def test_an_empty_label_set_is_a_valid_review():
    annotation = Annotation.decode(with_(ANNOTATION, labels=[]))
    assert annotation.labels == () and annotation.action == "review"


def test_remove_needs_no_labels():
    assert Annotation.decode(with_(ANNOTATION, labels=..., action="remove")).action == "remove"


def test_defaults_fill_optional_fields():
    message = Message.decode(b'{"dataset": "d", "id": "1", "timestamp": 0}')
    assert (message.channel, message.body, message.metadata, message.thread_id) == ("other", "", {}, None)


@pytest.mark.parametrize(
    "record",
    [
        Message.from_dict(MESSAGE),
        Annotation.from_dict({**ANNOTATION, "message": MESSAGE, "fields": [{"name": "amount", "start": 1, "end": 4}]}),
        Event(source_topic="refinery.messages", partition=3, offset=17, message=Message.from_dict(MESSAGE)),
        Prediction(
            dataset="d",
            message_id="m",
            timestamp=1.5,
            model_version=3,
            confidences={"A": 0.9, "B": 0.1},
            labels=("A",),
            informative=True,
        ),
        SuggestionList.from_dict(
            {
                "dataset": "d",
                "timestamp": 2,
                "model_version": 1,
                "kind": "check_label",
                "label": "A",
                "items": [
                    {
                        "message_id": "m",
                        "kind": "check_label",
                        "label": "A",
                        "score": 0.1,
                        "reason": "pinned with A but scored 0.10",
                    }
                ],
            }
        ),
        DeadLetter(
            source_topic="refinery.messages",
            partition=0,
            offset=9,
            raw=base64.b64encode(b"\xff").decode(),
            reason="message: expected UTF-8 encoded JSON, got invalid byte 0xff at position 0",
            timestamp=3.0,
        ),
    ],
    ids=lambda r: type(r).__name__,
)
def test_encode_then_decode_gives_the_same_record(record):
    assert type(record).decode(record.encode()) == record


def test_event_carries_exactly_one_payload():
    with pytest.raises(SchemaError, match="^event: expected exactly one of message or annotation, got neither$"):
        Event.from_dict({"source_topic": "t", "partition": 0, "offset": 0})


def test_no_record_type_gives_its_records_a_dict():
    # Slotted: one object per record for the garbage collector, which walks every record the
    # workbench holds in each full collection (bench/README.md, "Garbage-collector pauses").
    kinds = [kind for kind in vars(schemas).values() if isinstance(kind, type) and issubclass(kind, Record)]
    assert len(kinds) > 20 and set(kinds) <= {getattr(schemas, name) for name in schemas.__all__}
    assert [kind.__name__ for kind in kinds if kind.__dictoffset__] == [], "make them slots=True (no __dict__)"


def test_records_built_every_way_have_no_dict():
    raw = orjson.dumps(
        {
            "source_topic": "annotations",
            "partition": 0,
            "offset": 7,
            "annotation": {**ANNOTATION, "message": {**MESSAGE, "id": ANNOTATION["message_id"]}},
        }
    )
    fast, reference = Event.decode(raw), Event._decode_reference(raw)
    built = [fast, reference, copy.deepcopy(fast), pickle.loads(pickle.dumps(fast)), dataclasses.replace(fast)]
    assert all(record == fast for record in built)
    for record in built:
        annotation = record.annotation
        for part in (record, annotation, annotation.message, *annotation.labels):
            assert not hasattr(part, "__dict__"), f"a {type(part).__name__} built that way has a __dict__"


def test_json_schema_files_are_current():
    assert stale() == [], "run: python -m schemas.jsonschema"


@pytest.mark.parametrize("topic", sorted(TOPIC_TYPES))
def test_json_schema_files_are_valid_json_schema(topic):
    jsonschema.Draft202012Validator.check_schema(TOPIC_TYPES[topic].json_schema())


def test_json_schema_accepts_what_the_parser_accepts():
    validator = jsonschema.Draft202012Validator(Annotation.json_schema())
    assert list(validator.iter_errors({**ANNOTATION, "message": MESSAGE})) == []
    validator = jsonschema.Draft202012Validator(Message.json_schema())
    assert list(validator.iter_errors(Message.from_dict(MESSAGE).to_dict())) == []


# Rules JSON Schema cannot express: cross-field checks, the configurable body limit, the year range
# and the depth of a hierarchy. Every other rule of the parser must hold in the schema files too.
BEYOND_JSON_SCHEMA = (
    "each label once",
    "the annotation's",
    "no labels when",
    "at or after start",
    "UTF-8",
    "a time between",
    "at most 5 levels",
    "JSON object",
)
SHAPE_ERRORS = [
    m for m in MALFORMED if m[0] in (Message, Annotation) and not any(b in m[2] for b in BEYOND_JSON_SCHEMA)
]


@pytest.mark.parametrize(("kind", "raw", "error"), SHAPE_ERRORS, ids=_case_id)
def test_json_schema_rejects_what_the_parser_rejects(kind, raw, error):
    validator = jsonschema.Draft202012Validator(kind.json_schema())
    assert list(validator.iter_errors(orjson.loads(raw))), f"schema accepted what the parser rejects: {error}"


def test_metrics_snapshot_round_trips():
    snapshot = MetricsSnapshot.from_dict(
        {
            "dataset": "d",
            "timestamp": 1,
            "model_version": 2,
            "reviewed": 3,
            "labels": {
                "A": {
                    "precision": 0.5,
                    "recall": None,
                    "f1": None,
                    "average_precision": 0.7,
                    "threshold": 0.4,
                    "support": 2,
                    "pinned": 9,
                    "thresholds": {"balanced": 0.4},
                    "warnings": [
                        {"code": "few_pinned", "severity": "amber", "message": "9 pinned", "action": "teach_label"}
                    ],
                }
            },
            "map": None,
            "coverage": 0.8,
            "balance": {"score": 55.0, "similarity": 0.6, "shuffle_share": 0.1},
            "rating": {
                "score": 61.0,
                "band": "Average",
                "ready": False,
                "factors": {"coverage": {"score": 80.0, "band": "Good", "metrics": {"coverage": 0.8}}},
            },
        }
    )
    assert MetricsSnapshot.decode(snapshot.encode()) == snapshot
    assert rendered()  # every topic has a schema file
