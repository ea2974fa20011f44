"""`Service` without Kafka: the ack discipline and the rebuild after a failed batch.

The events are real Banking77 ``events`` records in Faust-like envelopes; the producer takes
every record at once; restoring reads an empty ``snapshots`` partition (fresh engines), as the
real loader does on a new topic. The rest is the worker's own code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging

import pytest

from agents.ingest.datasets import banking77
from agents.settings import Settings
from agents.worker.engines import PartitionEngines
from agents.worker.observability import Observability
from agents.worker.options import WorkerOptions
from agents.worker.sequencer import owner_partition
from agents.worker.service import Service
from schemas import Event


@dataclasses.dataclass
class Record:
    partition: int
    offset: int
    value: bytes


class FaustEvent:
    """What the engine agent hands `Service.process`: the record, and ``ack()``."""

    def __init__(self, partition: int, offset: int, value: bytes) -> None:
        self.message = Record(partition, offset, value)
        self.acked = False

    def ack(self) -> None:
        self.acked = True


async def _accept(topic, key, value, partition):
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def _recorded(service: Service) -> list[str]:
    """The short names of the topics ``service`` sends to, in order, as it sends (delivered at once)."""
    published: list[str] = []

    async def send(topic, key, value, partition):
        published.append(topic.rsplit(".", 1)[-1])
        return await _accept(topic, key, value, partition)

    service.delivery.send = send
    return published


@pytest.fixture(scope="module")
def records(datasets) -> list[bytes]:
    out = []
    for i, (message, review) in enumerate(itertools.islice(banking77(root=datasets), 30)):
        out.append(Event(source_topic="refinery.messages", partition=0, offset=i, message=message).encode())
        if i % 3 == 2:
            out.append(Event(source_topic="refinery.annotations", partition=0, offset=i, annotation=review).encode())
    return out


def _recording_service() -> tuple[Service, list[tuple[str, bytes]]]:
    """A service without background brake whose deliveries are accepted and recorded as
    ``(topic without prefix, value)``."""
    service, _ = _service(background_share=1.0)
    sent: list[tuple[str, bytes]] = []

    async def send(topic, key, value, partition):
        sent.append((topic.rsplit(".", 1)[-1], value))
        return await _accept(topic, key, value, partition)

    service.delivery.send = send
    return service, sent


def _service(partitions=(0,), make_engine=None, **options) -> tuple[Service, list[tuple[int, bool]]]:
    """A worker assigned ``partitions``, whose restores find no snapshot; also the restores it made."""
    service = Service(
        Settings(), WorkerOptions(engine_config={"feature_bits": 12}, **options), _accept, Observability()
    )
    loads: list[tuple[int, bool]] = []

    async def load(p: int, replay: bool) -> PartitionEngines:
        loads.append((p, replay))
        return PartitionEngines(service.topics["events"], p, make_engine or service.make_engine, service.restore_engine)

    service._load = load  # type: ignore[method-assign]  # instead of reading Kafka's snapshots partition
    service.on_assigned(set(partitions))
    return service, loads


def _for_datasets(records: list[bytes], names: str) -> list[bytes]:
    """``records``' events for each dataset of ``names`` in turn (``a`` then ``b``...)."""
    out = []
    for raw in records:
        event = Event.decode(raw)
        for name in names:
            if event.message is not None:
                copy = dataclasses.replace(event, message=dataclasses.replace(event.message, dataset=name))
            else:
                copy = dataclasses.replace(event, annotation=dataclasses.replace(event.annotation, dataset=name))
            out.append(copy.encode())
    return out


def test_applied_events_are_acked_only_once_a_snapshot_covers_them(records):
    async def run():
        service, _ = _service(snapshot_every=10_000)
        events = [FaustEvent(0, offset, raw) for offset, raw in enumerate(records)]
        await service.process(events)
        before = [e.acked for e in events]
        await service.snapshot(0)
        return before, [e.acked for e in events], service

    before, after, service = asyncio.run(run())
    assert not any(before) and all(after)
    assert service.partitions[0].held == []
    assert service.partitions[0].engine("banking77").model_version == sum(
        Event.decode(r).annotation is not None for r in records
    )


def test_a_failed_batch_rebuilds_its_partition_from_the_snapshots_and_acks_nothing(records, caplog):
    class Broken(PartitionEngines):
        def apply(self, records, *, now):
            raise RuntimeError("a bug")

    async def run():
        service, loads = _service()
        engines = await service.partitions[0].wait_restored()
        engines.__class__ = Broken
        first = service.partitions[0]
        events = [FaustEvent(0, offset, raw) for offset, raw in enumerate(records[:5])]
        await service.process(events)
        rebuilt = await service.partitions[0].wait_restored()
        return loads, events, first, service.partitions[0], rebuilt

    with caplog.at_level(logging.ERROR, logger="refinery.worker"):
        loads, events, first, now, rebuilt = asyncio.run(run())
    assert loads == [(0, False), (0, True)]  # restored again, replaying from the snapshots' offsets
    assert now is not first and type(rebuilt) is PartitionEngines
    assert not any(e.acked for e in events)  # the commit never passes a snapshot
    assert any(
        r.getMessage().startswith("processing_failed partition=0 events=5") and r.exc_info for r in caplog.records
    )


def test_a_stale_delivery_of_a_partition_no_longer_ours_is_ignored(records):
    async def run():
        service, loads = _service()
        await service.process([FaustEvent(3, 0, records[0])])
        return service, loads

    service, loads = asyncio.run(run())
    assert 3 not in service.partitions and loads == [(0, False)]


def test_a_partition_forgotten_while_its_batch_is_delivered_is_neither_held_nor_snapshotted(records, caplog):
    async def run():
        service, _ = _service(snapshot_every=1)  # every batch would be snapshotted at once
        written: list[str] = []

        async def send(topic, key, value, partition):
            written.append(topic)
            if topic == service.topics["predictions"] and service.partitions:
                service.on_assigned(set())  # a new assignment without partition 0, mid-delivery
            return await _accept(topic, key, value, partition)

        service.delivery.send = send
        events = [FaustEvent(0, offset, raw) for offset, raw in enumerate(records[:5])]
        await service.process(events)
        return service, written, events

    with caplog.at_level(logging.ERROR, logger="refinery.worker"):
        service, written, events = asyncio.run(run())
    assert service.partitions == {} and "snapshots" not in {t.rsplit(".", 1)[-1] for t in written}
    assert not any(e.acked for e in events)
    assert not [r for r in caplog.records if r.getMessage().startswith("processing_failed")]


def test_a_costly_publication_postpones_the_next_by_the_background_share(records, monkeypatch):
    # The service's monotonic clock moves one second per reading (so each publication "costs"
    # seconds) and never by itself: the outcome does not depend on the machine's load.
    import types

    import agents.worker.service as service_module

    clock = itertools.count(1000.0, 1.0)
    real = service_module.time
    monkeypatch.setattr(
        service_module,
        "time",
        types.SimpleNamespace(monotonic=lambda: next(clock), perf_counter=real.perf_counter, time=real.time),
    )

    async def run():
        service, _ = _service(background_share=0.01)  # a publication of d s: 99 d s of rest
        published = _recorded(service)
        await service.process([FaustEvent(0, offset, raw) for offset, raw in enumerate(records[:10])])
        await service.publish_metrics()
        first = published.count("metrics")
        await service.process([FaustEvent(0, offset, raw) for offset, raw in enumerate(records[10:20], 10)])
        await service.publish_metrics()  # the first publication's cost has not been rested
        return service, first, published.count("metrics")

    service, first, after = asyncio.run(run())
    assert first == 1 and after == 1
    assert service.publish_budget.next_at > 1000.0
    service.publish_budget.next_at = 0.0  # rested
    assert service.publish_budget.due(now=0.0)


def test_without_a_brake_every_tick_publishes(records):
    async def run():
        service, _ = _service(background_share=1.0)
        published = _recorded(service)
        for start in (0, 10):
            events = [FaustEvent(0, offset, raw) for offset, raw in enumerate(records[start : start + 10], start)]
            await service.process(events)
            await service.publish_metrics()
        return published.count("metrics")

    assert asyncio.run(run()) == 2


def test_a_snapshot_being_written_acks_only_the_events_applied_before_it(records):
    # The snapshot's records wait for the broker; meanwhile another batch is applied. Only the
    # events the snapshot's state covers are acked when it lands; the later ones wait for the next.
    async def run():
        service, _ = _service(snapshot_every=10_000)
        release = asyncio.Event()

        async def send(topic, key, value, partition):
            if topic == service.topics["snapshots"]:
                await release.wait()
            return await _accept(topic, key, value, partition)

        service.delivery.send = send
        before = [FaustEvent(0, offset, raw) for offset, raw in enumerate(records[:10])]
        await service.process(before)
        writing = asyncio.ensure_future(service.snapshot(0))
        await asyncio.sleep(0.05)  # captured; its records wait
        after = [FaustEvent(0, offset, raw) for offset, raw in enumerate(records[10:20], 10)]
        await service.process(after)  # applied while the snapshot is written
        applied_meanwhile = service.partitions[0].engines.position
        release.set()
        await writing
        return before, after, applied_meanwhile, service

    before, after, applied_meanwhile, service = asyncio.run(run())
    assert applied_meanwhile == 20
    assert all(e.acked for e in before) and not any(e.acked for e in after)
    assert service.partitions[0].held == after and service.partitions[0].engines.dirty == {"banking77"}


def test_the_sequencer_reports_a_batch_forwarded_only_once_the_broker_acknowledged_it():
    async def run():
        pending: list[asyncio.Future] = []

        async def send(topic, key, value, partition):
            pending.append(asyncio.get_running_loop().create_future())
            return pending[-1]

        service = Service(Settings(), WorkerOptions(), send, Observability())
        service.on_assigned(set())
        messages = service.topics["messages"]
        record = b'{"dataset": "d", "id": "m-1", "timestamp": 0, "body": "hello"}'
        reported: list[str] = []
        partition = owner_partition("d", service.settings.partitions)
        await service.sequence_batch([(messages, partition, 7, b"d", record)], forwarded=lambda: reported.append("1"))
        await service.sequence_batch([(messages, partition, 8, b"d", record)], forwarded=lambda: reported.append("2"))
        await asyncio.sleep(0.01)
        unacknowledged = (list(reported), len(pending))  # the second waits for the first
        for future in pending:
            future.set_result(None)
        await asyncio.sleep(0.01)
        for future in pending[1:]:
            future.set_result(None)
        await service.drain_forwards(1.0)
        return unacknowledged, reported, service.forwarded[(messages, partition)]

    unacknowledged, reported, forwarded = asyncio.run(run())
    assert unacknowledged == ([], 1)
    assert reported == ["1", "2"] and forwarded == 9


def test_a_publication_lets_a_waiting_batch_go_first(records, monkeypatch):
    import agents.worker.service as service_module

    monkeypatch.setattr(service_module, "PUBLICATION_SLICE", 0.0)  # one list per engine-thread call

    async def run():
        service, _ = _service(background_share=1.0)
        published = _recorded(service)
        await service.process([FaustEvent(0, offset, raw) for offset, raw in enumerate(records[:10])])
        publication = asyncio.ensure_future(service.publish_metrics())
        await asyncio.sleep(0)  # the publication holds the lock
        batch = [FaustEvent(0, offset, raw) for offset, raw in enumerate(records[10:20], 10)]
        await service.process(batch)
        done_before_batch = publication.done()
        await publication
        return published, done_before_batch

    published, done_before_batch = asyncio.run(run())
    assert not done_before_batch
    # the batch's predictions went out before the publication's metrics and lists
    second_predictions = [i for i, t in enumerate(published) if t == "predictions"][-1]
    assert second_predictions < published.index("metrics")
    assert published.count("suggestions") > 1


def test_each_applied_batch_tells_the_seen_listeners_its_messages_and_reviews_once_decoded(records, caplog):
    """The workbench's store is fed from the engine's own decoding (issue 11: parse each event once)."""

    async def run():
        service, _ = _service(snapshot_every=10_000)
        seen: list = []
        service.seen_listeners.append(lambda items: (_ for _ in ()).throw(RuntimeError("a reader's bug")))
        service.seen_listeners.append(seen.extend)
        events = [FaustEvent(0, offset, raw) for offset, raw in enumerate(records)]
        await service.process(events[:10])
        await service.process(events)  # the first ten again: already applied, not seen twice
        return service, seen

    with caplog.at_level(logging.ERROR):
        service, seen = asyncio.run(run())
    decoded = [Event.decode(r) for r in records]
    expected = [
        e.message if e.message is not None else (e.annotation.dataset, e.annotation.message_id) for e in decoded
    ]
    assert seen == expected
    assert any("seen_listener_failed" in r.getMessage() for r in caplog.records)  # logged, and the batch went on
    assert service.partitions[0].engine("banking77").model_version == sum(e.annotation is not None for e in decoded)


def test_the_engine_takes_the_events_its_sequencer_wrote_instead_of_parsing_them_again(datasets):
    """The handoff (issue 11: parse each event once) changes nothing but the parsing: the same
    predictions and the same model as a worker that parses every event it reads."""
    inputs = []
    for i, (message, review) in enumerate(itertools.islice(banking77(root=datasets), 40)):
        inputs.append(("messages", i, message.encode()))
        if i % 3 == 2:
            inputs.append(("annotations", i, review.encode()))

    async def run(handoff: bool):
        service, _ = _service(snapshot_every=10_000)
        if not handoff:
            service.handoff.max_records = 0
        written: list[bytes] = []

        async def send(topic, key, value, partition):
            if topic == service.topics["events"]:
                written.append(value)
            return await _accept(topic, key, value, partition)

        service.delivery.send = send
        p = owner_partition("banking77", service.settings.partitions)
        service.on_assigned({p})
        records = [(service.topics[role], p, offset, b"banking77", raw) for role, offset, raw in inputs]
        await service.sequence_batch(records)
        await service.drain_forwards(5.0)
        predictions: list[bytes] = []

        async def deliver(out):
            predictions.extend(value for topic, _, value, _ in out if topic == service.topics["predictions"])

        service.deliver = deliver  # type: ignore[method-assign]
        await service.process([FaustEvent(p, offset, raw) for offset, raw in enumerate(written)])
        engine = service.partitions[p].engine("banking77")
        return predictions, engine.snapshot(), service.handoff

    parsed_once, snapshot, handoff = asyncio.run(run(True))
    parsed_twice, snapshot_parsed, unused = asyncio.run(run(False))
    assert handoff.taken == len(inputs) and handoff.missed == 0 and len(handoff) == 0
    assert unused.taken == 0 and unused.missed == len(inputs)
    assert len(parsed_once) == 40 and parsed_once == parsed_twice
    assert snapshot == snapshot_parsed


def test_a_publications_lists_are_ranked_without_the_lock_at_the_state_of_its_metrics(records, monkeypatch):
    """A batch with reviews applied while the lists are ranked changes none of them: every list
    carries the metrics' model version and is the list the engine gave in that state."""
    import agents.worker.service as service_module
    from pipeline.engine import suggestion_list
    from schemas import SUGGESTION_KINDS, MetricsSnapshot, SuggestionList

    monkeypatch.setattr(service_module, "PUBLICATION_SLICE", 0.0)  # one list per engine-thread call

    async def run():
        service, sent = _recording_service()
        await service.process([FaustEvent(0, offset, raw) for offset, raw in enumerate(records[:20])])
        engine = service.partitions[0].engine("banking77")
        before = engine.metrics(now=1.0)
        expected = {
            (kind, label): suggestion_list(engine, kind, now=1.0, label=label, limit=service.options.suggestions_limit)
            for kind in SUGGESTION_KINDS
            for label in (sorted(before.labels) if kind in service_module.LABEL_KINDS else [None])
        }
        version = engine.model_version
        publication = asyncio.ensure_future(service.publish_metrics())
        while not any(topic == "metrics" for topic, _ in sent) and not publication.done():
            await asyncio.sleep(0)  # (the metrics go out last: wait until the lists are being ranked)
            if service.lock.locked():
                continue
            await service.process([FaustEvent(0, offset, raw) for offset, raw in enumerate(records[20:], 20)])
            break
        await publication
        return sent, expected, version, engine.model_version

    sent, expected, version, after = asyncio.run(run())
    topics = [t for t, _ in sent]
    # the second batch (with reviews) was applied while the lists were ranked: before they went out
    assert after > version and max(i for i, t in enumerate(topics) if t == "predictions") < topics.index("metrics")
    metrics = [MetricsSnapshot.decode(v) for t, v in sent if t == "metrics"]
    lists = [SuggestionList.decode(v) for t, v in sent if t == "suggestions"]
    assert len(metrics) == 1 and metrics[0].model_version == version
    assert len(lists) == len(expected) and {sl.model_version for sl in lists} == {version}
    assert all(sl.items == expected[sl.kind, sl.label].items for sl in lists)


def test_events_held_until_a_snapshot_keep_no_record_bytes(records):
    """Held events wait for a snapshot (their count follows the traffic between snapshots): each
    keeps its offset for the ack, not its record's bytes (memory bounded by record count alone)."""

    async def run():
        service, _ = _service(snapshot_every=10_000)
        events = [FaustEvent(0, offset, raw) for offset, raw in enumerate(records)]
        for event in events:
            event.value = event.message.value  # Faust's event carries the (raw) value twice
        await service.process(events)
        return service.partitions[0].held

    held = asyncio.run(run())
    assert len(held) == len(records)
    assert all(e.value is None and e.message.value is None and not e.acked for e in held)


def test_a_publication_holds_the_engine_only_for_a_frozen_copy_and_computes_its_metrics_beside_it(records):
    """Batches are applied while the metrics are computed (in the snapshot thread, from a copy
    taken in the engine thread), and the metrics published are those of the copy's state."""
    import threading

    from schemas import MetricsSnapshot

    async def run():
        service, sent = _recording_service()
        await service.process([FaustEvent(0, offset, raw) for offset, raw in enumerate(records[:20])])
        engine = service.partitions[0].engine("banking77")
        expected, version = engine.metrics(now=1.0), engine.model_version
        threads: list[tuple[str, str]] = []
        batch_applied = threading.Event()
        copy_of = engine.frozen

        def frozen():
            threads.append(("frozen", threading.current_thread().name))
            copied = copy_of()
            metrics_of = copied.metrics

            def metrics(now=None):
                threads.append(("metrics", threading.current_thread().name))
                batch_applied.wait(timeout=10)  # never set if the batch waits for these metrics
                return metrics_of(now=now)

            copied.metrics = metrics
            return copied

        engine.frozen = frozen
        publication = asyncio.ensure_future(service.publish_metrics())
        while not threads:
            await asyncio.sleep(0.001)
        await service.process([FaustEvent(0, offset, raw) for offset, raw in enumerate(records[20:], 20)])
        applied_during_metrics = not publication.done()
        batch_applied.set()
        await publication
        return sent, threads, applied_during_metrics, expected, version, engine.model_version

    sent, threads, applied_during_metrics, expected, version, after = asyncio.run(run())
    assert [name for name, _ in threads] == ["frozen", "metrics"]
    assert threads[0][1].startswith("refinery-engine") and threads[1][1].startswith("refinery-snapshot")
    assert applied_during_metrics and after > version  # the batch (with reviews) went while the metrics were computed
    metrics = [MetricsSnapshot.decode(v) for t, v in sent if t == "metrics"]
    assert len(metrics) == 1 and dataclasses.replace(metrics[0], timestamp=1.0) == expected


class _Tally:
    """How many snapshot captures are alive, and how many were when each was encoded."""

    def __init__(self) -> None:
        self.alive = 0
        self.at_encoding: list[int] = []


class _CountedCapture:
    """A real capture (`pipeline.Refiner.capture`) that counts itself alive until it is dropped."""

    def __init__(self, captured, tally: _Tally) -> None:
        self.captured, self.tally = captured, tally
        tally.alive += 1

    def __del__(self) -> None:
        self.tally.alive -= 1

    def encode(self) -> bytes:
        self.tally.at_encoding.append(self.tally.alive)
        return self.captured.encode()


def _counting_engines(tally: _Tally):
    from pipeline import Refiner, RefinerConfig

    class Counting(Refiner):
        def capture(self):
            return _CountedCapture(super().capture(), tally)

    return lambda dataset: Counting(dataset, config=RefinerConfig(feature_bits=12), seed=0)


def test_a_snapshot_holds_one_captured_dataset_at_a_time_in_the_whole_worker(records):
    """Two partitions of two changed datasets each snapshot at once: each dataset's state is
    copied, encoded and written before the next is copied, so the worker never holds more than
    one copy of a dataset's state for snapshots (docs/service.md, *Memory budget*)."""
    tally = _Tally()

    async def run():
        service, _ = _service(partitions=(0, 1), make_engine=_counting_engines(tally), snapshot_every=10_000)
        for p, names in ((0, "ab"), (1, "cd")):
            await service.process([FaustEvent(p, o, raw) for o, raw in enumerate(_for_datasets(records[:10], names))])
        await asyncio.gather(service.snapshot(0), service.snapshot(1))
        return service

    service = asyncio.run(run())
    assert len(tally.at_encoding) == 4 and max(tally.at_encoding) == 1
    assert tally.alive == 0
    assert all(e.acked for p in (0, 1) for e in service.partitions[p].held) and not service.partitions[0].held


def _held_snapshots(service: Service):
    """``service``'s deliveries, each record to ``snapshots`` held until ``release`` is set
    (``blocked`` is set at the first); (blocked, release, the manifests written, in order)."""
    from agents.worker.snapshots import CHUNK_MAGIC, Manifest

    blocked, release = asyncio.Event(), asyncio.Event()
    manifests: list[Manifest] = []

    async def send(topic, key, value, partition):
        if topic == service.topics["snapshots"]:
            blocked.set()
            await release.wait()
            if value is not None and not value.startswith(CHUNK_MAGIC):
                manifests.append(Manifest.decode(value))
        return await _accept(topic, key, value, partition)

    service.delivery.send = send
    return blocked, release, manifests


def test_events_applied_while_a_snapshot_is_written_wait_for_the_next_one(records):
    """Dataset b is captured after a batch applied while a's snapshot was written: b's manifest
    covers that batch, a's does not, so the batch is acked by neither, and both datasets are
    marked for the next snapshot (even a batch that changes nothing does not release it)."""

    async def run():
        service, _ = _service(snapshot_every=10_000)
        blocked, release, manifests = _held_snapshots(service)
        two = _for_datasets(records[:20], "ab")
        before = [FaustEvent(0, o, raw) for o, raw in enumerate(two[:20])]
        await service.process(before)
        writing = asyncio.ensure_future(service.snapshot(0))
        await blocked.wait()  # a captured and encoded, its records wait; b not captured yet
        after = [FaustEvent(0, o, raw) for o, raw in enumerate(two[20:40], 20)]
        await service.process(after)  # changes a and b
        again = [FaustEvent(0, o, raw) for o, raw in enumerate(two[:20])]  # delivered again: changes nothing
        await service.process(again)
        release.set()
        await writing
        return before, after, again, service, manifests

    before, after, again, service, manifests = asyncio.run(run())
    assert [(m.dataset, m.events_offset) for m in manifests] == [("a", 20), ("b", 40)]
    assert all(e.acked for e in before) and not any(e.acked for e in after + again)
    assert service.partitions[0].engines.dirty == {"a", "b"}


def test_a_snapshot_captures_no_batch_whose_predictions_are_not_durable(records):
    """Dataset b is captured while a batch's predictions wait for the broker: the capture waits
    until they are durable. A snapshot covering that batch, durable before its predictions, would
    lose them to a crash: restored from it, the batch is never applied (or predicted) again."""
    from agents.worker.snapshots import CHUNK_MAGIC

    async def run():
        service, _ = _service(snapshot_every=10_000)
        snapshots_blocked, release_snapshots = asyncio.Event(), asyncio.Event()
        predictions_blocked, release_predictions = asyncio.Event(), asyncio.Event()
        order: list[str] = []

        async def send(topic, key, value, partition):
            if topic == service.topics["snapshots"] and value is not None and value.startswith(CHUNK_MAGIC):
                snapshots_blocked.set()
                await release_snapshots.wait()
            if topic == service.topics["predictions"] and release_snapshots.is_set():
                predictions_blocked.set()
                await release_predictions.wait()
                order.append("predictions durable")
            return await _accept(topic, key, value, partition)

        service.delivery.send = send
        engines = service.partitions[0].engines or await service.partitions[0].wait_restored()
        capture = engines.capture

        def recorded(dataset):
            order.append(f"{dataset} captured")
            return capture(dataset)

        engines.capture = recorded
        two = _for_datasets(records[:20], "ab")
        await service.process([FaustEvent(0, o, raw) for o, raw in enumerate(two[:20])])
        writing = asyncio.ensure_future(service.snapshot(0))
        await snapshots_blocked.wait()  # a captured, its chunks wait; b not captured yet
        release_snapshots.set()
        batch = asyncio.ensure_future(service.process([FaustEvent(0, o, raw) for o, raw in enumerate(two[20:40], 20)]))
        await predictions_blocked.wait()  # the batch is applied, its predictions wait
        for _ in range(200):  # a's write ends; b's capture comes next (a deadlock guard, not timing)
            if service.gate.waiting or "b captured" in order:
                break
            await asyncio.sleep(0.01)
        release_predictions.set()
        await batch
        await writing
        return order

    order = [step for step, _ in itertools.groupby(asyncio.run(run()))]  # one "durable" per prediction
    assert order == ["a captured", "predictions durable", "b captured"]


def test_a_batch_failing_while_a_snapshot_is_written_stops_it_before_the_next_capture(records, caplog):
    """The partition's engines may hold half of the failed batch: no dataset is captured after
    it, nothing is acked, and the partition is rebuilt from the snapshots once the one being
    written is durable."""

    class Failing(PartitionEngines):
        def _apply(self, records, *, now, parsed):
            super()._apply(records[:3], now=now, parsed=parsed)
            raise RuntimeError("a bug")

    async def run():
        service, loads = _service(snapshot_every=10_000)
        blocked, release, written = _held_snapshots(service)
        two = _for_datasets(records[:20], "ab")
        before = [FaustEvent(0, o, raw) for o, raw in enumerate(two[:20])]
        await service.process(before)
        first = service.partitions[0]
        writing = asyncio.ensure_future(service.snapshot(0))
        await blocked.wait()
        first.engines.__class__ = Failing
        failed = [FaustEvent(0, o, raw) for o, raw in enumerate(two[20:40], 20)]
        await service.process(failed)
        release.set()
        await writing
        rebuilt = await service.partitions[0].wait_restored()
        return loads, before + failed, [m.dataset for m in written], first, rebuilt

    with caplog.at_level(logging.INFO, logger="refinery.worker"):
        loads, events, manifests, first, rebuilt = asyncio.run(run())
    assert first.engines is None and first.held == []  # forgotten
    assert manifests == ["a"]  # captured before the failure; b never
    assert not any(e.acked for e in events)
    assert loads == [(0, False), (0, True)] and type(rebuilt) is PartitionEngines
    assert any(r.getMessage().startswith("snapshot_abandoned partition=0") for r in caplog.records)
