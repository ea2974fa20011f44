"""The sequencer: ``messages[p]`` and ``annotations[p]`` become one ordered log, ``events[p]``.

Kafka does not order records across two topics, so a replay could interleave messages and
reviews differently and reach another state. The sequencer forwards each valid input record
into partition p of ``events`` with its source position; the engine reads only ``events``,
whose order is fixed once written (DESIGN.md section 7). Invalid input becomes a dead letter.

`sequence` is the whole decision for one record, a plain function:

>>> raw = b'{"dataset": "support", "id": "m-1", "timestamp": 0, "body": "Card?"}'
>>> p = owner_partition("support", 4)
>>> event = sequence(raw, role="messages", topic="refinery.messages", partition=p, offset=9,
...                  partitions=4, now=0)
>>> event.source_topic, event.offset, event.message.id
('refinery.messages', 9, 'm-1')
>>> sequence(b"{", role="messages", topic="refinery.messages", partition=p, offset=10,
...          partitions=4, now=0).error
'decode'

Ownership: a dataset's events must all arrive on the partition its key hashes to (Kafka's
default partitioner, murmur2), otherwise two workers would hold state for the same dataset.
A record of dataset D found on another partition is dead-lettered with error ``partition``.
"""

from __future__ import annotations

import functools

from aiokafka.partitioner import murmur2

from agents.worker.deadletter import letter
from schemas import Annotation, DeadLetter, Event, Message, SchemaError
from schemas.limits import Limits

__all__ = ["ROLES", "owner_partition", "sequence"]

#: The input topics (without prefix) and the type each carries.
ROLES = {"messages": Message, "annotations": Annotation}


@functools.lru_cache(maxsize=4096)  # per record in the sequencer; murmur2 is pure Python
def owner_partition(dataset: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives records keyed by ``dataset``.

    >>> owner_partition("banking77", 4) == owner_partition("banking77", 4)
    True
    """
    return (murmur2(dataset.encode("utf-8")) & 0x7FFFFFFF) % partitions


def sequence(
    raw: bytes | None,
    *,
    role: str,
    topic: str,
    partition: int,
    offset: int,
    partitions: int,
    now: float,
    key: bytes | None = None,
    max_body_bytes: int | None = None,
    limits: Limits | None = None,
) -> Event | DeadLetter:
    """The `Event` to forward for one input record, or the `DeadLetter` saying why not.

    Parameters
    ----------
    raw, key
        The record's value and key bytes.
    role
        ``"messages"`` or ``"annotations"``: which type the record must parse as.
    topic, partition, offset
        Where the record was read (the full topic name is kept in the event).
    partitions
        The input topics' partition count, to check the dataset's owner partition.
    now
        Epoch seconds, for dead letters.
    max_body_bytes
        Largest accepted message body (default: the schema's).
    limits
        The contract's caps (`schemas.limits.Limits`): a record over one is dead-lettered with
        error ``limit`` and a reason naming the cap's variable.
    """
    where = dict(topic=topic, partition=partition, offset=offset, now=now, key=key)
    if raw is None:
        return letter(None, error="decode", reason=f"{role}: a record without value (a tombstone?)", **where)
    try:
        root = ROLES[role]._root()
        if limits is not None:
            limits.check_size(raw, root)
            max_body_bytes = limits.input_bytes  # the body cap is checked below, naming its variable
        record = ROLES[role].decode(raw, max_body_bytes=max_body_bytes)
        if limits is not None:
            limits.check(record, root)
    except SchemaError as error:
        return letter(
            raw, error=error.kind, reason=str(error), **where
        )  # "decode": not JSON; "schema": not the contract; "limit": over a cap
    owner = owner_partition(record.dataset, partitions)
    if owner != partition:
        reason = (
            f"{role}: dataset {record.dataset!r} belongs to partition {owner} of {partitions} "
            f"but arrived on partition {partition}: produce with key = the dataset name"
        )
        return letter(raw, error="partition", reason=reason, dataset=record.dataset, **where)
    if role == "messages":
        return Event(source_topic=topic, partition=partition, offset=offset, message=record)
    return Event(source_topic=topic, partition=partition, offset=offset, annotation=record)
