"""Head-of-line blocking is never silent: a partition with input and no progress is stalled,
logged once with its offset, in /readyz and in ``refinery_partition_stalled``."""

from __future__ import annotations

import asyncio
import logging

import orjson

from agents.settings import Settings
from agents.web.api import Api
from agents.worker.observability import Observability
from agents.worker.options import WorkerOptions
from agents.worker.service import Service
from agents.worker.stalls import StallWatch

log = logging.getLogger("test.stalls")
TP = ("refinery.messages", 1)


def _stalled_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("partition_stalled")]


def test_a_partition_waiting_on_one_offset_is_stalled_and_logged_once_with_it(caplog):
    watch = StallWatch(seconds=30, logger=log)
    caplog.set_level(logging.INFO)
    results = [watch.observe(TP, position=7, highwater=h, now=t) for t, h in ((0, 9), (20, 12), (31, 15), (60, 18))]
    assert results == [False, False, True, True]
    assert _stalled_lines(caplog) == [
        "partition_stalled topic='refinery.messages' partition=1 offset=7 waiting=8 seconds=31"
    ]
    assert watch.stalled(now=60) == [{"topic": "refinery.messages", "partition": 1, "offset": 7, "seconds": 60}]


def test_a_partition_that_moves_or_has_nothing_to_do_is_not_stalled():
    watch = StallWatch(seconds=30, logger=log)
    moving = [watch.observe(TP, position=t, highwater=t + 5, now=t) for t in range(0, 200, 10)]
    idle = [watch.observe(("refinery.events", 0), position=40, highwater=40, now=t) for t in range(0, 200, 10)]
    assert not any(moving) and not any(idle)
    assert watch.stalled(now=200) == []


def test_a_stalled_partition_that_moves_again_is_cleared():
    watch = StallWatch(seconds=10, logger=log)
    watch.observe(TP, position=3, highwater=9, now=0)
    assert watch.observe(TP, position=3, highwater=9, now=11)
    assert not watch.observe(TP, position=9, highwater=9, now=12)
    assert watch.stalled(now=12) == []


class Consumer:
    """What the service asks Faust's consumer: the highwater it fetched and the assignment.
    Like the real one, it knows no highwater for a partition it has not fetched yet."""

    def __init__(self, highwaters: dict[tuple[str, int], int]) -> None:
        self.highwaters = highwaters

    def highwater(self, tp):
        return self.highwaters.get((tp.topic, tp.partition))

    def assignment(self):
        from faust.types import TP

        return {TP(*tp) for tp in self.highwaters}


def test_a_sequencer_stuck_on_a_delivery_shows_in_readyz_the_gauge_and_the_log(caplog):
    caplog.set_level(logging.INFO)

    async def never(topic, key, value, partition):  # the broker never acknowledges
        return asyncio.get_running_loop().create_future()

    async def run():
        service = Service(Settings(), WorkerOptions(stall_seconds=0.0), never, Observability())
        service.on_assigned(set())
        messages = service.topics["messages"]
        record = b'{"dataset": "d", "id": "m-1", "timestamp": 0, "body": "hello"}'
        # partition 1 of messages: offset 41 is forwarded, never acknowledged; 9 more records wait
        stuck = asyncio.ensure_future(service.sequence_batch([(messages, 1, 41, b"d", record)]))
        await asyncio.sleep(0.05)
        consumer = Consumer({(messages, 1): 51})
        service.refresh_lag(consumer)
        assert service.ready  # the first look: nothing has been waiting yet
        await asyncio.sleep(0.01)
        service.refresh_lag(consumer)
        service.refresh_lag(consumer)
        status, body = Api(service).readyz()
        exposition = service.obs.exposition()
        stuck.cancel()
        return status, body, exposition

    status, body, exposition = asyncio.run(run())
    assert status == 503 and not body["ready"]
    assert [(s["topic"], s["partition"], s["offset"]) for s in orjson.loads(orjson.dumps(body))["stalled"]] == [
        ("refinery.messages", 1, 41)
    ]
    assert b'refinery_partition_stalled{partition="1",topic="refinery.messages"} 1.0' in exposition
    lines = _stalled_lines(caplog)
    assert len(lines) == 1 and "offset=41" in lines[0] and "waiting=10" in lines[0]


def test_each_partition_of_a_mixed_batch_makes_progress_not_only_the_last_ones():
    """The engine agent's batches mix the `events` partitions a worker owns: each partition's
    progress comes from its own last record (a batch's last record alone left the others at the
    first offset they delivered: stalled after REFINERY_STALL_SECONDS, /readyz 503)."""
    from types import SimpleNamespace

    from faust.types import Message as FaustMessage

    from agents.worker.partition import Partition

    async def run():
        service = Service(Settings(), WorkerOptions(stall_seconds=0.0), None, Observability())
        events = service.topics["events"]
        service.assigned = {0, 3}
        for p in (0, 3):
            service.partitions[p] = Partition(p)
        # one batch: partition 0's offsets 10-12 then partition 3's 40-41, as the conductor interleaves them
        batch = [
            SimpleNamespace(message=FaustMessage(events, p, offset, 0.0, 0, [], b"d", b"{}", None))
            for p, offset in ((0, 10), (3, 40), (0, 11), (0, 12), (3, 41))
        ]
        for p in (0, 3):
            service.partitions[p].delivered_from(min(e.message.offset for e in batch if e.message.partition == p))
        service.record_batch(Consumer({(events, 0): 13, (events, 3): 42}), batch)
        consumer = Consumer({(events, 0): 13, (events, 3): 42})  # every record handled: nothing waits
        for _ in range(3):
            service.refresh_lag(consumer)
            await asyncio.sleep(0.01)
        return service, {p: service.partitions[p].delivered for p in (0, 3)}

    service, delivered = asyncio.run(run())
    assert delivered == {0: 13, 3: 42}
    assert not service.stalled
    exposition = service.obs.exposition().decode()
    assert f'refinery_partition_stalled{{partition="0",topic="{service.topics["events"]}"}} 0.0' in exposition
