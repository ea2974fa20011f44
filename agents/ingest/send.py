"""`refinery send`: validate messages or annotations from a file (or a bundled data set) and
send them to Kafka.

Every record goes through the contract (`schemas`) before it is sent; a record that fails is
not sent but *rejected*: counted in the summary by reason and written, with its position and
raw content, to a rejects file. Valid records go to ``Settings.topic("messages")`` or
``Settings.topic("annotations")``, keyed by dataset, with kafka-python (``acks="all"``); the
outcome of every send is checked. See docs/ingest.md for the command line.

Python callers (tests, the demo) use the plain functions:

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "tickets.csv"
>>> _ = path.write_text("ticket,text,country\\nT1,Card not arrived,UK\\nT2,,FR\\n")
>>> rows = read_records(path, ColumnMapping(id="ticket", body="text"), defaults=Defaults(dataset="support", timestamp=0))
>>> for number, result in rows:
...     print(number, result.reason if isinstance(result, Rejected) else (result.id, result.body, result.metadata))
1 ('T1', 'Card not arrived', {'country': 'UK'})
2 message.body: expected a subject or a body (a message without text cannot be classified), got neither
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

__all__ = [
    "ColumnMapping",
    "Defaults",
    "InputError",
    "KINDS",
    "Rejected",
    "Summary",
    "add_arguments",
    "dataset_records",
    "guess_kind",
    "read_records",
    "run",
    "send_records",
    "validate",
]

KINDS = ("messages", "annotations")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
#: How a position in each input format is named (1-based in every format).
UNITS = {"csv": "row", "jsonl": "line", "json": "item", "dataset": "item"}
# A metadata column is numeric when every non-empty cell looks like this (no leading zeros:
# "007" or "02134" are codes, and stay strings).
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")


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
class ColumnMapping:
    """Which CSV column holds which field; ``None`` means the column named like the field, if any.

    Every column not mapped to a field becomes message metadata (a user property).
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

    # field -> (JSON key, columns tried when no column is given)
    _STANDARD = {
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
    # Annotation fields read from columns of the same name, when the kind is annotations.
    _ANNOTATION_COLUMNS = ("mode", "annotator", "action")

    def resolve(self, header: list[str]) -> dict[str, str]:
        """``{JSON key: column}`` for this header; a column given explicitly must exist."""
        resolved: dict[str, str] = {}
        explicit = {getattr(self, field) for field in self._STANDARD} - {None}
        for field, (key, standard) in self._STANDARD.items():
            column = getattr(self, field)
            if column is not None:
                if column not in header:
                    flag = {"sender": "from", "thread": "thread", "labels": "label"}.get(field, field)
                    raise InputError(
                        f"--{flag}-column {column!r}: no such column (the header has: {', '.join(header)})"
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


@dataclasses.dataclass(frozen=True)
class Defaults:
    """Values for fields a record leaves out.

    ``dataset`` and ``channel`` fill messages (and inline messages) without them; ``mode`` and
    ``annotator`` fill annotations; ``timestamp`` is the time of CSV records from a file with no
    timestamp column (``refinery send`` uses the time the run started). ``max_body_bytes`` is
    the body size limit.
    """

    dataset: str | None = None
    channel: str | None = None
    mode: str | None = None
    annotator: str | None = None
    timestamp: float | None = None
    max_body_bytes: int | None = None


def guess_kind(data: Any) -> str:
    """``"annotations"`` for a record with ``message_id`` or ``labels``, else ``"messages"``.

    >>> guess_kind({"message_id": "m-1", "labels": []}), guess_kind({"id": "m-1"})
    ('annotations', 'messages')
    """
    return "annotations" if isinstance(data, dict) and ("message_id" in data or "labels" in data) else "messages"


def _fill_message(data: Any, defaults: Defaults) -> Any:
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
        ``"messages"`` or ``"annotations"``; by default `guess_kind`.
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

    kind = kind or guess_kind(data)
    if kind == "messages":
        record = Message.decode(orjson.dumps(_fill_message(data, defaults)), max_body_bytes=defaults.max_body_bytes)
        _require_text(record, "message")
        return record
    if isinstance(data, dict):
        data = dict(data)
        for key in ("dataset", "mode", "annotator"):
            if getattr(defaults, key) is not None:
                data.setdefault(key, getattr(defaults, key))
        if "message" in data:
            data["message"] = _fill_message(data["message"], defaults)
    record = Annotation.decode(orjson.dumps(data), max_body_bytes=defaults.max_body_bytes)
    if record.message is not None:
        _require_text(record.message, "annotation.message")
    return record


def _check(data: Any, kind: str | None, defaults: Defaults):
    """`validate`, with a failure returned as `Rejected` instead of raised."""
    from schemas import SchemaError

    try:
        return validate(data, kind, defaults)
    except SchemaError as error:
        return Rejected(str(error), f"{error.path}: expected {error.expected}", data)


# -- readers -----------------------------------------------------------------------------------


def _format(path: Path, fmt: str | None) -> str:
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
        Which CSV column holds which field (CSV only).
    kind
        ``"messages"``, ``"annotations"`` or ``None``: guessed per record (`guess_kind`); a CSV
        file with a labels column holds annotations.
    defaults
        Values for fields the records leave out.
    fmt
        ``"csv"``, ``"jsonl"`` or ``"json"``; by default from the extension.

    Yields
    ------
    (int, Message | Annotation | Rejected)
        The record's 1-based position (CSV row after the header, JSONL line, JSON list item;
        see `UNITS`) and what it parsed to.

    Raises
    ------
    InputError
        When the file as a whole cannot be read; raised by the call, before any record is read.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    fmt = _format(path, fmt)
    if fmt == "csv":
        return _read_csv(path, mapping, kind, defaults)
    if fmt == "jsonl":
        return _read_jsonl(path, kind, defaults)
    if fmt == "json":
        return _read_json(path, kind, defaults)
    raise InputError(f"--format: expected one of csv, jsonl, json, got {fmt!r}")


def _read_jsonl(path: Path, kind: str | None, defaults: Defaults) -> Iterator[tuple[int, Any]]:
    import orjson

    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            root = "annotation" if kind == "annotations" else "message"
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
            yield number, _check(data, kind, defaults)


def _read_json(path: Path, kind: str | None, defaults: Defaults) -> Iterator[tuple[int, Any]]:
    import orjson

    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as error:
        raise InputError(
            f"{path}: not a JSON document ({error}); for one record per line, name the file .jsonl"
        ) from None
    items = data if isinstance(data, list) else [data]
    return ((number, _check(item, kind, defaults)) for number, item in enumerate(items, start=1))


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


def _labels_cell(cell: str) -> Any:
    """A labels cell: a JSON list (of names or label objects) or names separated by ';'."""
    text = cell.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            return text  # not a list: the contract's parser says so
        return (
            [{"name": item} if isinstance(item, str) else item for item in items] if isinstance(items, list) else items
        )
    return [{"name": name.strip()} for name in text.split(";") if name.strip()]


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
    if kind is None:
        kind = "annotations" if "labels" in columns else "messages"
    if kind == "messages" and "labels" in columns and mapping.labels is None:
        del columns["labels"]  # a column named "labels" in a messages file is a user property
    if kind == "annotations" and "labels" not in columns:
        raise InputError(
            f"{path}: annotations need a labels column (--label-column); the header has: {', '.join(header)}"
        )
    extra = {name for name in ColumnMapping._ANNOTATION_COLUMNS if name in header} if kind == "annotations" else set()
    inline = kind == "messages" or "body" in columns or "subject" in columns
    metadata = [c for c in header if c not in columns.values() and c not in extra] if inline else []
    numeric = _numeric_columns(path, metadata)
    return _csv_rows(path, header, columns, kind, inline, extra, metadata, numeric, defaults)


def _csv_rows(
    path: Path,
    header: list[str],
    columns: dict[str, str],
    kind: str,
    inline: bool,
    extra: set[str],
    metadata: list[str],
    numeric: set[str],
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
        return message

    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        next(reader)
        for number, cells in enumerate(reader, start=1):
            if not cells:
                continue
            raw = dict(zip(header, cells))
            root = "annotation" if kind == "annotations" else "message"
            if len(cells) != len(header):
                reason = f"{root}: expected {len(header)} columns (as the header), got {len(cells)}"
                yield number, Rejected(reason, f"{root}: expected {len(header)} columns (as the header)", cells)
                continue
            message = message_of(raw, number)
            if kind == "messages":
                yield number, _check(message, kind, defaults)
                continue
            annotation = {key: message[key] for key in ("dataset", "timestamp") if key in message}
            annotation["message_id"] = message["id"]
            annotation["labels"] = _labels_cell(raw[columns["labels"]])
            annotation.update({name: raw[name] for name in extra if raw[name].strip()})
            if inline:
                annotation["message"] = message
            yield number, _check(annotation, kind, defaults)


def dataset_records(
    name: str, kind: str = "messages", *, max_body_bytes: int | None = None, **loader_kwargs
) -> Iterator[tuple[int, Any]]:
    """The records of a bundled data set (`agents.ingest.datasets`), numbered from 1, in file order.

    ``kind``: ``"messages"``, ``"annotations"`` (each carrying its message inline, so it stands
    alone) or ``"both"`` (each message, then its annotation; both with the same number).
    """
    from agents.ingest import datasets

    return _pair_records(datasets.load(name, **loader_kwargs), kind, max_body_bytes)


def _pair_records(pairs: Iterable, kind: str, max_body_bytes: int | None) -> Iterator[tuple[int, Any]]:
    defaults = Defaults(max_body_bytes=max_body_bytes)
    for number, (message, annotation) in enumerate(pairs, start=1):
        if kind in ("messages", "both"):
            yield number, _check(message.to_dict(), "messages", defaults)
        if kind in ("annotations", "both"):
            yield number, _check(dataclasses.replace(annotation, message=message).to_dict(), "annotations", defaults)


# -- sending -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Summary:
    """What a run did: records sent per topic, rejected by reason, failed sends, time taken."""

    sent: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    rejected: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failed: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    seconds: float = 0.0
    dry_run: bool = False
    rejects_path: Path | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    @property
    def total_failed(self) -> int:
        return sum(self.failed.values())

    def render(self, top: int = 20) -> str:
        """The summary printed at the end of `refinery send`."""
        verb = "valid (dry run, nothing sent)" if self.dry_run else "sent"
        rate = f" ({self.total_sent / self.seconds:,.0f}/s)" if self.seconds > 0 and self.total_sent else ""
        where = ", ".join(f"{topic}: {count}" for topic, count in sorted(self.sent.items()))
        lines = [
            f"{verb} {self.total_sent}{f' ({where})' if where else ''} in {self.seconds:.1f} s{rate}; "
            f"rejected {self.total_rejected}; failed {self.total_failed}"
        ]
        if self.rejected:
            lines.append(f"rejected, by reason (every one in {self.rejects_path}):")
            for group, count in self.rejected.most_common(top):
                lines.append(f"  {count:6d}  {group}")
            if len(self.rejected) > top:
                lines.append(f"  ... and {len(self.rejected) - top} other reasons")
        if self.failed:
            lines.append("failed sends, by error:")
            for error, count in self.failed.most_common(top):
                lines.append(f"  {count:6d}  {error}")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


class _RejectsFile:
    """The rejects file of this run: created at the first reject; a clean run leaves none
    (and removes one an earlier run left at the same path, so the file never misleads)."""

    def __init__(self, path: Path | None, unit: str) -> None:
        self.path, self.unit, self.file = path, unit, None

    def write(self, number: int, reason: str, raw: Any, **extra: Any) -> None:
        import orjson

        if self.path is None:
            return
        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = self.path.open("wb")
        entry = {self.unit: number, "reason": reason, **extra, "raw": raw}
        self.file.write(orjson.dumps(entry, default=str, option=orjson.OPT_APPEND_NEWLINE))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        elif self.path is not None:
            self.path.unlink(missing_ok=True)


def _producer(bootstrap: str):
    from kafka import KafkaProducer

    # acks=all with idempotence: a record counts as sent once every in-sync replica has it,
    # and a retried batch is not written twice. Batching (linger, large batches) is where the
    # throughput comes from.
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        batch_size=256 * 1024,
        client_id="refinery-send",
        bootstrap_timeout_ms=15_000,
    )


def send_records(
    records: Iterable[tuple[int, Any]],
    topics: dict[str, str] | Callable[[Any], str],
    *,
    bootstrap: str | None = None,
    producer=None,
    dry_run: bool = False,
    rejects_path: Path | None = None,
    unit: str = "row",
    progress: bool = False,
    total: int | None = None,
    timeout: float = 120.0,
) -> Summary:
    """Send the valid records to Kafka; write the `Rejected` ones to ``rejects_path``.

    Each record is sent with key = its dataset (UTF-8) and value = ``record.encode()``. After
    the last one the producer is flushed and every send's outcome checked: a failed send is
    counted in ``Summary.failed`` and written to the rejects file with ``"stage": "send"``.

    Parameters
    ----------
    records
        ``(position, Message | Annotation | Rejected)`` pairs, as `read_records` yields them.
    topics
        ``{"messages": topic, "annotations": topic}``, or a function of the record.
    bootstrap, producer
        A KafkaProducer to use (left open), or the bootstrap servers to create one from
        (closed at the end). Neither is needed for a ``dry_run``, which only counts.
    rejects_path
        Where rejected records go (created at the first; removed when there are none).
    unit
        How positions are named in the rejects file: ``"row"``, ``"line"`` or ``"item"``.
    progress, total
        Show a progress bar on stderr, out of ``total`` records if known.
    timeout
        Seconds to wait for the broker to acknowledge the last sends.

    Returns
    -------
    Summary
        Records sent per topic, rejected per reason, failed per error, and the seconds taken.
    """
    from tqdm import tqdm

    from schemas import Message

    topic_of = (
        topics
        if callable(topics)
        else (lambda record: topics["messages" if isinstance(record, Message) else "annotations"])
    )
    rejects_path = Path(rejects_path) if rejects_path is not None else None
    summary = Summary(dry_run=dry_run, rejects_path=rejects_path)
    rejects = _RejectsFile(rejects_path, unit)
    own_producer = producer is None and not dry_run
    if own_producer:
        producer = _producer(bootstrap)
    pending: collections.deque = collections.deque()

    def settle(future_entry) -> None:
        number, topic, record, future = future_entry
        if future.succeeded():
            summary.sent[topic] += 1
        else:
            error = _describe(future.exception)
            summary.failed[error] += 1
            rejects.write(number, f"send failed: {error}", record.to_dict(), stage="send")

    started = time.perf_counter()
    bar = tqdm(total=total, unit=" records", disable=not progress, file=sys.stderr, mininterval=0.5)
    try:
        for number, result in records:
            bar.update(1)
            if isinstance(result, Rejected):
                summary.rejected[result.group or result.reason] += 1
                rejects.write(number, result.reason, result.raw)
                continue
            topic = topic_of(result)
            if dry_run:
                summary.sent[topic] += 1
                continue
            try:
                future = producer.send(topic, key=result.dataset.encode("utf-8"), value=result.encode())
            except Exception as error:  # e.g. a record over the producer's max_request_size
                future = _failed_future(error)
            pending.append((number, topic, result, future))
            while pending and pending[0][3].is_done:
                settle(pending.popleft())
        if producer is not None and not dry_run:
            from kafka.errors import KafkaTimeoutError

            try:
                producer.flush(timeout=timeout)
            except KafkaTimeoutError:
                pass  # the sends still pending are reported as failed below
        while pending:
            entry = pending.popleft()
            if not entry[3].is_done:
                entry = (*entry[:3], _failed_future(TimeoutError(f"not acknowledged within {timeout:.0f} s")))
            settle(entry)
    finally:
        bar.close()
        rejects.close()
        if own_producer:
            producer.close(timeout=10)
    summary.seconds = time.perf_counter() - started
    return summary


def _describe(error: BaseException) -> str:
    """The error's type and text, once (kafka-python's errors already name their type)."""
    text = str(error)
    return text if type(error).__name__ in text else f"{type(error).__name__}: {text}"


def _failed_future(error: BaseException):
    from kafka.future import Future

    return Future().failure(error)


# -- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("what to send")
    source.add_argument(
        "files", nargs="*", type=Path, metavar="FILE", help="CSV, JSONL or JSON (a list, or one object) files"
    )
    source.add_argument(
        "--dataset",
        choices=("banking77", "nlupp", "enron"),
        help="send a bundled data set from REFINERY_DATASETS instead of files",
    )
    source.add_argument("--split", default="train", choices=("train", "test"), help="Banking77 split (default train)")
    source.add_argument(
        "--domain", default="banking", choices=("banking", "hotels"), help="NLU++ domain (default banking)"
    )
    source.add_argument(
        "--min-annotators", type=int, default=1, help="Enron: keep labels given by at least N annotators (default 1)"
    )
    source.add_argument(
        "--kind",
        choices=("messages", "annotations", "both"),
        help="what the records are (default: guessed; records with message_id or labels are annotations); "
        "--dataset sends messages unless told; 'both' is for --dataset only",
    )
    source.add_argument(
        "--format", choices=("csv", "jsonl", "json"), help="input format (default: from the file extension)"
    )
    source.add_argument(
        "--limit", type=int, help="stop after the first N records of each file (with --dataset: N items)"
    )

    columns = parser.add_argument_group("CSV columns (default: the column named like the field, if any)")
    for field, column_help in (
        ("id", "message id (default 'id'; without one: '<file stem>-<row number>')"),
        ("timestamp", "ISO-8601 or epoch seconds (without one: the time this run started)"),
        ("subject", "subject"),
        ("body", "message text (default 'body', else 'text')"),
        ("from", "sender"),
        ("to", "recipients"),
        ("cc", "copied recipients"),
        ("thread", "thread id (default 'thread_id')"),
        ("channel", "email, chat, call or other"),
        ("language", "language code"),
        ("dataset", "dataset name"),
        ("label", "annotation labels: 'A;B > C' or a JSON list (default 'labels', else 'label')"),
    ):
        flags = [f"--{field}-column"] + (["--text-column"] if field == "body" else [])
        dest = {"from": "sender_column", "thread": "thread_column", "label": "labels_column"}.get(
            field, f"{field}_column"
        )
        columns.add_argument(*flags, dest=dest, metavar="NAME", help=column_help)

    fill = parser.add_argument_group("defaults for fields a record leaves out")
    fill.add_argument("--dataset-name", help="the dataset of records that name none (with --dataset: rename it)")
    fill.add_argument(
        "--channel", choices=("email", "chat", "call", "other"), help="channel of messages that name none"
    )
    fill.add_argument("--mode", help="mode of annotations that name none (with --dataset: default 'label')")
    fill.add_argument("--annotator", help="annotator of annotations that name none")

    out = parser.add_argument_group("where to")
    out.add_argument("--bootstrap", help="Kafka bootstrap servers (default: settings, 127.0.0.1:9092)")
    out.add_argument(
        "--topic", help="send every record to this topic (default: <prefix>messages / <prefix>annotations)"
    )
    out.add_argument(
        "--rejects", type=Path, help="rejects file (default: <input>.rejects.jsonl, or <dataset>.rejects.jsonl)"
    )
    out.add_argument(
        "--max-body-bytes", type=int, help="largest accepted body in UTF-8 bytes (default: REFINERY_MAX_BODY_BYTES)"
    )
    out.add_argument("--dry-run", action="store_true", help="validate only; send nothing")
    out.add_argument("--strict", action="store_true", help="exit 1 when any record is rejected")
    out.add_argument("--quiet", action="store_true", help="no progress bar")


def _limited(records: Iterator, limit: int | None) -> Iterator:
    if limit is None:
        yield from records
        return
    for count, item in enumerate(records):
        if count >= limit:
            return
        yield item


def run(args: argparse.Namespace) -> int:
    from agents.settings import Settings

    settings = Settings.from_env()
    if bool(args.files) == bool(args.dataset):
        return _usage_error("give input files or --dataset (one of the two)")
    if args.kind == "both" and not args.dataset:
        return _usage_error("--kind both is for --dataset only")
    if args.rejects and len(args.files) > 1:
        return _usage_error(
            "--rejects names the rejects file of one input; with several, each gets <input>.rejects.jsonl"
        )
    max_body = args.max_body_bytes or settings.max_body_bytes
    try:
        runs = list(_dataset_run(args, max_body) if args.dataset else _file_runs(args, max_body))
    except (InputError, FileNotFoundError) as error:
        return _usage_error(str(error))

    topics = {name: args.topic or settings.topic(name) for name in KINDS}
    bootstrap = args.bootstrap or settings.bootstrap
    from kafka.errors import KafkaError

    producer = None
    failed = rejected = 0
    try:
        producer = None if args.dry_run else _producer(bootstrap)
        for records, total, unit, rejects_path, notes in runs:
            summary = send_records(
                records,
                topics,
                producer=producer,
                dry_run=args.dry_run,
                rejects_path=rejects_path,
                unit=unit,
                progress=not args.quiet and sys.stderr.isatty(),
                total=total,
            )
            summary.notes.extend(notes)
            print(summary.render())
            failed += summary.total_failed
            rejected += summary.total_rejected
    except KafkaError as error:  # the broker cannot be reached, most often
        print(
            f"refinery send: error: Kafka at {bootstrap}: {_describe(error)} (is the broker running? `refinery kafka start`)",
            file=sys.stderr,
        )
        return 1
    finally:
        if producer is not None:
            producer.close(timeout=10)
    return 1 if failed or (args.strict and rejected) else 0


def _usage_error(message: str) -> int:
    print(f"refinery send: error: {message}", file=sys.stderr)
    return 2


def _dataset_run(args: argparse.Namespace, max_body: int) -> Iterator[tuple]:
    """(records, total, unit, rejects path, notes) of a bundled data set."""
    from agents.ingest import datasets

    loader_kwargs: dict[str, Any] = {"mode": args.mode or "label"}
    if args.dataset_name:
        loader_kwargs["dataset"] = args.dataset_name
    if args.dataset == "banking77":
        loader_kwargs["split"] = args.split
    elif args.dataset == "nlupp":
        loader_kwargs["domain"] = args.domain
    else:
        loader_kwargs["min_annotators"] = args.min_annotators
    # Loaded whole (a few seconds at most) so that the progress bar knows the total;
    # validation and sending stream, and are what the summary times.
    pairs = list(datasets.load(args.dataset, **loader_kwargs))[: args.limit]
    kind = args.kind or "messages"
    total = len(pairs) * (2 if kind == "both" else 1)
    yield _pair_records(pairs, kind, max_body), total, "item", args.rejects or Path(f"{args.dataset}.rejects.jsonl"), []


def _file_runs(args: argparse.Namespace, max_body: int) -> Iterator[tuple]:
    """(records, total, unit, rejects path, notes) of every input file; each is opened (and
    refused if unreadable) before anything is sent."""
    from datetime import datetime

    started = round(time.time())
    defaults = Defaults(
        dataset=args.dataset_name,
        channel=args.channel,
        mode=args.mode,
        annotator=args.annotator,
        timestamp=float(started),
        max_body_bytes=max_body,
    )
    mapping = ColumnMapping(
        **{
            field: getattr(args, f"{field}_column")
            for field in (
                "id",
                "timestamp",
                "subject",
                "body",
                "sender",
                "to",
                "cc",
                "thread",
                "channel",
                "language",
                "dataset",
                "labels",
            )
        }
    )
    for path in args.files:
        fmt = _format(path, args.format)
        records = read_records(path, mapping, args.kind, defaults, fmt)
        notes = []
        if fmt == "csv" and "timestamp" not in mapping.resolve(_csv_header(path)):
            moment = datetime.fromtimestamp(started, UTC).isoformat().replace("+00:00", "Z")
            notes.append(f"{path} has no timestamp column: its records carry this run's start time, {moment}")
        rejects_path = args.rejects or path.with_name(path.name + ".rejects.jsonl")
        yield _limited(records, args.limit), None, UNITS[fmt], rejects_path, notes


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as file:
        return next(csv.reader(file), [])
