"""One record: what kind it is, the defaults that fill it, and its validation against the
contract (`schemas`), shared by every reader (`agents.ingest.readers`).

A record is a `Message`, an `Annotation` (a review), or a *labelled message*: a message with
the names of the labels that apply, as a CSV upload or a labelled data file holds them, which
becomes its message, its review (carrying the message inline), or both (`labelled`). A record
that fails validation becomes a `Rejected` saying why.

>>> [type(r).__name__ for r in labelled({"dataset": "d", "id": "m-1", "timestamp": 0, "body": "hi"},
...                                     label_list("Card;Urgent"), {}, "both", Defaults())]
['Message', 'Annotation']
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

__all__ = [
    "Defaults",
    "InputError",
    "KINDS",
    "REVIEW_FIELDS",
    "Rejected",
    "check",
    "fill_message",
    "guess_kind",
    "label_list",
    "labelled",
    "validate",
]

KINDS = ("messages", "annotations", "both")
# Review fields a labelled record may carry beside the message's (CSV columns or JSON keys).
REVIEW_FIELDS = ("mode", "annotator", "action")


class InputError(ValueError):
    """The input as a whole cannot be read (missing file, unknown column, not JSON); nothing is sent."""


@dataclasses.dataclass(frozen=True)
class Rejected:
    """A record that is not sent: why (``reason``), the reason without the offending value
    (``group``, to count alike rejections together) and the record as read (``raw``)."""

    reason: str
    group: str = dataclasses.field(repr=False, default="")
    raw: Any = dataclasses.field(repr=False, default=None)


@dataclasses.dataclass(frozen=True)
class Defaults:
    """Values for fields a record leaves out.

    ``dataset`` and ``channel`` fill messages (and inline messages) without them; ``mode`` and
    ``annotator`` fill annotations; ``timestamp`` is the time of labelled messages without one:
    CSV rows from a file with no timestamp column (``refinery send`` uses the time the run
    started) and JSON labelled messages (records of the contract's shape carry their own).
    ``max_body_bytes`` is the body size limit.
    """

    dataset: str | None = None
    channel: str | None = None
    mode: str | None = None
    annotator: str | None = None
    timestamp: float | None = None
    max_body_bytes: int | None = None


def guess_kind(data: Any) -> str:
    """What a JSON record is: ``"annotations"`` with ``message_id``, ``"both"`` (a labelled
    message) with ``labels`` but no ``message_id``, else ``"messages"``.

    >>> guess_kind({"message_id": "m-1", "labels": []}), guess_kind({"id": "m-1", "labels": ["A"]}), guess_kind({"id": "m-1"})
    ('annotations', 'both', 'messages')
    """
    if not isinstance(data, dict):
        return "messages"
    if "message_id" in data:
        return "annotations"
    return "both" if "labels" in data else "messages"


def fill_message(data: Any, defaults: Defaults) -> Any:
    """A copy of a message record with the ``dataset`` and ``channel`` defaults where it has none."""
    if not isinstance(data, dict):
        return data
    filled = dict(data)
    if defaults.dataset is not None:
        filled.setdefault("dataset", defaults.dataset)
    if defaults.channel is not None:
        filled.setdefault("channel", defaults.channel)
    return filled


def _require_text(message, path: str) -> None:
    from schemas import SchemaError

    if not message.subject.strip() and not message.body.strip():
        raise SchemaError(
            f"{path}.body", "a subject or a body (a message without text cannot be classified)", "neither"
        )


def validate(data: Any, kind: str | None = None, defaults: Defaults = Defaults()):
    """Parse one record as a Message or an Annotation, after filling what it leaves out.

    Beyond the contract, a message needs some text (a subject or a body): there is nothing to
    classify in an empty one.

    Parameters
    ----------
    data
        The record as read (a dict, for anything valid).
    kind
        ``"messages"`` or ``"annotations"``; by default ``"annotations"`` for a record with
        ``message_id`` or ``labels``, else ``"messages"``.
    defaults
        Values for fields the record leaves out, and the body size limit.

    Raises
    ------
    schemas.SchemaError
        Naming the first wrong field, what was expected and what was found.

    >>> validate({"id": "m-1", "timestamp": 0, "body": "Hi", "channel": "fax"}, defaults=Defaults(dataset="d"))
    Traceback (most recent call last):
    ...
    schemas.errors.SchemaError: message.channel: expected one of 'email', 'chat', 'call', 'other', got 'fax'
    """
    import orjson

    from schemas import Annotation, Message

    kind = kind or ("messages" if guess_kind(data) == "messages" else "annotations")
    if kind == "messages":
        record = Message.decode(orjson.dumps(fill_message(data, defaults)), max_body_bytes=defaults.max_body_bytes)
        _require_text(record, "message")
        return record
    if isinstance(data, dict):
        data = dict(data)
        for key in ("dataset", "mode", "annotator"):
            if getattr(defaults, key) is not None:
                data.setdefault(key, getattr(defaults, key))
        if "message" in data:
            data["message"] = fill_message(data["message"], defaults)
    record = Annotation.decode(orjson.dumps(data), max_body_bytes=defaults.max_body_bytes)
    if record.message is not None:
        _require_text(record.message, "annotation.message")
    return record


def check(data: Any, kind: str | None, defaults: Defaults):
    """`validate`, with a failure returned as `Rejected` instead of raised."""
    from schemas import SchemaError

    try:
        return validate(data, kind, defaults)
    except SchemaError as error:
        return Rejected(str(error), f"{error.path}: expected {error.expected}", data)


def label_list(value: Any, separator: str = ";") -> Any:
    """Label names as the contract wants them (``[{"name": ...}]``, each name once), from a
    list of names or label objects, or a cell: a JSON list, or names separated by ``separator``.

    >>> label_list("Card > Delivery; Urgent;Card > Delivery")
    [{'name': 'Card > Delivery'}, {'name': 'Urgent'}]
    >>> label_list('["Card", {"name": "Urgent", "sentiment": "negative"}]')
    [{'name': 'Card'}, {'name': 'Urgent', 'sentiment': 'negative'}]
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                return text  # not a list: the contract's parser says so
        else:
            value = [name.strip() for name in text.split(separator)] if separator else [text]
            value = [name for name in value if name]
    if not isinstance(value, list):
        return value
    labels, seen = [], set()
    for item in value:
        label = {"name": item} if isinstance(item, str) else item
        name = label.get("name") if isinstance(label, dict) else None
        if isinstance(name, str) and name in seen:
            continue  # a label listed twice is pinned once
        seen.add(name)
        labels.append(label)
    return labels


def labelled(message: dict, labels: Any, review: dict, kind: str, defaults: Defaults, inline: bool = True) -> list[Any]:
    """A labelled message as records of ``kind``: its message (``messages``), its review carrying
    it inline (``annotations``), or both, in that order; one `Rejected` if the message is invalid."""
    results: list[Any] = []
    if inline:
        checked = check(message, "messages", defaults)
        if isinstance(checked, Rejected):
            return [checked]
        if kind in ("messages", "both"):
            results.append(checked)
        if kind == "messages":
            return results
        message = checked.to_dict()
    annotation = {key: message[key] for key in ("dataset", "timestamp") if key in message}
    annotation.update(message_id=message.get("id"), labels=labels, **review)
    if inline:
        annotation["message"] = message
    results.append(check(annotation, "annotations", defaults))
    return results
