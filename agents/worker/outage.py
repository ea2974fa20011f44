"""A broker outage costs the worker little: the client's reconnect backs off, its log is summarised.

Two things make an outage expensive with aiokafka 0.14 (issue 13, defect 3):

- **A metadata loop without backoff.** When a partition it produces to has no known leader, the
  producer's sender asks for metadata and waits only for that answer; with the broker gone the
  answer ("Unable to update metadata") comes at once, so the sender asks again at once: one core
  spins (compare aio-libs/aiokafka#267). Faust's producer settings offer no knob for it.
  `install_metadata_backoff` wraps ``AIOKafkaClient._metadata_update`` (the one place every
  metadata refresh goes through) so that a failed refresh is followed by an exponential,
  capped pause before its result is handed back: every loop that waits on it backs off.
- **The same line, thousands of times.** ``Unable connect to node with id 1`` and friends are
  logged on every attempt. `RepeatFilter` lets the first ``burst`` lines of each message
  template through per ``interval`` and counts the rest; the count is logged as one
  ``log_lines_suppressed`` line when the interval ends (`RepeatFilter.flush`).

>>> import logging, sys
>>> logger = logging.getLogger("doctest.outage")
>>> logger.addHandler(logging.StreamHandler(sys.stdout)); logger.setLevel(logging.INFO)
>>> clock = iter([0.0, 1.0, 2.0, 3.0, 61.0]).__next__
>>> limit = RepeatFilter(burst=2, interval=60.0, clock=clock, summary=logger)
>>> logger.addFilter(limit)
>>> for _ in range(4):
...     logger.error("Unable connect to node with id %s: %s", 1, "refused")
Unable connect to node with id 1: refused
Unable connect to node with id 1: refused
>>> limit.flush()
log_lines_suppressed source='doctest.outage' message='Unable connect to node with id %s: %s' lines=2 seconds=60.0
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from agents.worker.observability import log_event

__all__ = ["RepeatFilter", "install", "install_metadata_backoff"]

log = logging.getLogger("refinery.worker")


class RepeatFilter(logging.Filter):
    """Let ``burst`` lines of each ``(logger, message template)`` through per ``interval`` seconds.

    Parameters
    ----------
    burst
        Lines of one template let through per interval.
    interval
        Seconds; the count of lines held back is logged when it ends.
    clock
        Monotonic seconds (a parameter, for tests).
    summary
        Where ``log_lines_suppressed`` lines go (never through this filter).
    """

    def __init__(
        self,
        burst: int = 5,
        interval: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        summary: logging.Logger = log,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self.summary = summary
        #: ``(logger, template)`` -> [interval start, lines seen in it]
        self.seen: dict[tuple[str, str], list[float]] = {}
        self.suppressed = 0  # lines held back since the start, all templates

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == self.summary.name and str(record.msg).startswith("log_lines_suppressed"):
            return True
        now = self.clock()
        key = (record.name, str(record.msg))
        state = self.seen.get(key)
        if state is None or now - state[0] >= self.interval:
            if state is not None:
                self._report(key, state)
            state = self.seen[key] = [now, 0]
        state[1] += 1
        if state[1] <= self.burst:
            return True
        self.suppressed += 1
        return False

    def _report(self, key: tuple[str, str], state: list[float]) -> None:
        held = int(state[1]) - self.burst
        if held > 0:
            log_event(
                self.summary,
                logging.WARNING,
                "log_lines_suppressed",
                source=key[0],
                message=key[1],
                lines=held,
                seconds=self.interval,
            )

    def flush(self) -> None:
        """Log the count of every template whose interval has ended, and forget it."""
        now = self.clock()
        for key, state in list(self.seen.items()):
            if now - state[0] >= self.interval:
                self._report(key, state)
                del self.seen[key]


async def _pause(seconds: float) -> None:
    await asyncio.sleep(seconds)


def install_metadata_backoff(first: float = 0.5, cap: float = 5.0) -> None:
    """Make every failed metadata refresh of aiokafka's client wait before it answers: ``first``
    seconds, doubling per consecutive failure up to ``cap``; a success resets it. Idempotent."""
    from aiokafka.client import AIOKafkaClient

    original = AIOKafkaClient._metadata_update
    if getattr(original, "refinery_backoff", False):
        return

    async def _metadata_update(self, cluster_metadata, topics):
        ok = await original(self, cluster_metadata, topics)
        if ok:
            self._refinery_metadata_failures = 0
        else:
            failures = getattr(self, "_refinery_metadata_failures", 0)
            self._refinery_metadata_failures = failures + 1
            await _pause(min(cap, first * 2**failures))
        return ok

    _metadata_update.refinery_backoff = True  # type: ignore[attr-defined]
    AIOKafkaClient._metadata_update = _metadata_update  # type: ignore[method-assign]


def install(burst: int = 5, interval: float = 60.0, prefixes: tuple[str, ...] = ("aiokafka",)) -> RepeatFilter:
    """Install the metadata backoff and one `RepeatFilter` on every logger under ``prefixes``
    (a filter sees only its own logger's lines, so each gets it); returns the filter."""
    import aiokafka.client
    import aiokafka.conn
    import aiokafka.consumer.fetcher
    import aiokafka.consumer.group_coordinator
    import aiokafka.producer.sender  # noqa: F401  (their loggers must exist to get the filter)

    install_metadata_backoff()
    limit = RepeatFilter(burst, interval)
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in prefixes]
    for name in sorted({*prefixes, *names}):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(limit)
    return limit
