"""Publishing records: every one durable before the worker goes on, in order, whatever the broker does.

`Delivery.deliver` sends ``(topic, key, value, partition)`` records through a Faust-like
``send`` and waits until each is acknowledged. A failed delivery (the broker gone longer than
the producer's request timeout) is retried from the first failure on, in order, with a
`agents.worker.retry.Backoff`, until it succeeds: the engine drops repeats. A record the broker
can never take (too large) is logged and counted, not retried.

`Delivery.dead_record` turns a `schemas.DeadLetter` into its ``deadletter`` record, counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from agents.worker.observability import Observability, log_event
from agents.worker.retry import Backoff
from schemas import DeadLetter

__all__ = ["Delivery", "Record", "Send"]

log = logging.getLogger("refinery.worker")

#: One record to publish: ``(topic, key, value, partition or None for the key's)``.
Record = tuple[str, bytes | None, bytes | None, int | None]
#: Schedules one record and returns an awaitable of its delivery (Faust's ``producer.send``).
Send = Callable[[str, bytes | None, bytes | None, int | None], Awaitable[Awaitable[object]]]


def _undeliverable() -> tuple[type, ...]:
    from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

    return (MessageSizeTooLargeError, RecordTooLargeError)


_UNDELIVERABLE = _undeliverable()


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
    """

    def __init__(self, send: Send, observability: Observability, deadletter_topic: str) -> None:
        self.send = send
        self.obs = observability
        self.deadletter_topic = deadletter_topic

    async def deliver(self, records: Sequence[Record]) -> None:
        """Publish ``records`` and wait until all are durable (or known undeliverable)."""
        pending = list(records)
        backoff = Backoff()
        while pending:
            futures: list[Awaitable[object]] = []
            for topic, key, value, partition in pending:
                try:
                    futures.append(await self.send(topic, key, value, partition))
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # refused before sending (too large, no metadata yet)
                    refused = asyncio.get_running_loop().create_future()
                    refused.set_exception(error)
                    futures.append(refused)
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = None
            delivered: dict[str, int] = {}
            for i, (record, result) in enumerate(zip(pending, results)):
                if isinstance(result, _UNDELIVERABLE):  # retrying cannot help: say so and go on
                    log_event(
                        log,
                        logging.ERROR,
                        "undeliverable",
                        topic=record[0],
                        bytes=len(record[2] or b""),
                        error=repr(result),
                    )
                    self.obs.dead_letters.labels("undeliverable").inc()
                elif isinstance(result, BaseException):
                    failed = i
                    break
                else:
                    delivered[record[0]] = delivered.get(record[0], 0) + 1
            for topic, count in delivered.items():  # counted once per topic: labels() costs per call
                self.obs.events_out.labels(topic).inc(count)
            if failed is None:
                return
            pending = pending[failed:]
            await backoff.wait(log, "delivery_retry", records=len(pending), error=repr(results[failed]))

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
