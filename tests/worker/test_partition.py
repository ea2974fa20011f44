"""`Partition`: one owner for everything the worker knows about one ``events`` partition.

No Kafka: the restore is a coroutine the test controls, the held events are ackable records.
"""

from __future__ import annotations

import asyncio
import logging

from agents.worker.engines import PartitionEngines
from agents.worker.partition import Partition
from agents.worker.retry import Backoff
from pipeline import Refiner


class Held:
    """A Faust event as the partition sees it: ``ack()`` releases its offset for commit."""

    def __init__(self) -> None:
        self.acked = False

    def ack(self) -> None:
        self.acked = True


def _engines(p: int = 0) -> PartitionEngines:
    return PartitionEngines("refinery.events", p, lambda d: Refiner(d, seed=0), Refiner.restore)


def test_held_events_are_acked_only_when_the_partition_acks():
    partition = Partition(0)
    events = [Held(), Held()]
    partition.hold(events, now=0.0)
    assert [e.acked for e in events] == [False, False]
    partition.ack()
    assert [e.acked for e in events] == [True, True] and partition.held == []


def test_a_snapshot_is_due_from_the_first_held_event_not_the_last():
    partition = Partition(0)
    partition.hold([Held()], now=10.0)
    partition.hold([Held()], now=35.0)
    assert partition.snapshot_due(now=40.0, seconds=30.0)
    partition.ack()
    assert not partition.snapshot_due(now=1000.0, seconds=30.0)


def test_forgetting_drops_held_events_without_acking_them():
    partition = Partition(0)
    events = [Held()]
    partition.hold(events, now=0.0)
    partition.engines = _engines()
    partition.forget()
    assert events[0].acked is False  # the next owner replays them from the snapshots
    assert partition.held == [] and partition.engines is None and not partition.snapshot_due(now=99.0, seconds=1.0)


def test_the_restore_runs_once_with_the_replay_flag_and_its_engines_are_kept():
    calls = []

    async def load(p, replay):
        calls.append((p, replay))
        return _engines(p)

    async def run():
        partition = Partition(2, replay=True)
        partition.restore(load)
        partition.restore(load)  # already restoring: no second load
        engines = await partition.wait_restored()
        return partition, engines

    partition, engines = asyncio.run(run())
    assert calls == [(2, True)]
    assert partition.restored and partition.engines is engines and partition.replay is False


def test_a_partition_forgotten_while_restoring_gives_its_waiters_nothing():
    async def run():
        started = asyncio.Event()

        async def load(p, replay):
            started.set()
            await asyncio.sleep(3600)  # the broker is slow

        partition = Partition(1)
        partition.restore(load)
        waiter = asyncio.ensure_future(partition.wait_restored())
        await started.wait()
        partition.forget()
        return await waiter, partition

    engines, partition = asyncio.run(run())
    assert engines is None and not partition.restored


def test_the_lag_position_is_the_engines_once_they_applied_something_else_the_first_delivered_offset():
    partition = Partition(0)
    assert partition.position is None
    partition.delivered_from(40)
    partition.delivered_from(45)  # a later batch while the first is still in progress
    assert partition.position == 40
    partition.handled(49)
    assert partition.position == 50
    partition.engines = _engines()
    assert partition.position == 50  # restored but nothing applied yet
    partition.engines.position = 57
    assert partition.position == 57


# -- Backoff ---------------------------------------------------------------------------------


def test_backoff_doubles_from_half_a_second_up_to_five():
    backoff = Backoff()
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_backoff_logs_each_retry_as_a_structured_event_with_its_wait(caplog):
    async def run():
        backoff = Backoff(first=0.01, cap=0.02)
        await backoff.wait(logging.getLogger("refinery.test"), "delivery_retry", records=3)
        await backoff.wait(logging.getLogger("refinery.test"), "delivery_retry", records=1)

    with caplog.at_level(logging.WARNING, logger="refinery.test"):
        asyncio.run(run())
    assert [r.getMessage() for r in caplog.records] == [
        "delivery_retry records=3 retry_in=0.01",
        "delivery_retry records=1 retry_in=0.02",
    ]
