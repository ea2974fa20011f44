"""Background work kept to a share of the worker's time: `Budget`.

Publishing metrics and suggestions, and writing snapshots, run in the engine thread under the
engines' lock: while they run, no event is applied. Their cost grows with the model (the
suggestion lists rank every label's window; a snapshot is megabytes) and with the machine's
load, not with the traffic, so a fixed period (every 5 s, every 1,000 events) can leave little
time for the events themselves: measured under load, the lists took 1.8 s of every 5 s and each
snapshot 0.6 s (bench/README.md, *Service throughput*). A `Budget` spaces a job so that it
takes at most ``share`` of the time: after a run of ``d`` seconds, the next may start
``d * (1 / share - 1)`` seconds after it ended (and no earlier than its own schedule says).

>>> budget = Budget(0.25)
>>> budget.due(now=0.0)
True
>>> budget.spent(started=10.0, ended=11.0)  # 1 s of work: 3 s of rest for a 25% share
>>> budget.due(now=13.5), budget.due(now=14.0)
(False, True)
"""

from __future__ import annotations

__all__ = ["Budget"]


class Budget:
    """When a recurring background job may run again so as to take at most ``share`` of the time.

    Parameters
    ----------
    share
        In (0, 1]; 1 means no brake (the job runs whenever its schedule says).
    """

    def __init__(self, share: float) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share: expected a number in (0, 1], got {share!r}")
        self.share = share
        #: Monotonic seconds before which the job waits; 0 until it has run once.
        self.next_at = 0.0

    def due(self, *, now: float) -> bool:
        """Whether the job may run at ``now`` (monotonic seconds)."""
        return now >= self.next_at

    def spent(self, *, started: float, ended: float) -> None:
        """A run took ``started``..``ended`` (monotonic seconds)."""
        self.next_at = ended + (ended - started) * (1 / self.share - 1)
