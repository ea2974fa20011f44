"""Publishing records: every one durable before the worker goes on, in order, whatever the broker does.

`Delivery.deliver` sends ``(topic, key, value, partition)`` records through a Faust-like
``send`` and waits until each is acknowledged. A failed delivery (the broker gone longer than
the producer's request timeout) is retried from the first failure on, in order, with a
`agents.worker.retry.Backoff`, until it succeeds: the engine drops repeats. A record the broker
can never take (too large, `too_large`: however Faust wraps the error) is not retried: it is
dead-lettered, cut to fit (error ``undeliverable``), and counted.

With a ``send_many`` (the worker's: `agents.worker.transport.BatchSend`), records go out in
batches, one per topic partition, each with one acknowledgement, instead of one future per
record; a batch that fails fails all its records, and the resend starts from the first of them.
A batch of several records refused as too large (a topic whose ``max.message.bytes`` is below the
producer's batch size) is sent again one record at a time, each acknowledged before the next
(the producer would otherwise gather them into one batch again), so only the one too large is
dead-lettered.

`Delivery.dead_record` turns a `schemas.DeadLetter` into its ``deadletter`` record, counted and logged.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from agents.worker.deadletter import letter
from agents.worker.observability import Observability, log_event
from agents.worker.retry import Backoff
from schemas import DeadLetter

__all__ = ["Delivery", "Record", "Send", "SendMany", "too_large"]

log = logging.getLogger("refinery.worker")

#: One record to publish: ``(topic, key, value, partition or None for the key's)``.
Record = tuple[str, bytes | None, bytes | None, int | None]
#: Schedules one record and returns an awaitable of its delivery (Faust's ``producer.send``).
Send = Callable[[str, bytes | None, bytes | None, int | None], Awaitable[Awaitable[object]]]
#: Schedules records in batches: ``(indexes into the records, awaitable of the batch's delivery)``
#: per batch; every record is in exactly one batch, and records of a partition keep their order.
SendMany = Callable[[Sequence[Record]], Awaitable[list[tuple[list[int], Awaitable[object]]]]]


def _undeliverable() -> tuple[type, ...]:
    from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

    return (MessageSizeTooLargeError, RecordTooLargeError)


_UNDELIVERABLE = _undeliverable()


def too_large(error: BaseException) -> BaseException | None:
    """The broker client's too-large error in ``error``, however it is wrapped, or None.

    Faust's producer raises ``ProducerSendError(f"Error while sending: {exc!r}") from exc``;
    the original is its ``__cause__`` (or, from other wrappers, its ``__context__`` or an
    argument).

    >>> from aiokafka.errors import MessageSizeTooLargeError
    >>> from faust.exceptions import ProducerSendError
    >>> try:
    ...     try:
    ...         raise MessageSizeTooLargeError("too big")
    ...     except MessageSizeTooLargeError as exc:
    ...         raise ProducerSendError(f"Error while sending: {exc!r}") from exc
    ... except ProducerSendError as wrapped:
    ...     type(too_large(wrapped)).__name__
    'MessageSizeTooLargeError'
    >>> too_large(ConnectionError("broker gone")) is None
    True
    """
    stack, seen = [error], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _UNDELIVERABLE):
            return current
        stack += [e for e in (current.__cause__, current.__context__, *current.args) if isinstance(e, BaseException)]
    return None


def _failed(error: BaseException) -> asyncio.Future:
    refused = asyncio.get_running_loop().create_future()
    refused.set_exception(error)
    return refused


class Delivery:
    """The worker's producer side: ``send`` each record, count it, retry what failed.

    Parameters
    ----------
    send
        ``send(topic, key, value, partition)`` -> an awaitable of the record's delivery.
    observability
        Counts records out, and undeliverable ones.
    deadletter_topic
        The full name of the ``deadletter`` topic.
    send_many
        Schedules records in batches (see `SendMany`); without it each record goes through ``send``.
    """

    def __init__(
        self, send: Send, observability: Observability, deadletter_topic: str, send_many: SendMany | None = None
    ) -> None:
        self.send = send
        self.send_many = send_many
        self.obs = observability
        self.deadletter_topic = deadletter_topic

    async def _schedule(self, records: Sequence[Record], alone: set[int]) -> list[Awaitable[object]]:
        """One awaitable of delivery per record (records of one batch share theirs). The records
        whose ``id`` is in ``alone`` are sent one by one (with ``send_many``, the rest in batches)."""
        futures: list[Awaitable[object] | None] = [None] * len(records)
        if self.send_many is not None:
            batched = [i for i, record in enumerate(records) if id(record) not in alone]
            try:
                for indexes, future in await self.send_many([records[i] for i in batched]):
                    for i in indexes:
                        futures[batched[i]] = future
            except asyncio.CancelledError:
                raise
            except Exception as error:  # refused before sending (no metadata yet): all fail, in order
                failed = _failed(error)
                for i in batched:
                    futures[i] = failed
        for i, (topic, key, value, partition) in enumerate(records):
            if futures[i] is not None:
                continue
            try:
                futures[i] = future = await self.send(topic, key, value, partition)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # refused before sending (too large, no metadata yet)
                futures[i] = _failed(error)
                continue
            if id(records[i]) in alone:  # acknowledged before the next is sent: the producer
                await asyncio.wait([asyncio.ensure_future(future)])  # would batch them together again
        return futures  # type: ignore[return-value]  # every slot filled above

    async def deliver(self, records: Sequence[Record]) -> None:
        """Publish ``records`` and wait until all are durable (or known undeliverable)."""
        pending = list(records)
        too_big: list[Record] = []  # dead letters of records the broker can never take
        backoff = Backoff()
        alone: set[int] = set()  # ids of records to send one by one: their batch was too large
        while pending:
            futures = await self._schedule(pending, alone)
            results = await asyncio.gather(*futures, return_exceptions=True)
            shared = collections.Counter(map(id, futures))
            failed = None
            delivered: dict[str, int] = {}
            for i, (record, result) in enumerate(zip(pending, results)):
                if isinstance(result, BaseException) and too_large(result) is not None and shared[id(futures[i])] > 1:
                    alone.update(id(r) for r, f in zip(pending, futures) if f is futures[i])
                    failed = i  # a batch too large: its records go again, one by one
                    break
                if isinstance(result, BaseException) and too_large(result) is not None:
                    too_big += self._refused(record, too_large(result))  # retrying cannot help
                elif isinstance(result, BaseException):
                    failed = i
                    break
                else:
                    delivered[record[0]] = delivered.get(record[0], 0) + 1
            for topic, count in delivered.items():  # counted once per topic: labels() costs per call
                self.obs.events_out.labels(topic).inc(count)
            if failed is None:
                break
            pending = pending[failed:]
            if isinstance(results[failed], BaseException) and too_large(results[failed]) is not None:
                continue  # not the broker's absence: resend at once, the batch's records alone
            await backoff.wait(log, "delivery_retry", records=len(pending), error=repr(results[failed]))

        if too_big:
            await self.deliver(too_big)

    def _refused(self, record: Record, error: BaseException) -> list[Record]:
        """The dead letter of a record the broker refused as too large (none for a dead letter)."""
        topic, key, value, partition = record
        log_event(log, logging.ERROR, "undeliverable", topic=topic, bytes=len(value or b""), error=repr(error))
        if topic == self.deadletter_topic:  # cannot happen within the budget; never loop
            self.obs.dead_letters.labels("undeliverable").inc()
            return []
        reason = (
            f"a record of {len(value or b'')} bytes for {topic} was refused as too large ({error}); "
            "see docs/service.md, Size budgets"
        )
        dead = letter(
            value,
            topic=topic,
            partition=partition,
            offset=None,
            error="undeliverable",
            reason=reason,
            now=time.time(),
            key=key,
        )
        return [self.dead_record(dead)]

    def dead_record(self, dead: DeadLetter) -> Record:
        """The ``deadletter`` record of ``dead`` (counted and logged as it is made)."""
        self.obs.dead_letters.labels(dead.error).inc()
        log_event(
            log,
            logging.INFO,
            "dead_letter",
            source_topic=dead.source_topic,
            partition=dead.partition,
            offset=dead.offset,
            error=dead.error,
            reason=dead.reason,
        )
        key = dead.dataset.encode("utf-8") if dead.dataset else None
        return (self.deadletter_topic, key, dead.encode(), None)
