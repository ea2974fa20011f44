"""`Delivery.deliver`: every record durable before the caller goes on, in order, whatever the broker does."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError

from agents.worker.deadletter import raw_value
from agents.worker.delivery import Delivery
from agents.worker.observability import Observability
from schemas import DeadLetter


class Broker:
    """A stand-in for Faust's producer: records what it accepted; fails as told, and as Faust does
    (a too-large record is aiokafka's error wrapped in ``ProducerSendError``)."""

    def __init__(self, failures=(), too_large=()):
        self.accepted: list[bytes] = []
        self.dead_letters: list[bytes] = []
        self.failures = list(failures)  # values whose next delivery times out (once each)
        self.too_large = set(too_large)  # values refused at send time, always

    async def send(self, topic, key, value, partition):
        if value in self.too_large:
            try:  # faust.transport.drivers.aiokafka.Producer.send
                raise MessageSizeTooLargeError(f"{len(value)} bytes")
            except MessageSizeTooLargeError as exc:
                raise ProducerSendError(f"Error while sending: {exc!r}") from exc
        future = asyncio.get_running_loop().create_future()
        if topic == "deadletter":
            self.dead_letters.append(value)
            future.set_result(None)
            return future
        if value in self.failures:
            self.failures.remove(value)
            future.set_exception(KafkaTimeoutError("broker unavailable"))
        else:
            self.accepted.append(value)
            future.set_result(None)
        return future

    async def send_many(self, records, batch_records=5):
        """As `agents.worker.transport.BatchSend`: per partition, batches of at most
        ``batch_records`` (a full batch builder), one future each; a batch fails or lands whole."""
        groups: dict = {}
        for i, (topic, _, _, partition) in enumerate(records):
            groups.setdefault((topic, partition), []).append(i)
        out = []
        for indexes in groups.values():
            for start in range(0, len(indexes), batch_records):
                chunk = indexes[start : start + batch_records]
                values = [records[i][2] for i in chunk]
                future = asyncio.get_running_loop().create_future()
                failing = [v for v in values if v in self.failures]
                if failing:
                    for value in failing:
                        self.failures.remove(value)
                    future.set_exception(KafkaTimeoutError("broker unavailable"))
                else:
                    self.accepted += values
                    future.set_result(None)
                out.append((chunk, future))
        return out


def _deliver(broker, values, batched=False):
    async def run():
        delivery = Delivery(broker.send, Observability(), "deadletter", broker.send_many if batched else None)
        await delivery.deliver([("t", None, v, 0) for v in values])
        return delivery

    return asyncio.run(run())


def test_a_failed_delivery_is_retried_from_the_failure_on_in_order():
    broker = Broker(failures=[b"2"])
    _deliver(broker, [b"1", b"2", b"3"])
    # 3 was accepted before 2 failed; everything from the failure on is sent again, in order.
    # 2 lands after the first 3: the engine must apply it, and drop only the second 3
    # (tests/worker/test_engines.py, test_a_record_resent_after_a_later_one_was_accepted...).
    assert broker.accepted == [b"1", b"3", b"2", b"3"]


def test_a_failed_batch_is_retried_from_its_first_record_on_in_order():
    broker = Broker(failures=[b"7"])
    _deliver(broker, [str(i).encode() for i in range(12)], batched=True)
    # batches 0-4, 5-9, 10-11: the second failed, the third landed; resent from 5 on, in batches again
    first, retried = broker.accepted[:7], broker.accepted[7:]
    assert first == [b"0", b"1", b"2", b"3", b"4", b"10", b"11"]
    assert retried == [str(i).encode() for i in range(5, 12)]


@pytest.mark.parametrize("batched", [False, True], ids=["record by record", "in batches"])
def test_under_any_pattern_of_failed_and_accepted_sends_the_engine_applies_each_record_once(monkeypatch, batched):
    import functools
    import random

    from agents.worker import delivery, retry

    # The same retry loop with millisecond waits: 200 patterns at the worker's 0.5-5 s took 3 minutes
    monkeypatch.setattr(delivery, "Backoff", functools.partial(retry.Backoff, first=0.001, cap=0.002))

    from agents.worker.applied import AppliedOffsets

    rng = random.Random(13)
    for _ in range(200):
        values = [str(i).encode() for i in range(rng.randrange(1, 40))]
        broker = Broker(failures=[v for v in values if rng.random() < 0.3] * rng.randrange(1, 3))
        _deliver(broker, values, batched)
        applied = AppliedOffsets()  # what PartitionEngines keeps per dataset and input partition
        first = [v for v in broker.accepted if applied.add(int(v))]
        assert sorted(first, key=int) == values


def test_a_record_the_broker_can_never_take_is_dead_lettered_counted_and_skipped_not_retried_forever():
    broker = Broker(too_large=[b"huge"])
    delivery = _deliver(broker, [b"1", b"huge", b"2"])
    assert broker.accepted == [b"1", b"2"]
    [dead] = [DeadLetter.decode(v) for v in broker.dead_letters]
    assert (dead.error, dead.source_topic, raw_value(dead)) == ("undeliverable", "t", b"huge")
    assert "MessageSizeTooLargeError" in dead.reason
    assert b'refinery_dead_letters_total{error="undeliverable"} 1.0' in delivery.obs.exposition()
