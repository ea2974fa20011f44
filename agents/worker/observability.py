"""Prometheus exposition of the worker: model quality per dataset and label, and the stream's health.

Each worker has its own `Observability` (its own registry, so tests can run several in one
process). The engine agent counts events; the metrics timer calls `Observability.publish` with
each dataset's `schemas.MetricsSnapshot`; ``/metrics`` serves `Observability.exposition`.

A worker reports only what it owns now: when a rebalance takes a partition away, the worker calls
`Observability.drop` for each of its datasets and `Observability.retain_lag` with the partitions
it keeps, so that the new owner is the only one to report them.

>>> from schemas import Balance, LabelMetrics, MetricsSnapshot, Rating
>>> obs = Observability()
>>> obs.publish(MetricsSnapshot(dataset="d", timestamp=0, model_version=1, reviewed=3,
...     labels={"card": LabelMetrics(precision=0.5, recall=1.0, f1=None, average_precision=0.75,
...                                  threshold=0.4, support=2, pinned=3)},
...     map=None, coverage=0.25, balance=Balance(score=60.0, similarity=0.7, shuffle_share=0.1),
...     rating=Rating(score=55.0, band="Average", ready=False)))
>>> b'refinery_label_precision{dataset="d",label="card"} 0.5' in obs.exposition()
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from agents.worker.deadletter import ERRORS
from schemas import MetricsSnapshot

__all__ = ["CONTENT_TYPE", "DEAD_LETTER_ERRORS", "Observability", "SEVERITIES", "log_event"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: The ``error`` values of ``refinery_dead_letters_total``: the dead-letter categories, and
#: ``undeliverable`` (a record the broker refuses, logged and counted by the worker).
DEAD_LETTER_ERRORS = (*ERRORS, "undeliverable")

#: The ``severity`` values of ``refinery_label_warnings``.
SEVERITIES = ("amber", "red")


def _value(x: float | None) -> float:
    return math.nan if x is None else float(x)


class Observability:
    """The worker's Prometheus metrics (names follow Prometheus conventions, ``refinery_`` prefix)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        per_label = ["dataset", "label"]
        self.precision = Gauge(
            "refinery_label_precision",
            "Precision of the label at its threshold over the validation window",
            per_label,
            registry=r,
        )
        self.recall = Gauge(
            "refinery_label_recall",
            "Recall of the label at its threshold over the validation window",
            per_label,
            registry=r,
        )
        self.f1 = Gauge(
            "refinery_label_f1", "F1 of the label at its threshold over the validation window", per_label, registry=r
        )
        self.average_precision = Gauge(
            "refinery_label_average_precision",
            "Average precision (area under the precision-recall curve) of the label",
            per_label,
            registry=r,
        )
        self.threshold = Gauge(
            "refinery_label_threshold", "Confidence threshold in force for the label", per_label, registry=r
        )
        self.support = Gauge(
            "refinery_label_support", "Positives of the label in the validation window", per_label, registry=r
        )
        self.pinned = Gauge(
            "refinery_label_pinned", "Reviewed messages pinned with the label (all time)", per_label, registry=r
        )
        self.warnings = Gauge("refinery_label_warnings", "Warnings on the label", per_label + ["severity"], registry=r)
        self.map = Gauge(
            "refinery_dataset_map", "Mean average precision over labels with enough positives", ["dataset"], registry=r
        )
        self.coverage = Gauge(
            "refinery_dataset_coverage",
            "Share of recent live messages with an informative label at threshold",
            ["dataset"],
            registry=r,
        )
        self.balance = Gauge(
            "refinery_dataset_balance",
            "Balance score 0-100: how much reviewed messages look like the stream",
            ["dataset"],
            registry=r,
        )
        self.rating = Gauge("refinery_dataset_rating", "Model rating 0-100", ["dataset"], registry=r)
        self.factor = Gauge(
            "refinery_dataset_rating_factor",
            "Score 0-100 of one factor of the model rating",
            ["dataset", "factor"],
            registry=r,
        )
        self.reviewed = Gauge("refinery_dataset_reviewed", "Reviewed messages", ["dataset"], registry=r)
        self.model_version = Gauge(
            "refinery_dataset_model_version", "Model version (reviews learnt)", ["dataset"], registry=r
        )
        self.events_in = Counter("refinery_events_in", "Input records read, by topic", ["topic"], registry=r)
        self.events_out = Counter("refinery_events_out", "Records published, by topic", ["topic"], registry=r)
        self.dead_letters = Counter(
            "refinery_dead_letters", "Records dead-lettered, by error category", ["error"], registry=r
        )
        self.latency = Histogram(
            "refinery_processing_seconds",
            "Time to apply one batch of events to the engines",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.age = Histogram(
            "refinery_record_age_seconds",
            "Age of the oldest record of each batch when its agent takes it (now less its Kafka timestamp)",
            ["stage"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
        )
        for stage in ("sequencer", "engine"):
            self.age.labels(stage)  # exported from the start, so rate() sees the first batch
        self.lag = Gauge(
            "refinery_consumer_lag", "Records of the partition not yet processed", ["topic", "partition"], registry=r
        )
        self.snapshots = Counter("refinery_snapshots", "Snapshots written", ["dataset"], registry=r)
        self.snapshot_bytes = Gauge(
            "refinery_snapshot_bytes", "Size of the latest snapshot (compressed bytes)", ["dataset"], registry=r
        )
        self.snapshots_rejected = Counter(
            "refinery_snapshots_rejected", "Snapshots rejected on restore (forged, corrupt or incomplete)", registry=r
        )
        self.restores = Counter("refinery_restores", "Partitions restored from snapshots", registry=r)
        self.ready = Gauge(
            "refinery_worker_ready",
            "1 when every assigned partition is restored (GET /readyz answers 200), else 0",
            registry=r,
        )
        self.stalled = Gauge(
            "refinery_partition_stalled",
            "1 when the partition has had input and made no progress for REFINERY_STALL_SECONDS, else 0",
            ["topic", "partition"],
            registry=r,
        )
        self.stalled_seconds = Gauge(
            "refinery_partition_stalled_seconds",
            "How long a stalled partition has been without progress (0 when it is not stalled)",
            ["topic", "partition"],
            registry=r,
        )
        for error in DEAD_LETTER_ERRORS:  # at 0 from the start, so that increase() sees the first one
            self.dead_letters.labels(error)
        self._published: dict[str, set[tuple[Gauge, tuple[str, ...]]]] = {}  # dataset -> its series
        self._snapshotted: set[str] = set()
        self._lagging: set[tuple[str, int]] = set()
        self._watched: set[tuple[str, int]] = set()

    def publish(self, snapshot: MetricsSnapshot) -> None:
        """Set every gauge of one dataset from its latest metrics.

        A series the previous snapshot of the dataset had and this one lacks (a label gone from the
        taxonomy or with all its reviews removed, a rating factor) is removed, not left stale.
        """
        d = snapshot.dataset
        values: dict[tuple[Gauge, tuple[str, ...]], float] = {}
        for name, m in snapshot.labels.items():
            for gauge, value in (
                (self.precision, _value(m.precision)),
                (self.recall, _value(m.recall)),
                (self.f1, _value(m.f1)),
                (self.average_precision, _value(m.average_precision)),
                (self.threshold, m.threshold),
                (self.support, m.support),
                (self.pinned, m.pinned),
            ):
                values[gauge, (d, name)] = value
            for severity in SEVERITIES:
                values[self.warnings, (d, name, severity)] = sum(w.severity == severity for w in m.warnings)
        values[self.map, (d,)] = _value(snapshot.map)
        values[self.coverage, (d,)] = _value(snapshot.coverage)
        values[self.balance, (d,)] = _value(snapshot.balance.score)
        values[self.rating, (d,)] = snapshot.rating.score
        for factor, value in snapshot.rating.factors.items():
            values[self.factor, (d, factor)] = value.score
        values[self.reviewed, (d,)] = snapshot.reviewed
        values[self.model_version, (d,)] = snapshot.model_version
        for gauge, labelvalues in self._published.get(d, set()) - values.keys():
            gauge.remove(*labelvalues)
        for (gauge, labelvalues), value in values.items():
            gauge.labels(*labelvalues).set(value)
        self._published[d] = set(values)

    def record_snapshot(self, dataset: str, size: int) -> None:
        """Count a snapshot of ``dataset`` written, of ``size`` compressed bytes."""
        self.snapshots.labels(dataset).inc()
        self.snapshot_bytes.labels(dataset).set(size)
        self._snapshotted.add(dataset)

    def drop(self, dataset: str) -> None:
        """Remove every series of ``dataset``: its partition went to another worker (or its engine is gone).

        The new owner reports the dataset from now on; without this, a rebalance leaves the old
        worker exporting frozen values and the dataset appears twice in dashboards and alerts.

        >>> obs = Observability()
        >>> obs.record_snapshot("d", 100)
        >>> obs.drop("d")
        >>> b'dataset="d"' in obs.exposition()
        False
        """
        for gauge, labelvalues in self._published.pop(dataset, set()):
            gauge.remove(*labelvalues)
        if dataset in self._snapshotted:
            self._snapshotted.discard(dataset)
            self.snapshots.remove(dataset)
            self.snapshot_bytes.remove(dataset)

    def datasets(self) -> set[str]:
        """The datasets with series in the exposition."""
        return set(self._published) | self._snapshotted

    def record_age(self, stage: str, timestamps: Iterable[float | None], *, now: float) -> None:
        """Observe the age of a batch's oldest record as ``stage`` (``sequencer``, ``engine``)
        takes it, from the records' Kafka timestamps (epoch seconds; None for a record without
        one: ignored). A timestamp from a clock ahead of ours counts as 0."""
        oldest = min((t for t in timestamps if t is not None), default=None)
        if oldest is not None:
            self.age.labels(stage).observe(max(now - oldest, 0.0))

    def set_lag(self, topic: str, partition: int, records: int) -> None:
        """Set the consumer lag of one partition (records not yet processed)."""
        self.lag.labels(topic, str(partition)).set(max(records, 0))
        self._lagging.add((topic, partition))

    def drop_lag(self, partitions: set[tuple[str, int]]) -> None:
        """Remove the lag of each ``(topic, partition)`` in ``partitions`` (revoked)."""
        self.retain_lag(self._lagging - set(partitions))

    def retain_lag(self, partitions: set[tuple[str, int]]) -> None:
        """Remove the lag of every ``(topic, partition)`` not in ``partitions`` (no longer assigned)."""
        for topic, partition in self._lagging - set(partitions):
            self.lag.remove(topic, str(partition))
        self._lagging &= set(partitions)

    def set_stalled(self, seconds: dict[tuple[str, int], float]) -> None:
        """Set the stall gauges of every watched ``(topic, partition)``: ``seconds`` stalled, 0 when
        it moves; partitions no longer watched lose their series.

        >>> obs = Observability()
        >>> obs.set_stalled({("refinery.messages", 1): 75.0, ("refinery.events", 1): 0.0})
        >>> b'refinery_partition_stalled{partition="1",topic="refinery.messages"} 1.0' in obs.exposition()
        True
        """
        for topic, partition in self._watched - set(seconds):
            self.stalled.remove(topic, str(partition))
            self.stalled_seconds.remove(topic, str(partition))
        for (topic, partition), value in seconds.items():
            self.stalled.labels(topic, str(partition)).set(1.0 if value > 0 else 0.0)
            self.stalled_seconds.labels(topic, str(partition)).set(value)
        self._watched = set(seconds)

    def exposition(self) -> bytes:
        """The text exposition format served at ``/metrics``."""
        return generate_latest(self.registry)


def log_event(logger, level: int, event: str, *, exc_info: bool = False, **fields) -> None:
    """Log a structured event: ``event key=value ...`` (values in repr form, so strings stay quoted).

    With ``exc_info``, the exception being handled is logged too, with its traceback (a bug the
    worker survived, not bad input).

    >>> import logging, sys
    >>> logger = logging.getLogger("doctest.refinery")
    >>> logger.addHandler(logging.StreamHandler(sys.stdout)); logger.setLevel(logging.INFO)
    >>> log_event(logger, logging.INFO, "snapshot", partition=2, dataset="support")
    snapshot partition=2 dataset='support'
    """
    if logger.isEnabledFor(level):
        logger.log(level, " ".join([event, *(f"{key}={value!r}" for key, value in fields.items())]), exc_info=exc_info)
