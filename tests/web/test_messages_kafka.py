"""`backfill_events` on the real broker: a partition first owned fills the workbench's store with
the recent end of its ``events`` records (the engine feeds the rest), once per ownership."""

from __future__ import annotations

import asyncio

import pytest
from kafka import KafkaProducer

from agents.web.messages import MessageStore, _size, backfill_events
from schemas import Annotation, Event, Message

pytestmark = pytest.mark.kafka


def _produce(settings, partition: int, events: list[Event]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap)
    for event in events:
        producer.send(settings.topic("events"), value=event.encode(), partition=partition)
    producer.flush()
    producer.close()


def _message(i: int, dataset: str = "d") -> Event:
    message = Message(dataset=dataset, id=f"m{i}", timestamp=i, body=f"text {i}")
    return Event(source_topic="refinery.messages", partition=0, offset=i, message=message)


def test_a_newly_owned_partition_backfills_its_recent_end_once_and_again_when_owned_again(topics):
    settings = topics
    _produce(settings, 1, [_message(i) for i in range(8)])
    review = Annotation(dataset="d", message_id="m5", timestamp=9)  # keeps m5 the most recent of the history
    _produce(settings, 1, [Event(source_topic="refinery.annotations", partition=0, offset=0, annotation=review)])
    _produce(settings, 2, [_message(100, "other")])  # not owned: never read
    store = MessageStore(max_messages=4)
    store.apply([Message(dataset="d", id="live", timestamp=50, body="applied by the engine")])
    owned = {1}

    async def run():
        stop = asyncio.Event()
        task = asyncio.create_task(
            backfill_events(store, settings, settings.topic("events"), lambda: set(owned), poll_seconds=0.1, stop=stop)
        )
        for _ in range(300):
            if len(store) == 4:
                break
            await asyncio.sleep(0.1)
        first = [m.id for m in store.recent()]
        owned.clear()  # revoked ...
        await asyncio.sleep(0.5)
        for _ in range(3):  # the backfilled three age out (as newer messages would push them)
            _, old = store.messages.popitem(last=False)
            store.bytes -= _size(old)
        owned.add(1)  # ... and owned again: read again
        for _ in range(300):
            if len(store) == 4:
                break
            await asyncio.sleep(0.1)
        second = [m.id for m in store.recent()]
        stop.set()
        await asyncio.wait_for(task, 10)
        return first, second

    first, second = asyncio.run(run())
    # the last 4 records of partition 1 are m5, m6, m7 and the review of m5; behind the live one
    assert first == ["live", "m5", "m7", "m6"]
    assert second == ["live", "m5", "m7", "m6"]
    assert store.get("other", "m100") is None
