"""The Faust app: sequencer, engine agent, timers and the web API of one Refinery worker.

Two agents and two timers, all thin (the decisions live in plain modules):

- **sequencer** reads ``messages`` and ``annotations`` and forwards each valid record into the same
  partition of ``events`` (`agents.worker.sequencer.sequence`), dead-lettering the rest. It is
  stateless, so it may run on any worker: each input partition has one consumer at a time and
  is forwarded in order; a record forwarded twice after a crash is dropped by the engine.
- **engine** reads ``events``. Kafka gives each ``events`` partition to one worker, and every
  dataset lives on one partition (`agents.worker.sequencer.owner_partition`), so each dataset has
  exactly one engine, on the worker that owns its partition. Batches are applied by
  `agents.worker.engines.PartitionEngines` in a worker thread (the event loop stays free for
  heartbeats and commits); predictions go to ``predictions``, failures to ``deadletter``.
- **snapshots** (every ``snapshot_every`` events or ``snapshot_seconds``): changed engines are
  written to ``snapshots`` (`agents.worker.snapshots`); only then are the events they cover acked, so
  the committed offset never passes a durable snapshot (DESIGN.md section 7).
- **metrics** (every ``metrics_seconds``): each changed dataset's ``MetricsSnapshot`` goes to
  ``metrics`` and Prometheus, its suggestion lists (when the engine offers them) to ``suggestions``.

On assignment of an ``events`` partition the worker restores its datasets from ``snapshots``
before applying anything; events below a dataset's snapshot are skipped, and a range Faust will
not deliver (after a rejected snapshot) is read with a separate group-less consumer.

`create_app(settings, options)` builds everything; `agents.cli.worker` runs it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from agents.settings import Settings, env_value
from agents.worker.engines import PartitionEngines, read_range
from agents.worker.observability import Observability, log_event
from agents.worker.sequencer import sequence
from agents.worker.snapshots import CHUNK_BYTES, collect
from schemas import SUGGESTION_KINDS, DeadLetter, Event, SuggestionList

__all__ = ["Service", "WorkerOptions", "create_app"]

log = logging.getLogger("refinery.worker")


def _undeliverable() -> tuple[type, ...]:
    from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

    return (MessageSizeTooLargeError, RecordTooLargeError)


_UNDELIVERABLE = _undeliverable()


@dataclasses.dataclass(frozen=True)
class WorkerOptions:
    """Worker tuning, from ``REFINERY_*`` environment variables (see docs/service.md)."""

    #: REFINERY_BATCH_SIZE / REFINERY_BATCH_SECONDS: ``stream.take`` bounds.
    batch_size: int = 200
    batch_seconds: float = 0.2
    #: REFINERY_SNAPSHOT_EVERY / REFINERY_SNAPSHOT_SECONDS: snapshot after this many applied
    #: events, or this long after the first unsnapshotted one.
    snapshot_every: int = 1000
    snapshot_seconds: float = 30.0
    #: REFINERY_METRICS_SECONDS: how often changed datasets publish metrics and suggestions.
    metrics_seconds: float = 5.0
    #: REFINERY_SUGGESTIONS_LIMIT: items per published suggestion list.
    suggestions_limit: int = 50
    #: REFINERY_GROUP: the consumer group (Faust app id); default ``<topic prefix>worker``.
    group: str | None = None
    #: REFINERY_ENGINE_CONFIG: JSON object of ``pipeline.RefinerConfig`` fields for new engines.
    engine_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: REFINERY_DATA_DIR: Faust's data directory (default ``<REFINERY_HOME>/worker-data``).
    data_dir: Path | None = None
    #: REFINERY_SNAPSHOT_CHUNK_BYTES
    chunk_bytes: int = CHUNK_BYTES
    #: REFINERY_SESSION_TIMEOUT: seconds without heartbeat before the group gives a worker's
    #: partitions to the others (heartbeats every tenth of it).
    session_timeout: float = 30.0
    #: REFINERY_INSTANCE_ID: static group membership (KIP-345). A worker restarted with the same
    #: id takes its partitions back at once instead of after a session timeout and a rebalance.
    instance_id: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerOptions:
        env = os.environ if env is None else env
        d = cls()

        def get(name, default, cast):
            return env_value(env, name, default, cast)

        config = get("REFINERY_ENGINE_CONFIG", {}, orjson.loads)
        if not isinstance(config, dict):
            raise ValueError(f"REFINERY_ENGINE_CONFIG: expected a JSON object, got {env['REFINERY_ENGINE_CONFIG']!r}")
        return cls(
            batch_size=get("REFINERY_BATCH_SIZE", d.batch_size, int),
            batch_seconds=get("REFINERY_BATCH_SECONDS", d.batch_seconds, float),
            snapshot_every=get("REFINERY_SNAPSHOT_EVERY", d.snapshot_every, int),
            snapshot_seconds=get("REFINERY_SNAPSHOT_SECONDS", d.snapshot_seconds, float),
            metrics_seconds=get("REFINERY_METRICS_SECONDS", d.metrics_seconds, float),
            suggestions_limit=get("REFINERY_SUGGESTIONS_LIMIT", d.suggestions_limit, int),
            group=get("REFINERY_GROUP", None, str),
            engine_config=config,
            data_dir=get("REFINERY_DATA_DIR", None, Path),
            chunk_bytes=get("REFINERY_SNAPSHOT_CHUNK_BYTES", d.chunk_bytes, int),
            session_timeout=get("REFINERY_SESSION_TIMEOUT", d.session_timeout, float),
            instance_id=get("REFINERY_INSTANCE_ID", None, str),
        )


def _engine_functions(options: WorkerOptions):
    from pipeline import Refiner, RefinerConfig

    config = RefinerConfig.from_dict({**RefinerConfig().to_dict(), **dict(options.engine_config)})
    # allow_pickle (a plugged River model's state): PartitionEngines.restore calls this only on
    # bytes whose HMAC `snapshots.verify` has checked, never on anything else.
    return (lambda dataset: Refiner(dataset, config=config, seed=0)), (
        lambda blob: Refiner.restore(blob, allow_pickle=True)
    )


class Service:
    """The worker's state: the engines of its ``events`` partitions and how to publish.

    ``send(topic, key, value, partition)`` schedules one record and returns an awaitable of its
    delivery (Faust's producer); everything else is plain.
    """

    def __init__(self, settings: Settings, options: WorkerOptions, send, observability: Observability) -> None:
        self.settings = settings
        self.options = options
        self.send = send
        self.obs = observability
        self.topics = {
            name: settings.topic(name)
            for name in (
                "messages",
                "annotations",
                "events",
                "predictions",
                "metrics",
                "suggestions",
                "deadletter",
                "snapshots",
            )
        }
        self.make_engine, self.restore_engine = _engine_functions(options)
        self.partitions: dict[int, PartitionEngines] = {}
        self.restoring: dict[int, asyncio.Task] = {}
        self.held: dict[int, list] = {}  # Faust events applied but not yet covered by a snapshot
        self.first_held_at: dict[int, float] = {}
        self.assigned: set[int] | None = None  # None until the first assignment
        self.lock = asyncio.Lock()  # one writer of the engines at a time
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="refinery-engine")
        self.latest_metrics: dict[str, Any] = {}
        self.must_replay: set[int] = set()  # partitions to rebuild from their snapshots' offsets
        self.delivered: dict[int, int] = {}  # first events offset not known to be applied
        observability.ready.set_function(lambda: float(self.ready))  # read at each scrape: always current

    # -- helpers ---------------------------------------------------------------------------

    async def in_thread(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def deliver(self, records: list[tuple[str, bytes | None, bytes | None, int | None]]) -> None:
        """Publish ``(topic, key, value, partition)`` records and wait until all are durable.

        A failed delivery (the broker gone longer than the producer's request timeout) is retried
        from the first failure on, in order, until it succeeds: the engine drops repeats. A record
        the broker can never take (too large) is logged and counted, not retried.
        """
        pending = list(records)
        delay = 0.5
        while pending:
            futures = []
            for topic, key, value, partition in pending:
                try:
                    futures.append(await self.send(topic, key, value, partition))
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # refused before sending (too large, no metadata yet)
                    refused = asyncio.get_running_loop().create_future()
                    refused.set_exception(error)
                    futures.append(refused)
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = None
            for i, (record, result) in enumerate(zip(pending, results)):
                if isinstance(result, _UNDELIVERABLE):  # retrying cannot help: say so and go on
                    log_event(
                        log,
                        logging.ERROR,
                        "undeliverable",
                        topic=record[0],
                        bytes=len(record[2] or b""),
                        error=repr(result),
                    )
                    self.obs.dead_letters.labels("undeliverable").inc()
                elif isinstance(result, BaseException):
                    failed = i
                    break
                else:
                    self.obs.events_out.labels(record[0]).inc()
            if failed is None:
                return
            log_event(
                log, logging.WARNING, "delivery_retry", records=len(pending) - failed, error=repr(results[failed])
            )
            pending = pending[failed:]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def dead_record(self, dead: DeadLetter) -> tuple[str, bytes | None, bytes, None]:
        self.obs.dead_letters.labels(dead.error).inc()
        log_event(
            log,
            logging.INFO,
            "dead_letter",
            source_topic=dead.source_topic,
            partition=dead.partition,
            offset=dead.offset,
            error=dead.error,
            reason=dead.reason,
        )
        key = dead.dataset.encode("utf-8") if dead.dataset else None
        return (self.topics["deadletter"], key, dead.encode(), None)

    # -- sequencer -------------------------------------------------------------------------

    async def sequence_batch(self, records: list[tuple[str, int, int, bytes | None, bytes | None]]) -> None:
        """Forward ``(topic, partition, offset, key, value)`` input records into ``events``."""
        out = []
        now = time.time()
        roles = {self.topics["messages"]: "messages", self.topics["annotations"]: "annotations"}
        for topic, partition, offset, key, value in records:
            self.obs.events_in.labels(topic).inc()
            result = sequence(
                value,
                role=roles[topic],
                topic=topic,
                partition=partition,
                offset=offset,
                partitions=self.settings.partitions,
                now=now,
                key=key,
                max_body_bytes=self.settings.max_body_bytes,
            )
            if isinstance(result, Event):
                dataset = (result.message or result.annotation).dataset
                out.append((self.topics["events"], dataset.encode("utf-8"), result.encode(), partition))
            else:
                out.append(self.dead_record(result))
        await self.deliver(out)

    # -- partitions ------------------------------------------------------------------------

    def on_assigned(self, partitions: set[int]) -> None:
        """Keep the partitions still ours, forget the others, restore the new ones (in background)."""
        for p in set(self.partitions) | set(self.restoring):
            if p not in partitions:
                self.forget(p)
        self.assigned = set(partitions)
        for p in partitions:
            if p not in self.partitions and p not in self.restoring:
                self.restoring[p] = asyncio.ensure_future(self.restore(p))

    async def on_revoked(self, partitions: set[int]) -> None:
        """Before a rebalance hands partitions out: let the batch in progress finish, snapshot what
        changed (so the next owner, maybe this worker, replays little), then drop the partitions'
        engines and unacked events. No snapshot of them is written after this."""
        async with self.lock:
            await self._final_snapshots(partitions)
            for p in partitions:
                self.forget(p)
            if self.assigned is not None:
                self.assigned -= partitions

    async def on_shutdown(self) -> None:
        """On a clean stop: snapshot what changed, so that a restart replays nothing."""
        async with self.lock:
            await self._final_snapshots(set(self.partitions))

    async def _final_snapshots(self, partitions: set[int]) -> None:
        budget = self.options.session_timeout / 2  # a rebalance must not wait on an unreachable broker
        for p in sorted(partitions):
            part = self.partitions.get(p)
            if part is None or not part.dirty:
                continue
            try:
                await asyncio.wait_for(self._snapshot(p, part), budget)
            except TimeoutError:
                log_event(log, logging.WARNING, "final_snapshot_timeout", partition=p, seconds=budget)

    def forget(self, p: int) -> None:
        task = self.restoring.pop(p, None)
        if task is not None:
            task.cancel()
        self.partitions.pop(p, None)
        self.held.pop(p, None)  # never acked: the next owner replays them from the snapshot
        self.first_held_at.pop(p, None)
        self.delivered.pop(p, None)
        owned = {dataset for part in self.partitions.values() for dataset in part.engines}
        for dataset in self.obs.datasets() - owned:  # the next owner reports them
            self.obs.drop(dataset)

    async def restore(self, p: int) -> PartitionEngines:
        started = time.monotonic()
        delay = 0.5
        while True:
            try:
                records = await read_range(self.settings.bootstrap, self.topics["snapshots"], p, None, None)
                break
            except Exception as error:  # broker unavailable: keep trying, the partition waits
                log_event(log, logging.WARNING, "snapshots_read_retry", partition=p, error=repr(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        part = PartitionEngines(self.topics["events"], p, self.make_engine, self.restore_engine)
        problems = await self.in_thread(
            part.restore,
            collect((k, v) for _, k, v in records),
            key=self.settings.snapshot_key,
            replay=p in self.must_replay,
        )
        self.must_replay.discard(p)
        self.obs.snapshots_rejected.inc(len(problems))
        self.obs.restores.inc()
        part.changed.update(part.engines)  # publish the restored metrics once
        self.partitions[p] = part
        self.restoring.pop(p, None)
        log_event(
            log,
            logging.INFO,
            "partition_restored",
            partition=p,
            datasets=sorted(part.engines),
            seconds=round(time.monotonic() - started, 3),
        )
        return part

    @property
    def ready(self) -> bool:
        return self.assigned is not None and all(p in self.partitions for p in self.assigned)

    def owner_of(self, dataset: str) -> PartitionEngines | None:
        for part in self.partitions.values():
            if dataset in part.engines:
                return part
        return None

    # -- engine ----------------------------------------------------------------------------

    async def process(self, batch: list) -> None:
        """Apply a batch of Faust events of the ``events`` topic; never raises."""
        by_partition: dict[int, list] = {}
        for event in batch:
            by_partition.setdefault(event.message.partition, []).append(event)
        for p, events in by_partition.items():
            if self.assigned is None or p in self.assigned:
                self.delivered.setdefault(p, events[0].message.offset)  # a batch stuck here still shows lag
            try:
                await self._process_partition(p, events)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug, not bad input: keep the worker alive, rebuild the partition
                log.exception("processing failed partition=%d events=%d", p, len(events))
                self.forget(p)  # its unacked events stay unacked: the commit never passes a snapshot
                self.must_replay.add(p)
                if self.assigned is None or p in self.assigned:
                    self.restoring[p] = asyncio.ensure_future(self.restore(p))

    async def _process_partition(self, p: int, events: list) -> None:
        if self.assigned is not None and p not in self.assigned:
            return  # a stale delivery from before a rebalance
        part = self.partitions.get(p)
        if part is None:
            task = self.restoring.get(p) or asyncio.ensure_future(self.restore(p))
            self.restoring[p] = task
            try:
                part = await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled():
                    return  # revoked while restoring: Faust delivers these events again after the rebalance
                raise
        records = [(e.message.offset, e.message.value) for e in events]
        async with self.lock:  # apply, publish and hold as one step: a revocation waits for it
            if self.partitions.get(p) is not part:
                return  # revoked while waiting
            started = time.perf_counter()
            gap = part.gap(records[0][0])
            if gap is not None:
                log_event(log, logging.INFO, "replay_range", partition=p, start=gap[0], end=gap[1])
                extra = await read_range(self.settings.bootstrap, self.topics["events"], p, gap[0], gap[1])
                records = [(o, v) for o, _, v in extra] + records
            outcome = await self.in_thread(part.apply, records, now=time.time())
            self.obs.latency.observe(time.perf_counter() - started)
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
            out = [
                (self.topics["predictions"], pr.dataset.encode("utf-8"), pr.encode(), None)
                for pr in outcome.predictions
            ]
            out += [self.dead_record(d) for d in outcome.dead_letters]
            await self.deliver(out)
            self.held.setdefault(p, []).extend(events)
            self.first_held_at.setdefault(p, time.monotonic())
            if part.since_snapshot >= self.options.snapshot_every:
                await self._snapshot(p, part)
            elif not part.dirty:  # nothing to cover (all skipped or dead-lettered): release now
                self._ack(p)

    # -- snapshots -------------------------------------------------------------------------

    async def snapshot(self, p: int) -> None:
        """Write the changed engines of partition ``p`` to ``snapshots``, then ack what they cover."""
        async with self.lock:
            part = self.partitions.get(p)
            if part is not None:
                await self._snapshot(p, part)

    async def _snapshot(self, p: int, part: PartitionEngines) -> None:
        packed = await self.in_thread(
            part.snapshot_records, key=self.settings.snapshot_key, chunk_bytes=self.options.chunk_bytes
        )
        topic = self.topics["snapshots"]
        for manifest, chunks, manifest_record in packed:
            await self.deliver([(topic, k, v, p) for k, v in chunks])
            await self.deliver([(topic, manifest_record[0], manifest_record[1], p)])
            self.obs.record_snapshot(manifest.dataset, manifest.size)
        stale = part.snapshotted([m for m, _, _ in packed])
        if stale:
            await self.deliver([(topic, k.encode("utf-8"), None, p) for k in stale])
        if packed:
            log_event(
                log,
                logging.INFO,
                "snapshot",
                partition=p,
                events_offset=part.position,
                datasets=[m.dataset for m, _, _ in packed],
            )
        self._ack(p)

    def _ack(self, p: int) -> None:
        for event in self.held.pop(p, []):
            event.ack()
        self.first_held_at.pop(p, None)

    async def snapshot_due(self) -> None:
        now = time.monotonic()
        for p, since in list(self.first_held_at.items()):
            if now - since >= self.options.snapshot_seconds:
                await self.snapshot(p)

    # -- metrics and suggestions -----------------------------------------------------------

    def _publications(self, dataset: str, engine: Any, now: float) -> tuple[Any, list[SuggestionList]]:
        metrics = engine.metrics(now=now)
        lists = []
        if hasattr(engine, "suggestions"):
            for kind in SUGGESTION_KINDS:
                labels = sorted(metrics.labels) if kind in ("check_label", "missed_label", "teach_label") else [None]
                for label in labels:
                    items = tuple(engine.suggestions(kind, label=label, limit=self.options.suggestions_limit))
                    lists.append(
                        SuggestionList(
                            dataset=dataset,
                            timestamp=now,
                            model_version=metrics.model_version,
                            kind=kind,
                            label=label,
                            items=items,
                        )
                    )
        return metrics, lists

    async def publish_metrics(self) -> None:
        """Publish the metrics and suggestions of every dataset changed since its last publication."""
        for p, part in list(self.partitions.items()):
            for dataset in sorted(part.changed):
                async with self.lock:
                    if self.partitions.get(p) is not part:
                        break  # revoked meanwhile: the next owner publishes
                    engine = part.engines.get(dataset)
                    if engine is None:
                        continue
                    part.changed.discard(dataset)
                    try:
                        metrics, lists = await self.in_thread(self._publications, dataset, engine, time.time())
                    except Exception:
                        log.exception("metrics failed dataset=%r", dataset)
                        continue
                    if self.partitions.get(p) is not part:
                        break  # forgotten while computing (a new assignment): publish nothing stale
                    self.latest_metrics[dataset] = metrics
                    self.obs.publish(metrics)
                    key = dataset.encode("utf-8")
                    out = [(self.topics["metrics"], key, metrics.encode(), None)]
                    out += [(self.topics["suggestions"], key, s.encode(), None) for s in lists]
                    await self.deliver(out)

    def record_lag(self, consumer, tp, last_offset: int) -> None:
        """Set the lag of ``tp`` after a batch ending at ``last_offset`` was handled."""
        if tp.topic == self.topics["events"]:
            if self.assigned is not None and tp.partition not in self.assigned:
                return  # a stale delivery: the partition is no longer ours
            self.delivered[tp.partition] = max(self.delivered.get(tp.partition, 0), last_offset + 1)
        highwater = _highwater(consumer, tp)
        if highwater is not None:
            self.obs.set_lag(tp.topic, tp.partition, highwater - last_offset - 1)

    def refresh_lag(self, consumer) -> None:
        """Set the lag of every assigned ``events`` partition from the consumer's highwater and the
        engine's position, whether or not batches arrive (a stalled engine's lag keeps growing).

        The position is the next offset the engine will apply, or, before it applied anything
        since its restore, the first offset of the batch in progress (after the last batch
        handled). A partition with neither has no lag series yet. Reads cached values only:
        nothing waits on the broker.
        """
        from faust.types import TP

        topic = self.topics["events"]
        for p in sorted(self.assigned or ()):
            part = self.partitions.get(p)
            position = part.position if part is not None and part.position is not None else self.delivered.get(p)
            highwater = _highwater(consumer, TP(topic, p))
            if position is not None and highwater is not None:
                self.obs.set_lag(topic, p, highwater - position)


def _highwater(consumer, tp) -> int | None:
    """The consumer's highwater of ``tp``, None when it does not know it (not assigned, no fetch yet)."""
    try:
        return consumer.highwater(tp)
    except Exception:
        return None


def create_app(settings: Settings | None = None, options: WorkerOptions | None = None, **faust_settings):
    """The Faust app of one worker, with its agents, timers and web views."""
    import faust

    from agents.web import api as web

    settings = settings or Settings.from_env()
    options = options or WorkerOptions.from_env()
    app = faust.App(
        options.group or f"{settings.topic_prefix}worker",
        broker=f"kafka://{settings.bootstrap}",
        datadir=str(options.data_dir or settings.home / "worker-data"),
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        topic_disable_leader=True,
        topic_allow_declare=False,
        topic_partitions=settings.partitions,
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=options.session_timeout,
        broker_heartbeat_interval=options.session_timeout / 10,
        broker_rebalance_timeout=max(60.0, options.session_timeout),
        broker_commit_interval=1.0,
        producer_max_request_size=1_000_000,
        web_enabled=True,
        consumer_group_instance_id=options.instance_id,
        **faust_settings,
    )
    obs = Observability()

    async def send(topic, key, value, partition):
        return await app.producer.send(topic, key, value, partition, None, None)

    service = Service(settings, options, send, obs)
    app.refinery = service

    def raw_topic(*names):
        return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    inputs = raw_topic(service.topics["messages"], service.topics["annotations"])
    events = raw_topic(service.topics["events"])

    @app.agent(inputs, concurrency=1)
    async def sequencer(stream):
        async for batch in stream.take_events(options.batch_size, options.batch_seconds):
            try:  # take_events acks the batch when we ask for the next one: after delivery
                await service.sequence_batch(
                    [
                        (e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value)
                        for e in batch
                    ]
                )
                last = batch[-1].message
                service.record_lag(app.consumer, last.tp, last.offset)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sequencer batch failed")

    @app.agent(events, concurrency=1)
    async def engine(stream):
        async for batch in stream.take_events(options.batch_size, options.batch_seconds):
            # take_events acks each batch as soon as we ask for the next one. Hold one more
            # reference per event so that ack only lands (Service._ack) once a snapshot covers it.
            for event in batch:
                event.message.incref()
            await service.process(batch)
            last = batch[-1].message
            service.record_lag(app.consumer, last.tp, last.offset)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender, revoked, **kwargs):
        await service.on_revoked({tp.partition for tp in revoked if tp.topic == service.topics["events"]})
        obs.drop_lag({(tp.topic, tp.partition) for tp in revoked})

    @app.on_before_shutdown.connect
    async def on_shutdown(sender, **kwargs):
        await service.on_shutdown()

    @app.on_partitions_assigned.connect
    async def on_assigned(sender, assigned, **kwargs):
        service.on_assigned({tp.partition for tp in assigned if tp.topic == service.topics["events"]})
        obs.retain_lag({(tp.topic, tp.partition) for tp in assigned})

    @app.timer(max(0.5, min(options.snapshot_seconds, 5.0)))
    async def snapshot_timer():
        await service.snapshot_due()

    @app.timer(options.metrics_seconds)
    async def metrics_timer():
        await service.publish_metrics()

    @app.timer(options.metrics_seconds)
    async def lag_timer():
        service.refresh_lag(app.consumer)

    web.register(app, service)
    return app
