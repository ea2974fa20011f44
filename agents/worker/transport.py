"""What the worker changes in Faust's Kafka transport, for throughput and latency (issue 11).

- `transport_class`: Faust's aiokafka transport whose consumer waits at most the fetch wait the
  worker chooses, and delivers records inline to the conductor when nothing can wait (below);
- `take_batches`: an agent's batches of events without Faust's stream around each event;
- `BatchSend`: records produced in batches of the worker's own, one acknowledgement per batch;
- `RawSchema`: a topic's records as the bytes Kafka delivered, without a codec per record.

Faust creates its aiokafka consumer with ``fetch_max_wait_ms=1500`` written in the code, and no
setting changes it. With one broker every partition the worker reads (``messages``,
``annotations``, ``events``) is fetched from the same node, and aiokafka keeps one fetch in
flight per node, leaving out the partitions whose records are still buffered. When the fetch in
flight names only partitions without new data, the broker holds it for the whole wait, and the
partitions meanwhile drained by the agents wait with it: both agents received nothing for up to
1.4 s while input arrived at 367 events/s (bench/README.md, *Service throughput*). A short wait
bounds that stall; an idle worker pays one small fetch request per wait.

aiokafka asks the broker to answer a fetch as soon as one byte waits (``fetch_min_bytes=1``).
Under steady input every fetch then came back with a record or a few, hundreds a second, each
handed from the consumer thread to the event loop and through the conductor: at 750 events/s
the worker fell 2 s behind, where it keeps up with 64 KiB (bench/README.md, *Fetches*). With
a minimum, a fetch waits until that much has arrived, or for the fetch wait at most.

Faust's consumer also hands each record to the conductor through ``wait_first(deliver(record),
suspend_flow.wait())``: four tasks and an ``asyncio.wait`` per record, so that a delivery
blocked on a full stream buffer (or on paused flow during a rebalance) can be abandoned. That
was 15.7% of the worker's event loop under load (bench/README.md). The consumer here delivers a
record inline when nothing it could wait for is pending: flow running, the producer's buffer
under its limit, the conductor's index unlocked and no channel's queue full. The delivery then
finishes without suspending, exactly as it would inside ``wait_first``; otherwise
``wait_first`` is used as before.

A stream whose buffer fills pauses its partition, which Faust resumes once the agent has taken
most of the buffer. Faust's drain loop asks the consumer thread for records of the partitions
active at the call and waits up to 1 s for them; a partition resumed meanwhile is not looked at
until that wait ends. In a flood, the ``events`` partition was resumed while the input
partitions had nothing more, and the engine received nothing for 0.6-0.9 s, twice in a 6 s run
(bench/README.md, *Resumed partitions*). While a partition is paused, the consumer here waits
at most `RESUME_POLL_SECONDS` per call, so a resumed partition is read at once.

>>> cls = transport_class(0.05)
>>> cls.Consumer.fetch_max_wait_ms, cls.Consumer.resume_poll_seconds
(50, 0.01)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver
from mode.services import WaitResults

__all__ = ["RESUME_POLL_SECONDS", "BatchSend", "RawSchema", "take_batches", "transport_class"]

#: Longest the consumer waits for records while a partition is paused by a full stream buffer.
RESUME_POLL_SECONDS = 0.01


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    """Faust's consumer thread; its aiokafka consumer waits at most ``fetch_max_wait_ms`` for
    ``fetch_min_bytes`` per fetch."""

    fetch_max_wait_ms = 1500
    fetch_min_bytes = 1

    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps the arguments here and hands them to its Fetcher in start(), not before
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        consumer._fetch_min_bytes = self.fetch_min_bytes
        return consumer


class _InlineDelivery:
    """Faust's consumer, delivering each record inline when its delivery cannot wait."""

    #: Records delivered inline / through ``wait_first`` (for tests and the curious).
    inline_deliveries = 0
    waited_deliveries = 0

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        if _is_delivery(self, coros, timeout):  # the drain loop's (deliver(record), suspend_flow.wait())
            if self._cannot_wait():
                deliver, waiter = coros
                waiter.close()  # suspend_flow.wait(), never started
                self.inline_deliveries += 1
                return WaitResults([deliver], [await deliver], False)
            self.waited_deliveries += 1
        return await super().wait_first(*coros, timeout=timeout)  # type: ignore[misc]

    def _cannot_wait(self) -> bool:
        """Whether the conductor's delivery of a record cannot suspend: every wait it could make
        has its condition met."""
        app = self.app  # type: ignore[attr-defined]
        if self.suspend_flow.is_set() or not app.flow_control.is_active():  # type: ignore[attr-defined]
            return False
        if self._producer_buffered(app):  # the conductor would wait for the producer's buffer to ebb
            return False
        conductor = app.topics
        if conductor._tp_to_callback_lock.locked():
            return False
        return not any(channel.queue.full() for channel in conductor._topics)

    _threaded: bool | None = None

    def _producer_buffered(self, app: Any) -> bool:
        """Whether Faust's producer buffer is over its limit: ``ProducerBuffer.size`` reads a
        setting through Faust's settings registry on every call (5% of the loop per record)."""
        if self._threaded is None:
            self._threaded = bool(app.conf.producer_threaded)
        buffer = app.producer.buffer
        queue = buffer.queue if self._threaded else buffer.pending
        return queue is not None and queue.qsize() > buffer.max_messages


class _PromptResume:
    """Faust's consumer, reading a partition resumed after a full stream buffer at once."""

    resume_poll_seconds = RESUME_POLL_SECONDS

    async def _wait_next_records(self, timeout: float) -> Any:
        if self._buffered_partitions and self.flow_active:  # type: ignore[attr-defined]
            # A paused partition is resumed on the event loop when its stream drains; the wait
            # below would not notice (it reads the partitions active when it began).
            if not self._get_active_partitions():  # type: ignore[attr-defined]
                await asyncio.sleep(self.resume_poll_seconds)  # Faust sleeps 1 s here
                return {}, set()
            timeout = min(timeout, self.resume_poll_seconds)
        return await super()._wait_next_records(timeout)  # type: ignore[misc]


def _is_delivery(consumer: Any, coros: tuple, timeout: Any) -> bool:
    """Whether ``coros`` are the drain loop's pair: a delivery and ``consumer.suspend_flow.wait()``."""
    if timeout is not None or len(coros) != 2:
        return False
    frame = getattr(coros[1], "cr_frame", None)
    return frame is not None and frame.f_locals.get("self") is consumer.suspend_flow


class BatchSend:
    """Schedules records through an aiokafka producer in batches, one per topic partition
    (`agents.worker.delivery.SendMany`).

    Faust's ``producer.send`` makes one future per record, and the producer resolves each with
    its own metadata: per record, two coroutines, a future, a callback and a named tuple on the
    event loop. Here a topic partition's records go into aiokafka's batch builders
    (``create_batch`` / ``send_batch``), each acknowledged once. A record without a partition goes
    to its key's, chosen by the producer's own partitioner as ``send`` would. Records larger than
    ``alone_bytes`` are left out of every batch (`Delivery` sends them one by one, through the
    size check of ``send``).

    Parameters
    ----------
    producer
        Returns the started aiokafka producer (Faust's, once the app runs).
    alone_bytes
        Records whose key and value exceed this many bytes are not batched.
    """

    def __init__(self, producer: Any, *, alone_bytes: int) -> None:
        self.producer = producer
        self.alone_bytes = alone_bytes

    async def __call__(self, records: Any) -> list[tuple[list[int], Any]]:
        producer = self.producer()
        groups: dict[tuple[str, int], list[int]] = {}
        chosen: dict[tuple[str, bytes | None], int] = {}  # the partitioner's choice per topic and key
        for i, (topic, key, value, partition) in enumerate(records):
            if len(key or b"") + len(value or b"") > self.alone_bytes:
                continue
            if partition is None and key is not None:  # a keyed record: its key's partition, once per key
                partition = chosen.get((topic, key))
            if partition is None:
                await producer.client._wait_on_metadata(topic)
                partition = producer._partition(topic, None, key, value, key, value)
                if key is not None:
                    chosen[topic, key] = partition
            groups.setdefault((topic, partition), []).append(i)
        out: list[tuple[list[int], Any]] = []
        for (topic, partition), indexes in groups.items():
            batch, members = producer.create_batch(), []
            for i in indexes:
                _, key, value, _ = records[i]
                if members and batch.append(key=key, value=value, timestamp=None) is None:  # full
                    out.append((members, await producer.send_batch(batch, topic, partition=partition)))
                    batch, members = producer.create_batch(), []
                if not members:
                    batch.append(key=key, value=value, timestamp=None)  # an empty batch takes any record
                members.append(i)
            out.append((members, await producer.send_batch(batch, topic, partition=partition)))
        return out


async def take_batches(app: Any, stream: Any, size: int, seconds: float) -> AsyncIterator[list]:
    """Batches of at most ``size`` of the Faust events an agent's ``stream`` receives, each
    gathered for at most ``seconds`` after its first event.

    What ``stream.take_events(size, seconds)`` gives, without Faust's stream around each event
    (a pass through the stream's iterator, its processors and sensors, and a background drainer
    task: 11% of the worker's event loop under load, bench/README.md). Events are read straight
    from the queue the conductor fills. As Faust's stream does, an event of an earlier consumer
    generation (fetched before a rebalance) or received while flow is suspended is acked and
    skipped. Each event yielded holds the conductor's one reference to its message: the caller
    acks it (``event.ack()``) once it is done with it, and its offset may be committed after that.
    The consumer's set of unacked messages is not kept (Faust's stream adds each event to it):
    only ``stream_wait_empty`` reads it, and the worker turns that off. Iteration ends when
    Faust ends the channel's (the agent stops).
    """
    channel = aiter(stream.channel)  # the channel the conductor fills, as take_events reads it
    queue = channel.queue
    loop = asyncio.get_running_loop()
    stopping = False
    while not stopping:
        try:
            batch = [await queue.get()]
        except StopAsyncIteration:  # the agent stops
            return
        deadline = loop.time() + seconds
        while len(batch) < size:
            left = deadline - loop.time()
            if queue.empty() and left <= 0:
                break
            try:
                batch.append(queue.get_nowait() if not queue.empty() else await asyncio.wait_for(queue.get(), left))
            except TimeoutError:
                break
            except StopAsyncIteration:  # the agent stops (thrown into the queue): the batch taken goes first
                stopping = True
                break
        active, generation = app.flow_control.is_active(), app.consumer_generation_id
        fresh = []
        for event in batch:
            if active and event.message.generation_id == generation:
                fresh.append(event)
            else:
                event.ack()  # as Faust's stream acks a skipped event
        if fresh:
            yield fresh


class RawSchema(faust.Schema):
    """Keys and values as the bytes Kafka delivered (``bytes`` types, ``raw`` serializers).

    Faust's schema decodes each record's key and value through its serializer registry: a codec
    looked up by name, then a payload prepared for the type (6-9 us per record against 3-4 here,
    bench/README.md), for ``raw`` codecs that hand the bytes back unchanged. This
    schema's decoder makes the event from the record as it is (a missing key or value stays
    None, as Faust's gives it). Encoding is Faust's.

    >>> schema = RawSchema()
    >>> (schema.key_type, schema.value_type, schema.key_serializer, schema.value_serializer)
    (<class 'bytes'>, <class 'bytes'>, 'raw', 'raw')
    """

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def compile(self, app: Any, *, default_propagate: bool = False, **handlers: Any) -> Any:
        create_event = app.create_event

        async def decode(message: Any, *, propagate: bool = default_propagate) -> Any:
            return create_event(message.key, message.value, message.headers, message)

        return decode


def transport_class(fetch_wait: float, fetch_min_bytes: int = 1) -> type[driver.Transport]:
    """Faust's aiokafka transport whose worker consumer's fetches are answered once
    ``fetch_min_bytes`` wait, or after ``fetch_wait`` seconds at most."""
    wait_ms = max(1, round(fetch_wait * 1000))
    thread = type(
        "ConsumerThread", (_ConsumerThread,), {"fetch_max_wait_ms": wait_ms, "fetch_min_bytes": fetch_min_bytes}
    )

    class Consumer(_PromptResume, _InlineDelivery, driver.Consumer):
        fetch_max_wait_ms = wait_ms

        def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
            return thread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport
