"""Reading a range of offsets of one partition, outside any consumer group.

The worker reads what Faust's consumer will not deliver with `read_range`: a partition of
``snapshots`` from its beginning when it restores, or a stretch of ``events`` it must replay
(after a rejected snapshot, or a gap). DESIGN.md section 7 asks for exactly this: a separate,
plain ``AIOKafkaConsumer`` with no group (``assign`` + ``seek``) and ``auto_offset_reset="none"``,
so that data lost to retention is noticed, never silently skipped.
"""

from __future__ import annotations

import asyncio
import logging

from agents.kafka.security import aiokafka_kwargs
from agents.settings import Settings
from agents.worker.observability import log_event

__all__ = ["groupless_consumer", "read_range"]

log = logging.getLogger("refinery.kafka")


def groupless_consumer(where: Settings | str, *, client_id: str, offset_reset: str = "none"):
    """A plain ``AIOKafkaConsumer`` outside any consumer group (to ``assign`` and ``seek``), never
    committing: the one place the shell's side readers are configured. ``where`` is the settings
    (their bootstrap and security, `agents.kafka.security.aiokafka_kwargs`) or a plaintext
    bootstrap string.

    ``offset_reset`` is aiokafka's ``auto_offset_reset``; ``"none"`` makes data lost to retention
    an error instead of a silent jump.
    """
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        **aiokafka_kwargs(where),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset=offset_reset,
        client_id=client_id,
    )


async def read_range(
    where: Settings | str,
    topic: str,
    partition: int,
    start: int | None,
    end: int | None,
    *,
    last: int | None = None,
    timeout: float = 60.0,
) -> list[tuple[int, bytes | None, bytes | None]]:
    """``(offset, key, value)`` of ``topic[partition]`` (on the broker of ``where``, as for
    `groupless_consumer`) from ``start`` (None: the beginning) up to
    ``end`` (exclusive; None: the end of the partition now), read without a consumer group.
    With ``last``, at most the last ``last`` records of that range (none lost to retention).

    Offsets lost to retention are reported loudly (an ``offsets_lost_to_retention`` error log
    line) and reading continues at the first kept one. Raises TimeoutError when the range is not
    read within ``timeout`` seconds.
    """
    from aiokafka import TopicPartition
    from aiokafka.errors import OffsetOutOfRangeError

    tp = TopicPartition(topic, partition)
    consumer = groupless_consumer(where, client_id="refinery-recovery")
    await consumer.start()
    try:
        consumer.assign([tp])
        last = (await consumer.end_offsets([tp]))[tp]
        end = last if end is None else min(end, last)
        if last is not None:
            first = (await consumer.beginning_offsets([tp]))[tp]
            start = max(first, end - last, start or 0)
        if start is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start)
        out: list[tuple[int, bytes | None, bytes | None]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await consumer.position(tp) < end:
            if loop.time() > deadline:
                raise TimeoutError(
                    f"reading {topic}[{partition}] {start}..{end}: still at "
                    f"{await consumer.position(tp)} after {timeout:g} s"
                )
            try:
                batches = await consumer.getmany(tp, timeout_ms=500)
            except OffsetOutOfRangeError:
                log_event(
                    log, logging.ERROR, "offsets_lost_to_retention", topic=topic, partition=partition, start=start
                )
                await consumer.seek_to_beginning(tp)
                continue
            for record in batches.get(tp, []):
                if record.offset < end:
                    out.append((record.offset, record.key, record.value))
        return out
    finally:
        await consumer.stop()
