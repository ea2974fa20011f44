"""`agents.worker.handoff.Handoff`: bounded, taken once, keyed by the bytes the engine reads."""

from __future__ import annotations

import pytest

from agents.worker.handoff import Handoff
from schemas import DEFAULT_MAX_BODY_BYTES, Event, Message


def _event(i: int, body: str = "card not arrived") -> tuple[bytes, Event]:
    message = Message(dataset="d", id=f"m{i}", timestamp=i, body=body)
    event = Event(source_topic="t", partition=0, offset=i, message=message)
    return event.encode(), event


def test_at_the_bounds_the_newest_events_are_not_kept_the_engine_takes_the_oldest_next():
    handoff = Handoff(max_records=3, max_bytes=10_000)
    pairs = [_event(i) for i in range(5)]
    for raw, event in pairs:
        handoff.put(raw, event, now=0.0)
    assert len(handoff) == 3 and handoff.take(pairs[4][0]) is None
    assert [handoff.take(raw) for raw, _ in pairs[:3]] == [e for _, e in pairs[:3]]
    size = len(pairs[0][0])
    small = Handoff(max_records=100, max_bytes=2 * size + 1)
    for raw, event in pairs:
        small.put(raw, event, now=0.0)
    assert len(small) == 2 and small.bytes == 2 * size
    assert small.take(pairs[0][0]) is pairs[0][1] and small.bytes == size
    small.put(*pairs[2], now=0.0)  # room again
    assert small.take(pairs[2][0]) is pairs[2][1]
    assert (small.taken, small.missed) == (2, 0)


def test_an_event_not_taken_within_max_age_is_dropped_and_frees_its_room():
    handoff = Handoff(max_records=2, max_bytes=10_000, max_age=30.0)
    pairs = [_event(i) for i in range(3)]
    handoff.put(*pairs[0], now=0.0)  # read by another worker after a rebalance: never taken here
    handoff.put(*pairs[1], now=10.0)
    handoff.put(*pairs[2], now=31.0)  # the first is stale: dropped, and the third fits
    assert handoff.take(pairs[0][0]) is None
    assert handoff.take(pairs[1][0]) is pairs[1][1] and handoff.take(pairs[2][0]) is pairs[2][1]
    assert handoff.bytes == 0


def test_an_event_is_taken_once_by_equal_bytes_and_a_miss_is_counted():
    handoff = Handoff(max_records=10, max_bytes=10_000)
    raw, event = _event(1)
    handoff.put(raw, event, now=0.0)
    assert handoff.take(bytes(bytearray(raw))) is event  # another bytes object, the same bytes
    assert handoff.take(raw) is None and handoff.take(None) is None
    assert (handoff.taken, handoff.missed) == (1, 2)


def test_an_event_too_large_for_the_engines_default_parser_is_never_kept():
    """The engine parses with the default body limit; the sequencer may accept larger bodies
    (REFINERY_MAX_BODY_BYTES): those must be parsed, and refused, exactly as a replay would."""
    handoff = Handoff(max_records=10, max_bytes=8 * DEFAULT_MAX_BODY_BYTES)
    raw, event = _event(1, body="x" * DEFAULT_MAX_BODY_BYTES)
    assert len(raw) > DEFAULT_MAX_BODY_BYTES
    handoff.put(raw, event, now=0.0)
    assert len(handoff) == 0 and handoff.take(raw) is None


def test_negative_bounds_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        Handoff(max_records=-1, max_bytes=10)
