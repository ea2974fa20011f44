"""Head-of-line blocking made visible: partitions that have input but make no progress.

A record the broker will not take, a partition without leader, an engine call that never
returns: each can stop a partition while records keep arriving behind it. `StallWatch` is told,
at each tick of the worker's lag timer, every partition's position (the first offset not fully
handled) and its highwater. A partition with input (highwater above position) whose position
has not moved for ``seconds`` is *stalled*: it is logged once, with the offending offset, and
shows in ``/readyz`` and in the ``refinery_partition_stalled`` gauge until it moves again.

>>> import logging, sys
>>> logger = logging.getLogger("doctest.stalls")
>>> logger.addHandler(logging.StreamHandler(sys.stdout)); logger.setLevel(logging.INFO)
>>> watch = StallWatch(seconds=60, logger=logger)
>>> tp = ("refinery.messages", 2)
>>> watch.observe(tp, position=41, highwater=50, now=0.0), watch.observe(tp, position=41, highwater=55, now=59.0)
(False, False)
>>> watch.observe(tp, position=41, highwater=60, now=61.0)
partition_stalled topic='refinery.messages' partition=2 offset=41 waiting=19 seconds=61.0
True
>>> watch.observe(tp, position=41, highwater=60, now=90.0)  # logged once
True
>>> watch.observe(tp, position=60, highwater=60, now=95.0)
partition_progress topic='refinery.messages' partition=2 offset=60 stalled_seconds=95.0
False
"""

from __future__ import annotations

import dataclasses
import logging

from agents.worker.observability import log_event

__all__ = ["Stall", "StallWatch"]

#: ``(topic, partition)``
TopicPartition = tuple[str, int]


@dataclasses.dataclass
class Stall:
    """What the watch knows of one partition."""

    position: int | None = None
    since: float | None = None  # when it last moved, or last had nothing to do
    stalled: bool = False
    highwater: int | None = None

    def seconds(self, now: float) -> float:
        return 0.0 if self.since is None else now - self.since


class StallWatch:
    """Which partitions have input and have not moved for ``seconds``.

    Parameters
    ----------
    seconds
        How long a partition with input may stay at one position (``REFINERY_STALL_SECONDS``).
    logger
        Where the one ``partition_stalled`` line per stall (and ``partition_progress`` when it
        ends) goes.
    """

    def __init__(self, seconds: float, logger: logging.Logger) -> None:
        self.seconds = seconds
        self.log = logger
        self.partitions: dict[TopicPartition, Stall] = {}

    def observe(self, tp: TopicPartition, *, position: int | None, highwater: int | None, now: float) -> bool:
        """Record ``tp``'s position and highwater at ``now`` (monotonic seconds); whether it is stalled."""
        state = self.partitions.setdefault(tp, Stall())
        state.highwater = highwater
        moved = position != state.position
        waiting = position is not None and highwater is not None and highwater > position
        if moved or not waiting or state.since is None:
            if state.stalled and position is not None:
                log_event(
                    self.log,
                    logging.INFO,
                    "partition_progress",
                    topic=tp[0],
                    partition=tp[1],
                    offset=position,
                    stalled_seconds=round(state.seconds(now), 1),
                )
            state.position, state.since, state.stalled = position, now, False
            return False
        if not state.stalled and state.seconds(now) >= self.seconds:
            state.stalled = True
            assert highwater is not None and position is not None
            log_event(
                self.log,
                logging.WARNING,
                "partition_stalled",
                topic=tp[0],
                partition=tp[1],
                offset=position,
                waiting=highwater - position,
                seconds=round(state.seconds(now), 1),
            )
        return state.stalled

    def stalled(self, now: float) -> list[dict]:
        """The stalled partitions: ``{"topic", "partition", "offset", "seconds"}`` each, sorted."""
        return [
            {"topic": tp[0], "partition": tp[1], "offset": s.position, "seconds": round(s.seconds(now), 1)}
            for tp, s in sorted(self.partitions.items())
            if s.stalled
        ]

    def forget(self, keep: set[TopicPartition]) -> None:
        """Stop watching every partition not in ``keep`` (revoked)."""
        for tp in set(self.partitions) - keep:
            del self.partitions[tp]
