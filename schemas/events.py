"""The event types of every Refinery topic (DESIGN.md sections 2 and 3).

Every type is a frozen, slotted dataclass (no ``__dict__``: one object per record for the garbage
collector) with ``from_dict``/``to_dict``, ``encode()`` -> JSON bytes and ``decode(raw)``; parsing
is strict and every error names the field path:

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
import re
from typing import Annotated, Literal, get_args

from schemas._typed import LabelName, NonEmpty, Range, Record, Timestamp, body_limit, describe, normalise_label
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
    "THRESHOLD_KINDS",
    "StreamFilter",
    "Stream",
    "StreamLabel",
    "StreamMessage",
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


@dataclasses.dataclass(frozen=True, slots=True)
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
        if 4 * len(self.body) > limit and (size := len(self.body.encode("utf-8"))) > limit:  # <= 4 B a character
            raise SchemaError(f"{path}.body", f"at most {limit} UTF-8 bytes", f"{size} bytes")
        for key in self.metadata:
            if not key.strip():
                raise SchemaError(f"{path}.metadata", "property names that are non-empty strings", describe(key))

    @property
    def text(self) -> str:
        """Subject and body, as a reader sees them."""
        return f"{self.subject}\n{self.body}" if self.subject else self.body


@dataclasses.dataclass(frozen=True, slots=True)
class LabelAssignment(Record):
    """One label a reviewer applied, with an optional sentiment."""

    ROOT = "label"
    name: Label
    sentiment: Literal["positive", "negative"] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
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


@dataclasses.dataclass(frozen=True, slots=True)
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


@dataclasses.dataclass(frozen=True, slots=True)
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


@dataclasses.dataclass(frozen=True, slots=True)
class Prediction(Record):
    """The model's output for one live message.

    ``labels`` are the labels at the thresholds in force. ``thresholds`` lets an automation
    choose its own per label (docs/streams.md): for every label whose confidence reaches at
    least one of its three thresholds, those thresholds (chosen at model version
    ``thresholds_version``); a label not listed reaches none of them. A label passes a kind when
    ``confidences[label] >= thresholds[label].<kind>`` (None: never). Records written before
    these two fields existed decode with ``{}`` and 0.
    """

    dataset: Id
    message_id: Id
    timestamp: Time
    model_version: Count
    confidences: dict[str, Unit]
    labels: tuple[str, ...]
    informative: bool
    thresholds: dict[str, Thresholds] = dataclasses.field(default_factory=dict)
    thresholds_version: Count = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Thresholds(Record):
    """The three thresholds of a label, chosen from the validation window's curve."""

    balanced: Unit | None = None
    high_precision: Unit | None = None
    high_recall: Unit | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class LabelWarning(Record):
    """A problem with a label and the action that fixes it."""

    ROOT = "warning"
    code: Id
    severity: Literal["amber", "red"]
    message: str
    action: str


@dataclasses.dataclass(frozen=True, slots=True)
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


@dataclasses.dataclass(frozen=True, slots=True)
class Balance(Record):
    """How much the reviewed messages look like the whole stream."""

    score: Annotated[float, Range(0.0, 100.0)] | None
    similarity: Unit | None
    shuffle_share: Unit | None
    search_share: Unit | None = None  # share of reviews found by search (counts against balance)


@dataclasses.dataclass(frozen=True, slots=True)
class Factor(Record):
    """One of the four factors of the model rating."""

    score: Annotated[float, Range(0.0, 100.0)]
    band: Band
    metrics: dict[str, float | None] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Rating(Record):
    """The 0-100 model rating, its band, its factors and whether the model is ready."""

    score: Annotated[float, Range(0.0, 100.0)]
    band: Band
    ready: bool
    factors: dict[str, Factor] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class DriftEvent(Record):
    """A detected change in the stream."""

    ROOT = "drift"
    label: str | None
    kind: Id
    when: Time
    detail: str


@dataclasses.dataclass(frozen=True, slots=True)
class Action(Record):
    """A recommended next step, with the suggestion kind that carries it out."""

    kind: Id
    label: str | None
    why: str
    expected_gain: float


@dataclasses.dataclass(frozen=True, slots=True)
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


@dataclasses.dataclass(frozen=True, slots=True)
class Suggestion(Record):
    """A message a person should review next, and why."""

    message_id: Id
    kind: SuggestionKind
    label: str | None
    score: float
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class SuggestionList(Record):
    """A record of the ``suggestions`` topic: one ranked list of a kind (and label), best first."""

    ROOT = "suggestions"
    dataset: Id
    timestamp: Time
    model_version: Count
    kind: SuggestionKind
    label: str | None
    items: tuple[Suggestion, ...]


@dataclasses.dataclass(frozen=True, slots=True)
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


# -- streams for automations (docs/streams.md) ---------------------------------------------------

#: The thresholds a stream may choose by name for a label (`Thresholds` fields); a number in
#: [0, 1] is the other choice.
THRESHOLD_KINDS: tuple[str, ...] = ("balanced", "high_precision", "high_recall")
#: A stream's name: it ends the topic ``streams.<name>``, so only Kafka-safe characters.
_STREAM_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")


def _check_choice(value: str | float, path: str) -> None:
    if isinstance(value, str) and value not in THRESHOLD_KINDS:
        raise SchemaError(
            path, "one of " + ", ".join(map(repr, THRESHOLD_KINDS)) + " or a number from 0 to 1", describe(value)
        )
    if not isinstance(value, str) and not 0.0 <= value <= 1.0:
        raise SchemaError(path, "a number from 0 to 1 (or a threshold kind)", describe(value))


@dataclasses.dataclass(frozen=True, slots=True)
class StreamFilter(Record):
    """Which messages a stream considers: any of ``channels`` (all when empty), and every
    ``metadata`` property equal to the given value."""

    ROOT = "filter"
    channels: tuple[Channel, ...] = ()
    metadata: dict[str, str | int | float] = dataclasses.field(default_factory=dict)

    def accepts(self, message: Message) -> bool:
        """Whether ``message`` passes the filter.

        >>> m = Message(dataset="d", id="m", timestamp=0, channel="email", metadata={"country": "UK"})
        >>> StreamFilter(channels=("email",), metadata={"country": "UK"}).accepts(m), StreamFilter(channels=("chat",)).accepts(m)
        (True, False)
        """
        if self.channels and message.channel not in self.channels:
            return False
        return all(key in message.metadata and message.metadata[key] == value for key, value in self.metadata.items())


@dataclasses.dataclass(frozen=True, slots=True)
class Stream(Record):
    """A stream for automations: the messages of a dataset that pass a filter, with the labels
    that reach the thresholds it chooses, written to the topic ``streams.<name>``.

    ``threshold`` is the choice for every label, ``labels`` a choice per label (when given, only
    those labels are reported): ``"balanced"``, ``"high_precision"``, ``"high_recall"`` (the
    thresholds each prediction carries) or a number from 0 to 1. A message with no label at
    its threshold is written only with ``include_unlabelled``.

    >>> Stream.from_dict({"name": "Urgent!", "dataset": "support"})
    Traceback (most recent call last):
    ...
    schemas.errors.SchemaError: stream.name: expected lowercase letters, digits, '_' or '-' (at most 100, starting with a letter or digit), got 'Urgent!'
    >>> Stream.from_dict({"name": "refunds", "dataset": "support", "labels": {"Refund": "hi"}})
    Traceback (most recent call last):
    ...
    schemas.errors.SchemaError: stream.labels.Refund: expected one of 'balanced', 'high_precision', 'high_recall' or a number from 0 to 1, got 'hi'
    """

    ROOT = "stream"
    name: Id
    dataset: Id
    threshold: str | float = "balanced"
    labels: dict[str, str | float] = dataclasses.field(default_factory=dict)
    filter: StreamFilter = StreamFilter()
    include_unlabelled: bool = False

    def _check(self, path: str) -> None:
        if not _STREAM_NAME.fullmatch(self.name):
            raise SchemaError(
                f"{path}.name",
                "lowercase letters, digits, '_' or '-' (at most 100, starting with a letter or digit)",
                describe(self.name),
            )
        _check_choice(self.threshold, f"{path}.threshold")
        for label, choice in self.labels.items():
            written = normalise_label(label, f"{path}.labels")
            if written != label:
                raise SchemaError(
                    f"{path}.labels", f"label names as the engine writes them ({written!r})", describe(label)
                )
            _check_choice(choice, f"{path}.labels.{label}")

    def route(self, prediction: Prediction, message: Message) -> StreamMessage | None:
        """The record this stream writes for ``message`` and its ``prediction``, or None.

        A label passes when its confidence reaches the threshold chosen for it: a number as
        given, a kind from ``prediction.thresholds`` (a label it does not list reaches none).

        >>> p = Prediction(dataset="d", message_id="m", timestamp=0, model_version=7,
        ...                confidences={"A": 0.9, "B": 0.4}, labels=("A",), informative=True,
        ...                thresholds={"A": Thresholds(0.5, 0.8, 0.1), "B": Thresholds(0.5, None, 0.2)})
        >>> m = Message(dataset="d", id="m", timestamp=0)
        >>> [label.name for label in Stream(name="s", dataset="d", threshold="high_recall").route(p, m).labels]
        ['A', 'B']
        >>> [label.name for label in Stream(name="s", dataset="d", threshold="high_precision").route(p, m).labels]
        ['A']
        >>> Stream(name="s", dataset="d", labels={"B": 0.5}).route(p, m) is None
        True
        """
        if prediction.dataset != self.dataset or not self.filter.accepts(message):
            return None
        chosen = self.labels or dict.fromkeys(prediction.confidences, self.threshold)
        passed = []
        for label, choice in chosen.items():
            confidence = prediction.confidences.get(label)
            if confidence is None:
                continue
            if isinstance(choice, str):
                row = prediction.thresholds.get(label)
                threshold = None if row is None else getattr(row, choice)
            else:
                threshold = float(choice)
            if threshold is not None and confidence >= threshold:
                passed.append(StreamLabel(name=label, confidence=confidence, threshold=threshold, choice=str(choice)))
        if not passed and not self.include_unlabelled:
            return None
        passed.sort(key=lambda label: (-label.confidence, label.name))
        return StreamMessage(
            stream=self.name,
            dataset=prediction.dataset,
            message_id=prediction.message_id,
            timestamp=prediction.timestamp,
            model_version=prediction.model_version,
            thresholds_version=prediction.thresholds_version,
            labels=tuple(passed),
            message=message,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class StreamLabel(Record):
    """A label of a stream record: its confidence and the threshold it reached (``choice``: the
    kind chosen, or the number as text)."""

    ROOT = "label"
    name: Label
    confidence: Unit
    threshold: Unit
    choice: Id


@dataclasses.dataclass(frozen=True, slots=True)
class StreamMessage(Record):
    """A record of a ``streams.<name>`` topic: one message for automations, with its labels at
    the stream's thresholds and the model version that predicted them. Deduplicate by
    ``(stream, message_id, model_version)``."""

    ROOT = "stream_message"
    stream: Id
    dataset: Id
    message_id: Id
    timestamp: Time
    model_version: Count
    thresholds_version: Count
    labels: tuple[StreamLabel, ...]
    message: Message
