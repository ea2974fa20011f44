"""The Faust app of one Refinery worker: its two agents, its timers and its web views, all thin.

- **sequencer** reads ``messages`` and ``annotations`` and hands each batch to
  `agents.worker.service.Service.sequence_batch`, which forwards each valid record into the same
  partition of ``events`` (`agents.worker.sequencer.sequence`) and dead-letters the rest. It is
  stateless, so it may run on any worker: each input partition has one consumer at a time and is
  forwarded in order; a record forwarded twice after a crash is dropped by the engine.
- **engine** reads ``events`` and hands each batch to `agents.worker.service.Service.process`.
  Kafka gives each ``events`` partition to one worker, and every dataset lives on one partition
  (`agents.worker.sequencer.owner_partition`), so each dataset has exactly one engine, on the
  worker that owns its partition (`agents.worker.partition.Partition`). Batches are applied in
  the service's engine thread (the event loop stays free for heartbeats and commits).
- **snapshot_timer**: partitions whose events wait longer than ``snapshot_seconds`` are
  snapshotted (`agents.worker.snapshots`); only then are the events they cover acked, so the
  committed offset never passes a durable snapshot (DESIGN.md section 7).
- **metrics_timer** (every ``metrics_seconds``): each changed dataset's ``MetricsSnapshot`` goes
  to ``metrics`` and Prometheus, its suggestion lists to ``suggestions``.
- **lag_timer**: the consumer lag of every assigned ``events`` partition, the stall watch
  (`agents.worker.stalls`), and the summary of aiokafka's repeated log lines (`agents.worker.outage`).
- **streams** (a task): reads the declarations of streams for automations
  (`agents.worker.streams`) for ever; the engine applies no event before it has read them all.

A worker runs both agents, or one of them (``REFINERY_WORKER_ROLE``: `WorkerOptions.role`):
workers of the roles ``sequencer`` and ``engine`` in one group run the two hops in two
processes, so the sequencer's share of the work no longer waits for the engine thread's GIL.

On assignment of an ``events`` partition the worker restores its datasets from ``snapshots``
before applying anything; events below a dataset's snapshot are skipped, and a range Faust will
not deliver (after a rejected snapshot) is read with a separate group-less consumer.

`create_app(settings, options)` builds everything; `agents.cli.worker` runs it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from agents.settings import Settings
from agents.worker import outage
from agents.worker.heap import PauseCollector
from agents.worker.observability import Observability, log_event
from agents.worker.options import WorkerOptions
from agents.worker.service import Service
from agents.worker.sizes import check_start

# WorkerOptions is re-exported: `agents.cli.worker` imports it from here.
__all__ = ["WorkerOptions", "create_app"]

log = logging.getLogger("refinery.worker")


def _ack_all(events) -> None:
    """Release the agent's own reference to each Faust event (`Service.sequence_batch`)."""
    for event in events:
        event.ack()


def create_app(settings: Settings | None = None, options: WorkerOptions | None = None, **faust_settings):
    """The Faust app of one worker, with its agents, timers and web views."""
    import faust

    from agents.kafka.security import faust_credentials
    from agents.web import api as web
    from agents.worker.transport import BatchSend, RawSchema, take_batches, transport_class

    settings = settings or Settings.from_env()
    options = options or WorkerOptions.from_env()
    check_start(settings, options)  # every setting in range, the size budget adds up, the snapshot key
    repeats = outage.install()  # a broker outage: the client backs off, its repeated lines are summarised
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
        # Back pressure: Faust pauses a partition once this many records wait in a stream
        # (default 4,096: 4 GB of 1 MB records); two batches keep take_batches fed.
        stream_buffer_maxsize=options.stream_buffer,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=options.session_timeout,
        broker_request_timeout=options.request_timeout,  # Faust refuses a session timeout above it
        broker_heartbeat_interval=options.session_timeout / 10,
        broker_rebalance_timeout=max(60.0, options.session_timeout),
        broker_commit_interval=1.0,
        producer_max_request_size=settings.max_record_bytes,  # docs/service.md, Size budgets
        # Throughput (issue 11, bench/README.md): one produce request carries up to 256 KB per
        # partition (Faust's default, 16 KB, is ~45 predictions). Records are batched by the
        # worker itself (agents.worker.transport.BatchSend), so a batch need not linger: it goes
        # at once (the engine's deliveries took a median 10 ms with 5 ms of linger, 6 ms without).
        producer_max_batch_size=262_144,
        producer_linger=0.0,
        web_enabled=True,
        consumer_group_instance_id=options.instance_id,
        broker_credentials=faust_credentials(settings),  # TLS and SASL: REFINERY_KAFKA_*, agents.kafka.security
        **faust_settings,
    )
    # Faust's consumer waits up to 1.5 s per fetch and takes any byte, whatever the settings (agents.worker.transport)
    app.transport = transport_class(options.fetch_wait, options.fetch_min_bytes)(app.conf.broker_consumer, app)
    obs = Observability()

    async def send(topic, key, value, partition):
        return await app.producer.send(topic, key, value, partition, None, None)

    # Records go out in one batch per topic partition, one acknowledgement each (issue 11)
    send_many = BatchSend(lambda: app.producer._ensure_producer(), alone_bytes=app.conf.producer_max_batch_size)
    service = Service(settings, options, send, obs, send_many)
    app.refinery = service

    def raw_topic(*names):
        return app.topic(*names, schema=RawSchema())  # the records' bytes, no codec per record

    inputs = raw_topic(service.topics["messages"], service.topics["annotations"])
    events = raw_topic(service.topics["events"])

    async def sequencer(stream):
        async for batch in take_batches(app, stream, options.batch_size, options.batch_seconds):
            obs.record_age("sequencer", [e.message.timestamp for e in batch], now=time.time())
            # Each event holds its message until acked: the batch is delivered in the background,
            # and acked once every record of it is durable (Service.sequence_batch calls `forwarded`).
            try:
                await service.sequence_batch(
                    [
                        (e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value)
                        for e in batch
                    ],
                    forwarded=functools.partial(_ack_all, batch),
                )
                service.record_batch(app.consumer, batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let an exception escape the agent (Faust would skip the batch)
                log_event(log, logging.ERROR, "sequencer_batch_failed", events=len(batch), exc_info=True)
                _ack_all(batch)  # skipped, as before: a bug must not stall the input partition

    async def engine(stream):
        async for batch in take_batches(app, stream, options.batch_size, options.batch_seconds):
            # Each event holds its message until acked, which only happens (Partition.ack) once a
            # snapshot covers it.
            obs.record_age("engine", [e.message.timestamp for e in batch], now=time.time())
            await service.process(batch)
            service.record_batch(app.consumer, batch)

    # REFINERY_WORKER_ROLE: a worker subscribes to the topics of the agents it runs; Faust's
    # assignor shares each agent's partitions among the group's workers that run it.
    if options.sequences:
        app.agent(inputs, concurrency=1)(sequencer)
    if options.applies:
        app.agent(events, concurrency=1)(engine)

    @app.task
    async def quiet_debug_records():
        # mode's worker leaves the root logger at DEBUG (for its terminal spinner) whatever the
        # log level, so every aiokafka and Faust debug line was built per record, then dropped:
        # 4.6% of the event loop under load (bench/README.md). Its handlers decide the level.
        levels = [h.level for h in logging.root.handlers if type(h).__name__ != "SpinnerHandler"]
        logging.root.setLevel(min(levels, default=logging.WARNING) or logging.WARNING)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender, revoked, **kwargs):
        await service.on_revoked({tp.partition for tp in revoked if tp.topic == service.topics["events"]})
        service.inputs -= {(tp.topic, tp.partition) for tp in revoked}
        obs.drop_lag({(tp.topic, tp.partition) for tp in revoked})

    pauses: list[PauseCollector] = []

    @app.task
    async def time_collections():
        pauses.append(PauseCollector(obs.registry))  # refinery_gc_pause_seconds (agents.worker.heap)

    @app.on_before_shutdown.connect
    async def on_shutdown(sender, **kwargs):
        await service.on_shutdown()
        while pauses:
            pauses.pop().close()

    @app.on_partitions_assigned.connect
    async def on_assigned(sender, assigned, **kwargs):
        service.on_assigned(
            {tp.partition for tp in assigned if tp.topic == service.topics["events"]},
            inputs={(tp.topic, tp.partition) for tp in assigned if tp.topic != service.topics["events"]},
        )
        obs.retain_lag({(tp.topic, tp.partition) for tp in assigned})

    # Until the declarations of streams are read no event is applied (a restart never skips a
    # stream): cleared here, before any agent runs, and set by follow_streams.
    service.streams_loaded.clear()

    @app.task
    async def streams():
        await service.follow_streams()

    @app.timer(max(0.5, min(options.snapshot_seconds, 5.0)))
    async def snapshot_timer():
        await service.snapshot_due()

    @app.timer(options.metrics_seconds)
    async def metrics_timer():
        await service.publish_metrics()

    @app.timer(options.metrics_seconds)
    async def lag_timer():
        service.refresh_lag(app.consumer)
        repeats.flush()

    web.register(app, service)
    return app
