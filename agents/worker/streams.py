"""Streams for automations (docs/streams.md): which are declared, and what each one writes.

A `schemas.Stream` names a dataset, a threshold choice per label and a filter; the worker writes
every observed message that passes to the topic ``streams.<name>`` (`schemas.topics.stream_topic`)
as a `schemas.StreamMessage`, in the same delivery as its prediction: so a stream record has the
prediction's guarantee, at least once (repeated, never lost, after a crash).

Streams are declared in two places, both read by every worker:

- the setting ``REFINERY_STREAMS`` (`agents.worker.options.WorkerOptions.streams`): fixed for
  the process's life, read-only through the API;
- the compacted topic ``stream-declarations`` (`schemas.topics.STREAMS`), keyed by stream name,
  where the HTTP API writes (a tombstone deletes): a restarted worker reads it from the beginning
  before it applies any event, so declarations survive restarts.

`StreamRegistry` is plain Python (no Kafka, no asyncio): the declarations in force and the
routing of a batch of predictions. `follow_declarations` is the group-less reader of the topic.

>>> from schemas import Message, Prediction, Stream, Thresholds
>>> registry = StreamRegistry([Stream(name="cards", dataset="support", threshold="high_precision")])
>>> p = Prediction(dataset="support", message_id="m-1", timestamp=0, model_version=3,
...                confidences={"Card": 0.97}, labels=("Card",), informative=True,
...                thresholds={"Card": Thresholds(0.5, 0.9, 0.1)}, thresholds_version=2)
>>> [(r.stream, [label.name for label in r.labels]) for r in registry.route([(p, Message(dataset="support", id="m-1", timestamp=0))])]
[('cards', ['Card'])]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from agents.worker.observability import log_event
from schemas import Message, Prediction, SchemaError, Stream, StreamMessage

if TYPE_CHECKING:
    from agents.settings import Settings

__all__ = ["DeclarationError", "StreamRegistry", "follow_declarations"]

log = logging.getLogger("refinery.streams")


class DeclarationError(ValueError):
    """A declaration that cannot be applied; the message says why and what to do."""


class StreamRegistry:
    """The streams in force: those configured (``REFINERY_STREAMS``) and those declared on the
    ``stream-declarations`` topic. A configured stream wins over a declared one of its name.

    Parameters
    ----------
    configured
        The streams of the worker's configuration.
    """

    def __init__(self, configured: Iterable[Stream] = ()) -> None:
        self.configured: dict[str, Stream] = {}
        for stream in configured:
            if stream.name in self.configured:
                raise DeclarationError(f"REFINERY_STREAMS: stream {stream.name!r} is declared twice")
            self.configured[stream.name] = stream
        self.declared: dict[str, Stream] = {}
        self._by_dataset: dict[str, list[Stream]] = {}
        self._index()

    def _index(self) -> None:
        by_dataset: dict[str, list[Stream]] = {}
        for stream in self.streams().values():
            by_dataset.setdefault(stream.dataset, []).append(stream)
        self._by_dataset = by_dataset

    def streams(self) -> dict[str, Stream]:
        """Every stream in force by name, sorted by name."""
        merged = {**self.declared, **self.configured}
        return dict(sorted(merged.items()))

    def source(self, name: str) -> str:
        """``"configuration"`` or ``"api"``: where the stream ``name`` is declared."""
        return "configuration" if name in self.configured else "api"

    def check_writable(self, name: str) -> None:
        """Raise `DeclarationError` when ``name`` is a configured stream (the API cannot change it)."""
        if name in self.configured:
            raise DeclarationError(
                f"stream {name!r} is declared by the setting REFINERY_STREAMS: change it there and restart the worker"
            )

    def apply(self, key: bytes | None, value: bytes | None) -> str:
        """Apply one record of ``stream-declarations``; return the stream's name.

        A value declares (or replaces) the stream, an empty value (tombstone) deletes it. Raises
        `DeclarationError` for a record without key, or whose value is not a stream of that name.
        """
        if not key:
            raise DeclarationError("a declaration without key: the key must be the stream's name")
        name = key.decode("utf-8", errors="replace")
        if value is None:
            self.declared.pop(name, None)
        else:
            try:
                stream = Stream.decode(value)
            except SchemaError as error:
                raise DeclarationError(f"declaration of stream {name!r}: {error}") from None
            if stream.name != name:
                raise DeclarationError(f"declaration keyed {name!r} holds stream {stream.name!r}")
            self.declared[name] = stream
        self._index()
        return name

    def route(self, observed: Iterable[tuple[Prediction, Message]]) -> list[StreamMessage]:
        """The stream records of ``(prediction, message)`` pairs, in their order, stream by stream."""
        out = []
        for prediction, message in observed:
            for stream in self._by_dataset.get(prediction.dataset, ()):
                record = stream.route(prediction, message)
                if record is not None:
                    out.append(record)
        return out


async def follow_declarations(
    where: Settings | str,
    topic: str,
    registry: StreamRegistry,
    *,
    on_stream: Callable[[Stream], Awaitable[None]],
    loaded: asyncio.Event,
    poll_seconds: float = 0.5,
) -> None:
    """Read ``topic`` (``stream-declarations``) from its beginning into ``registry``, for ever.
    ``where`` is the settings (their bootstrap and security) or a plaintext bootstrap string.

    Before a declared stream is put in force ``on_stream(stream)`` runs (it creates the stream's
    topic). ``loaded`` is set once everything the topic held at the start is applied: the worker
    applies no event before, so a restart never skips a stream. A bad record is logged and
    skipped; a lost broker is retried.
    """
    from aiokafka import TopicPartition

    from agents.kafka.ranges import groupless_consumer
    from agents.worker.retry import Backoff

    backoff = Backoff()
    while True:
        consumer = groupless_consumer(where, client_id="refinery-streams", offset_reset="earliest")
        try:
            await consumer.start()
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while True:
                if not loaded.is_set() and await consumer.position(tp) >= end:
                    loaded.set()
                    log_event(log, logging.INFO, "streams_loaded", streams=sorted(registry.streams()))
                batches = await consumer.getmany(tp, timeout_ms=int(poll_seconds * 1000))
                for record in batches.get(tp, []):
                    await _apply(registry, record.key, record.value, record.offset, on_stream)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # broker unavailable, topic missing: retry from the beginning
            await backoff.wait(log, "streams_read_retry", topic=topic, error=repr(error))
        finally:
            await consumer.stop()


async def _apply(
    registry: StreamRegistry,
    key: bytes | None,
    value: bytes | None,
    offset: int,
    on_stream: Callable[[Stream], Awaitable[None]],
) -> None:
    try:
        if value is not None:
            stream = Stream.decode(value)
            await on_stream(stream)  # its topic exists before any record is routed to it
        name = registry.apply(key, value)
    except (DeclarationError, SchemaError) as error:
        log_event(log, logging.ERROR, "stream_declaration_rejected", offset=offset, reason=str(error))
        return
    log_event(
        log, logging.INFO, "stream_declared" if value is not None else "stream_deleted", stream=name, offset=offset
    )
