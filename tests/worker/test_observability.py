"""The worker's ``/metrics`` reports what it owns now: series of lost datasets, labels and partitions go.

`Observability` alone for its bookkeeping; then `Service` (no Kafka: a partition's engines are
built from real Banking77 events, as a restore would leave them) for when the worker calls it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re

import pytest
from faust.types import TP

from agents.ingest.datasets import banking77
from agents.settings import Settings
from agents.worker.deadletter import ERRORS
from agents.worker.engines import PartitionEngines
from agents.worker.observability import Observability
from agents.worker.options import WorkerOptions
from agents.worker.partition import Partition
from agents.worker.service import Service
from schemas import Balance, Event, Factor, LabelMetrics, LabelWarning, MetricsSnapshot, Rating


def _snapshot(dataset: str, labels: dict[str, int], factors=("coverage", "balance")) -> MetricsSnapshot:
    """Metrics of ``dataset`` with ``labels`` (name -> red warnings) and the rating ``factors``."""
    red = LabelWarning(code="few_pinned", severity="red", message="too few reviews", action="teach_label")
    return MetricsSnapshot(
        dataset=dataset,
        timestamp=0,
        model_version=3,
        reviewed=3,
        labels={
            name: LabelMetrics(
                precision=0.5,
                recall=1.0,
                f1=None,
                average_precision=0.75,
                threshold=0.4,
                support=2,
                pinned=3,
                warnings=(red,) * reds,
            )
            for name, reds in labels.items()
        },
        map=None,
        coverage=0.25,
        balance=Balance(score=60.0, similarity=0.7, shuffle_share=0.1),
        rating=Rating(
            score=55.0, band="Average", ready=False, factors={f: Factor(score=50.0, band="Average") for f in factors}
        ),
    )


def _series(obs: Observability, pattern: str = "") -> list[str]:
    """The exposition's sample lines (name and labels) that contain ``pattern``."""
    text = obs.exposition().decode("utf-8")
    return [line.rsplit(" ", 1)[0] for line in text.splitlines() if line.startswith("refinery_") and pattern in line]


# -- Observability ---------------------------------------------------------------------------


def test_dropping_a_dataset_removes_every_series_of_it_and_only_those():
    obs = Observability()
    obs.publish(_snapshot("banking77", {"card": 1, "refund": 0}))
    obs.publish(_snapshot("support", {"card": 0}))
    obs.record_snapshot("banking77", 1234)
    before = _series(obs, 'dataset="support"')
    obs.drop("banking77")
    assert _series(obs, 'dataset="banking77"') == []
    assert _series(obs, 'dataset="support"') == before


def test_a_dropped_dataset_published_again_is_reported_again():
    obs = Observability()
    obs.publish(_snapshot("banking77", {"card": 0}))
    obs.drop("banking77")
    obs.publish(_snapshot("banking77", {"card": 0}))
    assert 'refinery_dataset_rating{dataset="banking77"}' in _series(obs)


def test_a_label_missing_from_the_newer_metrics_loses_every_series_including_its_warnings():
    obs = Observability()
    obs.publish(_snapshot("banking77", {"card": 1, "refund": 2}))
    obs.publish(_snapshot("banking77", {"card": 1}))
    assert _series(obs, 'label="refund"') == []
    assert 'refinery_label_warnings{dataset="banking77",label="card",severity="red"}' in _series(obs)


def test_a_rating_factor_missing_from_the_newer_metrics_loses_its_series():
    obs = Observability()
    obs.publish(_snapshot("banking77", {}, factors=("coverage", "balance")))
    obs.publish(_snapshot("banking77", {}, factors=("coverage",)))
    assert _series(obs, "refinery_dataset_rating_factor") == [
        'refinery_dataset_rating_factor{dataset="banking77",factor="coverage"}'
    ]


def test_every_dead_letter_category_is_exported_at_zero_from_the_start():
    text = Observability().exposition().decode("utf-8")
    exported = dict(re.findall(r'^refinery_dead_letters_total\{error="(\w+)"\} (\S+)$', text, flags=re.M))
    assert {error: exported.get(error) for error in ERRORS} == {error: "0.0" for error in ERRORS}


def test_the_lag_of_a_revoked_partition_is_removed_and_the_others_kept():
    obs = Observability()
    obs.set_lag("refinery.events", 0, 5)
    obs.set_lag("refinery.events", 1, 3)
    obs.set_lag("refinery.messages", 0, 7)
    obs.drop_lag({("refinery.events", 0)})
    assert _series(obs, "refinery_consumer_lag") == [
        'refinery_consumer_lag{partition="1",topic="refinery.events"}',
        'refinery_consumer_lag{partition="0",topic="refinery.messages"}',
    ]


def test_the_lag_of_partitions_left_out_of_a_new_assignment_is_removed():
    obs = Observability()
    obs.set_lag("refinery.events", 0, 5)
    obs.set_lag("refinery.events", 1, 3)
    obs.retain_lag({("refinery.events", 1), ("refinery.events", 2)})
    assert _series(obs, "refinery_consumer_lag") == ['refinery_consumer_lag{partition="1",topic="refinery.events"}']


# -- the worker ------------------------------------------------------------------------------


async def _accept(topic, key, value, partition):
    """A producer that takes every record at once."""
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


class Highwaters:
    """The consumer `Service.refresh_lag` reads: a real, unstarted aiokafka 0.14 consumer with the
    partitions ``marks`` names assigned, so it answers as the real client does.

    Its ``highwater`` is None for an assigned partition before its first fetch (``marks[p]`` None),
    and an AssertionError for a partition not assigned; `fetched` sets the highwater the way
    aiokafka's fetcher does, from a fetch response.
    """

    def __init__(self, marks: dict[int, int | None], topic: str = "refinery.events") -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        async def unstarted() -> AIOKafkaConsumer:  # never started: no I/O
            consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
            consumer.assign([TopicPartition(topic, p) for p in marks])
            return consumer

        self.topic = topic
        self.consumer = asyncio.run(unstarted())
        for p, mark in marks.items():
            if mark is not None:
                self.fetched(p, mark)

    def fetched(self, partition: int, highwater: int) -> None:
        from aiokafka import TopicPartition

        assignment = self.consumer._subscription.subscription.assignment
        assignment.state_value(TopicPartition(self.topic, partition)).highwater = highwater  # as fetcher.py does

    def highwater(self, tp) -> int | None:
        return self.consumer.highwater(tp)


@pytest.fixture(scope="module")
def events(datasets) -> list[bytes]:
    """60 Banking77 messages and a review of every third one, as ``events`` records."""
    pairs = list(itertools.islice(banking77(root=datasets), 60))
    out = []
    for i, (message, review) in enumerate(pairs):
        out.append(Event(source_topic="refinery.messages", partition=0, offset=i, message=message).encode())
        if i % 3 == 2:
            out.append(
                Event(source_topic="refinery.annotations", partition=0, offset=i // 3, annotation=review).encode()
            )
    return out


def _renamed(raw: bytes, dataset: str) -> bytes:
    event = Event.decode(raw)
    if event.message is not None:
        return dataclasses.replace(event, message=dataclasses.replace(event.message, dataset=dataset)).encode()
    return dataclasses.replace(event, annotation=dataclasses.replace(event.annotation, dataset=dataset)).encode()


def _worker(events, datasets_by_partition: dict[int, str]) -> Service:
    """A worker with these partitions assigned and restored, each holding one dataset that has
    applied ``events`` (what `Service.restore` then the engine agent would leave)."""
    service = Service(Settings(), WorkerOptions(engine_config={"feature_bits": 12}), _accept, Observability())
    service.assigned = set(datasets_by_partition)
    for p, dataset in datasets_by_partition.items():
        engines = PartitionEngines(service.topics["events"], p, service.make_engine, service.restore_engine)
        engines.apply([(offset, _renamed(raw, dataset)) for offset, raw in enumerate(events)], now=0)
        partition = service.partitions[p] = Partition(p)
        partition.engines = engines
    return service


def test_a_revoked_partition_takes_its_datasets_series_with_it(events):
    async def run():
        service = _worker(events, {1: "banking77", 2: "banking77-copy"})
        await service.publish_metrics()
        assert _series(service.obs, 'dataset="banking77"') != []
        await service.on_revoked({1})
        return service

    service = asyncio.run(run())
    assert _series(service.obs, 'dataset="banking77"') == []
    assert 'refinery_dataset_rating{dataset="banking77-copy"}' in _series(service.obs)


def test_a_partition_missing_from_a_new_assignment_takes_its_datasets_series_with_it(events):
    async def run():
        service = _worker(events, {1: "banking77", 2: "banking77-copy"})
        await service.publish_metrics()
        service.on_assigned({2})
        return service

    service = asyncio.run(run())
    assert _series(service.obs, 'dataset="banking77"') == []
    assert 'refinery_dataset_rating{dataset="banking77-copy"}' in _series(service.obs)


def _ready(service: Service) -> str:
    (line,) = [
        line for line in service.obs.exposition().decode().splitlines() if line.startswith("refinery_worker_ready ")
    ]
    return line.split()[1]


def test_the_worker_is_ready_once_every_assigned_partition_is_restored(events):
    async def run():
        service = Service(Settings(), WorkerOptions(), _accept, Observability())
        states = [_ready(service)]  # no assignment yet
        service.on_assigned({0})  # restore of 0 scheduled, not run
        states.append(_ready(service))
        service.forget(0)  # (cancels the restore before it reads Kafka)
        service.on_assigned(set())  # nothing to restore
        states.append(_ready(service))
        return states

    assert asyncio.run(run()) == ["0.0", "0.0", "1.0"]


def test_a_restored_worker_is_ready_and_stops_being_ready_when_a_new_partition_needs_restoring(events):
    async def run():
        service = _worker(events, {1: "banking77"})
        states = [_ready(service)]
        service.on_assigned({1, 2})
        states.append(_ready(service))
        service.forget(2)  # (cancels the restore before it reads Kafka)
        return states

    assert asyncio.run(run()) == ["1.0", "0.0"]


def test_the_lag_of_an_idle_engine_follows_the_highwater_without_any_batch(events):
    service = _worker(events, {1: "banking77"})
    applied = service.partitions[1].position
    consumer = Highwaters({1: applied + 50})
    service.refresh_lag(consumer)
    lags = [_series(service.obs, "refinery_consumer_lag")]
    consumer.fetched(1, applied + 120)  # input keeps arriving, the engine applies nothing
    service.refresh_lag(consumer)
    text = service.obs.exposition().decode()
    assert lags == [['refinery_consumer_lag{partition="1",topic="refinery.events"}']]
    assert 'refinery_consumer_lag{partition="1",topic="refinery.events"} 120.0' in text


def test_the_lag_timer_skips_a_partition_it_knows_no_position_or_highwater_of(events):
    service = _worker(events, {1: "banking77"})
    service.assigned = {1, 2, 3}  # 2: assigned, not restored, nothing delivered
    # 1: assigned to the consumer, not fetched yet (aiokafka answers None); 3: not assigned to it
    # (aiokafka's assertion)
    consumer = Highwaters({1: None, 2: 40})
    service.refresh_lag(consumer)
    assert consumer.highwater(TP("refinery.events", 1)) is None
    assert _series(service.obs, "refinery_consumer_lag") == []


def test_a_batch_is_timed_by_its_oldest_records_age_and_a_clock_ahead_counts_zero():
    obs = Observability()
    exposition = obs.exposition().decode()
    assert 'refinery_record_age_seconds_count{stage="engine"} 0.0' in exposition  # there from the start
    obs.record_age("engine", [100.2, None, 100.0], now=100.5)  # the oldest; None: a record without a timestamp
    obs.record_age("sequencer", [105.0], now=100.0)  # the producer's clock runs ahead of ours
    obs.record_age("sequencer", [None], now=100.0)  # nothing to time
    exposition = obs.exposition().decode()
    assert 'refinery_record_age_seconds_sum{stage="engine"} 0.5' in exposition
    assert 'refinery_record_age_seconds_bucket{le="0.25",stage="engine"} 0.0' in exposition
    assert 'refinery_record_age_seconds_bucket{le="0.5",stage="engine"} 1.0' in exposition
    assert 'refinery_record_age_seconds_sum{stage="sequencer"} 0.0' in exposition
    assert 'refinery_record_age_seconds_count{stage="sequencer"} 1.0' in exposition
