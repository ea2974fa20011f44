"""Dead letters: every event the service cannot process, with the raw bytes and a reason.

Nothing stops the worker: an event that fails to decode, validate or process becomes a
`schemas.DeadLetter` on the ``deadletter`` topic, carrying the raw key and value (base64), the
source topic, partition and offset, a short machine-readable ``error`` category and a
``reason`` a person can act on. `letter` builds one; `raw_value` gets the bytes back.

>>> dead = letter(b'{"dataset": 1}', topic="refinery.messages", partition=2, offset=7,
...               error="schema", reason="message.dataset: expected a non-empty string, got 1", now=0)
>>> dead.error, dead.partition, raw_value(dead)
('schema', 2, b'{"dataset": 1}')
"""

from __future__ import annotations

import base64

from schemas import DeadLetter

__all__ = ["ERRORS", "MAX_RAW_BYTES", "MAX_REASON_CHARS", "letter", "raw_value"]

#: Raw bytes kept in a dead letter: a huge rejected record must not make an undeliverable one.
MAX_RAW_BYTES = 256 * 1024
#: Characters kept of a reason (an exception's text may be long): a dead letter's size is bounded.
MAX_REASON_CHARS = 2000

#: The ``error`` categories, one Prometheus counter label value each.
ERRORS = (
    "decode",  # not UTF-8 JSON
    "schema",  # JSON, but not a valid Message / Annotation / Event
    "partition",  # keyed so that the dataset would be owned by two workers
    "processing",  # the engine raised while handling a valid event
    "limit",  # over a cap of the contract or of the worker's memory; the reason names the variable
    "undeliverable",  # a record the broker refused as too large (cut to fit here)
)


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


def letter(
    raw: bytes | None,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    error: str,
    reason: str,
    now: float,
    key: bytes | None = None,
    dataset: str | None = None,
) -> DeadLetter:
    """A dead letter for the event ``raw`` read at ``topic``/``partition``/``offset``.

    Parameters
    ----------
    raw
        The value bytes exactly as read (``None`` for a record without value); only the first
        `MAX_RAW_BYTES` are kept.
    error
        One of `ERRORS`.
    reason
        What was wrong, where, and (when known) what to do.
    now
        Epoch seconds, the dead letter's timestamp.
    """
    if error not in ERRORS:
        raise ValueError(f"error: expected one of {', '.join(ERRORS)}, got {error!r}")
    if raw is not None and len(raw) > MAX_RAW_BYTES:
        reason = f"{reason} (raw value truncated to its first {MAX_RAW_BYTES} of {len(raw)} bytes)"
        raw = raw[:MAX_RAW_BYTES]
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 3] + "..."
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        raw=_b64(raw) or "",
        reason=reason,
        timestamp=now,
        key=_b64(key),
        error=error,
        dataset=dataset,
    )


def raw_value(dead: DeadLetter) -> bytes:
    """The value bytes of the event that was dead-lettered."""
    return base64.b64decode(dead.raw)
