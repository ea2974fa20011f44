"""Hypothesis strategies for every event type of the contract, and for the bytes an attacker may send.

Valid events are written from the contract as DESIGN.md states it (field by field: required
fields, enums, ranges, label names, timestamps), not derived from the parser: a strategy that
asked the parser what is valid could not catch the parser refusing a valid event.

- :func:`valid_dict` ``(cls)``: JSON-ready dicts that must parse as ``cls``;
- :func:`json_text`: JSON-ish text built by hand, so it can hold what a JSON library never writes:
  duplicate keys, integers of any size, ``1e999``, lone surrogate escapes, nesting thousands deep;
- :func:`mutated` ``(cls)``: a valid event's bytes after one mutation (a field's type swapped,
  a field dropped or unknown, a key duplicated, bytes truncated, flipped or made invalid UTF-8).

The fuzz run of the worker (``tests/worker/test_fuzz.py``, ``bench/bench_fuzz.py``) draws its
records from these too.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import strategies as st

from schemas import (
    Action,
    Annotation,
    Balance,
    DeadLetter,
    DriftEvent,
    Event,
    Factor,
    FieldSpan,
    LabelAssignment,
    LabelMetrics,
    LabelWarning,
    Message,
    MetricsSnapshot,
    Prediction,
    Rating,
    Suggestion,
    SuggestionList,
    Thresholds,
)

__all__ = ["EVENT_TYPES", "json_text", "mutate", "mutated", "valid_dict"]

#: Every event type of every topic, and the parts they are made of.
EVENT_TYPES = (
    Message,
    LabelAssignment,
    FieldSpan,
    Annotation,
    Event,
    Prediction,
    Thresholds,
    LabelWarning,
    LabelMetrics,
    Balance,
    Factor,
    Rating,
    DriftEvent,
    Action,
    MetricsSnapshot,
    Suggestion,
    SuggestionList,
    DeadLetter,
)

# -- valid events ------------------------------------------------------------------------------

_CHARS = st.characters(blacklist_categories=("Cs",))  # JSON text cannot carry lone surrogates
text = st.text(_CHARS, max_size=20)
non_empty = st.text(_CHARS, min_size=1, max_size=12).filter(lambda s: s.strip())
_part = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=">"), min_size=1, max_size=10).filter(
    lambda s: s.strip()
)
label_name = st.lists(_part, min_size=1, max_size=5).map(lambda parts: ">".join(parts))
count = st.integers(min_value=0, max_value=2**63 - 1)
unit = st.floats(min_value=0.0, max_value=1.0)
percent = st.floats(min_value=0.0, max_value=100.0)
finite = st.floats(allow_nan=False, allow_infinity=False)
_LAST = datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC)
timestamp = st.one_of(
    st.floats(min_value=0.0, max_value=32503679999.0),
    st.integers(min_value=0, max_value=32503679999),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2999, 12, 30)).map(lambda t: t.isoformat() + "Z"),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2999, 12, 30), timezones=st.just(UTC)).map(
        lambda t: (t + timedelta(0)).isoformat()
    ),
)
CHANNELS = ("email", "chat", "call", "other")
MODES = ("shuffle", "teach", "check", "missed", "low_confidence", "rebalance", "search", "label", "other")
KINDS = ("check_label", "missed_label", "teach_label", "low_confidence", "rebalance", "shuffle")
BANDS = ("Poor", "Average", "Good", "Excellent")


def _optional(draw, out: dict, key: str, strategy) -> None:
    """Set ``out[key]`` from ``strategy`` or leave the optional field out."""
    if draw(st.booleans()):
        out[key] = draw(strategy)


@st.composite
def _message(draw, dataset=None, message_id=None) -> dict:
    out = {
        "dataset": dataset or draw(non_empty),
        "id": message_id or draw(non_empty),
        "timestamp": draw(timestamp),
    }
    _optional(draw, out, "channel", st.sampled_from(CHANNELS))
    for key in ("subject", "body", "from", "to", "cc"):
        _optional(draw, out, key, text)
    for key in ("thread_id", "language"):
        _optional(draw, out, key, st.none() | text)
    _optional(
        draw,
        out,
        "metadata",
        st.dictionaries(
            non_empty,
            st.one_of(text, st.integers(min_value=-(2**63), max_value=2**64 - 1), finite),
            max_size=3,
        ),
    )
    return out


@st.composite
def _label(draw, name=None) -> dict:
    out = {"name": name or draw(label_name)}
    _optional(draw, out, "sentiment", st.sampled_from([None, "positive", "negative"]))
    return out


@st.composite
def _field_span(draw) -> dict:
    start, end = sorted(draw(st.lists(count, min_size=2, max_size=2)))
    out = {"name": draw(non_empty), "start": start, "end": end}
    _optional(draw, out, "value", st.none() | text)
    return out


def _normalised(name: str) -> str:
    return " > ".join(part.strip() for part in name.split(">"))


@st.composite
def _annotation(draw) -> dict:
    dataset, message_id = draw(non_empty), draw(non_empty)
    out = {"dataset": dataset, "message_id": message_id, "timestamp": draw(timestamp)}
    action = draw(st.sampled_from([None, "review", "remove"]))
    if action is not None:
        out["action"] = action
    if action != "remove":
        names = draw(st.lists(label_name, max_size=4, unique_by=_normalised))  # each label once
        if names or draw(st.booleans()):
            out["labels"] = [draw(_label(name)) for name in names]
    _optional(draw, out, "mode", st.sampled_from(MODES))
    _optional(draw, out, "annotator", text)
    _optional(draw, out, "message", st.none() | _message(dataset, message_id))
    _optional(draw, out, "fields", st.lists(_field_span(), max_size=2))
    return out


@st.composite
def _event(draw) -> dict:
    out = {"source_topic": draw(non_empty), "partition": draw(count), "offset": draw(count)}
    if draw(st.booleans()):
        out["message"] = draw(_message())
    else:
        out["annotation"] = draw(_annotation())
    return out


@st.composite
def _prediction(draw) -> dict:
    confidences = draw(st.dictionaries(text, unit, max_size=4))
    return {
        "dataset": draw(non_empty),
        "message_id": draw(non_empty),
        "timestamp": draw(timestamp),
        "model_version": draw(count),
        "confidences": confidences,
        "labels": draw(st.lists(text, max_size=3)),
        "informative": draw(st.booleans()),
    }


@st.composite
def _thresholds(draw) -> dict:
    out: dict = {}
    for key in ("balanced", "high_precision", "high_recall"):
        _optional(draw, out, key, st.none() | unit)
    return out


@st.composite
def _warning(draw) -> dict:
    return {
        "code": draw(non_empty),
        "severity": draw(st.sampled_from(["amber", "red"])),
        "message": draw(text),
        "action": draw(text),
    }


@st.composite
def _label_metrics(draw) -> dict:
    out = {key: draw(st.none() | unit) for key in ("precision", "recall", "f1", "average_precision")}
    out.update(threshold=draw(unit), support=draw(count), pinned=draw(count))
    _optional(draw, out, "thresholds", _thresholds())
    _optional(draw, out, "warnings", st.lists(_warning(), max_size=2))
    return out


@st.composite
def _balance(draw) -> dict:
    return {
        "score": draw(st.none() | percent),
        "similarity": draw(st.none() | unit),
        "shuffle_share": draw(st.none() | unit),
    }


@st.composite
def _factor(draw) -> dict:
    out = {"score": draw(percent), "band": draw(st.sampled_from(BANDS))}
    _optional(draw, out, "metrics", st.dictionaries(text, st.none() | finite, max_size=3))
    return out


@st.composite
def _rating(draw) -> dict:
    out = {"score": draw(percent), "band": draw(st.sampled_from(BANDS)), "ready": draw(st.booleans())}
    _optional(draw, out, "factors", st.dictionaries(text, _factor(), max_size=4))
    return out


@st.composite
def _drift(draw) -> dict:
    return {"label": draw(st.none() | text), "kind": draw(non_empty), "when": draw(timestamp), "detail": draw(text)}


@st.composite
def _action(draw) -> dict:
    return {"kind": draw(non_empty), "label": draw(st.none() | text), "why": draw(text), "expected_gain": draw(finite)}


@st.composite
def _metrics(draw) -> dict:
    out = {
        "dataset": draw(non_empty),
        "timestamp": draw(timestamp),
        "model_version": draw(count),
        "reviewed": draw(count),
        "labels": draw(st.dictionaries(text, _label_metrics(), max_size=3)),
        "map": draw(st.none() | unit),
        "coverage": draw(st.none() | unit),
        "balance": draw(_balance()),
        "rating": draw(_rating()),
    }
    _optional(draw, out, "drift", st.lists(_drift(), max_size=2))
    _optional(draw, out, "actions", st.lists(_action(), max_size=2))
    return out


@st.composite
def _suggestion(draw, kind=None) -> dict:
    return {
        "message_id": draw(non_empty),
        "kind": kind or draw(st.sampled_from(KINDS)),
        "label": draw(st.none() | text),
        "score": draw(finite),
        "reason": draw(text),
    }


@st.composite
def _suggestion_list(draw) -> dict:
    kind = draw(st.sampled_from(KINDS))
    return {
        "dataset": draw(non_empty),
        "timestamp": draw(timestamp),
        "model_version": draw(count),
        "kind": kind,
        "label": draw(st.none() | text),
        "items": draw(st.lists(_suggestion(kind), max_size=3)),
    }


@st.composite
def _dead_letter(draw) -> dict:
    out = {
        "source_topic": draw(non_empty),
        "partition": draw(st.none() | count),
        "offset": draw(st.none() | count),
        "raw": draw(text),
        "reason": draw(text),
        "timestamp": draw(timestamp),
    }
    _optional(draw, out, "key", st.none() | text)
    _optional(draw, out, "error", text)
    _optional(draw, out, "dataset", st.none() | text)
    return out


_VALID = {
    Message: _message(),
    LabelAssignment: _label(),
    FieldSpan: _field_span(),
    Annotation: _annotation(),
    Event: _event(),
    Prediction: _prediction(),
    Thresholds: _thresholds(),
    LabelWarning: _warning(),
    LabelMetrics: _label_metrics(),
    Balance: _balance(),
    Factor: _factor(),
    Rating: _rating(),
    DriftEvent: _drift(),
    Action: _action(),
    MetricsSnapshot: _metrics(),
    Suggestion: _suggestion(),
    SuggestionList: _suggestion_list(),
    DeadLetter: _dead_letter(),
}
assert set(_VALID) == set(EVENT_TYPES)


def valid_dict(cls) -> st.SearchStrategy[dict]:
    """JSON-ready dicts that follow the contract of ``cls``."""
    return _VALID[cls]


# -- hostile input -----------------------------------------------------------------------------

_number = st.one_of(
    st.integers().map(str),
    st.integers(min_value=10**18, max_value=10**400).map(str),  # far beyond 64 bits
    st.integers(min_value=-(10**400), max_value=-(10**18)).map(str),
    finite.map(repr),
    st.sampled_from(["1e999", "-1e999", "1E-400", "-0", "0.0e0", "NaN", "Infinity", "01", "1.", ".5", "+1", "0x10"]),
)
_escape = st.sampled_from(['\\"', "\\\\", "\\n", "\\u0000", "\\ud800", "\\udfff", "\\ud83d\\ude00", "\\x41", "\\"])
_string = st.lists(st.one_of(st.text(st.characters(blacklist_characters='"\\'), max_size=6), _escape), max_size=4).map(
    lambda parts: '"' + "".join(parts) + '"'
)
_KEYS = ("dataset", "id", "message_id", "timestamp", "labels", "name", "body", "metadata", "message", "annotation")


def _object(values) -> st.SearchStrategy[str]:
    keys = st.one_of(st.sampled_from(_KEYS).map(lambda k: f'"{k}"'), _string)
    return st.lists(st.tuples(keys, values), max_size=5).map(
        lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"  # keys may repeat
    )


def _deep(depth: int, opener: str) -> str:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return opener * depth + "1" + closer * depth


json_value = st.recursive(
    st.one_of(st.sampled_from(["null", "true", "false"]), _number, _string),
    lambda inner: st.one_of(st.lists(inner, max_size=4).map(lambda v: "[" + ",".join(v) + "]"), _object(inner)),
    max_leaves=12,
)


@st.composite
def json_text(draw) -> bytes:
    """JSON-ish bytes: mostly objects, sometimes not JSON at all, deeply nested, or invalid UTF-8."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        body = _deep(draw(st.integers(100, 3000)), draw(st.sampled_from(["[", '{"a":'])))
        raw = ('{"dataset":' + body + "}").encode()
    else:
        raw = draw(st.one_of(_object(json_value), json_value)).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 4)) == 0 and raw:  # invalid UTF-8 somewhere inside
        at = draw(st.integers(0, len(raw)))
        raw = (
            raw[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]))
            + raw[at:]
        )
    return raw


def _paths(value, prefix=()) -> list[tuple]:
    """Every path to a value inside nested dicts and lists."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            out += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            out += _paths(inner, (*prefix, i))
    return out


_SWAPS = [None, True, False, 0, -1, 2**64, -(2**63) - 1, 1e308, -0.0, "", " ", "x" * 300, [], {}, [[[]]], {"a": {}}]


def mutate(rng: random.Random, data: dict) -> bytes:
    """One random mutation of a valid event (given as a dict), as bytes. Deterministic in ``rng``."""
    kind = rng.randrange(9)
    if kind <= 2:  # a value of another type somewhere (deep fields included)
        paths = _paths(data)
        if paths:
            path = rng.choice(paths)
            target = data
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = rng.choice(_SWAPS)
        return _dumps(data)
    if kind == 3:  # a field dropped
        if data:
            del data[rng.choice(list(data))]
        return _dumps(data)
    if kind == 4:  # an unknown field
        data[rng.choice(["extra", "Dataset", "id ", "labels2"])] = 1
        return _dumps(data)
    raw = _dumps(data)
    if kind == 5:  # a key duplicated with another value, as JSON text (the last one wins in orjson)
        key = rng.choice(list(data)) if data else "dataset"
        swap = rng.choice(_SWAPS)
        return raw[:-1] + (b"," if data else b"") + orjson.dumps(key) + b":" + _dumps(swap) + b"}"
    if kind == 6:  # truncated
        return raw[: rng.randrange(len(raw))]
    if kind == 7:  # invalid UTF-8 bytes spliced in
        at = rng.randrange(len(raw) + 1)
        return raw[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]) + raw[at:]
    flipped = bytearray(raw)  # a few bytes flipped
    for _ in range(rng.randint(1, 3)):
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
    return bytes(flipped)


def _dumps(value) -> bytes:
    """JSON bytes of ``value``; integers of any size are written as they are (orjson stops at 64 bits)."""
    if isinstance(value, dict):
        return b"{" + b",".join(orjson.dumps(str(k)) + b":" + _dumps(v) for k, v in value.items()) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(_dumps(v) for v in value) + b"]"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode()
    return orjson.dumps(value)


@st.composite
def mutated(draw, cls) -> bytes:
    """A valid ``cls`` event after one random mutation, as bytes."""
    data = draw(valid_dict(cls))
    return mutate(random.Random(draw(st.integers(0, 2**32))), data)
