"""A bounded history of each dataset's published metrics, for the charts over time.

`MetricsHistory.record` keeps one point per new ``MetricsSnapshot`` (rating, its four factors,
coverage and balance), at most ``max_points`` per dataset (``REFINERY_WORKBENCH_HISTORY``): the
oldest go first, so memory stays flat however long the worker runs.

>>> from schemas import Balance, Factor, MetricsSnapshot, Rating
>>> history = MetricsHistory(max_points=2)
>>> for t in (1, 2, 3):
...     history.record(MetricsSnapshot(dataset="d", timestamp=t, model_version=t, reviewed=t, labels={}, map=None,
...         coverage=0.5, balance=Balance(score=60.0, similarity=0.9, shuffle_share=0.1),
...         rating=Rating(score=10.0 * t, band="Poor", ready=False, factors={"coverage": Factor(score=50.0, band="Average")})))
>>> [(p.timestamp, p.rating) for p in history.points("d")]
[(2.0, 20.0), (3.0, 30.0)]
"""

from __future__ import annotations

import collections
import dataclasses

from schemas import MetricsSnapshot

__all__ = ["DEFAULT_POINTS", "Point", "MetricsHistory"]

DEFAULT_POINTS = 720
FACTORS = ("all_labels", "underperforming_labels", "coverage", "balance")


@dataclasses.dataclass(frozen=True)
class Point:
    timestamp: float
    rating: float
    factors: dict[str, float]
    coverage: float | None  # percent
    balance: float | None
    reviewed: int


class MetricsHistory:
    """Recent points per dataset, at most ``max_points`` each."""

    def __init__(self, max_points: int = DEFAULT_POINTS) -> None:
        self.max_points = max_points
        self.series: dict[str, collections.deque[Point]] = {}

    def record(self, snapshot: MetricsSnapshot) -> None:
        """Add a point for ``snapshot`` unless it is the one last recorded (same time)."""
        points = self.series.setdefault(snapshot.dataset, collections.deque(maxlen=self.max_points))
        if points and points[-1].timestamp >= snapshot.timestamp:
            return
        points.append(
            Point(
                timestamp=float(snapshot.timestamp),
                rating=snapshot.rating.score,
                factors={k: f.score for k, f in snapshot.rating.factors.items()},
                coverage=None if snapshot.coverage is None else 100 * snapshot.coverage,
                balance=snapshot.balance.score,
                reviewed=snapshot.reviewed,
            )
        )

    def retain(self, datasets: set[str]) -> None:
        """Forget datasets no longer owned here."""
        for name in set(self.series) - datasets:
            del self.series[name]

    def points(self, dataset: str) -> list[Point]:
        return list(self.series.get(dataset, ()))
