"""The event types of every Refinery topic (DESIGN.md sections 2 and 3).

Every type is a frozen dataclass with ``from_dict``/``to_dict``, ``encode()`` -> JSON bytes and
``decode(raw)``; parsing is strict and every error names the field path:

>>> Message.decode(b'{"dataset": "support", "id": "", "timestamp": 0}')
Traceback (most recent call last):
...
schemas.errors.SchemaError: message.id: expected a non-empty string, got ''
>>> m = Message.decode(b'{"dataset": "support", "id": "m-1", "timestamp": "2026-11-30T09:15:00Z", "body": "Card?"}')
>>> m.timestamp, m.channel, Message.decode(m.encode()) == m
(1796030100.0, 'other', True)
>>> a = Annotation.from_dict({"dataset": "support", "message_id": "m-1", "timestamp": 1,
...                           "labels": [{"name": "Card>Delivery"}]})
>>> a.labels[0].name, a.pinned_labels()
('Card > Delivery', ('Card', 'Card > Delivery'))
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal, get_args

from schemas._typed import LabelName, NonEmpty, Range, Record, Timestamp, body_limit, describe
from schemas.errors import SchemaError

__all__ = [
    "CHANNELS",
    "MODES",
    "SUGGESTION_KINDS",
    "BANDS",
    "Channel",
    "Mode",
    "SuggestionKind",
    "Band",
    "Message",
    "LabelAssignment",
    "FieldSpan",
    "Annotation",
    "Event",
    "Prediction",
    "Thresholds",
    "LabelWarning",
    "LabelMetrics",
    "Balance",
    "Factor",
    "Rating",
    "DriftEvent",
    "Action",
    "MetricsSnapshot",
    "Suggestion",
    "SuggestionList",
    "DeadLetter",
    "label_ancestors",
]

Channel = Literal["email", "chat", "call", "other"]
Mode = Literal["shuffle", "teach", "check", "missed", "low_confidence", "rebalance", "search", "label", "other"]
SuggestionKind = Literal["check_label", "missed_label", "teach_label", "low_confidence", "rebalance", "shuffle"]
Band = Literal["Poor", "Average", "Good", "Excellent"]
CHANNELS: tuple[str, ...] = get_args(Channel)
MODES: tuple[str, ...] = get_args(Mode)
SUGGESTION_KINDS: tuple[SuggestionKind, ...] = get_args(SuggestionKind)
BANDS: tuple[str, ...] = get_args(Band)

Id = Annotated[str, NonEmpty]
Time = Annotated[float, Timestamp]
Label = Annotated[str, LabelName]
Unit = Annotated[float, Range(0.0, 1.0)]
Count = Annotated[int, Range(0)]


def label_ancestors(name: str) -> tuple[str, ...]:
    """A label and every parent it implies, root first.

    >>> label_ancestors("Billing > Refund > Late")
    ('Billing', 'Billing > Refund', 'Billing > Refund > Late')
    """
    parts = name.split(" > ")
    return tuple(" > ".join(parts[: i + 1]) for i in range(len(parts)))


@dataclasses.dataclass(frozen=True)
class Message(Record):
    """One communication (email, chat, call transcript) of a dataset."""

    dataset: Id
    id: Id
    timestamp: Time
    channel: Channel = "other"
    subject: str = ""
    body: str = ""
    sender: str = dataclasses.field(default="", metadata={"key": "from"})
    to: str = ""
    cc: str = ""
    thread_id: str | None = None
    language: str | None = None
    metadata: dict[str, str | int | float] = dataclasses.field(default_factory=dict)

    def _check(self, path: str) -> None:
        limit = body_limit()
        size = len(self.body.encode("utf-8"))
        if size > limit:
            raise SchemaError(f"{path}.body", f"at most {limit} UTF-8 bytes", f"{size} bytes")
        for key in self.metadata:
            if not key.strip():
                raise SchemaError(f"{path}.metadata", "property names that are non-empty strings", describe(key))

    @property
    def text(self) -> str:
        """Subject and body, as a reader sees them."""
        return f"{self.subject}\n{self.body}" if self.subject else self.body


@dataclasses.dataclass(frozen=True)
class LabelAssignment(Record):
    """One label a reviewer applied, with an optional sentiment."""

    ROOT = "label"
    name: Label
    sentiment: Literal["positive", "negative"] | None = None


@dataclasses.dataclass(frozen=True)
class FieldSpan(Record):
    """An extraction field pinned inside a message: characters ``start:end`` of its text."""

    ROOT = "field"
    name: Id
    start: Count
    end: Count
    value: str | None = None

    def _check(self, path: str) -> None:
        if self.end < self.start:
            raise SchemaError(f"{path}.end", f"a position at or after start ({self.start})", describe(self.end))


@dataclasses.dataclass(frozen=True)
class Annotation(Record):
    """A person's complete judgement of one message (a review), or its removal."""

    dataset: Id
    message_id: Id
    timestamp: Time
    labels: tuple[LabelAssignment, ...] = ()
    mode: Mode = "other"
    annotator: str = ""
    action: Literal["review", "remove"] = "review"
    message: Message | None = None
    fields: tuple[FieldSpan, ...] = ()

    def _check(self, path: str) -> None:
        seen: set[str] = set()
        for i, label in enumerate(self.labels):
            if label.name in seen:
                raise SchemaError(f"{path}.labels[{i}].name", "each label once", f"{label.name!r} again")
            seen.add(label.name)
        if self.action == "remove" and self.labels:
            raise SchemaError(f"{path}.labels", "no labels when action is 'remove'", f"{len(self.labels)} labels")
        if self.message is not None:
            if self.message.id != self.message_id:
                raise SchemaError(
                    f"{path}.message.id",
                    f"{self.message_id!r} (the annotation's message_id)",
                    describe(self.message.id),
                )
            if self.message.dataset != self.dataset:
                raise SchemaError(
                    f"{path}.message.dataset",
                    f"{self.dataset!r} (the annotation's dataset)",
                    describe(self.message.dataset),
                )

    def pinned_labels(self) -> tuple[str, ...]:
        """The labels this review pins, with every implied parent, sorted."""
        return tuple(sorted({a for label in self.labels for a in label_ancestors(label.name)}))


@dataclasses.dataclass(frozen=True)
class Event(Record):
    """A record of the internal ``events`` topic: one input event with its source position."""

    source_topic: Id
    partition: Count
    offset: Count
    message: Message | None = None
    annotation: Annotation | None = None

    def _check(self, path: str) -> None:
        if (self.message is None) == (self.annotation is None):
            raise SchemaError(path, "exactly one of message or annotation", "both" if self.message else "neither")


@dataclasses.dataclass(frozen=True)
class Prediction(Record):
    """The model's output for one live message."""

    dataset: Id
    message_id: Id
    timestamp: Time
    model_version: Count
    confidences: dict[str, Unit]
    labels: tuple[str, ...]
    informative: bool


@dataclasses.dataclass(frozen=True)
class Thresholds(Record):
    """The three thresholds of a label, chosen from the validation window's curve."""

    balanced: Unit | None = None
    high_precision: Unit | None = None
    high_recall: Unit | None = None


@dataclasses.dataclass(frozen=True)
class LabelWarning(Record):
    """A problem with a label and the action that fixes it."""

    ROOT = "warning"
    code: Id
    severity: Literal["amber", "red"]
    message: str
    action: str


@dataclasses.dataclass(frozen=True)
class LabelMetrics(Record):
    """Validation metrics of one label over the window of recent reviews."""

    ROOT = "label"
    precision: Unit | None
    recall: Unit | None
    f1: Unit | None
    average_precision: Unit | None
    threshold: Unit
    support: Count
    pinned: Count
    thresholds: Thresholds = Thresholds()
    warnings: tuple[LabelWarning, ...] = ()


@dataclasses.dataclass(frozen=True)
class Balance(Record):
    """How much the reviewed messages look like the whole stream."""

    score: Annotated[float, Range(0.0, 100.0)] | None
    similarity: Unit | None
    shuffle_share: Unit | None
    search_share: Unit | None = None  # share of reviews found by search (counts against balance)


@dataclasses.dataclass(frozen=True)
class Factor(Record):
    """One of the four factors of the model rating."""

    score: Annotated[float, Range(0.0, 100.0)]
    band: Band
    metrics: dict[str, float | None] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Rating(Record):
    """The 0-100 model rating, its band, its factors and whether the model is ready."""

    score: Annotated[float, Range(0.0, 100.0)]
    band: Band
    ready: bool
    factors: dict[str, Factor] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DriftEvent(Record):
    """A detected change in the stream."""

    ROOT = "drift"
    label: str | None
    kind: Id
    when: Time
    detail: str


@dataclasses.dataclass(frozen=True)
class Action(Record):
    """A recommended next step, with the suggestion kind that carries it out."""

    kind: Id
    label: str | None
    why: str
    expected_gain: float


@dataclasses.dataclass(frozen=True)
class MetricsSnapshot(Record):
    """A dataset's validation, coverage, balance and rating at one moment."""

    ROOT = "metrics"
    dataset: Id
    timestamp: Time
    model_version: Count
    reviewed: Count
    labels: dict[str, LabelMetrics]
    map: Unit | None
    coverage: Unit | None
    balance: Balance
    rating: Rating
    drift: tuple[DriftEvent, ...] = ()
    actions: tuple[Action, ...] = ()


@dataclasses.dataclass(frozen=True)
class Suggestion(Record):
    """A message a person should review next, and why."""

    message_id: Id
    kind: SuggestionKind
    label: str | None
    score: float
    reason: str


@dataclasses.dataclass(frozen=True)
class SuggestionList(Record):
    """A record of the ``suggestions`` topic: one ranked list of a kind (and label), best first."""

    ROOT = "suggestions"
    dataset: Id
    timestamp: Time
    model_version: Count
    kind: SuggestionKind
    label: str | None
    items: tuple[Suggestion, ...]


@dataclasses.dataclass(frozen=True)
class DeadLetter(Record):
    """An event that could not be processed, with a reason a person can act on."""

    ROOT = "deadletter"
    source_topic: Id
    partition: Count | None
    offset: Count | None
    raw: str  # base64 of the raw value bytes
    reason: str
    timestamp: Time
    key: str | None = None  # base64 of the raw key bytes
    error: str = "invalid"  # short machine-readable category, e.g. "decode", "schema", "processing"
    dataset: str | None = None
