"""The input contract's caps (`schemas.limits.Limits`): each names its variable, and a record
within them grows by at most `Limits.growth` when the sequencer re-encodes it into ``events``."""

from __future__ import annotations

import orjson
import pytest

from schemas import Annotation, Event, Message, SchemaError
from schemas.limits import Limits

LIMITS = Limits()


def _worst_review(limits: Limits) -> bytes:
    """A review that grows most when re-encoded: every optional field left out, the most labels
    with the most separators written without spaces, the most fields, an inline message whose
    metadata numbers are short exponents and whose timestamps are exponents too; the body and
    the subject fill the record up to ``input_bytes``."""
    labels = [{"name": f"a{i}>b>c>d>e"} for i in range(limits.labels_per_review)]
    fields = [{"name": "f", "start": 0, "end": 0} for _ in range(limits.labels_per_review)]
    metadata = {f"k{i}": 9e15 for i in range(limits.metadata_keys)}
    message = {"dataset": "d", "id": "m", "timestamp": 3e10, "metadata": metadata, "subject": "", "body": ""}
    review = {"dataset": "d", "message_id": "m", "timestamp": 3e10, "labels": labels, "fields": fields}
    review["message"] = message
    raw = orjson.dumps(review).replace(b"9000000000000000.0", b"9e15").replace(b"30000000000.0", b"3e10")
    room = limits.input_bytes - len(raw)
    body = min(room, limits.body_bytes)
    raw = raw.replace(b'"body":""', b'"body":"' + b"x" * body + b'"')
    return raw.replace(b'"subject":""', b'"subject":"' + b"s" * (room - body) + b'"')


def test_the_worst_review_within_the_caps_grows_by_less_than_the_documented_growth():
    raw = _worst_review(LIMITS)
    assert len(raw) == LIMITS.input_bytes
    review = Annotation.decode(raw, max_body_bytes=LIMITS.input_bytes)
    LIMITS.check(review)

    event = Event(source_topic="p" * 200 + "annotations", partition=9999, offset=2**63 - 1, annotation=review)

    grown = len(event.encode()) - len(raw)
    assert grown > 0.5 * LIMITS.growth()  # the case is a real worst case, not a gentle one
    assert grown <= LIMITS.growth() + 96 + 211  # the envelope, as agents.worker.sizes counts it


def test_a_minimal_message_grows_by_less_than_the_documented_growth():
    raw = b'{"dataset":"d","id":"m","timestamp":3e10}'
    event = Event(source_topic="p" * 200 + "messages", partition=9999, offset=2**63 - 1, message=Message.decode(raw))

    assert len(event.encode()) - len(raw) <= LIMITS.growth() + 96 + 211


@pytest.mark.parametrize(
    ("limits", "record", "variable"),
    [
        (
            Limits(labels_per_review=2),
            {"dataset": "d", "message_id": "m", "timestamp": 0, "labels": [{"name": n} for n in "ABC"]},
            "REFINERY_MAX_LABELS_PER_REVIEW",
        ),
        (
            Limits(label_chars=8),
            {"dataset": "d", "message_id": "m", "timestamp": 0, "labels": [{"name": "a" * 9}]},
            "REFINERY_MAX_LABEL_CHARS",
        ),
        (Limits(id_chars=8), {"dataset": "d" * 9, "id": "m", "timestamp": 0}, "REFINERY_MAX_ID_CHARS"),
        (
            Limits(metadata_keys=1),
            {"dataset": "d", "id": "m", "timestamp": 0, "metadata": {"a": 1, "b": 2}},
            "REFINERY_MAX_METADATA_KEYS",
        ),
        (
            Limits(metadata_bytes=20),
            {"dataset": "d", "id": "m", "timestamp": 0, "metadata": {"a": "x" * 20}},
            "REFINERY_MAX_METADATA_BYTES",
        ),
        (Limits(body_bytes=3), {"dataset": "d", "id": "m", "timestamp": 0, "body": "abcd"}, "REFINERY_MAX_BODY_BYTES"),
        (
            Limits(id_chars=8),
            {
                "dataset": "d",
                "message_id": "m",
                "timestamp": 0,
                "message": {"dataset": "d", "id": "m", "timestamp": 0, "thread_id": "t" * 9},
            },
            "REFINERY_MAX_ID_CHARS",
        ),
    ],
)
def test_a_record_over_a_cap_is_a_limit_error_naming_the_variable(limits, record, variable):
    kind = Annotation if "message_id" in record else Message
    parsed = kind.decode(orjson.dumps(record))

    with pytest.raises(SchemaError, match=variable) as raised:
        limits.check(parsed)

    assert raised.value.kind == "limit"


def test_a_record_at_every_cap_passes():
    limits = Limits(labels_per_review=3, label_chars=8, metadata_keys=2)
    review = Annotation.decode(
        orjson.dumps(
            {
                "dataset": "d",
                "message_id": "m",
                "timestamp": 0,
                "labels": [{"name": "a" * 8}, {"name": "b"}, {"name": "c"}],
                "message": {"dataset": "d", "id": "m", "timestamp": 0, "metadata": {"a": 1, "b": 2}},
            }
        )
    )

    limits.check(review)


def test_the_record_size_is_checked_on_the_bytes_as_produced():
    with pytest.raises(SchemaError, match="REFINERY_MAX_INPUT_BYTES"):
        Limits(input_bytes=1024).check_size(b" " * 1025, "message")
    Limits(input_bytes=1024).check_size(b" " * 1024, "message")
