"""The worker's fuzz run: hostile records mixed with valid ones, produced as raw bytes, and the
accounting that shows none was lost.

Used by ``tests/worker/test_fuzz.py`` (a few thousand records, in the suite) and
``bench/bench_fuzz.py`` (10,000 mutated records and more, with figures).

Each hostile record is a valid Banking77 message or review (review with its message inline)
after one mutation (`tests.schemas.strategies.mutate`: a value of another type anywhere, a field
dropped or unknown, a key duplicated, bytes truncated, flipped or made invalid UTF-8), or one of:
random bytes, nesting hundreds to thousands deep, numbers far beyond 64 bits or ``1e999``,
invalid UTF-8 inside a string, an empty value, a tombstone (no value), or a valid record under
a wrong key. The valid records are Banking77 messages, each later reviewed (message inline).
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import random

import orjson

from schemas import DeadLetter, Event, Message
from tests.schemas.strategies import mutate

__all__ = ["Record", "Tally", "account", "fuzz_records"]

DATASET = "banking77"


@dataclasses.dataclass(frozen=True)
class Record:
    """One record to produce: ``role`` is the input topic without prefix."""

    role: str
    key: bytes | None
    value: bytes | None
    valid: bool
    kind: str


def _deep(rng: random.Random) -> str:
    depth = rng.choice([rng.randint(50, 900), rng.randint(1000, 5000)])  # under and over orjson's 1,024 levels
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    return opener * depth + "1" + closer * depth


def _huge(rng: random.Random) -> str:
    return rng.choice(
        [
            str(10 ** rng.randint(19, 400)),
            "-" + str(10 ** rng.randint(19, 400)),
            "1e999",
            "-1e999",
            "1e-400",
            "18446744073709551615",
            "9223372036854775808",
        ]
    )


def _with_raw(data: dict, field: str, raw_json: str) -> bytes:
    """``data`` as JSON with ``field`` set to ``raw_json`` written verbatim (not valid Python JSON)."""
    data = {k: v for k, v in data.items() if k != field}
    head = orjson.dumps(data)[:-1]
    return head + (b"," if data else b"") + orjson.dumps(field) + b":" + raw_json.encode() + b"}"


def _hostile(rng: random.Random, message: dict, review: dict) -> tuple[str, bytes | None, bytes | None, str]:
    """(role, key, value, kind) of one hostile record built from a valid message and review."""
    role, base = rng.choice([("messages", message), ("annotations", review)])
    key: bytes | None = DATASET.encode()
    roll = rng.random()
    if roll < 0.55:
        return role, key, mutate(rng, orjson.loads(orjson.dumps(base))), "mutated"
    if roll < 0.62:
        return role, key, rng.randbytes(rng.randint(0, 300)), "random_bytes"
    if roll < 0.72:
        field = rng.choice(
            ["metadata", "body", "labels", "message", "dataset"]
            if role == "annotations"
            else ["metadata", "body", "subject", "dataset", "timestamp"]
        )
        return role, key, _with_raw(base, field, _deep(rng)), "deep_nesting"
    if roll < 0.82:
        if role == "messages":
            field = rng.choice(["timestamp", "metadata"])
            value = _huge(rng) if field == "timestamp" else '{"amount": ' + _huge(rng) + "}"
        else:
            field = "timestamp"
            value = _huge(rng)
        return role, key, _with_raw(base, field, value), "huge_number"
    if roll < 0.88:
        raw = orjson.dumps(base)
        at = raw.find(b'"body":"') + 8 if b'"body":"' in raw else len(raw) // 2
        return (
            role,
            key,
            raw[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]) + raw[at:],
            "invalid_utf8",
        )
    if roll < 0.91:
        return role, key, rng.choice([b"", b" ", b"null", b"[]", b"{}", b'""', b"0"]), "empty"
    if roll < 0.94:
        return role, key, None, "tombstone"
    wrong = rng.choice([None, b"", rng.randbytes(8), b"other-dataset"])  # a valid record under a wrong key
    return role, wrong, orjson.dumps(base), "wrong_key"


def fuzz_records(pairs: list, hostile: int, *, seed: int = 0, valid_every: int = 4) -> list[Record]:
    """``hostile`` hostile records and, after every ``valid_every``-th, a valid message; each
    valid message is reviewed (message inline) 3 valid messages later.

    ``pairs``: Banking77 (message, review) pairs, at least ``hostile // valid_every + 1`` of them
    (valid messages) plus a few more (the bases of mutations are drawn from all of them).
    """
    rng = random.Random(seed)
    out: list[Record] = []
    valid_messages = []
    for i in range(hostile):
        message, review = rng.choice(pairs)
        base = dict(message.to_dict(), id=f"fuzz-{i}")
        review_dict = dict(review.to_dict(), message_id=base["id"], message=base)
        role, key, value, kind = _hostile(rng, base, review_dict)
        out.append(Record(role, key, value, False, kind))
        if i % valid_every == 0:
            message, review = pairs[len(valid_messages)]
            valid_messages.append((message, review))
            out.append(Record("messages", DATASET.encode(), message.encode(), True, "valid"))
            if len(valid_messages) > 3:
                m, r = valid_messages[-4]
                reviewed = dataclasses.replace(r, message=m)
                out.append(Record("annotations", DATASET.encode(), reviewed.encode(), True, "valid"))
    return out


@dataclasses.dataclass
class Tally:
    """Where every produced record went."""

    sent: int
    dead_lettered: int
    forwarded: int
    lost: list[tuple[str, int, int]]
    by_error: dict[str, int]
    examples: dict[str, str]  # one reason per error category
    unpredicted: list[str]  # valid messages without a prediction
    unprocessed_events: int  # forwarded messages with neither a prediction nor a processing dead letter


def account(
    sent: list[tuple[str, int, int]],
    valid_ids: set[str],
    events: list[tuple[int, int, bytes]],
    dead_letters: list[bytes],
    predictions: list[bytes],
    events_topic: str,
) -> Tally:
    """Match every sent (topic, partition, offset) with a dead letter or an ``events`` record, and
    every forwarded message with a prediction (or a processing dead letter).

    ``events``: (partition, offset, value) of the ``events`` topic.
    """
    letters = [DeadLetter.decode(raw) for raw in dead_letters]
    lettered = {(d.source_topic, d.partition, d.offset) for d in letters}
    forwarded_events = {(p, o): Event.decode(v) for p, o, v in events}
    forwarded = {(e.source_topic, e.partition, e.offset) for e in forwarded_events.values()}
    predicted = {orjson.loads(raw)["message_id"] for raw in predictions}
    failed_in_engine = {(d.partition, d.offset) for d in letters if d.source_topic == events_topic}
    unprocessed = sum(
        1
        for position, event in forwarded_events.items()
        if event.message is not None and event.message.id not in predicted and position not in failed_in_engine
    )
    everything = lettered | forwarded
    return Tally(
        sent=len(sent),
        dead_lettered=len(set(sent) & lettered),
        forwarded=len(set(sent) & forwarded),
        lost=[position for position in sent if position not in everything],
        by_error=dict(collections.Counter(d.error for d in letters)),
        examples={d.error: d.reason for d in reversed(letters)},
        unpredicted=sorted(valid_ids - predicted),
        unprocessed_events=unprocessed,
    )


def raw_value(letter: DeadLetter) -> bytes | None:
    """The dead-lettered record's bytes."""
    return None if letter.raw is None else base64.b64decode(letter.raw)


def valid_message_ids(records: list[Record]) -> set[str]:
    return {Message.decode(r.value).id for r in records if r.valid and r.role == "messages" and r.value is not None}
