"""The worker's state and what it does with each batch, rebalance and tick: `Service`.

The Faust app (`agents.worker.app`) only forwards to it. `Service` owns:

- one `agents.worker.partition.Partition` per ``events`` partition it owns (``partitions``);
- the engine thread (``in_thread``) and its lock: every call into an engine runs there, one at a
  time, so the event loop stays free for heartbeats, commits and the web server;
- the producer side (`agents.worker.delivery.Delivery`) and the Prometheus metrics;
- the latest published `schemas.MetricsSnapshot` of each dataset (cheap to read on the loop).

What it does:

- **sequence** (`Service.sequence_batch`): input records become ``events`` records or dead letters;
- **apply** (`Service.process`): a batch of ``events`` goes through the partition's engines in the
  engine thread; predictions and dead letters are delivered; the events are held until a
  snapshot covers them;
- **snapshot** (`Service.snapshot`, `Service.snapshot_due`): changed engines are captured in the
  engine thread (`pipeline.Refiner.capture`) one at a time, each encoded and written to
  ``snapshots`` beside it before the next is captured, then the events they cover are acked;
- **publish** (`Service.publish_metrics`): metrics and suggestions of changed datasets (computed
  from a frozen copy of the engine, `pipeline.Refiner.frozen`, beside the engine thread; the
  lists ranked from the copy's suggestion pools, without the lock, between batches);
- **rebalance** (`Service.on_assigned`, `Service.on_revoked`, `Service.on_shutdown`): restore new
  partitions from ``snapshots``, snapshot and forget lost ones;
- **lag** (`Service.record_lag`, `Service.refresh_lag`).

The web API and pages read it through `Service.owned`, `Service.engine`, `Service.restored`,
``ready`` and ``latest_metrics``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from agents.kafka.ranges import read_range
from agents.settings import Settings
from agents.worker.applied import MAX_BATCH_SIZE
from agents.worker.budget import Budget
from agents.worker.deadletter import letter
from agents.worker.delivery import Delivery, Record, Send, SendMany
from agents.worker.engines import Captured, PartitionEngines, pack_captured
from agents.worker.handoff import HANDOFF_BATCHES, HANDOFF_BYTES, Handoff
from agents.worker.observability import Observability, log_event
from agents.worker.options import WorkerOptions, engine_functions
from agents.worker.partition import Partition
from agents.worker.retry import Backoff
from agents.worker.sequencer import sequence
from agents.worker.sizes import SizeBudget, limits_of
from agents.worker.snapshots import Manifest, collect
from agents.worker.stalls import StallWatch
from agents.worker.streams import StreamRegistry, follow_declarations
from pipeline.engine import LABEL_KINDS, Engine, pooled_suggestion_list
from pipeline.suggestions import SuggestionPool
from schemas import SUGGESTION_KINDS, Event, Message, MetricsSnapshot, Stream, SuggestionList
from schemas.events import SuggestionKind
from schemas.topics import STREAMS, stream_topic

__all__ = ["OutputGate", "Service"]

log = logging.getLogger("refinery.worker")

T = TypeVar("T")

#: Sequenced batches whose delivery may be awaited at once (`Service.sequence_batch`).
FORWARDS_IN_FLIGHT = 2

#: Seconds of ranking per engine-thread call of a publication (`Service._publish`): the lists
#: are ranked from a pool taken with the metrics, without the engines' lock, so a batch of events
#: waits at most about this long for the engine thread (a list takes 0.3-14 ms for 77 labels).
PUBLICATION_SLICE = 0.01


class OutputGate:
    """Keeps a snapshot's capture out of a batch whose outputs are not durable yet.

    A snapshot captures its datasets one at a time, between batches, without the engines' lock
    (`Service._write`). A batch's predictions are delivered after its events are applied: a
    capture taken in between would cover events whose predictions a crash could still lose
    (restored from that snapshot, they would never be applied, so never predicted, again). A
    batch is ``inside`` from before its events are applied until its outputs are durable;
    `capture` waits until no batch is, and a batch waits while a capture waits, so back-to-back
    batches cannot starve a snapshot (the capture takes a few milliseconds).

    >>> async def demo():
    ...     gate, order = OutputGate(), []
    ...     async def batch():
    ...         async with gate.batch():
    ...             order.append("applied")
    ...             await asyncio.sleep(0)  # its predictions are being delivered
    ...             order.append("durable")
    ...     async def take():
    ...         order.append("captured")
    ...     work = asyncio.ensure_future(batch())
    ...     await asyncio.sleep(0)
    ...     await gate.capture(take)
    ...     await work
    ...     return order
    >>> asyncio.run(demo())
    ['applied', 'durable', 'captured']
    """

    def __init__(self) -> None:
        self.inside = 0
        self.waiting = 0
        self._no_batch = asyncio.Event()
        self._no_batch.set()
        self._no_capture = asyncio.Event()
        self._no_capture.set()

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """A batch, from before its events are applied until its outputs are durable."""
        while self.waiting:  # a capture waits for the batch before: it goes first
            await self._no_capture.wait()
        self.inside += 1
        self._no_batch.clear()
        try:
            yield
        finally:
            self.inside -= 1
            if not self.inside:
                self._no_batch.set()

    async def capture(self, take: Callable[[], Awaitable[T]]) -> T:
        """``await take()`` once no batch is inside: it starts before any later batch applies."""
        self.waiting += 1
        self._no_capture.clear()
        try:
            while self.inside:
                await self._no_batch.wait()
            return await take()
        finally:
            self.waiting -= 1
            if not self.waiting:
                self._no_capture.set()


class Service:
    """The worker's state: the partitions it owns, their engines, and how to publish.

    Parameters
    ----------
    settings, options
        Where the broker and topics are; the worker's tuning.
    send
        ``send(topic, key, value, partition)`` schedules one record and returns an awaitable of
        its delivery (Faust's producer).
    observability
        The worker's Prometheus metrics.
    send_many
        Schedules records in batches, one acknowledgement per topic partition
        (`agents.worker.delivery.SendMany`; the worker's is `agents.worker.transport.BatchSend`);
        without it each record goes through ``send``.
    """

    def __init__(
        self,
        settings: Settings,
        options: WorkerOptions,
        send: Send,
        observability: Observability,
        send_many: SendMany | None = None,
    ) -> None:
        if options.batch_size > MAX_BATCH_SIZE:  # the engines' exact de-duplication window
            raise ValueError(f"REFINERY_BATCH_SIZE: at most {MAX_BATCH_SIZE}, got {options.batch_size}")
        self.settings = settings
        self.options = options
        self.obs = observability
        self.topics = settings.topics()
        self.delivery = Delivery(send, observability, self.topics["deadletter"], send_many)
        self.limits = limits_of(settings)  # the input contract's caps
        self.budget = SizeBudget.of(settings, options)
        self.make_engine, self.restore_engine = engine_functions(options)
        #: The ``events`` partitions this worker owns, restored or restoring.
        self.partitions: dict[int, Partition] = {}
        self.assigned: set[int] | None = None  # None until the first assignment
        #: The input partitions ``(topic, partition)`` the sequencer reads (`on_assigned`).
        self.inputs: set[tuple[str, int]] = set()
        self.lock = asyncio.Lock()  # one caller of the engines at a time
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="refinery-engine")
        #: Beside the engine thread: encodes, compresses and authenticates snapshots (`_snapshot`)
        #: and computes publications' metrics from frozen copies of the engines (`_publish`).
        self.packer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="refinery-snapshot")
        #: Per ``events`` partition, the snapshot being written (`_snapshot`), if any.
        self.writing: dict[int, asyncio.Future] = {}
        #: Held by the snapshot of one dataset from its capture until its records are delivered
        #: (`_write`): one dataset's state is copied for a snapshot at a time, in the whole worker.
        self.one_snapshot = asyncio.Lock()
        #: Between a batch's apply and its durable outputs, no snapshot capture (`OutputGate`).
        self.gate = OutputGate()
        #: Publications and count-triggered snapshots take at most this share of the engine
        #: thread (`agents.worker.budget`); time-triggered and final snapshots are never held back.
        self.publish_budget = Budget(options.background_share)
        self.snapshot_budget = Budget(options.background_share)
        #: The metrics last published per dataset.
        self.latest_metrics: dict[str, MetricsSnapshot] = {}
        #: Events the sequencer wrote, for the engine to take instead of parsing them again.
        self.handoff = Handoff(max_records=HANDOFF_BATCHES * options.batch_size, max_bytes=HANDOFF_BYTES)
        #: Called on the loop with each applied batch's `Outcome.seen` (the workbench's store of
        #: recent messages: the engine decodes each event once, for both).
        self.seen_listeners: list[Callable[[list[Message | tuple[str, str]]], None]] = []
        #: The deliveries of sequenced batches, oldest first (`sequence_batch`).
        self.forwards: collections.deque[asyncio.Future] = collections.deque()
        #: Per input partition ``(topic, partition)``: the first offset not yet forwarded.
        self.forwarded: dict[tuple[str, int], int] = {}
        #: Partitions with input and no progress (`agents.worker.stalls`), as of the last lag tick.
        self.stalls = StallWatch(options.stall_seconds, log)
        self.stalled: list[dict] = []
        #: Streams for automations (agents.worker.streams); no event is applied before the
        #: declarations are loaded, so a restart never skips a stream.
        self.streams = StreamRegistry(options.streams)
        self.streams_loaded = asyncio.Event()
        self.streams_loaded.set()  # nothing to wait for until `follow_streams` is started
        observability.ready.set_function(lambda: float(self.ready))  # read at each scrape: always current

    # -- helpers ---------------------------------------------------------------------------

    async def in_thread(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, **kwargs)`` in the engine thread: the one place engines are called."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def beside(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, **kwargs)`` beside the engine thread (the snapshot thread): for work on a
        frozen copy of an engine (`pipeline.Refiner.frozen`), never on an engine itself."""
        return await asyncio.get_running_loop().run_in_executor(self.packer, lambda: fn(*args, **kwargs))

    async def read_frozen(self, engine: Engine, fn: Callable[[Engine], T]) -> T:
        """``fn(copy)`` on a frozen copy of ``engine`` (its metrics, suggestions, curves and
        windows as they are now), beside the engine thread: the engine is held only for the copy
        (a few ms), not for what ``fn`` computes (metrics alone take 60-90 ms for 77 labels)."""
        async with self.lock:
            frozen = await self.in_thread(engine.frozen)
        return await self.beside(fn, frozen)

    async def deliver(self, records: Sequence[Record]) -> None:
        """Publish records and wait until all are durable (`agents.worker.delivery.Delivery.deliver`)."""
        await self.delivery.deliver(records)

    @property
    def send(self) -> Send:
        """Schedule one record without waiting for it (`deliver` waits, and retries)."""
        return self.delivery.send

    # -- what the web reads ----------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether every assigned partition is restored, none is stalled, and the declarations of
        streams are read."""
        return (
            self.assigned is not None
            and self.streams_loaded.is_set()
            and all(p in self.partitions and self.partitions[p].restored for p in self.assigned)
            and not self.stalled
        )

    @property
    def restored(self) -> list[int]:
        """The restored partitions, sorted."""
        return sorted(p for p, partition in self.partitions.items() if partition.restored)

    def owned(self) -> list[tuple[int, str]]:
        """``(partition, dataset)`` of every dataset this worker has an engine of, sorted."""
        return [(p, dataset) for p, partition in sorted(self.partitions.items()) for dataset in partition.datasets()]

    def engine(self, dataset: str) -> Engine | None:
        """The engine of ``dataset`` when this worker owns it. Call its methods with `in_thread`."""
        for partition in self.partitions.values():
            engine = partition.engine(dataset)
            if engine is not None:
                return engine
        return None

    # -- sequencer -------------------------------------------------------------------------

    async def sequence_batch(
        self,
        records: list[tuple[str, int, int, bytes | None, bytes | None]],
        *,
        forwarded: Callable[[], object] | None = None,
    ) -> None:
        """Forward ``(topic, partition, offset, key, value)`` input records into ``events``.

        The records are delivered in the background, one batch after the other (``forwards``):
        this returns once they are parsed and their delivery is queued, so the sequencer takes
        its next batch while the broker acknowledges this one (the acknowledgements took most of
        its time: bench/README.md, *Service throughput*). At most `FORWARDS_IN_FLIGHT` batches
        wait for them. ``forwarded()`` is called once every record is durable: the agent acks
        its input events there, never before.
        """
        out: list[Record] = []
        now = time.time()
        roles = {self.topics["messages"]: "messages", self.topics["annotations"]: "annotations"}
        last: dict[tuple[str, int], int] = {}
        for topic, partition, offset, _, _ in records:
            self.forwarded.setdefault((topic, partition), offset)  # until delivered: a stall shows here
            last[topic, partition] = offset
        counts: dict[str, int] = {}
        for topic, partition, offset, key, value in records:
            counts[topic] = counts.get(topic, 0) + 1
            result = sequence(
                value,
                role=roles[topic],
                topic=topic,
                partition=partition,
                offset=offset,
                partitions=self.settings.partitions,
                now=now,
                key=key,
                limits=self.limits,
            )
            if isinstance(result, Event):
                record = result.message if result.message is not None else result.annotation
                assert record is not None  # schemas.Event holds exactly one of them
                dataset = record.dataset
                encoded = result.encode()
                if len(encoded) <= self.budget.events_value:
                    out.append((self.topics["events"], dataset.encode("utf-8"), encoded, partition))
                    if self._ours(partition):  # this worker's engine reads it back: parsed once
                        self.handoff.put(encoded, result, now=time.monotonic())
                    continue
                # Cannot happen within the contract (agents.worker.sizes); kept so it never stalls.
                reason = (
                    f"{roles[topic]}: its events record would take {len(encoded)} bytes, over the "
                    f"{self.budget.events_value} that REFINERY_MAX_RECORD_BYTES={self.budget.record} leaves"
                )
                where = dict(topic=topic, partition=partition, offset=offset, now=now, key=key, dataset=dataset)
                out.append(self.delivery.dead_record(letter(value, error="limit", reason=reason, **where)))
            else:
                out.append(self.delivery.dead_record(result))
        for topic, count in counts.items():
            self.obs.events_in.labels(topic).inc(count)
        while self.forwards and self.forwards[0].done():
            self.forwards.popleft()
        if len(self.forwards) >= FORWARDS_IN_FLIGHT:
            await asyncio.wait([self.forwards[0]])
        previous = self.forwards[-1] if self.forwards else None
        self.forwards.append(asyncio.ensure_future(self._forward(previous, out, last, forwarded)))

    async def _forward(
        self,
        previous: asyncio.Future | None,
        out: list[Record],
        last: dict[tuple[str, int], int],
        forwarded: Callable[[], object] | None,
    ) -> None:
        """Deliver one sequenced batch after the one before it, then report it forwarded."""
        if previous is not None:
            await asyncio.wait([previous])  # in order: the events log keeps the input's order
        await self.deliver(out)
        for tp, offset in last.items():
            self.forwarded[tp] = max(self.forwarded.get(tp, 0), offset + 1)
        if forwarded is not None:
            forwarded()

    async def drain_forwards(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until every sequenced batch is delivered."""
        pending = [task for task in self.forwards if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    # -- partitions ------------------------------------------------------------------------

    def _own(self, p: int, *, replay: bool = False) -> Partition:
        """The partition ``p``, created and restoring in the background if it is new here."""
        partition = self.partitions.get(p)
        if partition is None:
            partition = self.partitions[p] = Partition(p, replay=replay)
            partition.restore(self._restore)
        return partition

    def on_assigned(self, partitions: set[int], *, inputs: set[tuple[str, int]] | None = None) -> None:
        """Keep the partitions still ours, forget the others, restore the new ones (in background).
        ``inputs``: the input partitions (``messages``, ``annotations``) the sequencer now reads."""
        if inputs is not None:
            self.inputs = set(inputs)
        for p in set(self.partitions) - partitions:
            self.forget(p)
        self.assigned = set(partitions)
        for p in sorted(partitions):
            self._own(p)

    async def on_revoked(self, partitions: set[int]) -> None:
        """Before a rebalance hands partitions out: let the batch in progress finish, snapshot what
        changed (so the next owner, maybe this worker, replays little), then forget the partitions.
        No snapshot of them is written after this."""
        await self.drain_forwards(self.options.session_timeout / 2)  # their input acks land before the commit
        async with self.lock:
            await self._final_snapshots(partitions)
            for p in partitions:
                self.forget(p)
            if self.assigned is not None:
                self.assigned -= partitions

    async def on_shutdown(self) -> None:
        """On a clean stop: snapshot what changed, so that a restart replays nothing."""
        await self.drain_forwards(self.options.session_timeout / 2)
        async with self.lock:
            await self._final_snapshots(set(self.partitions))
        log_event(log, logging.INFO, "events_parsed", handed_over=self.handoff.taken, parsed=self.handoff.missed)

    async def _final_snapshots(self, partitions: set[int]) -> None:
        budget = self.options.session_timeout / 2  # a rebalance must not wait on an unreachable broker
        for p in sorted(partitions):
            partition = self.partitions.get(p)
            if partition is None or partition.engines is None:
                continue
            try:
                await asyncio.wait_for(self._final_snapshot(partition), budget)
            except TimeoutError:
                log_event(log, logging.WARNING, "final_snapshot_timeout", partition=p, seconds=budget)
                writing = self.writing.get(p)
                if writing is not None:
                    writing.cancel()  # nothing of this owner is written after the rebalance

    async def _final_snapshot(self, partition: Partition) -> None:
        """Snapshot what changed, and wait until every snapshot of ``partition`` is durable."""
        assert partition.engines is not None
        if partition.engines.dirty:
            await self._snapshot(partition)
        writing = self.writing.get(partition.number)
        if writing is not None:
            await asyncio.wait([writing])

    def forget(self, p: int) -> None:
        """Partition ``p`` is no longer ours: drop all its state, and the series of its datasets."""
        partition = self.partitions.pop(p, None)
        if partition is not None:
            partition.forget()
        owned = {dataset for _, dataset in self.owned()}
        for dataset in self.obs.datasets() - owned:  # the next owner reports them
            self.obs.drop(dataset)

    async def _restore(self, p: int, replay: bool) -> PartitionEngines:
        """`_load`, once a snapshot of ``p`` still being written (by a partition forgotten after a
        failed batch) is durable: the restore reads the latest one, and versions never collide."""
        writing = self.writing.get(p)
        if writing is not None:
            await asyncio.wait([writing])
        return await self._load(p, replay)

    async def _load(self, p: int, replay: bool) -> PartitionEngines:
        """Partition ``p``'s engines from its latest snapshots (waits for the broker if need be)."""
        started = time.monotonic()
        backoff = Backoff()
        while True:
            try:
                records = await read_range(self.settings, self.topics["snapshots"], p, None, None)
                break
            except Exception as error:  # broker unavailable: keep trying, the partition waits
                await backoff.wait(log, "snapshots_read_retry", partition=p, error=repr(error))
        engines = PartitionEngines(
            self.topics["events"],
            p,
            self.make_engine,
            self.restore_engine,
            max_datasets=self.settings.max_datasets_per_partition,
            max_labels=self.settings.max_labels_per_dataset,
        )
        problems = await self.in_thread(
            engines.restore, collect((k, v) for _, k, v in records), key=self.settings.snapshot_key, replay=replay
        )
        self.obs.snapshots_rejected.inc(len(problems))
        self.obs.restores.inc()
        engines.changed.update(engines.engines)  # publish the restored metrics once
        log_event(
            log,
            logging.INFO,
            "partition_restored",
            partition=p,
            datasets=sorted(engines.engines),
            seconds=round(time.monotonic() - started, 3),
        )
        return engines

    # -- engine ----------------------------------------------------------------------------

    def _ours(self, p: int) -> bool:
        return self.assigned is None or p in self.assigned

    async def process(self, batch: list) -> None:
        """Apply a batch of Faust events of the ``events`` topic; never raises."""
        by_partition: dict[int, list] = {}
        for event in batch:
            by_partition.setdefault(event.message.partition, []).append(event)
        for p, events in by_partition.items():
            if not self._ours(p):
                continue  # a stale delivery from before a rebalance
            partition = self._own(p)
            partition.delivered_from(events[0].message.offset)  # a batch stuck here still shows lag
            try:
                await self._process_partition(partition, events)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug, not bad input: keep the worker alive, rebuild the partition
                log_event(log, logging.ERROR, "processing_failed", partition=p, events=len(events), exc_info=True)
                self.forget(p)  # its unacked events stay unacked: the commit never passes a snapshot
                if self._ours(p):
                    self._own(p, replay=True)  # Faust will not deliver them again: replay from the snapshots

    async def _process_partition(self, partition: Partition, events: list) -> None:
        p = partition.number
        await self.streams_loaded.wait()
        engines = await partition.wait_restored()
        if engines is None:
            return  # revoked while restoring: Faust delivers these events again after the rebalance
        records = [(e.message.offset, e.message.value) for e in events]
        parsed = {offset: event for offset, raw in records if (event := self.handoff.take(raw)) is not None}
        async with self.lock:  # apply, publish and hold as one step: a revocation waits for it
            if self.partitions.get(p) is not partition:
                return  # revoked while waiting
            async with self.gate.batch():  # no snapshot captures these events before their outputs are durable
                if not await self._apply_and_deliver(partition, engines, events, records, parsed):
                    return
            for event in events:  # acking needs the offset only: held events keep none of the record's bytes
                event.value = event.message.value = None
            partition.hold(events, now=time.monotonic())
            if engines.since_snapshot >= self.options.snapshot_every and self.snapshot_budget.due(now=time.monotonic()):
                await self._snapshot(partition, wait=False, budget=self.snapshot_budget)  # written in the background
            elif not engines.dirty:  # nothing to cover (all skipped or dead-lettered): release now
                partition.ack()

    async def _apply_and_deliver(
        self, partition: Partition, engines: PartitionEngines, events: list, records: list, parsed: dict
    ) -> bool:
        """Apply a batch and deliver its outputs (the caller holds the lock); False if the
        partition was forgotten meanwhile (hold nothing, snapshot nothing)."""
        p = partition.number
        started = time.perf_counter()
        gap = engines.gap(records[0][0])
        if gap is not None:
            log_event(log, logging.INFO, "replay_range", partition=p, start=gap[0], end=gap[1])
            extra = await read_range(self.settings, self.topics["events"], p, gap[0], gap[1])
            records = [(o, v) for o, _, v in extra] + records
        outcome = await self.in_thread(engines.apply, records, now=time.time(), parsed=parsed)
        self.obs.latency.observe(time.perf_counter() - started)
        self._tell_seen(outcome.seen)
        if outcome.skipped:
            log_event(
                log,
                logging.INFO,
                "skipped",
                partition=p,
                events=outcome.skipped,
                why="covered by a snapshot, already applied, or repeated by the sequencer",
            )
        self.obs.events_in.labels(self.topics["events"]).inc(len(events))
        out: list[Record] = [
            (self.topics["predictions"], pr.dataset.encode("utf-8"), pr.encode(), None) for pr in outcome.predictions
        ]
        out += [  # in the same delivery as the predictions: the same at-least-once guarantee
            (self.settings.topic(stream_topic(r.stream)), r.dataset.encode("utf-8"), r.encode(), None)
            for r in self.streams.route(zip(outcome.predictions, outcome.observed))
        ]
        out += [self.delivery.dead_record(d) for d in outcome.dead_letters]
        await self.deliver(out)
        return self.partitions.get(p) is partition  # else forgotten meanwhile (a new assignment without it)

    def _tell_seen(self, seen: list[Message | tuple[str, str]]) -> None:
        for listener in self.seen_listeners:
            try:
                listener(seen)
            except Exception:  # a reader's bug never stops the events
                log_event(log, logging.ERROR, "seen_listener_failed", listener=repr(listener), exc_info=True)

    # -- snapshots -------------------------------------------------------------------------

    async def snapshot(self, p: int) -> None:
        """Write the changed engines of partition ``p`` to ``snapshots``, then ack what they cover
        (returns once it is durable; events are applied meanwhile)."""
        async with self.lock:
            partition = self.partitions.get(p)
            if partition is None or not partition.restored:
                return
            await self._snapshot(partition, wait=False)
        writing = self.writing.get(p)
        if writing is not None:
            await writing

    async def _snapshot(self, partition: Partition, *, wait: bool = True, budget: Budget | None = None) -> None:
        """Snapshot the changed engines of ``partition``; the caller holds the lock.

        Which datasets changed is taken now, in the engine thread, together with the events
        their snapshots will cover (`PartitionEngines.begin_snapshot`, `Partition.take_held`).
        Capturing each, encoding, compressing, authenticating and writing it, then acking those
        events, happen in `_write` (``writing``) while events go on being applied: the engine
        thread is not held for the hundreds of milliseconds a snapshot of megabytes takes to
        encode, compress and deliver. Without ``wait`` this returns before it is durable; one
        write per partition at a time, in order. ``budget`` is charged with the capturing,
        encoding and compressing time.
        """
        p, engines = partition.number, partition.engines
        assert engines is not None
        previous = self.writing.get(p)
        if previous is not None:
            await asyncio.wait([previous])  # the versions of the next captures follow its manifests
        started = time.monotonic()
        datasets = await self.in_thread(engines.begin_snapshot)
        held = partition.take_held()
        task = self.writing[p] = asyncio.ensure_future(
            self._write(partition, engines, datasets, held, budget, time.monotonic() - started)
        )
        if wait:
            await task

    async def _write(
        self,
        partition: Partition,
        engines: PartitionEngines,
        datasets: list[str],
        held: list,
        budget: Budget | None,
        busy: float,
    ) -> None:
        """Write a snapshot of each of ``datasets`` in turn, then ack ``held`` (see `_snapshot`).

        One dataset at a time in the whole worker (``one_snapshot``): its state is captured in
        the engine thread (`PartitionEngines.capture`: a few milliseconds, between two batches,
        without the lock: events applied meanwhile are held for the next snapshot, and their
        datasets marked for it), encoded and compressed beside it, delivered, and dropped before
        the next is captured. So the memory a snapshot takes on top of the engines is one
        dataset's state and its bytes (`agents.worker.sizes.MemoryBudget`), not a copy of every
        changed dataset. Each manifest names the log position its own capture covers; ``held``
        (applied before `PartitionEngines.begin_snapshot`) is acked once all are durable.
        """
        p = partition.number
        topic = self.topics["snapshots"]
        written: list[Manifest] = []
        try:
            for dataset in datasets:
                async with self.one_snapshot:
                    started = time.monotonic()
                    if self.partitions.get(p) is not partition:  # lost: no snapshot of it after that
                        self._abandon(partition, "forgotten")
                        return
                    captured = await self.gate.capture(lambda d=dataset: self.in_thread(engines.capture, d))
                    if captured is None:  # a batch failed part-way: that state is never saved
                        self._abandon(partition, "a batch failed")
                        return
                    box = [captured]  # the snapshot thread takes the only reference: dropped once encoded
                    del captured
                    manifest, chunks, manifest_record = await self.beside(self._pack, box, p, engines.writer)
                    encoded_at = time.monotonic()
                    busy += encoded_at - started
                    await self.deliver([(topic, k, v, p) for k, v in chunks])
                    del chunks
                    await self.deliver([(topic, manifest_record[0], manifest_record[1], p)])
                self.obs.record_snapshot(manifest.dataset, manifest.size)
                written.append(manifest)
                stale = engines.snapshotted([manifest])
                if stale:
                    await self.deliver([(topic, k.encode("utf-8"), None, p) for k in stale])
            if budget is not None and datasets:
                budget.spent(started=encoded_at - busy, ended=encoded_at)  # the rest counts from the last encoding
            if written:
                log_event(
                    log,
                    logging.INFO,
                    "snapshot",
                    partition=p,
                    events_offset=[m.events_offset for m in written],
                    datasets=[m.dataset for m in written],
                )
            if self.partitions.get(p) is partition:  # forgotten meanwhile: its next owner replays them
                for event in held:
                    event.ack()
        except Exception:  # a bug: the next snapshot covers them again; nothing is acked before
            log_event(log, logging.ERROR, "snapshot_failed", partition=partition.number, exc_info=True)
            engines.dirty.update(set(datasets) - {m.dataset for m in written})
            partition.hold(held, now=time.monotonic())

    def _pack(self, box: list[Captured], p: int, writer: str) -> tuple[Manifest, list, tuple]:
        """`pack_captured` of the capture in ``box``, taken out of it (the caller keeps no reference)."""
        return pack_captured(
            box.pop(), partition=p, writer=writer, key=self.settings.snapshot_key, chunk_bytes=self.options.chunk_bytes
        )

    def _abandon(self, partition: Partition, why: str) -> None:
        """Stop writing a snapshot of ``partition``, forgotten or about to be (after a failed
        batch): the events it would have acked never are, and its next owner (maybe this
        worker) replays them from the snapshots."""
        log_event(log, logging.INFO, "snapshot_abandoned", partition=partition.number, why=why)

    async def snapshot_due(self) -> None:
        """Snapshot every partition whose events have been held for ``snapshot_seconds``."""
        now = time.monotonic()
        for p, partition in list(self.partitions.items()):
            if partition.snapshot_due(now=now, seconds=self.options.snapshot_seconds):
                await self.snapshot(p)

    # -- metrics and suggestions -----------------------------------------------------------

    async def publish_metrics(self) -> None:
        """Publish the metrics and suggestions of every dataset changed since its last publication
        (unless the last publication's cost asks for a longer rest: ``background_share``)."""
        if not self.publish_budget.due(now=time.monotonic()):
            return
        busy = [0.0]  # seconds of engine-thread work (waiting for the lock is not the job's cost)
        try:
            for p, partition in list(self.partitions.items()):
                engines = partition.engines
                if engines is None:
                    continue
                for dataset in sorted(engines.changed):
                    if not await self._publish(p, partition, engines, dataset, busy):
                        break  # revoked meanwhile: the next owner publishes
        finally:
            ended = time.monotonic()
            self.publish_budget.spent(started=ended - busy[0], ended=ended)

    async def _publish(
        self, p: int, partition: Partition, engines: PartitionEngines, dataset: str, busy: list[float]
    ) -> bool:
        """Publish ``dataset``'s metrics and suggestion lists; False once the partition is gone.

        Under the engines' lock, in the engine thread, only a frozen copy of the engine is taken
        (`pipeline.Refiner.frozen`: a few milliseconds, where the metrics took 60-90 ms, most of
        it scoring the live window). The metrics and the suggestion pools are computed from the
        copy in another thread (``packer``) while events go on being applied. The lists are then
        ranked from the pool in the engine thread without the lock, in calls of about
        `PUBLICATION_SLICE` seconds, so a batch of events waits for one such call at most, not
        for the whole publication (the lists took 0.15-0.5 s in-process for 77 labels); every
        list of a publication carries the model version of its metrics.
        """
        now = time.time()
        try:
            async with self.lock:
                if self.partitions.get(p) is not partition:
                    return False
                engine = engines.engines.get(dataset)
                if engine is None:
                    return True
                engines.changed.discard(dataset)
                frozen = await self._timed(busy, engine.frozen)
            metrics, pool = await self._timed(
                busy, lambda: (frozen.metrics(now=now), frozen.suggestion_pool()), beside=True
            )
            jobs = collections.deque(
                (kind, label)
                for kind in SUGGESTION_KINDS
                for label in (sorted(metrics.labels) if kind in LABEL_KINDS else [None])
            )
            lists: list[SuggestionList] = []
            while jobs:
                lists += await self._timed(busy, lambda: self._lists(pool, jobs, now))
                if self.partitions.get(p) is not partition:
                    return False  # forgotten while ranking (revoked): the next owner publishes
        except Exception:
            log_event(log, logging.ERROR, "metrics_failed", dataset=dataset, exc_info=True)
            return True
        self.latest_metrics[dataset] = metrics
        self.obs.publish(metrics)
        key = dataset.encode("utf-8")
        out: list[Record] = [(self.topics["metrics"], key, metrics.encode(), None)]
        out += [(self.topics["suggestions"], key, s.encode(), None) for s in lists]
        await self.deliver(out)
        return True

    async def _timed(self, busy: list[float], fn: Callable[[], T], *, beside: bool = False) -> T:
        """``fn()`` in the engine thread (or `beside` it), its time added to ``busy`` (a publication's cost)."""
        started = time.monotonic()
        try:
            return await (self.beside(fn) if beside else self.in_thread(fn))
        finally:
            busy[0] += time.monotonic() - started

    def _lists(
        self, pool: SuggestionPool, jobs: collections.deque[tuple[SuggestionKind, str | None]], now: float
    ) -> list[SuggestionList]:
        """The next suggestion lists of ``jobs`` (taken from it) ranked from ``pool``: at least one,
        until all are done or `PUBLICATION_SLICE` seconds have passed (in the engine thread)."""
        until = time.perf_counter() + PUBLICATION_SLICE
        out = []
        while jobs:
            kind, label = jobs.popleft()
            out.append(pooled_suggestion_list(pool, kind, now=now, label=label, limit=self.options.suggestions_limit))
            if time.perf_counter() >= until:
                break
        return out

    # -- streams ---------------------------------------------------------------------------

    async def follow_streams(self) -> None:
        """Create the ``stream-declarations`` topic and every configured stream's topic, then read
        the declarations for ever (`agents.worker.streams.follow_declarations`)."""
        self.streams_loaded.clear()  # events wait until the declarations are read
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        while True:
            try:
                await loop.run_in_executor(None, self._create_stream_topics, list(self.streams.configured.values()))
                break
            except Exception as error:  # broker unavailable: keep trying, events wait
                await backoff.wait(log, "stream_topics_retry", error=repr(error))

        async def on_stream(stream: Stream) -> None:
            await loop.run_in_executor(None, self._create_stream_topics, [stream])

        await follow_declarations(
            self.settings,
            self.settings.topic(STREAMS.name),
            self.streams,
            on_stream=on_stream,
            loaded=self.streams_loaded,
        )

    def _create_stream_topics(self, streams: list[Stream]) -> None:
        """The declarations topic and the topics of ``streams`` (blocking: call in an executor)."""
        from agents.kafka.admin import create_named_topics

        create_named_topics(self.settings, {self.settings.topic(STREAMS.name): (1, True)})
        wanted = {self.settings.topic(stream_topic(s.name)): (self.settings.partitions, False) for s in streams}
        if wanted:
            create_named_topics(self.settings, wanted)

    async def declare_stream(self, stream: Stream | None, name: str, *, timeout: float = 30.0) -> None:
        """Write a declaration (None: a tombstone deleting ``name``) and wait until this worker has
        it in force. Raises `agents.worker.streams.DeclarationError` for a configured stream."""
        self.streams.check_writable(name)
        await self.streams_loaded.wait()  # the topic exists, compacted, before anything is written to it
        value = None if stream is None else stream.encode()
        await self.deliver([(self.settings.topic(STREAMS.name), name.encode("utf-8"), value, 0)])
        deadline = asyncio.get_running_loop().time() + timeout
        while self.streams.streams().get(name) != stream:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"stream {name!r}: written, but not read back within {timeout:g} s")
            await asyncio.sleep(0.05)

    # -- lag -------------------------------------------------------------------------------

    def record_batch(self, consumer, batch: list) -> None:
        """After an agent handled ``batch`` (Faust events): the progress and lag of *each* topic
        partition it held, from that partition's last record (`record_lag`). A batch mixes the
        partitions the worker owns; progress read from its last record alone left the others at
        the first offset they ever delivered, and after ``REFINERY_STALL_SECONDS`` they showed
        as stalled (``/readyz`` 503) while their events were applied."""
        last: dict = {}
        for event in batch:
            last[event.message.tp] = event.message.offset  # a partition's records come in offset order
        for tp, offset in last.items():
            self.record_lag(consumer, tp, offset)

    def record_lag(self, consumer, tp, last_offset: int) -> None:
        """Set the lag of ``tp`` after a batch ending at ``last_offset`` was handled."""
        if tp.topic == self.topics["events"]:
            if not self._ours(tp.partition):
                return  # a stale delivery: the partition is no longer ours
            partition = self.partitions.get(tp.partition)
            if partition is not None:
                partition.handled(last_offset)
        highwater = _highwater(consumer, tp)
        if highwater is not None:
            self.obs.set_lag(tp.topic, tp.partition, highwater - last_offset - 1)

    def refresh_lag(self, consumer) -> None:
        """Set the lag of every assigned ``events`` partition from the consumer's highwater and the
        engine's position, whether or not batches arrive (a stalled engine's lag keeps growing).

        The position is `agents.worker.partition.Partition.position`; a partition without one
        has no lag series yet. Reads cached values only: nothing waits on the broker.
        """
        from faust.types import TP

        topic = self.topics["events"]
        now = time.monotonic()
        watched: set[tuple[str, int]] = set()
        for p in sorted(self.assigned or ()):
            partition = self.partitions.get(p)
            position = partition.position if partition is not None else None
            highwater = _highwater(consumer, TP(topic, p))
            if position is not None and highwater is not None:
                self.obs.set_lag(topic, p, highwater - position)
            # a partition's progress: the first offset not fully handled (applied and published)
            handled = partition.delivered if partition is not None else None
            self.stalls.observe((topic, p), position=handled, highwater=highwater, now=now)
            watched.add((topic, p))
        assigned = _assignment(consumer)
        for tp, position in sorted(self.forwarded.items()):
            if assigned is not None and tp not in assigned:
                del self.forwarded[tp]  # revoked: its next owner watches it
                continue
            self.stalls.observe(tp, position=position, highwater=_highwater(consumer, TP(*tp)), now=now)
            watched.add(tp)
        self.stalls.forget(watched)
        self.stalled = self.stalls.stalled(now)
        self.obs.set_stalled({tp: s.seconds(now) if s.stalled else 0.0 for tp, s in self.stalls.partitions.items()})


def _assignment(consumer) -> set[tuple[str, int]] | None:
    """The consumer's assigned ``(topic, partition)`` pairs, None when it cannot say."""
    try:
        return {(tp.topic, tp.partition) for tp in consumer.assignment()}
    except Exception:
        return None


def _highwater(consumer, tp) -> int | None:
    """The consumer's highwater of ``tp``, None when it does not know it (not assigned, no fetch yet)."""
    try:
        return consumer.highwater(tp)
    except Exception:
        return None
