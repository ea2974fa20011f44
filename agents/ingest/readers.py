"""The readers shared by `refinery send` and `refinery replay`: CSV, JSONL, JSON and the bundled
data sets, each record validated against the contract (`schemas`).

A reader yields ``(position, record)`` pairs: the record's 1-based position in its input (CSV
row after the header, JSONL line, JSON list item, data set item; see `UNITS`) and a `Message`,
an `Annotation` or, for a record that fails validation, a `Rejected` saying why.

What a record is (its *kind*) is one of `KINDS`:

- ``"messages"``: each record is sent as a message;
- ``"annotations"``: each record is a review (one of a labelled message carries the message
  inline, so that it stands alone);
- ``"both"``: each labelled message gives its message, then its review (same position), like
  a communications-mining CSV upload.

By default it is guessed: a CSV file with a labels column and a text column holds labelled
messages (``both``), one with a labels column only reviews (``annotations``), any other
messages; a JSON record with ``message_id`` is a review, one with ``labels`` (and no
``message_id``) a labelled message, any other a message (`guess_kind`).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "tickets.csv"
>>> _ = path.write_text("ticket,text,labels\\nT1,Card not arrived,Card;Urgent\\nT2,,Refund\\n")
>>> rows = read_records(path, ColumnMapping(id="ticket"), defaults=Defaults(dataset="support", timestamp=0))
>>> for number, record in rows:
...     print(number, record.reason if isinstance(record, Rejected) else (type(record).__name__, record.dataset))
1 ('Message', 'support')
1 ('Annotation', 'support')
2 message.body: expected a subject or a body (a message without text cannot be classified), got neither
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from agents.ingest.datasets import NAMES
from agents.ingest.records import (
    KINDS,
    REVIEW_FIELDS,
    Defaults,
    InputError,
    Rejected,
    check,
    fill_message,
    guess_kind,
    label_list,
    labelled,
    validate,
)

__all__ = [
    "BUNDLED",
    "ColumnMapping",
    "Defaults",
    "FORMATS",
    "InputError",
    "KINDS",
    "Rejected",
    "UNITS",
    "csv_header",
    "dataset_records",
    "file_format",
    "guess_kind",
    "labelled_pairs",
    "pair_records",
    "read_records",
    "require_file",
    "validate",
]

#: The bundled data sets (`agents.ingest.datasets`), by the name ``--bundled`` takes.
BUNDLED = NAMES
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
#: How a position in each input format is named (1-based in every format).
UNITS = {"csv": "row", "jsonl": "line", "json": "item", "dataset": "item"}
# A metadata column is numeric when every non-empty cell looks like this (no leading zeros:
# "007" or "02134" are codes, and stay strings).
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")


@dataclasses.dataclass(frozen=True)
class ColumnMapping:
    """Which CSV column holds which field; ``None`` means the column named like the field, if any.

    Every column not mapped to a field becomes message metadata (a user property).
    ``label_separator`` separates several label names in one labels cell (a cell may also hold
    a JSON list of names or label objects).
    """

    id: str | None = None
    timestamp: str | None = None
    subject: str | None = None
    body: str | None = None
    sender: str | None = None
    to: str | None = None
    cc: str | None = None
    thread: str | None = None
    channel: str | None = None
    language: str | None = None
    dataset: str | None = None
    labels: str | None = None
    label_separator: str = ";"

    # field -> (JSON key, columns tried when no column is given)
    _STANDARD: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {
        "id": ("id", ("id", "message_id")),
        "timestamp": ("timestamp", ("timestamp",)),
        "subject": ("subject", ("subject",)),
        "body": ("body", ("body", "text")),
        "sender": ("from", ("from",)),
        "to": ("to", ("to",)),
        "cc": ("cc", ("cc",)),
        "thread": ("thread_id", ("thread_id",)),
        "channel": ("channel", ("channel",)),
        "language": ("language", ("language",)),
        "dataset": ("dataset", ("dataset",)),
        "labels": ("labels", ("labels", "label")),
    }
    #: The flag that names each field's column.
    FLAGS: ClassVar[dict[str, str]] = {
        "sender": "--from-column",
        "thread": "--thread-column",
        "labels": "--label-column",
        "body": "--text-column",
    }

    @classmethod
    def flag(cls, field: str) -> str:
        """The command-line flag that maps ``field`` to a column.

        >>> ColumnMapping.flag("labels"), ColumnMapping.flag("timestamp")
        ('--label-column', '--timestamp-column')
        """
        return cls.FLAGS.get(field, f"--{field}-column")

    def resolve(self, header: list[str]) -> dict[str, str]:
        """``{JSON key: column}`` for this header; a column given explicitly must exist."""
        resolved: dict[str, str] = {}
        explicit = {getattr(self, field) for field in self._STANDARD} - {None}
        for field, (key, standard) in self._STANDARD.items():
            column = getattr(self, field)
            if column is not None:
                if column not in header:
                    raise InputError(
                        f"{self.flag(field)} {column!r}: no such column (the header has: {', '.join(header)})"
                    )
                resolved[key] = column
            else:
                found = next(
                    (
                        name
                        for name in standard
                        if name in header and name not in explicit and name not in resolved.values()
                    ),
                    None,
                )
                if found is not None:
                    resolved[key] = found
        return resolved


# -- files -------------------------------------------------------------------------------------


def require_file(path: Path | str) -> Path:
    """``path``, if it names a file; else an `InputError` (which points a data set's name to ``--bundled``).

    >>> require_file("banking77")
    Traceback (most recent call last):
    ...
    agents.ingest.records.InputError: banking77: no such file (for the bundled data set, use --bundled banking77)
    """
    path = Path(path)
    if not path.is_file():
        hint = f" (for the bundled data set, use --bundled {path.name})" if path.name in BUNDLED else ""
        raise InputError(f"{path}: no such file{hint}")
    return path


def file_format(path: Path | str, fmt: str | None = None) -> str:
    """``fmt`` if given, else the format the file's extension names (`FORMATS`)."""
    path = Path(path)
    if fmt:
        return fmt
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise InputError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; use --format csv|jsonl|json"
        ) from None


def read_records(
    path: Path | str,
    mapping: ColumnMapping = ColumnMapping(),
    kind: str | None = None,
    defaults: Defaults = Defaults(),
    fmt: str | None = None,
) -> Iterator[tuple[int, Any]]:
    """Read and validate the records of a CSV, JSONL or JSON file, in file order.

    Parameters
    ----------
    path
        A ``.csv``, ``.jsonl`` (``.ndjson``) or ``.json`` file (a list of records, or one).
    mapping
        Which CSV column holds which field, and the separator of label names (CSV only).
    kind
        One of `KINDS`, or ``None``: guessed (see the module's docstring).
    defaults
        Values for fields the records leave out.
    fmt
        ``"csv"``, ``"jsonl"`` or ``"json"``; by default from the extension.

    Yields
    ------
    (int, Message | Annotation | Rejected)
        The record's 1-based position (see `UNITS`) and what it parsed to; a labelled message
        read as ``both`` gives two records with the same position.

    Raises
    ------
    InputError
        When the file as a whole cannot be read; raised by the call, before any record is read.
    """
    path = require_file(path)
    fmt = file_format(path, fmt)
    if kind is not None and kind not in KINDS:
        raise InputError(f"--kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if fmt == "csv":
        return _read_csv(path, mapping, kind, defaults)
    if fmt == "jsonl":
        return _read_jsonl(path, mapping, kind, defaults)
    if fmt == "json":
        return _read_json(path, mapping, kind, defaults)
    raise InputError(f"--format: expected one of csv, jsonl, json, got {fmt!r}")


def _json_record(data: Any, kind: str | None, defaults: Defaults, separator: str) -> list[Any]:
    """The records of one JSON value: a message, a review, or a labelled message."""
    guessed = guess_kind(data)
    if guessed != "annotations" and (kind in ("annotations", "both") or guessed == "both"):
        if not isinstance(data, dict) or "labels" not in data:
            root = "annotation" if kind == "annotations" else "message"
            return [
                Rejected(
                    f"{root}.labels: expected a value (a labelled message), got nothing",
                    f"{root}.labels: expected a value (a labelled message)",
                    data,
                )
            ]
        message = {key: value for key, value in data.items() if key != "labels" and key not in REVIEW_FIELDS}
        if "body" not in message and isinstance(message.get("text"), str):
            message["body"] = message.pop("text")  # as a CSV "text" column
        if defaults.timestamp is not None:
            message.setdefault("timestamp", defaults.timestamp)
        review = {key: data[key] for key in REVIEW_FIELDS if key in data}
        return labelled(
            fill_message(message, defaults), label_list(data["labels"], separator), review, kind or "both", defaults
        )
    # A review stays a review whatever --kind says (there is no message to send).
    return [check(data, guessed if kind in (None, "both") else kind, defaults)]


def _read_jsonl(path: Path, mapping: ColumnMapping, kind: str | None, defaults: Defaults) -> Iterator[tuple[int, Any]]:
    import orjson

    root = "annotation" if kind == "annotations" else "message"
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as error:
                reason = f"{root}: expected UTF-8 encoded JSON, got invalid byte 0x{line[error.start]:02x} at position {error.start}"
                yield (
                    number,
                    Rejected(
                        reason, f"{root}: expected UTF-8 encoded JSON", line.decode("utf-8", "replace").rstrip("\n")
                    ),
                )
                continue
            text = text.rstrip("\r\n")  # so that the parser's error positions are within the line
            try:
                data = orjson.loads(text)
            except orjson.JSONDecodeError as error:
                yield (
                    number,
                    Rejected(
                        f"{root}: expected a JSON object, got invalid JSON ({error})",
                        f"{root}: expected a JSON object",
                        text,
                    ),
                )
                continue
            for record in _json_record(data, kind, defaults, mapping.label_separator):
                yield number, record


def _read_json(path: Path, mapping: ColumnMapping, kind: str | None, defaults: Defaults) -> Iterator[tuple[int, Any]]:
    import orjson

    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as error:
        raise InputError(
            f"{path}: not a JSON document ({error}); for one record per line, name the file .jsonl "
            "or use --format jsonl"
        ) from None
    items = data if isinstance(data, list) else [data]
    return (
        (number, record)
        for number, item in enumerate(items, start=1)
        for record in _json_record(item, kind, defaults, mapping.label_separator)
    )


def csv_header(path: Path | str) -> list[str]:
    """The header row of a CSV file (empty for an empty file)."""
    with Path(path).open(newline="", encoding="utf-8-sig") as file:
        return next(csv.reader(file), [])


def _numeric_columns(path: Path, columns: list[str]) -> set[str]:
    """The columns whose every non-empty cell is a number (and that have at least one)."""
    numeric, seen = set(columns), set()
    with path.open(newline="", encoding="utf-8-sig") as file:
        for row in csv.DictReader(file):
            for column in list(numeric):
                cell = (row.get(column) or "").strip()
                if cell:
                    seen.add(column)
                    if not _NUMBER.fullmatch(cell):
                        numeric.discard(column)
            if not numeric:
                break
    return numeric & seen


def _number(cell: str) -> int | float:
    return int(cell) if _INTEGER.fullmatch(cell) else float(cell)


def _read_csv(path: Path, mapping: ColumnMapping, kind: str | None, defaults: Defaults) -> Iterator[tuple[int, Any]]:
    # Everything that can make the whole file unreadable is checked here, before any record
    # is yielded (so before anything is sent); the rows then stream.
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            header = next(csv.reader(file), None)
            for _ in file:  # the whole file must be UTF-8
                pass
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error})") from None
    if not header:
        raise InputError(f"{path}: empty file (a CSV file starts with a header row)")
    columns = mapping.resolve(header)
    has_text = "body" in columns or "subject" in columns
    if kind is None:
        kind = ("both" if has_text else "annotations") if "labels" in columns else "messages"
    if kind == "messages" and "labels" in columns and mapping.labels is None:
        del columns["labels"]  # a column named "labels" in a messages file is a user property
    if kind != "messages" and "labels" not in columns:
        raise InputError(
            f"{path}: {'labelled messages' if kind == 'both' else 'annotations'} need a labels column "
            f"(name it with --label-column); the header has: {', '.join(header)}"
        )
    if kind == "both" and not has_text:
        raise InputError(
            f"{path}: messages need a text column (name it with --text-column or --subject-column); "
            f"the header has: {', '.join(header)}"
        )
    if "dataset" not in columns and defaults.dataset is None:
        raise InputError(
            f"{path}: which dataset do these records belong to? Name it with --dataset NAME "
            f"(or map a column with --dataset-column)"
        )
    review = {name for name in REVIEW_FIELDS if name in header} if kind != "messages" else set()
    inline = kind != "annotations" or has_text
    metadata = [c for c in header if c not in columns.values() and c not in review] if inline else []
    numeric = _numeric_columns(path, metadata)
    return _csv_rows(path, header, columns, kind, inline, review, metadata, numeric, mapping.label_separator, defaults)


def _csv_rows(
    path: Path,
    header: list[str],
    columns: dict[str, str],
    kind: str,
    inline: bool,
    review: set[str],
    metadata: list[str],
    numeric: set[str],
    separator: str,
    defaults: Defaults,
) -> Iterator[tuple[int, Any]]:
    # Cells of these fields are left out when empty, so that defaults apply (or None stays None).
    optional = {"thread_id", "language", "channel", "dataset"}

    def message_of(row: dict, number: int) -> dict:
        message: dict[str, Any] = {}
        for key, column in columns.items():
            if key == "labels":
                continue
            cell = row[column]
            if key in optional and not cell.strip():
                continue
            if key == "timestamp" and _NUMBER.fullmatch(cell.strip()):
                cell = float(cell)
            message[key] = cell
        message.setdefault("id", f"{path.stem}-{number}")
        if "timestamp" not in columns and defaults.timestamp is not None:
            message["timestamp"] = defaults.timestamp
        properties = {}
        for column in metadata:
            cell = row[column].strip()
            if cell:
                properties[column] = _number(cell) if column in numeric else row[column]
        if properties:
            message["metadata"] = properties
        return fill_message(message, defaults)

    root = "message" if kind != "annotations" else "annotation"
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        next(reader)
        for number, cells in enumerate(reader, start=1):
            if not cells:
                continue
            if len(cells) != len(header):
                reason = f"{root}: expected {len(header)} columns (as the header), got {len(cells)}"
                yield number, Rejected(reason, f"{root}: expected {len(header)} columns (as the header)", cells)
                continue
            raw = dict(zip(header, cells))
            message = message_of(raw, number)
            if kind == "messages":
                yield number, check(message, kind, defaults)
                continue
            fields = {name: raw[name] for name in review if raw[name].strip()}
            for record in labelled(
                message, label_list(raw[columns["labels"]], separator), fields, kind, defaults, inline
            ):
                yield number, record


# -- bundled data sets -------------------------------------------------------------------------


def dataset_records(
    name: str, kind: str = "messages", *, max_body_bytes: int | None = None, **loader_kwargs
) -> Iterator[tuple[int, Any]]:
    """The records of a bundled data set (`agents.ingest.datasets`), numbered from 1, in file order.

    ``kind``: ``"messages"``, ``"annotations"`` (each carrying its message inline, so it stands
    alone) or ``"both"`` (each message, then its annotation; both with the same number).
    """
    from agents.ingest import datasets

    return pair_records(datasets.load(name, **loader_kwargs), kind, max_body_bytes)


def pair_records(pairs: Iterable, kind: str, max_body_bytes: int | None = None) -> Iterator[tuple[int, Any]]:
    """`dataset_records` of ``(Message, Annotation)`` pairs already loaded."""
    defaults = Defaults(max_body_bytes=max_body_bytes)
    for number, (message, annotation) in enumerate(pairs, start=1):
        if kind in ("messages", "both"):
            yield number, check(message.to_dict(), "messages", defaults)
        if kind in ("annotations", "both"):
            yield number, check(dataclasses.replace(annotation, message=message).to_dict(), "annotations", defaults)


def labelled_pairs(records: Iterable[tuple[int, Any]], rejected=None) -> Iterator[tuple[Any, Any]]:
    """``(Message, Annotation)`` pairs from reviews that carry their message inline, as
    `read_records` (kind ``"annotations"``) and `dataset_records` yield them.

    Everything else is passed to ``rejected(position, Rejected)``: records that failed
    validation, and reviews without their message (there is no text to learn from).

    >>> from schemas import Annotation, Message
    >>> m = Message(dataset="d", id="m-1", timestamp=0, body="hi")
    >>> [(p[0].id, p[1].message) for p in labelled_pairs([(1, Annotation(dataset="d", message_id="m-1", timestamp=0, message=m))])]
    [('m-1', None)]
    """
    from schemas import Annotation

    for number, record in records:
        if isinstance(record, Annotation) and record.message is not None:
            yield record.message, dataclasses.replace(record, message=None)
            continue
        if not isinstance(record, Rejected):
            what = "annotation.message" if isinstance(record, Annotation) else "message.labels"
            record = Rejected(
                f"{what}: expected a labelled message (a review with its message inline), got none",
                f"{what}: expected a labelled message",
                record.to_dict(),
            )
        if rejected is not None:
            rejected(number, record)
