"""Which source offsets of one input partition a dataset has applied: exactly, not a high-water mark.

The sequencer forwards input records into ``events`` at least once, and not always in order:
`agents.worker.delivery.Delivery` resends everything from the first failed record on, so when
record 3 was accepted before record 2 failed, ``events`` holds source offsets 1, 3, 2, 3. A
high-water mark would take the resent 2 for a repeat and lose it. `AppliedOffsets` remembers
which offsets below its mark were applied, so 2 is applied and the second 3 dropped:

>>> applied = AppliedOffsets()
>>> [applied.add(offset) for offset in (1, 3, 2, 3)]
[True, True, True, False]
>>> applied.mark, applied.offsets()
(4, [1, 2, 3])

Memory is bounded: one byte for each of the ``window`` offsets below the mark (8 KiB at the
default 8192; 1 KiB packed in a snapshot manifest); an offset further below counts as applied. That is exact as long as no record is
first forwarded more than ``window`` offsets behind a later record of its input partition. A
delivery reorders records only within one call (one sequencer batch, at most
``REFINERY_BATCH_SIZE`` <= `MAX_BATCH_SIZE` records, so at most twice as many offsets with a
transactional producer's markers between them), and a sequencer revoked mid-retry adds one more
batch: 4,096 offsets at most, half the window.

>>> small = AppliedOffsets(window=8)
>>> [small.add(offset) for offset in (10, 12, 18)], small.offsets()
([True, True, True], [12, 18])
>>> small.add(9), small.add(10), small.add(11), small.add(13)  # the window is 11..18: 9, 10 count as applied
(False, False, True, True)
"""

from __future__ import annotations

__all__ = ["MAX_BATCH_SIZE", "WINDOW", "AppliedOffsets"]

#: Offsets below the mark the bitmap covers, per dataset and input partition.
WINDOW = 8192
_ZEROS, _ONES = memoryview(bytes(WINDOW)), memoryview(b"\x01" * WINDOW)
#: The largest sequencer batch the window is exact for (see the module docstring).
MAX_BATCH_SIZE = 1024


class AppliedOffsets:
    """The applied source offsets of one dataset from one input partition.

    Offset ``o`` is byte ``o % window`` of ``ring`` (1 when applied): a record costs O(1), a
    jump over a gap one slice assignment; slots at or above the mark are kept 0.

    Parameters
    ----------
    window
        How many offsets below the mark are remembered; older ones count as applied.
    """

    def __init__(self, *, window: int = WINDOW) -> None:
        assert window % 8 == 0 and window <= WINDOW
        self.window = window
        self.mark = 0  # one past the highest applied offset
        self.ring = bytearray(window)

    @classmethod
    def below(cls, mark: int, *, window: int = WINDOW) -> AppliedOffsets:
        """Everything below ``mark`` applied (a snapshot written before the applied offsets were kept).

        >>> old = AppliedOffsets.below(10)
        >>> old.add(9), old.add(3), old.add(10)
        (False, False, True)
        """
        applied = cls(window=window)
        applied._fill(max(0, mark - window), mark, 1)
        applied.mark = mark
        return applied

    def _fill(self, start: int, end: int, value: int) -> None:
        """Set the slots of offsets ``[start, end)`` (at most a window of them) to ``value``."""
        fill = _ONES if value else _ZEROS
        a = start % self.window
        b = a + (end - start)
        if b <= self.window:
            self.ring[a:b] = fill[: b - a]
        else:
            self.ring[a:] = fill[: self.window - a]
            self.ring[: b - self.window] = fill[: b - self.window]

    def add(self, offset: int) -> bool:
        """Record ``offset`` as applied; False when it was applied already (a repeat: drop it)."""
        ring, window = self.ring, self.window
        if offset >= self.mark:  # the usual case: the next offset, or after a gap
            if offset - self.mark >= window:
                ring[:] = bytes(window)
            elif offset > self.mark:
                self._fill(self.mark, offset, 0)  # their slots held offsets a window older
            ring[offset % window] = 1
            self.mark = offset + 1
            return True
        if self.mark - offset > window or ring[offset % window]:
            return False
        ring[offset % window] = 1
        return True

    def offsets(self) -> list[int]:
        """The applied offsets the window holds, ascending (for tests and logs)."""
        return [o for o in range(max(0, self.mark - self.window), self.mark) if self.ring[o % self.window]]

    def to_dict(self) -> dict:
        """``{"mark", "window", "ring"}``, the ring packed 8 offsets a byte, in hex (window / 4
        digits), for a snapshot manifest."""
        import numpy as np

        packed = np.packbits(np.frombuffer(bytes(self.ring), dtype=np.uint8))
        return {"mark": self.mark, "window": self.window, "ring": packed.tobytes().hex()}

    @classmethod
    def from_dict(cls, data: dict) -> AppliedOffsets:
        """The inverse of `to_dict`.

        >>> applied = AppliedOffsets()
        >>> _ = [applied.add(o) for o in (3, 4, 8)]
        >>> AppliedOffsets.from_dict(applied.to_dict()).offsets()
        [3, 4, 8]
        """
        import numpy as np

        applied = cls(window=int(data["window"]))
        applied.mark = int(data["mark"])
        packed = np.frombuffer(bytes.fromhex(str(data["ring"])), dtype=np.uint8)
        if len(packed) * 8 != applied.window:
            raise ValueError(f"applied offsets: a ring of {len(packed)} bytes for a window of {applied.window}")
        applied.ring = bytearray(np.unpackbits(packed).tobytes())
        return applied
