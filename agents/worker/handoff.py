"""Events the sequencer has just parsed, handed to the engine so it need not parse them again.

The sequencer parses each input record (`agents.worker.sequencer.sequence`), wraps it in an
`schemas.Event` and writes its bytes to ``events``; moments later the engine of the same worker
reads those bytes back and used to parse them again, ~30 us per event and up to a fifth of the
engine thread's time under load (bench/README.md, issue 11). `Handoff` keeps the events the
sequencer wrote, keyed by their bytes: the engine takes the one whose bytes it reads, and parses
only what it does not find (events written by another worker, before a restart, or evicted).

Taking is exact: an event is kept only when parsing its bytes gives an equal event
(``Event.decode(e.encode()) == e`` holds for every valid event, a property test of the contract)
under the engine's own limits (bytes within the default body limit, so ``Event.decode`` with
its defaults accepts them as the sequencer did), and the bytes are the key, so whatever the
engine finds is what parsing would have given. A replay of ``events`` reaches the same state.

Memory is bounded by configuration: at most ``max_records`` events and ``max_bytes`` bytes of
their records (in the worker, `HANDOFF_BATCHES` batches and `HANDOFF_BYTES`; counted in
`agents.worker.sizes.MemoryBudget`).

>>> from schemas import Event, Message
>>> handoff = Handoff(max_records=2, max_bytes=10_000)
>>> event = Event(source_topic="t", partition=0, offset=7, message=Message(dataset="d", id="m", timestamp=1))
>>> raw = event.encode()
>>> handoff.put(raw, event, now=0.0)
>>> handoff.take(bytes(raw)) is event, handoff.take(raw)  # taken once
(True, None)
"""

from __future__ import annotations

import collections

from schemas import DEFAULT_MAX_BODY_BYTES, Event

__all__ = ["HANDOFF_BATCHES", "HANDOFF_BYTES", "Handoff"]

#: The worker's bounds (`agents.worker.service.Service.handoff`): at most this many batches'
#: worth of events (``REFINERY_BATCH_SIZE`` each), and this many bytes of their records.
HANDOFF_BATCHES = 16
HANDOFF_BYTES = 16 * 2**20


class Handoff:
    """The events written to ``events`` by this worker's sequencer, by their bytes, oldest first.

    The engine reads ``events`` in order, behind the sequencer: when the bounds are reached the
    newest event is not kept (the engine takes the oldest ones next; evicting them would miss
    exactly those). An event kept longer than ``max_age`` seconds is dropped at the next `put`:
    one the engine will not take (read by another worker after a rebalance, or a repeat).
    """

    def __init__(self, *, max_records: int, max_bytes: int, max_age: float = 30.0) -> None:
        if max_records < 0 or max_bytes < 0 or max_age < 0:
            raise ValueError(
                f"Handoff: expected non-negative bounds, got {max_records} records, {max_bytes} bytes, {max_age} s"
            )
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.events: collections.OrderedDict[bytes, tuple[Event, float]] = collections.OrderedDict()
        self.bytes = 0
        self.taken = 0  # events the engine found here (not parsed again)
        self.missed = 0  # events the engine had to parse

    def __len__(self) -> int:
        return len(self.events)

    def put(self, raw: bytes, event: Event, *, now: float) -> None:
        """Keep ``event``, whose encoding is ``raw``, for the engine (``now``: monotonic seconds),
        unless it is too large to be sure the engine's parser accepts it, or the bounds are reached."""
        while self.events:  # the oldest first: drop those the engine will not take
            oldest, (_, kept_at) = next(iter(self.events.items()))
            if now - kept_at <= self.max_age:
                break
            del self.events[oldest]
            self.bytes -= len(oldest)
        if len(raw) > DEFAULT_MAX_BODY_BYTES or raw in self.events:
            return  # (the body, within the JSON, is no larger than the record)
        if len(self.events) >= self.max_records or self.bytes + len(raw) > self.max_bytes:
            return
        self.events[raw] = (event, now)
        self.bytes += len(raw)

    def take(self, raw: bytes | None) -> Event | None:
        """The event whose bytes are ``raw``, removed, if it is here; else None (parse it)."""
        kept = self.events.pop(raw, None) if raw is not None else None
        if kept is None:
            self.missed += 1
            return None
        self.bytes -= len(raw)  # type: ignore[arg-type]  # raw is bytes here
        self.taken += 1
        return kept[0]
