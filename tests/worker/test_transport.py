"""The worker's consumer waits at most ``REFINERY_FETCH_WAIT_SECONDS`` per fetch, not Faust's 1.5 s, for
``REFINERY_FETCH_MIN_BYTES``, not aiokafka's one byte."""

from __future__ import annotations

import asyncio

import pytest

from agents.settings import Settings
from agents.worker.app import create_app
from agents.worker.options import WorkerOptions
from agents.worker.transport import RESUME_POLL_SECONDS, take_batches


def _fetch(options: WorkerOptions) -> tuple[int, int]:
    """(fetch wait in ms, fetch minimum in bytes) of the aiokafka consumer Faust starts."""
    app = create_app(Settings(), options)

    async def build() -> tuple[int, int]:
        consumer = app.consumer._thread._create_worker_consumer(app.transport)  # what Faust starts
        return consumer._fetch_max_wait_ms, consumer._fetch_min_bytes  # handed to its Fetcher in start()

    return asyncio.run(build())


def test_the_worker_consumer_fetch_wait_is_the_setting():
    assert _fetch(WorkerOptions())[0] == 50
    assert _fetch(WorkerOptions.from_env({"REFINERY_FETCH_WAIT_SECONDS": "0.2"}))[0] == 200


def test_the_worker_consumer_fetch_minimum_is_the_setting_not_aiokafkas_one_byte():
    assert _fetch(WorkerOptions())[1] == 65_536
    assert _fetch(WorkerOptions.from_env({"REFINERY_FETCH_MIN_BYTES": "1"}))[1] == 1


# -- records delivered inline ------------------------------------------------------------------


def _running_consumer(app):
    """The app's consumer as the drain loop sees it once the worker runs: flow control active."""
    app.flow_control.resume()  # Faust resumes it once partitions are assigned
    return app.consumer


def test_a_record_is_delivered_inline_when_its_delivery_cannot_wait():
    app = create_app(Settings(), WorkerOptions())

    async def run():
        consumer = _running_consumer(app)
        app.topics.add(app.topic("refinery.messages"))
        tasks_before = len(asyncio.all_tasks())
        seen = []

        async def deliver():
            seen.append(len(asyncio.all_tasks()))  # no task of its own: it runs in the caller's
            return "delivered"

        result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        return result, seen, tasks_before, consumer.inline_deliveries, consumer.waited_deliveries

    result, seen, tasks_before, inline, waited = asyncio.run(run())
    assert result.results == ["delivered"] and not result.stopped
    assert seen == [tasks_before] and (inline, waited) == (1, 0)


def _full_queue(app):
    channel = app.topic("refinery.messages")
    app.topics.add(channel)
    while not channel.queue.full():
        channel.queue.put_nowait(None)


@pytest.mark.parametrize(
    "blocker",
    [
        pytest.param(_full_queue, id="a stream buffer full"),
        pytest.param(lambda app: app.flow_control.suspend(), id="flow suspended"),
        pytest.param(lambda app: setattr(app.producer.buffer, "max_messages", -1), id="producer buffer over"),
    ],
)
def test_a_delivery_that_could_wait_goes_through_wait_first_and_is_abandoned_on_suspend(blocker):
    """The drain loop's ``wait_first`` lets a rebalance (``suspend_flow``) abandon a delivery that
    waits on a full buffer; delivering it inline would block the rebalance behind it."""
    app = create_app(Settings(), WorkerOptions())

    async def run():
        consumer = _running_consumer(app)
        blocker(app)
        never = asyncio.get_running_loop().create_future()

        async def blocked_delivery():
            await never  # as the conductor's put into a full queue
            return "delivered"

        waiting = asyncio.ensure_future(consumer.wait_first(blocked_delivery(), consumer.suspend_flow.wait()))
        await asyncio.sleep(0.01)
        consumer.suspend_flow.set()  # a rebalance begins
        result = await asyncio.wait_for(waiting, 5)  # a deadlock guard, not a timing assertion
        return result, consumer.inline_deliveries, consumer.waited_deliveries

    result, inline, waited = asyncio.run(run())
    assert result.results == [True] and (inline, waited) == (
        0,
        1,
    )  # suspend_flow.wait() won: the delivery was cancelled


def test_only_the_drain_loops_pair_is_delivered_inline():
    app = create_app(Settings(), WorkerOptions())

    async def run():
        consumer = _running_consumer(app)
        other = asyncio.Event()

        async def work():
            return 1

        await consumer.wait_first(work(), other.wait(), timeout=1.0)  # some other Service.wait_first
        return consumer.inline_deliveries, consumer.waited_deliveries

    assert asyncio.run(run()) == (0, 0)


# -- a partition resumed after a full stream buffer ------------------------------------------


def _waits(paused: set, assigned: set) -> tuple[list, list]:
    """The waits of the app's consumer for its next records with the ``paused`` partitions of
    ``assigned`` buffered: (the timeouts handed to the consumer thread, Faust's own sleeps)."""
    from faust.types import TP

    app = create_app(Settings(), WorkerOptions())
    timeouts, sleeps = [], []

    async def thread_getmany(active_partitions, timeout):  # the consumer thread's: a RecordMap
        timeouts.append(timeout)
        return {}

    async def faust_sleep(seconds):
        sleeps.append(seconds)

    async def run():
        consumer = app.consumer
        consumer._thread.getmany = thread_getmany
        consumer.sleep = faust_sleep
        consumer._active_partitions = {TP(*tp) for tp in assigned}  # as Faust sets it on assignment
        for tp in paused:
            consumer.on_buffer_full(TP(*tp))  # as the conductor calls it when a stream's buffer fills
        return await consumer._wait_next_records(1.0)  # the drain loop's call (getmany(timeout=1.0))

    records, _ = asyncio.run(run())
    assert records == {}
    return timeouts, sleeps


def test_while_a_partition_is_paused_the_consumer_looks_again_soon():
    """Faust waits 1 s for records of the partitions active when the wait began: an ``events``
    partition resumed meanwhile (its stream drained) sat idle for the rest of it."""
    events, messages = ("refinery.events", 0), ("refinery.messages", 0)
    assert _waits(paused=set(), assigned={events, messages}) == ([1.0], [])
    timeouts, sleeps = _waits(paused={events}, assigned={events, messages})
    assert timeouts == [RESUME_POLL_SECONDS] and sleeps == []


def test_with_every_partition_paused_the_consumer_does_not_sleep_a_second():
    events = ("refinery.events", 0)
    assert _waits(paused={events}, assigned={events}) == ([], [])  # Faust's: ([], [1])


# -- batches without Faust's stream -----------------------------------------------------------


def _faust_event(app, offset, generation=0):
    from faust.events import Event as FaustEvent
    from faust.types.tuples import ConsumerMessage

    message = ConsumerMessage("refinery.events", 0, offset, 0.0, 0, [], b"k", b"v", None, generation_id=generation)
    message.incref()  # the conductor's one reference (one channel)
    return FaustEvent(app, b"k", b"v", [], message)


def _batches(app, events, size, seconds, batches):
    """The first ``batches`` batches `take_batches` yields with ``events`` in the agent's queue."""

    async def run():
        app.flow_control.resume()
        stream = app.stream(app.topic("refinery.events"))
        queue = aiter(stream.channel).queue
        for event in events:
            queue.put_nowait(event)
        taken = []
        async for batch in take_batches(app, stream, size, seconds):
            taken.append([e.message.offset for e in batch])
            if len(taken) == batches:
                return taken
        return taken

    return asyncio.run(asyncio.wait_for(run(), 10))  # a deadlock guard, not a timing assertion


def test_take_batches_cuts_at_the_size_and_skips_events_of_an_earlier_generation():
    app = create_app(Settings(), WorkerOptions())
    app.consumer_generation_id = 3
    acked = []
    app.consumer.ack = lambda message: acked.append(message.offset) or True  # Faust's Consumer.ack, recorded
    events = [_faust_event(app, offset, generation=2 if offset in (1, 4) else 3) for offset in range(7)]
    assert _batches(app, events, size=3, seconds=0.05, batches=3) == [[0, 2], [3, 5], [6]]
    assert acked == [1, 4]  # the stale ones are acked as skipped; the others wait for the caller's ack
    assert all(e.message.refcount == (0 if e.message.offset in (1, 4) else 1) for e in events)


def test_take_batches_yields_a_partial_batch_once_its_time_is_up():
    app = create_app(Settings(), WorkerOptions())
    events = [_faust_event(app, offset) for offset in range(2)]
    assert _batches(app, events, size=500, seconds=0.05, batches=1) == [[0, 1]]


def test_take_batches_ends_when_faust_stops_the_agent():
    app = create_app(Settings(), WorkerOptions())

    async def run():
        app.flow_control.resume()
        stream = app.stream(app.topic("refinery.events"))
        channel = aiter(stream.channel)
        channel.queue.put_nowait(_faust_event(app, 0))
        taken = []

        async def stop_soon():
            await asyncio.sleep(0.01)
            channel._throw(StopAsyncIteration())  # what faust.agents.actor.Actor.cancel does

        stopper = asyncio.ensure_future(stop_soon())
        async for batch in take_batches(app, stream, 500, 5.0):
            taken.append([e.message.offset for e in batch])
        await stopper
        return taken

    assert asyncio.run(asyncio.wait_for(run(), 10)) == [[0]]  # the batch taken goes first, then the end


# -- records decoded as their bytes -----------------------------------------------------------


def _records():
    from faust.types import Message

    def message(key, value, headers=()):
        return Message("refinery.events", 0, 7, 0.0, 0, list(headers), key, value, None)

    return [
        message(b"banking77", b'{"kind": "message"}'),
        message(None, b"{}"),  # a record without a key
        message(b"k", None),  # a tombstone
        message(b"", b""),
        message(b"k", b"\xff\xfe not UTF-8", [("h", b"v")]),
    ]


def test_the_raw_schema_gives_each_record_the_event_fausts_own_raw_schema_gives():
    import faust

    from agents.worker.transport import RawSchema

    app = create_app(Settings(), WorkerOptions())
    faust_decode = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw").compile(
        app
    )
    raw_decode = RawSchema().compile(app)

    async def both(message):
        return await faust_decode(message, propagate=True), await raw_decode(message, propagate=True)

    for message in _records():
        theirs, ours = asyncio.run(both(message))
        assert type(ours) is type(theirs)
        assert (ours.key, ours.value, ours.headers, ours.message) == (
            theirs.key,
            theirs.value,
            theirs.headers,
            theirs.message,
        )


def test_the_worker_topics_decode_with_the_raw_schema():
    from agents.worker.transport import RawSchema

    app = create_app(Settings(), WorkerOptions())
    topics = [agent.channel for agent in app.agents.values()]
    assert topics and all(isinstance(topic.schema, RawSchema) for topic in topics)
    event = asyncio.run(topics[0].decode(_records()[0]))
    assert (event.key, event.value) == (b"banking77", b'{"kind": "message"}')
