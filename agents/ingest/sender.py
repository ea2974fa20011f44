"""The sender behind `refinery send`: valid records to Kafka, rejected ones to a rejects file.

`send_records` takes ``(position, record)`` pairs as the readers (`agents.ingest.readers`) yield
them. Each `Message` or `Annotation` is sent to its topic keyed by dataset, with kafka-python
(``acks="all"``, idempotent), and the outcome of every send is checked; each `Rejected` record
is counted by reason and written, with its position and raw content, to the rejects file.
The `Summary` says what happened.

>>> from agents.ingest.readers import Rejected
>>> from schemas import Message
>>> records = [(1, Message(dataset="d", id="m-1", timestamp=0, body="hi")), (2, Rejected("message.id: expected a value", "message.id"))]
>>> print(send_records(records, {"messages": "t.messages", "annotations": "t.annotations"}, dry_run=True).render().splitlines()[1:])
['rejected, by reason (every one in None):', '       1  message.id']
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agents.ingest.readers import Rejected

__all__ = ["Summary", "describe", "make_producer", "send_records"]


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


def make_producer(where):
    """A KafkaProducer as `send_records` uses it (close it when done), for ``where``: the
    `agents.settings.Settings` (bootstrap and security) or a plaintext bootstrap string."""
    from kafka import KafkaProducer

    from agents.kafka.security import kafka_python_kwargs

    # acks=all with idempotence: a record counts as sent once every in-sync replica has it,
    # and a retried batch is not written twice. Batching (linger, large batches) is where the
    # throughput comes from.
    return KafkaProducer(
        **kafka_python_kwargs(where),
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
        ``(position, Message | Annotation | Rejected)`` pairs, as the readers
        (`agents.ingest.readers`) yield them.
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
        producer = make_producer(bootstrap)
    pending: collections.deque = collections.deque()

    def settle(future_entry) -> None:
        number, topic, record, future = future_entry
        if future.succeeded():
            summary.sent[topic] += 1
        else:
            error = describe(future.exception)
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


def describe(error: BaseException) -> str:
    """The error's type and text, once (kafka-python's errors already name their type)."""
    text = str(error)
    return text if type(error).__name__ in text else f"{type(error).__name__}: {text}"


def _failed_future(error: BaseException):
    from kafka.future import Future

    return Future().failure(error)
