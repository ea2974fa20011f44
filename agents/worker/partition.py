"""One ``events`` partition this worker owns: its engines, its restore, and the events it holds.

A worker owns a set of ``events`` partitions (Kafka assigns them). Everything it knows about one
of them lives in one `Partition`, created when the partition is assigned (or first delivered)
and dropped whole by `Partition.forget` when it goes:

- ``engines``: the `agents.worker.engines.PartitionEngines` of its datasets, None until restored;
- the restore in progress (`Partition.restore`, `Partition.wait_restored`) and whether it must
  replay from its snapshots' offsets (``replay``, after a failed batch);
- ``held``: the Faust events applied but not yet covered by a durable snapshot, and since when
  (`Partition.hold`, `Partition.ack`, `Partition.snapshot_due`): they are acked only once a
  snapshot covers them, so the committed offset never passes a snapshot (DESIGN.md section 7);
- the first offset delivered and not known to be applied (`Partition.position`, for the lag).

The event loop owns it: nothing here blocks, and nothing here talks to Kafka.

>>> import asyncio
>>> class FaustEvent:  # what Faust hands the agent; ack() releases the offset for commit
...     acked = False
...     def ack(self): self.acked = True
>>> partition = Partition(3)
>>> held = [FaustEvent(), FaustEvent()]
>>> partition.hold(held, now=100.0)
>>> partition.snapshot_due(now=110.0, seconds=30.0), partition.snapshot_due(now=130.0, seconds=30.0)
(False, True)
>>> partition.ack()
>>> [e.acked for e in held], partition.snapshot_due(now=200.0, seconds=30.0)
([True, True], False)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from agents.worker.engines import PartitionEngines
from pipeline.engine import Engine

__all__ = ["Partition", "Restore"]


class _Ackable(Protocol):
    def ack(self) -> object: ...


#: Loads a partition's engines: ``restore(partition number, replay)``.
Restore = Callable[[int, bool], Awaitable[PartitionEngines]]


class Partition:
    """The state of one ``events`` partition on this worker.

    Parameters
    ----------
    number
        The partition.
    replay
        Do not trust the consumer's position once restored: replay everything after the oldest
        snapshot (after a failed batch, whose events Faust will not deliver again).
    """

    def __init__(self, number: int, *, replay: bool = False) -> None:
        self.number = number
        self.replay = replay
        #: The engines of the partition's datasets; None until restored.
        self.engines: PartitionEngines | None = None
        self.restoring: asyncio.Task | None = None
        #: Faust events applied but not yet covered by a snapshot: acked by `ack`, never before.
        self.held: list[_Ackable] = []
        #: When the oldest held event was held (monotonic seconds); None when nothing is held.
        self.first_held_at: float | None = None
        #: The first offset delivered and not known to be applied; None before any delivery.
        self.delivered: int | None = None

    # -- restore ---------------------------------------------------------------------------

    @property
    def restored(self) -> bool:
        return self.engines is not None

    def restore(self, load: Restore) -> None:
        """Start restoring the engines in the background with ``load(number, replay)`` (once)."""
        if self.engines is None and self.restoring is None:
            self.restoring = asyncio.ensure_future(self._restore(load))

    async def _restore(self, load: Restore) -> PartitionEngines:
        engines = await load(self.number, self.replay)
        self.engines, self.replay, self.restoring = engines, False, None
        return engines

    async def wait_restored(self) -> PartitionEngines | None:
        """The engines, once restored; None if the partition was forgotten meanwhile.

        Call `restore` first. Waiting does not cancel the restore when the waiter is cancelled.
        """
        if self.engines is not None:
            return self.engines
        task = self.restoring
        assert task is not None, "Partition.restore was not called"
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                return None  # forgotten while restoring: Faust delivers these events again after the rebalance
            raise

    # -- what it owns ----------------------------------------------------------------------

    def datasets(self) -> list[str]:
        """The datasets of this partition with an engine, sorted (none before the restore)."""
        return sorted(self.engines.engines) if self.engines is not None else []

    def engine(self, dataset: str) -> Engine | None:
        return self.engines.engines.get(dataset) if self.engines is not None else None

    # -- held events -----------------------------------------------------------------------

    def hold(self, events: Sequence[_Ackable], *, now: float) -> None:
        """Keep applied ``events`` unacked until a snapshot covers them; ``now`` in monotonic seconds."""
        self.held.extend(events)
        if self.first_held_at is None:
            self.first_held_at = now

    def ack(self) -> None:
        """Release every held event: a durable snapshot covers them (or they changed nothing)."""
        for event in self.take_held():
            event.ack()

    def take_held(self) -> list[_Ackable]:
        """The held events, no longer held here: a snapshot being written covers them; ack them
        once it is durable."""
        held, self.held, self.first_held_at = self.held, [], None
        return held

    def snapshot_due(self, *, now: float, seconds: float) -> bool:
        """Whether events have been held for ``seconds`` or more at ``now`` (monotonic seconds)."""
        return self.first_held_at is not None and now - self.first_held_at >= seconds

    # -- position, for the lag -------------------------------------------------------------

    def delivered_from(self, offset: int) -> None:
        """A batch starting at ``offset`` arrived: until it is applied, the lag counts from there."""
        if self.delivered is None:
            self.delivered = offset

    def handled(self, last_offset: int) -> None:
        """A batch ending at ``last_offset`` was handled."""
        self.delivered = max(self.delivered or 0, last_offset + 1)

    @property
    def position(self) -> int | None:
        """The next offset the engines will apply or, before they applied anything since their
        restore, the first offset delivered and not handled; None when neither is known."""
        if self.engines is not None and self.engines.position is not None:
            return self.engines.position
        return self.delivered

    # -- the end ---------------------------------------------------------------------------

    def forget(self) -> None:
        """The partition is no longer ours: stop restoring, drop the engines and the held events
        (never acked: the next owner replays them from the snapshots)."""
        if self.restoring is not None:
            self.restoring.cancel()
        self.restoring = None
        self.engines = None
        self.held, self.first_held_at = [], None
        self.delivered = None
