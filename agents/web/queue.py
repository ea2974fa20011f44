"""Which message a reviewer sees next in a training mode, and who else is looking at it.

A *queue* is a suggestion kind of a dataset (with a label where the kind takes one), or a search.
Its items are the engine's ranked suggestions (or the search hits); `ReviewQueues.pick` takes the
first one that

- has not just been reviewed through the workbench (by anyone: a review reaches the engine a
  moment later, through Kafka, and must not come back meanwhile);
- this reviewer has not skipped or reviewed in this queue;
- is not *leased* to another reviewer: opening a message leases it to its reviewer for
  `LEASE_SECONDS` (or until they move on), so two people on the same queue get different
  messages. When every candidate is leased, the first is shown with a warning naming the other
  reviewer. All of it is in memory, bounded (`MAX_TRACKED` entries per table).

>>> from schemas import Suggestion
>>> items = [Suggestion(message_id=f"m{i}", kind="shuffle", label=None, score=0.0, reason="") for i in range(3)]
>>> queues = ReviewQueues()
>>> first = queues.pick("d", items, "ann", now=0).message_id; queues.open("d", first, "ann", now=0); first
'm0'
>>> queues.pick("d", items, "bob", now=1).message_id  # m0 is leased to ann
'm1'
>>> queues.reviewed("d", "m0", "ann", now=2); queues.pick("d", items, "ann", now=3).message_id
'm1'
>>> queues.open("d", "m1", "ann", now=3); queues.open("d", "m1", "bob", now=4)  # bob is warned: ann has it open
'ann'
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Sequence

from schemas import Suggestion
from schemas.events import Mode

__all__ = ["KIND_MODES", "LEASE_SECONDS", "RECENT_SECONDS", "MAX_TRACKED", "Lease", "ReviewQueues"]

#: The review ``mode`` of each training mode (``schemas.Annotation.mode``).
KIND_MODES: dict[str, Mode] = {
    "check_label": "check",
    "missed_label": "missed",
    "teach_label": "teach",
    "low_confidence": "low_confidence",
    "rebalance": "rebalance",
    "shuffle": "shuffle",
    "search": "search",
}
LEASE_SECONDS = 120.0
#: How long a message reviewed here stays out of the queues while its review travels to the engine.
RECENT_SECONDS = 600.0
MAX_TRACKED = 10_000


@dataclasses.dataclass(frozen=True)
class Lease:
    reviewer: str
    since: float
    until: float


def _bounded_put(table: collections.OrderedDict, key, value) -> None:
    table.pop(key, None)
    table[key] = value
    while len(table) > MAX_TRACKED:
        table.popitem(last=False)


class ReviewQueues:
    """Leases, recent reviews and skips of every reviewer on this worker."""

    def __init__(self, lease_seconds: float = LEASE_SECONDS) -> None:
        self.lease_seconds = lease_seconds
        self.leases: collections.OrderedDict[tuple[str, str], Lease] = collections.OrderedDict()
        self.current: dict[str, tuple[str, str]] = {}  # reviewer -> the message they have open
        self.recent: collections.OrderedDict[tuple[str, str], float] = collections.OrderedDict()
        self.passed: collections.OrderedDict[tuple[str, str, str], float] = collections.OrderedDict()

    def _lease(self, key: tuple[str, str], now: float) -> Lease | None:
        lease = self.leases.get(key)
        if lease is not None and lease.until < now:
            del self.leases[key]
            return None
        return lease

    def holder(self, dataset: str, message_id: str, reviewer: str, *, now: float) -> str | None:
        """Another reviewer who has this message open now, if any."""
        lease = self._lease((dataset, message_id), now)
        return lease.reviewer if lease is not None and lease.reviewer != reviewer else None

    def open(self, dataset: str, message_id: str, reviewer: str, *, now: float) -> str | None:
        """``reviewer`` opens a message: lease it to them unless someone else holds it; returns
        that someone (to warn about), else None. Their previous lease ends."""
        key = (dataset, message_id)
        previous = self.current.get(reviewer)
        if previous is not None and previous != key:
            lease = self.leases.get(previous)
            if lease is not None and lease.reviewer == reviewer:
                del self.leases[previous]
        other = self.holder(dataset, message_id, reviewer, now=now)
        if other is None:
            _bounded_put(self.leases, key, Lease(reviewer, now, now + self.lease_seconds))
            self.current[reviewer] = key
            if len(self.current) > MAX_TRACKED:
                self.current.pop(next(iter(self.current)))
        return other

    def reviewed(self, dataset: str, message_id: str, reviewer: str, *, now: float) -> None:
        """A review (or un-review) of the message was sent: it leaves the queues and its lease ends."""
        _bounded_put(self.recent, (dataset, message_id), now)
        self.skipped(dataset, message_id, reviewer, now=now)

    def skipped(self, dataset: str, message_id: str, reviewer: str, *, now: float) -> None:
        """``reviewer`` passes on a message: not shown to them again (other reviewers still get it)."""
        _bounded_put(self.passed, (reviewer, dataset, message_id), now)
        lease = self.leases.get((dataset, message_id))
        if lease is not None and lease.reviewer == reviewer:
            del self.leases[(dataset, message_id)]

    def just_reviewed(self, dataset: str, message_id: str, *, now: float) -> bool:
        at = self.recent.get((dataset, message_id))
        return at is not None and now - at < RECENT_SECONDS

    def pick(
        self,
        dataset: str,
        items: Sequence[Suggestion],
        reviewer: str,
        *,
        now: float,
        available: Callable[[str], bool] = lambda _id: True,
    ) -> Suggestion | None:
        """The next item for ``reviewer`` (see the module's description); None when none is left.

        ``available(message_id)`` says whether the message can be shown (its text is held).
        """
        candidates = [
            s
            for s in items
            if not self.just_reviewed(dataset, s.message_id, now=now)
            and (reviewer, dataset, s.message_id) not in self.passed
            and available(s.message_id)
        ]
        for item in candidates:
            if self.holder(dataset, item.message_id, reviewer, now=now) is None:
                return item
        return candidates[0] if candidates else None
