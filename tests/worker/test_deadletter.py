"""The sequencer's decision for each input record: forward it into ``events``, or dead-letter it."""

from __future__ import annotations

import orjson
import pytest

from agents.worker.deadletter import letter, raw_value
from agents.worker.sequencer import owner_partition, sequence
from schemas import DeadLetter, Event

PARTITIONS = 4
HOME = owner_partition("support", PARTITIONS)
MESSAGE = {"dataset": "support", "id": "m-1", "timestamp": "2026-11-30T09:15:00Z", "body": "Card not arrived"}
REVIEW = {"dataset": "support", "message_id": "m-1", "timestamp": 1, "labels": [{"name": "Card > Delivery"}]}


def _sequence(raw, role="messages", partition=HOME, **kw):
    return sequence(
        raw,
        role=role,
        topic=f"refinery.{role}",
        partition=partition,
        offset=17,
        partitions=PARTITIONS,
        now=1000.0,
        key=b"support",
        **kw,
    )


def test_a_valid_message_is_forwarded_with_its_source_position():
    event = _sequence(orjson.dumps(MESSAGE))
    assert isinstance(event, Event)
    assert (event.source_topic, event.partition, event.offset) == ("refinery.messages", HOME, 17)
    assert event.message.id == "m-1" and event.annotation is None


def test_a_valid_review_is_forwarded_as_an_annotation_event():
    event = _sequence(orjson.dumps(REVIEW), role="annotations")
    assert isinstance(event, Event) and event.annotation.pinned_labels() == ("Card", "Card > Delivery")


def test_bytes_that_are_not_json_are_dead_lettered_as_decode_errors_with_the_raw_bytes():
    raw = b"\xff\xfe not json"
    dead = _sequence(raw)
    assert isinstance(dead, DeadLetter)
    assert dead.error == "decode" and "UTF-8" in dead.reason
    assert raw_value(dead) == raw
    assert (dead.source_topic, dead.partition, dead.offset) == ("refinery.messages", HOME, 17)


def test_json_that_breaks_the_schema_names_the_field_in_the_reason():
    dead = _sequence(orjson.dumps({**MESSAGE, "channel": "fax"}))
    assert dead.error == "schema"
    assert dead.reason.startswith("message.channel: expected one of")


def test_a_message_sent_to_the_annotations_topic_is_dead_lettered():
    dead = _sequence(orjson.dumps(MESSAGE), role="annotations")
    assert dead.error == "schema" and "annotation." in dead.reason


def test_a_dataset_on_the_wrong_partition_is_dead_lettered_so_that_it_keeps_one_owner():
    elsewhere = (HOME + 1) % PARTITIONS
    dead = _sequence(orjson.dumps(MESSAGE), partition=elsewhere)
    assert dead.error == "partition" and dead.dataset == "support"
    assert f"belongs to partition {HOME}" in dead.reason and "key = the dataset name" in dead.reason


def test_a_body_over_the_limit_is_dead_lettered_not_raised():
    dead = _sequence(orjson.dumps({**MESSAGE, "body": "x" * 2000}), max_body_bytes=1000)
    assert dead.error == "schema" and "body" in dead.reason


def test_a_record_without_value_is_dead_lettered():
    dead = _sequence(None)
    assert dead.error == "decode" and dead.raw == ""


def test_a_dead_letter_is_a_valid_deadletter_record_on_the_wire():
    dead = _sequence(b"{")
    assert DeadLetter.decode(dead.encode()) == dead


def test_an_unknown_error_category_is_a_programming_error():
    with pytest.raises(ValueError, match="expected one of"):
        letter(b"", topic="t", partition=0, offset=0, error="oops", reason="", now=0)


def test_a_huge_rejected_record_keeps_only_its_first_bytes_and_says_so():
    from agents.worker.deadletter import MAX_RAW_BYTES

    raw = b"{" + b"x" * (3 * MAX_RAW_BYTES)
    dead = _sequence(raw)
    assert len(raw_value(dead)) == MAX_RAW_BYTES and raw.startswith(raw_value(dead))
    assert f"truncated to its first {MAX_RAW_BYTES} of {len(raw)} bytes" in dead.reason
