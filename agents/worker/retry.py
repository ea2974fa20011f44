"""The worker's one way to wait between attempts: `Backoff`, an exponential, capped delay.

Every retry loop of the worker (a delivery the broker did not acknowledge, a ``snapshots``
partition that cannot be read yet) waits with a `Backoff`: it logs the retry as a structured
event, then sleeps 0.5 s, 1 s, 2 s, 4 s, then 5 s between each further attempt. The loop
itself decides what to try again; the broker may be gone for minutes and nothing is lost.

>>> backoff = Backoff(first=0.5, cap=2.0)
>>> [backoff.next_delay() for _ in range(4)]
[0.5, 1.0, 2.0, 2.0]
"""

from __future__ import annotations

import asyncio
import logging

from agents.worker.observability import log_event

__all__ = ["Backoff"]


class Backoff:
    """Delays between the attempts of one retry loop: ``first``, then times ``factor``, at most ``cap``.

    Parameters
    ----------
    first
        Seconds before the second attempt.
    cap
        The longest wait, in seconds.
    factor
        Growth of the wait after each attempt.
    """

    def __init__(self, first: float = 0.5, cap: float = 5.0, factor: float = 2.0) -> None:
        self.first = first
        self.cap = cap
        self.factor = factor
        self.delay = first  # the next wait

    def next_delay(self) -> float:
        """The wait before the next attempt; each call moves on to the next one."""
        delay = self.delay
        self.delay = min(self.delay * self.factor, self.cap)
        return delay

    async def wait(self, logger: logging.Logger, event: str, **fields) -> None:
        """Log ``event`` (a warning with ``fields`` and the wait) and sleep before the next attempt."""
        delay = self.next_delay()
        log_event(logger, logging.WARNING, event, **fields, retry_in=delay)
        await asyncio.sleep(delay)
