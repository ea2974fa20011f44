"""Records delivered in batches (`agents.worker.transport.BatchSend`) through the real client and
broker: each lands on the partition ``send`` would choose, in order, once; a batch the broker
refuses as too large is sent again record by record, and only the record too large is dead-lettered."""

from __future__ import annotations

import asyncio

import pytest

from agents.kafka.ranges import read_range
from agents.worker.delivery import Delivery
from agents.worker.observability import Observability
from agents.worker.sequencer import owner_partition
from agents.worker.transport import BatchSend
from schemas import DeadLetter
from tests.conftest import TEST_PARTITIONS

pytestmark = pytest.mark.kafka


class CountingBatchSend(BatchSend):
    """The real `BatchSend`, counting the batches it schedules."""

    batches = 0

    async def __call__(self, records):
        out = await super().__call__(records)
        self.batches += len(out)
        return out


async def _deliver(settings, records, *, alone_bytes=262_144):
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=5, max_batch_size=262_144)
    await producer.start()
    singles = []

    async def send(topic, key, value, partition):  # Faust's producer.send, as the worker's `send`
        singles.append(value)
        return await producer.send(topic, value, key=key, partition=partition)

    try:
        send_many = CountingBatchSend(lambda: producer, alone_bytes=alone_bytes)
        obs = Observability()
        await Delivery(send, obs, settings.topic("deadletter"), send_many).deliver(records)
        return send_many.batches, singles, obs
    finally:
        await producer.stop()


def _values(settings, topic, partition):
    return [v for _, _, v in asyncio.run(read_range(settings.bootstrap, settings.topic(topic), partition, None, None))]


def test_batched_records_land_on_the_partition_of_their_key_in_order_once_each(topics):
    settings = topics
    events = [(settings.topic("events"), b"banking77", f"e{i}".encode(), 2) for i in range(300)]
    predictions = [(settings.topic("predictions"), f"ds{i % 7}".encode(), f"p{i}".encode(), None) for i in range(300)]
    records = [r for pair in zip(events, predictions) for r in pair]
    batches, singles, obs = asyncio.run(_deliver(settings, records))

    assert batches <= 2 * TEST_PARTITIONS and singles == []  # one batch per topic partition, not 600 sends
    assert _values(settings, "events", 2) == [v for _, _, v, _ in events]
    for p in range(TEST_PARTITIONS):  # the producer's partitioner: Kafka's default, as `send` uses
        mine = [v for _, key, v, _ in predictions if owner_partition(key.decode(), TEST_PARTITIONS) == p]
        assert _values(settings, "predictions", p) == mine
    assert obs.events_out.labels(settings.topic("predictions"))._value.get() == 300


def test_a_batch_refused_as_too_large_is_sent_record_by_record(topics):
    from kafka.admin import KafkaAdminClient, NewTopic

    settings = topics
    small = settings.topic("small")  # a topic whose records may be 2,000 bytes at most
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap)
    try:
        admin.create_topics([NewTopic(small, 1, 1, topic_configs={"max.message.bytes": "2000"})])
    finally:
        admin.close()
    values = [bytes([65 + i]) * 400 for i in range(12)]  # each fits; together they are ~5 KB
    values.insert(6, b"X" * 5000)  # this one never fits
    records = [(small, b"banking77", v, 0) for v in values]
    _, singles, obs = asyncio.run(_deliver(settings, records))

    assert singles[:13] == values  # the whole batch was refused, then each record was sent alone
    assert _values(settings, "small", 0) == values[:6] + values[7:]
    (dead,) = [DeadLetter.decode(v) for p in range(TEST_PARTITIONS) for v in _values(settings, "deadletter", p)]
    assert dead.error == "undeliverable" and dead.source_topic == small
    assert obs.events_out.labels(small)._value.get() == 12
