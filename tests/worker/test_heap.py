"""The garbage collector's pauses as a histogram, and the startup objects frozen (agents.worker.heap)."""

from __future__ import annotations

import gc

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agents.worker.heap import PAUSE_BUCKETS, PauseCollector, freeze_startup


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


@pytest.fixture
def pauses():
    collector = PauseCollector(CollectorRegistry())
    yield collector
    collector.close()


def test_each_collection_is_counted_under_its_own_generation(pauses):
    before = _samples(pauses.registry)
    gc.collect(1)
    gc.collect(1)
    gc.collect(2)
    after = _samples(pauses.registry)

    def count(generation: int) -> float:
        key = f'refinery_gc_pause_seconds_count{{generation="{generation}"}}'
        return after[key] - before[key]

    assert count(1) >= 2 and count(2) >= 1  # the runtime may collect on its own as well
    assert after['refinery_gc_pause_seconds_sum{generation="2"}'] > 0


def test_the_buckets_are_cumulative_and_end_with_every_pause(pauses):
    for _ in range(5):
        gc.collect(0)
    samples = _samples(pauses.registry)
    buckets = [samples[f'refinery_gc_pause_seconds_bucket{{generation="0",le="{bound}"}}'] for bound in PAUSE_BUCKETS]
    total = samples['refinery_gc_pause_seconds_bucket{generation="0",le="+Inf"}']
    assert buckets == sorted(buckets) and buckets[-1] <= total
    assert total == samples['refinery_gc_pause_seconds_count{generation="0"}'] >= 5


def test_a_pause_lands_in_the_first_bucket_at_or_above_it(pauses):
    pauses._callback("start", {"generation": 1})
    pauses._started -= 0.004  # as if the collection had lasted 4 ms
    pauses._callback("stop", {"generation": 1, "collected": 0, "uncollectable": 0})
    assert pauses.counts[1][PAUSE_BUCKETS.index(0.005)] == 1
    assert sum(pauses.counts[1]) == 1


def test_close_stops_timing_and_leaves_the_registry():
    registry = CollectorRegistry()
    collector = PauseCollector(registry)
    collector.close()
    assert collector._callback not in gc.callbacks
    gc.collect(0)
    assert sum(collector.counts[0]) == 0
    assert b"refinery_gc_pause_seconds" not in generate_latest(registry)


def test_freeze_startup_exempts_every_live_object_from_later_collections():
    class Node:
        pass

    survivor = Node()
    survivor.cycle = survivor  # a cycle: only the cyclic collector could ever free it
    try:
        frozen = freeze_startup()
        assert frozen == gc.get_freeze_count() > 0
        assert not any(o is survivor for o in gc.get_objects())  # collections no longer walk it
    finally:
        gc.unfreeze()
    assert any(o is survivor for o in gc.get_objects())
