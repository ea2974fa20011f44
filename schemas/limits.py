"""The input contract's size limits: what one message or review may carry.

A record within these limits fits every hop after it (the ``events`` envelope, the producer,
the broker: docs/service.md, *Size budgets*), and adds a bounded amount to a worker's memory
(docs/service.md, *Memory budget*). Each limit is a setting (the variable in `Limits.SETTINGS`);
an error names it, so the dead letter says which cap to raise.

>>> limits = Limits(labels_per_review=2)
>>> review = Annotation.from_dict({"dataset": "d", "message_id": "m", "timestamp": 0,
...                                "labels": [{"name": "A"}, {"name": "B"}, {"name": "C"}]})
>>> limits.check(review)
Traceback (most recent call last):
...
schemas.errors.SchemaError: annotation.labels: expected at most 2 labels per review (REFINERY_MAX_LABELS_PER_REVIEW), got 3
>>> limits.check_size(b"x" * 2_000_000, "message")
Traceback (most recent call last):
...
schemas.errors.SchemaError: message: expected at most 1040000 bytes per input record (REFINERY_MAX_INPUT_BYTES), got 2000000 bytes
"""

from __future__ import annotations

import dataclasses

import orjson

from schemas._typed import DEFAULT_MAX_BODY_BYTES, LabelName
from schemas.errors import SchemaError
from schemas.events import Annotation, Message

__all__ = ["LIMIT", "Limits"]

#: The ``kind`` of a `SchemaError` raised for a limit (the dead-letter category of that name).
LIMIT = "limit"


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps on one input record; the defaults are the settings' (agents/settings.py).

    Attributes
    ----------
    input_bytes
        Bytes of the record's value as produced.
    body_bytes
        UTF-8 bytes of a message body.
    id_chars
        Characters of a dataset name, message id or thread id.
    label_chars
        Characters of a label name (the contract's own maximum is 256).
    labels_per_review
        Labels of one review, and extraction fields of one review.
    metadata_keys, metadata_bytes
        Properties of a message's ``metadata``, and the bytes of its JSON.
    """

    input_bytes: int = 1_040_000
    body_bytes: int = DEFAULT_MAX_BODY_BYTES
    id_chars: int = 256
    label_chars: int = LabelName.MAX_LENGTH
    labels_per_review: int = 50
    metadata_keys: int = 64
    metadata_bytes: int = 16_384

    #: The variable that sets each limit (docs/configuration.md).
    SETTINGS = {
        "input_bytes": "REFINERY_MAX_INPUT_BYTES",
        "body_bytes": "REFINERY_MAX_BODY_BYTES",
        "id_chars": "REFINERY_MAX_ID_CHARS",
        "label_chars": "REFINERY_MAX_LABEL_CHARS",
        "labels_per_review": "REFINERY_MAX_LABELS_PER_REVIEW",
        "metadata_keys": "REFINERY_MAX_METADATA_KEYS",
        "metadata_bytes": "REFINERY_MAX_METADATA_BYTES",
    }

    def _fail(self, path: str, limit: str, what: str, found: str) -> SchemaError:
        cap = getattr(self, limit)
        return SchemaError(path, f"at most {cap} {what} ({self.SETTINGS[limit]})", found, kind=LIMIT)

    def check_size(self, raw: bytes | None, root: str) -> None:
        """Raise `SchemaError` (kind ``"limit"``) when the record's bytes are over ``input_bytes``."""
        if raw is not None and len(raw) > self.input_bytes:
            raise self._fail(root, "input_bytes", "bytes per input record", f"{len(raw)} bytes")

    def check(self, record: Message | Annotation, path: str | None = None) -> None:
        """Raise `SchemaError` (kind ``"limit"``) naming the first limit ``record`` is over."""
        if isinstance(record, Message):
            self._message(record, path or "message")
        else:
            self._annotation(record, path or "annotation")

    def _id(self, value: str | None, path: str) -> None:
        if value is not None and len(value) > self.id_chars:
            raise self._fail(path, "id_chars", "characters", f"{len(value)} characters")

    def _message(self, message: Message, path: str) -> None:
        self._id(message.dataset, f"{path}.dataset")
        self._id(message.id, f"{path}.id")
        self._id(message.thread_id, f"{path}.thread_id")
        size = len(message.body.encode("utf-8"))
        if size > self.body_bytes:
            raise self._fail(f"{path}.body", "body_bytes", "UTF-8 bytes", f"{size} bytes")
        if len(message.metadata) > self.metadata_keys:
            raise self._fail(f"{path}.metadata", "metadata_keys", "properties", f"{len(message.metadata)}")
        if message.metadata:
            size = len(orjson.dumps(message.metadata))
            if size > self.metadata_bytes:
                raise self._fail(f"{path}.metadata", "metadata_bytes", "bytes of JSON", f"{size} bytes")

    def _annotation(self, annotation: Annotation, path: str) -> None:
        self._id(annotation.dataset, f"{path}.dataset")
        self._id(annotation.message_id, f"{path}.message_id")
        if len(annotation.labels) > self.labels_per_review:
            raise self._fail(f"{path}.labels", "labels_per_review", "labels per review", f"{len(annotation.labels)}")
        if len(annotation.fields) > self.labels_per_review:
            raise self._fail(f"{path}.fields", "labels_per_review", "fields per review", f"{len(annotation.fields)}")
        for i, label in enumerate(annotation.labels):
            if len(label.name) > self.label_chars:
                raise self._fail(f"{path}.labels[{i}].name", "label_chars", "characters", f"{len(label.name)}")
        if annotation.message is not None:
            self._message(annotation.message, f"{path}.message")

    def growth(self) -> int:
        """Most bytes re-encoding a record within these limits adds to it (`Record.encode`).

        Parsing fills in omitted optional fields (under 256 bytes for a message, for a review,
        for its inline message, timestamps written as floats included); a label gains at most
        ``"sentiment":null`` and two spaces around each of its 4 separators (under 40 bytes), a
        field ``"value":null`` (under 16), a metadata number its float form (``9e15`` becomes
        ``9000000000000000.0``: under 16). Strings never grow: the input must escape what
        orjson escapes. tests/schemas/test_limits.py builds the worst cases.

        >>> Limits(labels_per_review=10, metadata_keys=0).growth()
        1328
        """
        return 3 * 256 + self.labels_per_review * (40 + 16) + self.metadata_keys * 16
