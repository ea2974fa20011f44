"""Exactly once with the real client: a delivery cut by a broker outage, then applied by the engines.

The worker's `Delivery` sends a batch of ``events`` records through the real aiokafka producer
to a broker of this test's own. Mid-delivery the broker stops: the record in flight fails (its
batch expires without a leader), the broker comes back, the later records are accepted, and
`Delivery` resends from the failed record on. ``events`` then holds a record after one that
followed it (the order of issue 13's defect 4: 1, 3, 2, 3). Read back from the broker and
applied by `PartitionEngines`, every input record counts exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from agents.ingest.datasets import banking77
from agents.kafka.ranges import read_range
from agents.worker.delivery import Delivery
from agents.worker.engines import PartitionEngines
from agents.worker.observability import Observability
from pipeline import Refiner, RefinerConfig
from schemas import Event
from tests.worker.test_worker_kafka import own_broker  # noqa: F401

pytestmark = pytest.mark.kafka

CONFIG = RefinerConfig(feature_bits=12, validation_window=200, live_window=200)


def _engine(dataset: str) -> Refiner:
    return Refiner(dataset, config=CONFIG, seed=0)


async def _deliver_across_an_outage(settings, values: list[bytes], cut: int) -> None:
    """Deliver ``values`` to ``events[0]``; the broker stops as ``values[cut]`` is sent and comes
    back once that record has failed, before the records after it are sent."""
    from aiokafka import AIOKafkaProducer

    from agents.kafka import broker

    # A short request timeout, so the record sent into the outage fails within seconds (the
    # worker's Faust producer gives up after producer_request_timeout, 20 minutes by default).
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, request_timeout_ms=4000, retry_backoff_ms=200, acks="all"
    )
    await producer.start()
    sent: list[asyncio.Future] = []
    cut_done = False

    async def send(topic, key, value, partition):
        nonlocal cut_done
        if value == values[cut] and not cut_done:
            cut_done = True
            await asyncio.gather(*sent)  # everything before the cut is durable
            await asyncio.to_thread(broker.stop, settings, quiet=True)
            future = await producer.send(topic, value, key=key, partition=partition)
            await asyncio.wait([future], timeout=120)
            assert future.done() and future.exception() is not None, "the record sent into the outage was accepted"
            await asyncio.to_thread(broker.start, settings, quiet=True)
            await _until_writable(producer, settings.topic("events"))
            return future
        future = await producer.send(topic, value, key=key, partition=partition)
        sent.append(future)
        return future

    try:
        delivery = Delivery(send, Observability(), settings.topic("deadletter"))
        await delivery.deliver([(settings.topic("events"), b"banking77", v, 0) for v in values])
    finally:
        await producer.stop()


async def _until_writable(producer, topic: str, timeout: float = 60.0) -> None:
    """Until the restarted broker takes a record on ``topic`` again (partition 1: the log under
    test is partition 0's), so the records after the cut are sent to a broker that is back (its
    answering a metadata request is not enough: a record sent before its partitions have a
    leader may expire too)."""
    from aiokafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    while True:
        try:
            await producer.send_and_wait(topic, b"probe", partition=1)
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def test_a_delivery_cut_by_a_broker_outage_is_applied_exactly_once(own_broker, datasets):  # noqa: F811
    settings = own_broker
    messages = [m for m, _ in itertools.islice(banking77(), 30)]
    topic = settings.topic("messages")
    values = [Event(source_topic=topic, partition=0, offset=i, message=m).encode() for i, m in enumerate(messages)]
    asyncio.run(_deliver_across_an_outage(settings, values, cut=10))

    log = asyncio.run(read_range(settings.bootstrap, settings.topic("events"), 0, 0, None))
    offsets = [Event.decode(v).offset for _, _, v in log]
    first = list(dict.fromkeys(offsets))  # each source offset at its first appearance
    assert sorted(first) == list(range(30))
    assert first != sorted(first), f"no record landed after a later one: {offsets}"
    assert len(offsets) > 30  # and some were written twice

    engines = PartitionEngines(settings.topic("events"), 0, _engine, Refiner.restore)
    outcome = engines.apply([(o, v) for o, _, v in log], now=0)
    assert outcome.messages == 30 and outcome.skipped == len(offsets) - 30
    assert sorted(p.message_id for p in outcome.predictions) == sorted(m.id for m in messages)
    reference = _engine("banking77")
    for offset in first:
        reference.observe(messages[offset])
    assert engines.engines["banking77"].snapshot() == reference.snapshot()
