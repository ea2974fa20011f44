"""Which source offsets of one input partition a dataset has applied: exactly, not a high-water mark.

The sequencer forwards input records into ``events`` at least once, and not always in order:
`agents.worker.delivery.Delivery` resends everything from the first failed record on, so when
record 3 was accepted before record 2 failed, ``events`` holds source offsets 1, 3, 2, 3. A
high-water mark would take the resent 2 for a repeat and lose it. `AppliedOffsets` remembers
the applied offsets themselves, as sorted runs ``[start, end)``, so 2 is applied and the second
3 is dropped:

>>> applied = AppliedOffsets()
>>> [applied.add(offset) for offset in (1, 3, 2, 3)]
[True, True, True, False]
>>> applied.runs, applied.mark
([[1, 4]], 4)

Memory is bounded: only the latest ``window`` applied offsets are kept; an offset below all of
them counts as applied. That is exact as long as no record is first forwarded after more than
``window`` later records of its dataset and input partition. A delivery reorders records only
within one call (one sequencer batch, at most ``REFINERY_BATCH_SIZE`` records), and a sequencer
revoked mid-retry adds at most one more batch, so the default window (`WINDOW`, 4096) holds
with room to spare for batch sizes up to `MAX_BATCH_SIZE`.

>>> small = AppliedOffsets(window=3)
>>> [small.add(offset) for offset in (10, 12, 14, 16)], small.runs
([True, True, True, True], [[12, 13], [14, 15], [16, 17]])
>>> small.add(11), small.add(13)  # 11 is below the window: taken as applied; 13 is new
(False, True)
>>> small.floor, small.runs  # the window holds 3: the oldest is let go
(13, [[13, 15], [16, 17]])
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

__all__ = ["MAX_BATCH_SIZE", "WINDOW", "AppliedOffsets"]

#: Applied offsets remembered per dataset and input partition.
WINDOW = 4096
#: The largest sequencer batch the window is exact for (a quarter of it: two batches, twice over).
MAX_BATCH_SIZE = WINDOW // 4


class AppliedOffsets:
    """The applied source offsets of one dataset from one input partition.

    Parameters
    ----------
    runs
        Applied offsets as sorted, disjoint ``[start, end)`` runs (from a snapshot).
    floor
        Every offset below it counts as applied (from a snapshot; 0 for a new dataset).
    window
        How many applied offsets to remember; older ones count as applied.
    """

    def __init__(self, runs: Iterable[Sequence[int]] = (), *, floor: int = 0, window: int = WINDOW) -> None:
        self.window = window
        self.floor = floor
        self.runs: list[list[int]] = [[int(start), int(end)] for start, end in runs if end > start]
        self.count = sum(end - start for start, end in self.runs)
        self._trim()

    @classmethod
    def below(cls, mark: int, *, window: int = WINDOW) -> AppliedOffsets:
        """Everything below ``mark`` applied (a snapshot written before the runs were kept).

        >>> old = AppliedOffsets.below(10, window=4)
        >>> old.floor, old.runs, old.add(9), old.add(5)
        (6, [[6, 10]], False, False)
        """
        start = max(0, mark - window)
        return cls([(start, mark)], floor=start, window=window)

    @property
    def mark(self) -> int:
        """One past the highest applied offset (0 when nothing was applied)."""
        return self.runs[-1][1] if self.runs else 0

    def add(self, offset: int) -> bool:
        """Record ``offset`` as applied; False when it was applied already (a repeat: drop it)."""
        runs = self.runs
        if offset < self.floor:
            return False  # older than the window
        if not runs or offset >= runs[-1][1]:  # the usual case: the next offset, or after a gap
            if runs and offset == runs[-1][1]:
                runs[-1][1] += 1
            else:
                runs.append([offset, offset + 1])
        else:
            i = bisect.bisect_right(runs, offset, key=lambda run: run[0]) - 1
            if i >= 0 and offset < runs[i][1]:
                return False
            after = runs[i + 1]  # offset lies before run i + 1 (and after run i, if any)
            if i >= 0 and offset == runs[i][1]:
                runs[i][1] += 1
                if runs[i][1] == after[0]:
                    runs[i][1] = after[1]
                    del runs[i + 1]
            elif offset + 1 == after[0]:
                after[0] = offset
            else:
                runs.insert(i + 1, [offset, offset + 1])
        self.count += 1
        self._trim()
        return True

    def _trim(self) -> None:
        excess = self.count - self.window
        while excess > 0:
            start, end = self.runs[0]
            if end - start <= excess:
                del self.runs[0]
                excess -= end - start
                self.count -= end - start
            else:
                self.runs[0][0] += excess
                self.count -= excess
                excess = 0
            self.floor = self.runs[0][0]

    def to_dict(self) -> dict:
        """``{"floor": ..., "runs": [[start, end], ...]}``, for a snapshot manifest."""
        return {"floor": self.floor, "runs": [list(run) for run in self.runs]}

    @classmethod
    def from_dict(cls, data: dict, *, window: int = WINDOW) -> AppliedOffsets:
        """The inverse of `to_dict`.

        >>> applied = AppliedOffsets([(3, 5), (8, 9)], floor=2)
        >>> AppliedOffsets.from_dict(applied.to_dict()).to_dict()
        {'floor': 2, 'runs': [[3, 5], [8, 9]]}
        """
        return cls(data["runs"], floor=int(data["floor"]), window=window)
