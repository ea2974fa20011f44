"""The engines of one ``events`` partition, and the log bookkeeping that makes recovery exact.

`PartitionEngines` is plain Python (no Kafka, no asyncio): the Faust agent hands it batches of
``(events offset, raw value)`` in log order and publishes what `PartitionEngines.apply` returns.
It owns one engine per dataset found on the partition and remembers, per dataset:

- ``resume``: the first ``events`` offset its restored snapshot does not cover (skip below it);
- ``sources``: per input partition, the source offsets it has applied
  (`agents.worker.applied.AppliedOffsets`, a bitmap below a mark, not a high-water mark alone). The sequencer is
  at-least-once and may reorder a delivery it retries (``events`` holding source offsets
  1, 3, 2, 3): each input record is applied at its first appearance and every repeat is dropped,
  so no review is learnt twice and none is lost.

A batch is applied in log order. Consecutive messages of a dataset are scored together with
``observe_many`` (whose results equal one-by-one ``observe``); reviews are applied one at a time
between them, so where ``stream.take`` cuts batches never changes the state.

`read_range` is the separate, group-less consumer that reads a stretch of a partition the Faust
consumer will not deliver (after a rejected snapshot, or a gap), as DESIGN.md section 7 asks.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
import zlib
from collections.abc import Iterable, Mapping

import zstandard

from agents.kafka.ranges import read_range
from agents.worker.applied import AppliedOffsets
from agents.worker.caps import Caps
from agents.worker.deadletter import letter
from agents.worker.observability import log_event
from agents.worker.snapshots import Collected, Manifest, SnapshotRejected, pack, stale_chunk_keys, verify
from pipeline.engine import Engine, EngineFactory, EngineLoader, StateCapture
from schemas import Annotation, DeadLetter, Event, Message, Prediction, SchemaError

__all__ = [
    "Captured",
    "Outcome",
    "PartitionEngines",
    "compress_state",
    "decompress_state",
    "pack_captured",
    "read_range",
    "source_id",
]

log = logging.getLogger("refinery.recovery")


def source_id(topic: str, partition: int) -> str:
    """The name of one input partition in the dedup marks: ``topic:partition``."""
    return f"{topic}:{partition}"


@dataclasses.dataclass
class Outcome:
    """What applying a batch produced: predictions and dead letters to publish, and counts."""

    predictions: list[Prediction] = dataclasses.field(default_factory=list)
    #: The message of each prediction, in the same order (streams filter and carry them).
    observed: list[Message] = dataclasses.field(default_factory=list)
    dead_letters: list[DeadLetter] = dataclasses.field(default_factory=list)
    #: What the workbench's store of recent messages learns from the batch, in log order: each
    #: message applied (a review's inline copy too) and ``(dataset, id)`` of a review without
    #: one (`agents.web.messages.MessageStore.apply`). Decoded once, by the engine.
    seen: list[Message | tuple[str, str]] = dataclasses.field(default_factory=list)
    messages: int = 0
    reviews: int = 0
    skipped: int = 0  # covered by a snapshot, already applied, or a sequencer repeat


class PartitionEngines:
    """The engines of the datasets on one ``events`` partition.

    Parameters
    ----------
    topic, partition
        The ``events`` topic and partition (for dead letters and snapshots).
    make_engine
        ``make_engine(dataset)`` -> a new `pipeline.Engine` (a ``pipeline.Refiner``).
    restore_engine
        ``restore_engine(blob)`` -> an engine from its snapshot bytes.
    max_datasets, max_labels
        Memory caps (`agents.worker.caps`): datasets on this partition, labels per dataset.
        An event over one is dead-lettered (error ``limit``) and changes nothing.
    """

    def __init__(
        self,
        topic: str,
        partition: int,
        make_engine: EngineFactory,
        restore_engine: EngineLoader,
        *,
        max_datasets: int | None = None,
        max_labels: int | None = None,
    ) -> None:
        self.caps = Caps(max_datasets, max_labels)
        self.topic = topic
        self.partition = partition
        self.make_engine = make_engine
        self.restore_engine = restore_engine
        self.engines: dict[str, Engine] = {}
        self.resume: dict[str, int] = {}
        self.sources: dict[str, dict[str, AppliedOffsets]] = {}
        self.versions: dict[str, int] = {}
        self.known_chunks: dict[str, set[str]] = {}
        #: The next ``events`` offset to apply; None until the first record after a restore.
        self.position: int | None = None
        #: Replay from here before anything else (a dataset whose snapshot was rejected).
        self.replay_from: int | None = None
        self.dirty: set[str] = set()  # changed since the last snapshot
        self.changed: set[str] = set()  # changed since metrics were last published
        self.since_snapshot = 0
        self.writer = uuid.uuid4().hex[:12]  # names this owner's snapshot chunks
        #: A batch failed part-way (`apply`): the state may hold half of it, and is never snapshotted.
        self.failed = False

    # -- restore ---------------------------------------------------------------------------

    def restore(self, collected: Collected, *, key: str, replay: bool = False) -> list[str]:
        """Load the latest authentic snapshot of every dataset of this partition.

        Returns the rejections (one line each, also logged). A dataset whose snapshot is rejected
        starts empty and is replayed from the beginning of the partition. With ``replay``, the
        consumer's position is not trusted: everything after the oldest snapshot is read again
        (after a failed batch, whose events the consumer will not deliver twice).
        """
        problems = []
        for dataset, reason in collected.rejected.items():
            problems.append(reason)
            self.resume[dataset] = 0
            self.replay_from = 0
        for dataset, manifest in sorted(collected.manifests.items()):
            self.known_chunks[dataset] = collected.chunk_keys_of(dataset)
            self.versions[dataset] = manifest.version
            try:
                if manifest.partition != self.partition:
                    raise SnapshotRejected(
                        f"snapshot of dataset {dataset!r} is for partition {manifest.partition}, "
                        f"found on {self.partition}"
                    )
                blob = verify(manifest, collected.chunks, key=key)
                engine = self.restore_engine(decompress_state(blob))
            except Exception as error:  # a rejected or unloadable snapshot: rebuild from the log
                problems.append(
                    str(error)
                    if isinstance(error, SnapshotRejected)
                    else f"snapshot of dataset {dataset!r}: restore failed ({type(error).__name__}: {error})"
                )
                self.resume[dataset] = 0
                self.replay_from = 0
                continue
            self.engines[dataset] = engine
            self.resume[dataset] = manifest.events_offset
            self.sources[dataset] = {
                source: (
                    AppliedOffsets.from_dict(manifest.applied[source])
                    if source in manifest.applied
                    else AppliedOffsets.below(mark)  # written before the applied offsets were kept
                )
                for source, mark in manifest.sources.items()
            }
        if replay:
            oldest = min(self.resume.values(), default=0)
            self.replay_from = oldest if self.replay_from is None else min(self.replay_from, oldest)
        for problem in problems:
            log_event(log, logging.ERROR, "snapshot_rejected", partition=self.partition, reason=problem)
        return problems

    # -- apply -----------------------------------------------------------------------------

    def gap(self, first_offset: int) -> tuple[int, int] | None:
        """The ``[start, end)`` range to read with `read_range` before applying ``first_offset``."""
        start = self.replay_from if self.replay_from is not None else self.position
        if start is not None and start < first_offset:
            return start, first_offset
        return None

    def _engine(self, dataset: str) -> Engine:
        engine = self.engines.get(dataset)
        if engine is None:
            engine = self.engines[dataset] = self.make_engine(dataset)
        return engine

    def apply(
        self, records: Iterable[tuple[int, bytes | None]], *, now: float, parsed: Mapping[int, Event] | None = None
    ) -> Outcome:
        """Apply ``(events offset, raw value)`` records of this partition, in log order.

        ``parsed`` maps offsets to their records' events already parsed (`agents.worker.handoff`);
        each must equal ``Event.decode`` of its record. The others are parsed here. An exception
        escaping it (a bug: bad input is dead-lettered) may leave part of the batch applied: the
        engines are ``failed`` from then on and `capture` refuses them.
        """
        try:
            return self._apply(records, now=now, parsed=parsed)
        except BaseException:
            self.failed = True
            raise

    def _apply(
        self, records: Iterable[tuple[int, bytes | None]], *, now: float, parsed: Mapping[int, Event] | None
    ) -> Outcome:
        outcome = Outcome()
        run: list[tuple[int, Event, Message]] = []  # consecutive messages of one dataset

        def flush() -> None:
            if run:
                self._observe(run, outcome, now)
                run.clear()

        for offset, raw in records:
            if self.position is not None and offset < self.position:
                outcome.skipped += 1  # delivered again after a rebalance: already applied
                continue
            self.position = offset + 1
            self.replay_from = None
            event = parsed.get(offset) if parsed else None
            if event is None:
                event = self._decode(offset, raw, outcome, now)
            if event is None:
                continue
            message, annotation = event.message, event.annotation
            record = message if message is not None else annotation
            assert record is not None  # schemas.Event holds exactly one of them
            dataset = record.dataset
            if offset < self.resume.get(dataset, 0):
                outcome.skipped += 1
                continue
            over = self.caps.refuse(self.engines, dataset, annotation)  # before any state is kept for it
            if over is not None:
                outcome.dead_letters.append(self._capped(offset, raw, event, dataset, over, now))
                continue
            self._engine(dataset)  # admitted: counts towards the cap at once, even while its messages wait
            sources = self.sources.setdefault(dataset, {})
            source = source_id(event.source_topic, event.partition)
            applied = sources.get(source)
            if applied is None:
                applied = sources[source] = AppliedOffsets()
            if not applied.add(event.offset):
                outcome.skipped += 1  # a repeat of the sequencer's
                continue
            self.dirty.add(dataset)
            self.changed.add(dataset)
            self.since_snapshot += 1
            if message is not None:
                outcome.seen.append(message)
                if run and run[0][2].dataset != dataset:
                    flush()
                run.append((offset, event, message))
                continue
            assert annotation is not None
            outcome.seen.append(
                annotation.message if annotation.message is not None else (dataset, annotation.message_id)
            )
            flush()
            self._annotate(offset, event, annotation, outcome, now)
        flush()
        return outcome

    def _decode(self, offset: int, raw: bytes | None, outcome: Outcome, now: float) -> Event | None:
        try:
            if raw is None:
                raise SchemaError("event", "an event", "a record without value")
            return Event.decode(raw)
        except SchemaError as error:
            outcome.dead_letters.append(
                letter(
                    raw,
                    topic=self.topic,
                    partition=self.partition,
                    offset=offset,
                    error="schema",
                    reason=str(error),
                    now=now,
                )
            )
            return None

    def _observe(self, run: list[tuple[int, Event, Message]], outcome: Outcome, now: float) -> None:
        dataset = run[0][2].dataset
        engine = self._engine(dataset)
        messages = [message for _, _, message in run]
        try:
            outcome.predictions += engine.observe_many(messages)
            outcome.observed += messages
            outcome.messages += len(messages)
            return
        except Exception:  # find the culprit: one by one gives the same results
            log_event(
                log,
                logging.DEBUG,
                "observe_many_failed",
                dataset=dataset,
                messages=len(messages),
                then="one by one",
                exc_info=True,
            )
        for offset, event, message in run:
            try:
                outcome.predictions.append(engine.observe(message))
                outcome.observed.append(message)
                outcome.messages += 1
            except Exception as error:
                outcome.dead_letters.append(self._failed(offset, event, "message", dataset, error, now))

    def _annotate(self, offset: int, event: Event, annotation: Annotation, outcome: Outcome, now: float) -> None:
        try:
            self._engine(annotation.dataset).annotate(annotation)
            outcome.reviews += 1
        except Exception as error:
            outcome.dead_letters.append(self._failed(offset, event, "review", annotation.dataset, error, now))

    def _capped(self, offset: int, raw: bytes | None, event: Event, dataset: str, why: str, now: float) -> DeadLetter:
        kind = "message" if event.message is not None else "review"
        return self._letter(offset, raw, event, kind, dataset, "limit", why, now)

    def _failed(self, offset: int, event: Event, kind: str, dataset: str, error: Exception, now: float) -> DeadLetter:
        why = f"the engine raised {type(error).__name__}: {error}"
        return self._letter(offset, event.encode(), event, kind, dataset, "processing", why, now)

    def _letter(
        self, offset: int, raw: bytes | None, event: Event, kind: str, dataset: str, error: str, why: str, now: float
    ) -> DeadLetter:
        """The dead letter of the ``events`` record at ``offset``, naming where the event came from."""
        reason = f"{kind} of dataset {dataset!r} from {event.source_topic}[{event.partition}]@{event.offset}: {why}"
        return letter(
            raw,
            topic=self.topic,
            partition=self.partition,
            offset=offset,
            error=error,
            reason=reason,
            now=now,
            dataset=dataset,
        )

    # -- snapshots -------------------------------------------------------------------------

    def begin_snapshot(self) -> list[str]:
        """The datasets changed since the last snapshot began, sorted: those this snapshot
        captures, one at a time (`capture`). They are clean again from here, so that an event applied
        after this marks its dataset for the next snapshot, even one captured later in this one.
        Call it in the engine thread, between two batches, together with taking the events to
        ack once the snapshot is durable (`agents.worker.partition.Partition.take_held`): each
        of them changed only datasets returned here.

        >>> engines = PartitionEngines("refinery.events", 0, make_engine=None, restore_engine=None)
        >>> engines.begin_snapshot()
        []
        """
        self.dirty &= set(self.engines)  # a dataset without engine has no state to save
        datasets = sorted(self.dirty)
        self.dirty.clear()
        self.since_snapshot = 0
        return datasets

    def capture(self, dataset: str) -> Captured | None:
        """``dataset``'s state copied now (``engine.capture()``, the cheap part of a snapshot),
        with the log position it covers: the next ``events`` offset and the source offsets
        applied, as they are now. Call it in the engine thread, between two batches (the
        position may be past the one of `begin_snapshot`: the manifest says which).
        `pack_captured` encodes it into records, in any thread; call `snapshotted` once they are
        durable. None once a batch failed part-way (``failed``): that state must not be saved."""
        if self.failed:
            return None
        applied = self.sources.get(dataset, {})
        return Captured(
            dataset=dataset,
            state=self.engines[dataset].capture(),
            version=self.versions.get(dataset, 0) + 1,
            events_offset=self.position or 0,
            sources={source: offsets.mark for source, offsets in applied.items()},
            applied={source: offsets.to_dict() for source, offsets in applied.items()},
        )

    def snapshot_records(self, *, key: str, chunk_bytes: int | None = None) -> list[tuple[Manifest, list, tuple]]:
        """`begin_snapshot`, then `capture` and `pack_captured` of each dataset in turn (one
        capture alive at a time)."""
        out = []
        for dataset in self.begin_snapshot():
            captured = self.capture(dataset)
            if captured is None:
                break
            out.append(
                pack_captured(captured, partition=self.partition, writer=self.writer, key=key, chunk_bytes=chunk_bytes)
            )
            del captured  # before the next capture: one copy of a dataset's state at a time
        return out

    def snapshotted(self, manifests: Iterable[Manifest]) -> list[str]:
        """Record durable snapshots; return the chunk keys now stale (tombstone them)."""
        stale = []
        for manifest in manifests:
            self.versions[manifest.dataset] = manifest.version
            known = self.known_chunks.setdefault(manifest.dataset, set())
            stale += stale_chunk_keys(known, manifest)
            self.known_chunks[manifest.dataset] = set(manifest.chunks)
        return stale


@dataclasses.dataclass(frozen=True)
class Captured:
    """One dataset's state as `PartitionEngines.capture` copied it, and the log position it covers."""

    dataset: str
    state: StateCapture  # the engine's capture(): ``state.encode()`` is its snapshot(), uncompressed
    version: int
    events_offset: int
    sources: dict[str, int]
    applied: dict[str, dict]


#: The first bytes of a zstd frame; a zlib stream (snapshots written before zstd) starts with 0x78.
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def compress_state(state: bytes) -> bytes:
    """An engine's snapshot bytes, compressed for ``snapshots``: zstd level 1, ~10x less CPU
    than zlib level 1 for a smaller result (8.7 MB of Banking77 state: 16 ms and 3.5 MB against
    146 ms and 4.1 MB; snapshots were most of the worker's background CPU under load).

    >>> decompress_state(compress_state(b"state" * 100)) == b"state" * 100
    True
    """
    return zstandard.ZstdCompressor(level=1).compress(state)  # one compressor per call: any thread


def decompress_state(blob: bytes) -> bytes:
    """`compress_state` undone; a zlib blob (a snapshot written by an earlier version) is read too.

    >>> decompress_state(zlib.compress(b"older snapshot"))
    b'older snapshot'
    """
    if blob[:4] == _ZSTD_MAGIC:
        return zstandard.ZstdDecompressor().decompress(blob)
    return zlib.decompress(blob)


def pack_captured(
    captured: Captured, *, partition: int, writer: str, key: str, chunk_bytes: int | None = None
) -> tuple[Manifest, list, tuple]:
    """``(manifest, chunk records, manifest record)`` of a captured state: encoded into the
    engine's snapshot bytes, compressed (`compress_state`), chunked and authenticated
    (`agents.worker.snapshots.pack`). Reads no engine, so it may run in any thread while the
    engines go on (zstd, the digest and the HMAC release the GIL)."""
    extra = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
    chunks, manifest_record = pack(
        compress_state(captured.state.encode()),
        dataset=captured.dataset,
        partition=partition,
        version=captured.version,
        events_offset=captured.events_offset,
        sources=captured.sources,
        applied=captured.applied,
        key=key,
        writer=writer,
        **extra,
    )
    return Manifest.decode(manifest_record[1]), chunks, manifest_record
