"""Bounded rings of recent reviews and recent live messages.

Both keep, per slot, a message id, a time, the message's hashed features and a row of
scores (one column per label, growing with the label set). Memory is fixed by the capacity.

- :class:`ReviewWindow` holds recent reviews: their out-of-sample scores (recorded before the
  model learned from the review, or when a held-out review arrived), the pinned labels and the
  review mode. A message
  has at most one slot: a re-review updates its labels in place and keeps the score recorded
  when it was first reviewed (that score is still out-of-sample for it); ``remove`` frees the
  slot. Experience replay samples its slots.
- :class:`LiveWindow` holds the most recent live messages with their observe-time scores: the
  pool for coverage, the balance model and suggestions of what to review next.

>>> import numpy as np
>>> window = ReviewWindow(capacity=2, n_columns=1)
>>> features = (np.array([1], np.int32), np.array([1.0], np.float32))
>>> for i in range(3):
...     _ = window.put(f"m{i}", features, np.array([0.5], np.float32), [0], "shuffle", float(i))
>>> sorted(window.ids())
['m1', 'm2']
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection

import numpy as np

__all__ = ["ReviewWindow", "LiveWindow", "held_out"]

_HOLDOUT_KEY = b"refinery.holdout"


def held_out(message_id: str, share: float) -> bool:
    """Whether the reviews of ``message_id`` validate the model (kept from its validation twin).

    A keyed BLAKE2b hash of the id alone decides, so every process, restart and replay holds
    out the same messages (Python's ``hash`` of a string changes between processes), and a
    message keeps its side when it is reviewed again.

    >>> held_out("m-1", 0.2) == held_out("m-1", 0.2), held_out("m-1", 0.0), held_out("m-1", 1.0)
    (True, False, True)
    >>> sum(held_out(f"m-{i}", 0.2) for i in range(10_000))
    2053
    """
    digest = hashlib.blake2b(message_id.encode("utf-8"), digest_size=8, key=_HOLDOUT_KEY).digest()
    return int.from_bytes(digest, "little") < share * 2.0**64


Features = tuple[np.ndarray, np.ndarray]
#: The features of an empty slot: no entries (read-only; never scored, every message has features).
_NO_FEATURES: Features = (np.zeros(0, np.int32), np.zeros(0, np.float32))
_NO_FEATURES[0].flags.writeable = _NO_FEATURES[1].flags.writeable = False


class _Ring:
    """Slots reused oldest first; ``index`` maps a message id to its slot."""

    def __init__(self, capacity: int, n_columns: int) -> None:
        self.capacity = capacity
        self.slot_ids: list[str | None] = [None] * capacity
        self.features: list[Features] = [_NO_FEATURES] * capacity
        self.times = np.zeros(capacity, dtype=np.float64)
        self.scores = np.zeros((capacity, n_columns), dtype=np.float32)
        self.head = 0
        self.index: dict[str, int] = {}
        self.used = np.zeros(capacity, dtype=bool)

    def __len__(self) -> int:
        return len(self.index)

    def ids(self) -> list[str]:
        return list(self.index)

    def occupied(self) -> np.ndarray:
        """Slot numbers in use, in slot order."""
        return np.flatnonzero(self.used)

    def holding(self, ids: Collection[str]) -> np.ndarray:
        """A flag per slot: whether it holds one of ``ids``. Reads the smaller of ``ids`` and the
        index (a registry of reviews may be far larger than the window, or smaller), never a
        Python step per slot.

        >>> ring = _Ring(4, 1)
        >>> for name in "abc":
        ...     _ = ring._claim(name)
        >>> ring.holding({"c", "a", "z"}).tolist(), ring.holding(set("abcdefgh")).tolist()
        ([True, False, True, False], [True, True, True, False])
        """
        index = self.index
        if len(ids) < len(index):
            slots = [slot for i in ids if (slot := index.get(i)) is not None]
        else:
            slots = [slot for i, slot in index.items() if i in ids]
        flags = np.zeros(self.capacity, dtype=bool)
        flags[slots] = True
        return flags

    def grow(self, n_columns: int) -> None:
        extra = n_columns - self.scores.shape[1]
        if extra > 0:
            self.scores = np.hstack([self.scores, np.zeros((self.capacity, extra), np.float32)])

    def _claim(self, message_id: str) -> int:
        slot = self.head
        self.head = (self.head + 1) % self.capacity
        evicted = self.slot_ids[slot]
        if evicted is not None:  # the caller overwrites the slot's rows: only the bookkeeping changes
            del self.index[evicted]
        self.slot_ids[slot] = message_id
        self.index[message_id] = slot
        self.used[slot] = True
        return slot

    def _clear(self, slot: int) -> None:
        self.slot_ids[slot] = None
        self.features[slot] = _NO_FEATURES
        self.scores[slot] = 0.0
        self.used[slot] = False

    def discard(self, message_id: str) -> bool:
        slot = self.index.pop(message_id, None)
        if slot is None:
            return False
        self._clear(slot)
        return True

    # snapshot support: the ring as-is (slot positions matter for seeded sampling)
    def _state(self, prefix: str) -> tuple[dict, dict[str, np.ndarray]]:
        lengths = np.array([len(f[0]) for f in self.features], dtype=np.int64)
        present = [f for f in self.features if len(f[0])]
        indices = np.concatenate([f[0] for f in present]) if present else np.zeros(0, np.int32)
        values = np.concatenate([f[1] for f in present]) if present else np.zeros(0, np.float32)
        header: dict = {"capacity": self.capacity, "head": self.head, "slot_ids": self.slot_ids}
        arrays: dict[str, np.ndarray] = {
            f"{prefix}.times": self.times,
            f"{prefix}.scores": self.scores,
            f"{prefix}.feature_lengths": lengths,
            f"{prefix}.feature_indices": indices.astype(np.int32),
            f"{prefix}.feature_values": values.astype(np.float32),
        }
        return header, arrays

    def _load(self, header: dict, arrays: dict[str, np.ndarray], prefix: str) -> None:
        self.head = header["head"]
        self.slot_ids = list(header["slot_ids"])
        self.index = {message_id: slot for slot, message_id in enumerate(self.slot_ids) if message_id is not None}
        self.used = np.array([message_id is not None for message_id in self.slot_ids], dtype=bool)
        self.times = arrays[f"{prefix}.times"]
        self.scores = arrays[f"{prefix}.scores"]
        lengths = arrays[f"{prefix}.feature_lengths"]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        indices, values = arrays[f"{prefix}.feature_indices"], arrays[f"{prefix}.feature_values"]
        self.features = [
            _NO_FEATURES
            if message_id is None
            else (indices[offsets[s] : offsets[s + 1]].copy(), values[offsets[s] : offsets[s + 1]].copy())
            for s, message_id in enumerate(self.slot_ids)
        ]


class ReviewWindow(_Ring):
    """The most recent reviews: out-of-sample scores, pinned labels, modes.

    The engine keeps two: the reviews it learned from (``prefix="reviews"``: replay draws from
    it, suggestions rank it) and the held-out reviews it validates on (``prefix="holdout"``);
    ``prefix`` names the window's arrays in a snapshot.
    """

    def __init__(self, capacity: int, n_columns: int, prefix: str = "reviews") -> None:
        super().__init__(capacity, n_columns)
        self.prefix = prefix
        self.pinned = np.zeros((capacity, n_columns), dtype=bool)
        self.modes: list[str | None] = [None] * capacity

    def grow(self, n_columns: int) -> None:
        extra = n_columns - self.pinned.shape[1]
        super().grow(n_columns)
        if extra > 0:
            self.pinned = np.hstack([self.pinned, np.zeros((self.capacity, extra), bool)])

    def put(
        self, message_id: str, features: Features, scores: np.ndarray | None, labels: list[int], mode: str, time: float
    ) -> int:
        """Record a review; a message already in the window keeps its slot and first score.

        ``scores`` may be None: the caller then writes ``scores[slot, :n_labels]`` itself.
        """
        slot = self.index.get(message_id)
        if slot is None:
            slot = self._claim(message_id)
            if scores is not None:
                self.scores[slot] = 0.0
                self.scores[slot, : len(scores)] = scores
        self.features[slot] = features
        self.pinned[slot] = False
        self.pinned[slot, labels] = True
        self.modes[slot] = mode
        self.times[slot] = time
        return slot

    def _clear(self, slot: int) -> None:
        super()._clear(slot)
        self.pinned[slot] = False
        self.modes[slot] = None

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        header, arrays = self._state(self.prefix)
        header["modes"] = self.modes
        arrays[f"{self.prefix}.pinned"] = self.pinned
        return header, arrays

    @classmethod
    def from_state(cls, header: dict, arrays: dict[str, np.ndarray], prefix: str = "reviews") -> ReviewWindow:
        window = cls(header["capacity"], 0, prefix)
        window._load(header, arrays, prefix)
        window.pinned = arrays[f"{prefix}.pinned"]
        window.modes = list(header["modes"])
        return window

    def oldest_if_full(self) -> int | None:
        """The slot the next new review would take from an older one, or None if it takes a free slot."""
        return self.head if self.used[self.head] else None


class LiveWindow(_Ring):
    """The most recent live messages with their observe-time scores, and a flag per slot: whether
    its message is under review (in the engine's registry of reviews, which keeps the flags
    current: :meth:`put` and :meth:`mark`), so the unreviewed ones are found without a look-up
    per message.

    >>> live = LiveWindow(3, 1)
    >>> for i, reviewed in enumerate([False, True, False, False]):  # the fourth takes the first's slot
    ...     _ = live.put(f"m-{i}", (np.zeros(0, np.int32), np.zeros(0, np.float32)), np.zeros(1, np.float32), i, reviewed)
    >>> live.mark("m-2", True), live.mark("m-0", True)  # m-0 was evicted: nothing to mark
    (True, False)
    >>> live.occupied_unreviewed().tolist(), live.under_review.tolist()
    ([0], [False, True, True])
    """

    def __init__(self, capacity: int, n_columns: int) -> None:
        super().__init__(capacity, n_columns)
        self.under_review = np.zeros(capacity, dtype=bool)

    def put(self, message_id: str, features: Features, scores: np.ndarray, time: float, under_review: bool) -> int:
        """Record a live message (``under_review``: whether it is in the registry of reviews);
        one observed again keeps its slot and gets the new scores."""
        slot = self.index.get(message_id)
        if slot is None:
            slot = self._claim(message_id)
        self.under_review[slot] = under_review
        self.features[slot] = features
        if len(scores) == self.scores.shape[1]:
            self.scores[slot] = scores
        else:
            self.scores[slot] = 0.0
            self.scores[slot, : len(scores)] = scores
        self.times[slot] = time
        return slot

    def mark(self, message_id: str, under_review: bool) -> bool:
        """Flag a message as under review, or no longer; False if it is not in the window."""
        slot = self.index.get(message_id)
        if slot is None:
            return False
        self.under_review[slot] = under_review
        return True

    def occupied_unreviewed(self) -> np.ndarray:
        """Slot numbers in use whose message is not under review, in slot order."""
        return np.flatnonzero(self.used & ~self.under_review)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return self._state("live")

    @classmethod
    def from_state(cls, header: dict, arrays: dict[str, np.ndarray]) -> LiveWindow:
        window = cls(header["capacity"], 0)
        window._load(header, arrays, "live")  # no flag under review: the engine sets them from its registry
        return window
