"""Reading a range of offsets (`agents.kafka.ranges.read_range`): exactly the records asked, in
log order, with their keys."""

from __future__ import annotations

import asyncio

import pytest

from agents.kafka import admin
from agents.kafka.ranges import read_range

pytestmark = pytest.mark.kafka


@pytest.fixture
def events(settings_for, unique_prefix):
    """The ``events`` topic of this test (2 partitions): ten records on partition 1, none on 0."""
    from kafka import KafkaProducer

    settings = settings_for(unique_prefix, partitions=2)
    admin.create_topics(settings, names=["events"])
    topic = settings.topic("events")
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    for i in range(10):
        producer.send(topic, key=b"support", value=f"e-{i}".encode(), partition=1)
    producer.flush()
    producer.close()
    yield settings.bootstrap, topic
    try:
        admin.delete_topics(settings, names=["events"])
    except Exception:  # cleanup never fails a test
        pass


def _read(bootstrap, topic, partition, start, end):
    return asyncio.run(read_range(bootstrap, topic, partition, start, end, timeout=30))


def test_a_whole_partition_is_read_in_log_order_with_keys(events):
    records = _read(*events, 1, None, None)

    assert records == [(i, b"support", f"e-{i}".encode()) for i in range(10)]


def test_a_range_stops_before_its_end_offset(events):
    assert [offset for offset, _, _ in _read(*events, 1, 3, 7)] == [3, 4, 5, 6]


def test_an_end_past_the_last_record_reads_up_to_the_last_record(events):
    assert [offset for offset, _, _ in _read(*events, 1, 8, 1000)] == [8, 9]


def test_an_empty_partition_reads_nothing(events):
    assert _read(*events, 0, None, None) == []
