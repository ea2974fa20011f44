"""The worker's heap and Python's cyclic garbage collector: pauses kept short, and measured.

A collection of the oldest generation walks every object the collector tracks, and it stops the
event loop and the engine thread alike. In a Banking77 worker most of those objects are the
modules, classes and functions of Faust, aiokafka, River and numpy, alive until the process
ends: a full collection took 100-130 ms, several times a minute under load, the largest single
cause of the worker's p99 latency (bench/README.md, *Garbage-collector pauses*).

* `freeze_startup` collects once, then moves every object alive at that point to the
  collector's permanent generation (`gc.freeze`), which later collections skip. ``refinery
  worker`` calls it once the worker is built, before it reads a record. Reference counting
  still frees those objects; only a reference cycle among them, left as garbage later, would
  stay (a worker's startup objects live as long as it does).
* `PauseCollector` times every collection (`gc.callbacks`) and serves the pauses as the
  histogram ``refinery_gc_pause_seconds{generation}``, with the number of frozen objects as
  ``refinery_gc_frozen_objects``. Its callback takes no lock (it only adds to counters; the
  collector never runs two collections at once), so it cannot deadlock a thread that a
  collection interrupts.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> pauses = PauseCollector(registry)
>>> _ = gc.collect(0)
>>> b'refinery_gc_pause_seconds_count{generation="0"}' in generate_latest(registry)
True
>>> pauses.close()
"""

from __future__ import annotations

import bisect
import gc
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

__all__ = ["PAUSE_BUCKETS", "PauseCollector", "freeze_startup"]

#: Upper bounds (seconds) of the pause histogram's buckets.
PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

_GENERATIONS = 3


def freeze_startup() -> int:
    """Collect, then exempt every object alive now from later collections; how many are frozen.

    Call it once the process has imported and built what it keeps until it exits.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class PauseCollector:
    """Collection pauses by generation, as a Prometheus histogram in ``registry``.

    Installs a `gc.callbacks` entry at once; `close` removes it and unregisters.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # Per generation: a count per bucket (the last one is above every bound), and the sum.
        self.counts = [[0] * (len(PAUSE_BUCKETS) + 1) for _ in range(_GENERATIONS)]
        self.sums = [0.0] * _GENERATIONS
        self._started = 0.0
        gc.callbacks.append(self._callback)
        registry.register(self)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        generation = info["generation"]
        self.counts[generation][bisect.bisect_left(PAUSE_BUCKETS, seconds)] += 1
        self.sums[generation] += seconds

    def collect(self) -> Iterator[Any]:
        """The metric families (called by the registry at each exposition)."""
        histogram = HistogramMetricFamily(
            "refinery_gc_pause_seconds",
            "Pauses of Python's cyclic garbage collector, by generation (the whole process stops)",
            labels=["generation"],
        )
        for generation in range(_GENERATIONS):
            counts, cumulative, buckets = self.counts[generation], 0, []
            for bound, count in zip((*map(str, PAUSE_BUCKETS), "+Inf"), counts):
                cumulative += count
                buckets.append((bound, cumulative))
            histogram.add_metric([str(generation)], buckets, sum_value=self.sums[generation])
        yield histogram
        yield GaugeMetricFamily(
            "refinery_gc_frozen_objects",
            "Objects exempt from garbage collection (frozen once the worker was built)",
            value=gc.get_freeze_count(),
        )

    def close(self) -> None:
        """Stop timing collections and leave the registry."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        self.registry.unregister(self)
