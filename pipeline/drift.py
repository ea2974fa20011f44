"""Drift: changes in the stream that make what the model learned go stale (DESIGN.md section 4).

Two small detectors, deterministic (no randomness at all), bounded in memory and kept as
plain arrays so a snapshot carries them exactly:

- :class:`ErrorDrift` watches the prequential error of reviews, overall and per label. It is
  ADWIN (Bifet and Gavaldà, 2007) on fixed-size buckets: every ``bucket_size`` outcomes form a
  bucket, at most ``max_buckets`` are kept, and when a bucket closes every cut between older and
  newer buckets is tested with ADWIN's Hoeffding bound. A significant difference drops the older
  buckets (the window adapts, as ADWIN does); only a significant *increase* of the error is
  reported (a falling error is the model learning).
- :class:`MixDrift` watches the predicted-label mix of live traffic: the top label at
  threshold of each observed message (or "none"), counted per block of ``block`` messages.
  When a block closes, the last ``recent_blocks`` blocks are compared with the
  ``reference_blocks`` before them by a G-test of homogeneity; a p-value under ``alpha`` is a
  change (a new topic appearing, one disappearing), and the reference restarts from the recent
  blocks. A change is therefore reported at most ``(recent_blocks + 1) * block`` messages after it
  starts, once it is large enough to be significant. The mix also moves when the *model* changes
  (a young model learning fast predicts differently week by week), so the test is skipped while
  the reviews learned during the compared blocks exceed ``max_learned_share`` of all reviews
  learned: the mix is judged only once the model has settled.

:class:`DriftMonitor` owns both and keeps the latest events (at most ``max_events``).

River's ADWIN was measured against ``ErrorDrift`` and is *not* the engine's detector (issue
10). :class:`AdwinErrorDrift` is ``river.drift.ADWIN`` per row, with the same interface and a
pickle-free, bit-exact snapshot (the bytes of River's Rust ``AdaptiveWindowing.__getstate__`` per
row, restored by its ``__setstate__``, which parses them into that structure and nothing else);
``DriftMonitor`` restores either. Figures (bench/bench_drift.py, 30 seeds, bench/README.md):

- on *long* streams (2,000 outcomes before and after a change) ADWIN is better: it finds every
  rise (0.10 -> 0.20 after a median 319 outcomes, 0.10 -> 0.30 after 111) where ``ErrorDrift``
  misses all of the small ones and 26 of 30 at 0.10 -> 0.30; no false alarms for either; ten
  times faster (Rust);
- on *short* streams (50 outcomes, then 30 after the change: a label's own reviews, which is
  what the per-label rows see) ADWIN misses nearly everything: 0.10 -> 0.90 24/30 missed,
  0.30 -> 1.00 29/30, 0.10 -> 0.60 30/30, where ``ErrorDrift`` finds 30/30 and 28/30 of the
  first two within 9-29 outcomes. ADWIN's bound has a ``2/(3m) ln(2/delta')`` term that
  dominates for windows of tens of outcomes (with 48 outcomes at 0.29 then 26 at 1.0, the
  bound is 0.83 against a difference of 0.71, by hand); with ``AdwinErrorDrift`` as the engine's detector,
  tests/pipeline/test_drift.py's label-meaning change (a label's reviews filed under another)
  raises no alarm at all, at ``clock`` 10 or 1, and the Banking77 topic switch of
  bench/sim_drift.py (seeds 0-1) is reported after 29 reviews instead of 19.

Per-label error streams in the engine are short (tens of reviews per label), so ``ErrorDrift``
stays the engine's detector; ADWIN would be the better choice for the overall row alone on
slowly rising error, at the cost of slower alarms on a large jump (a possible follow-up:
``DriftMonitor(error=...)`` takes either).

>>> import numpy as np
>>> detector = ErrorDrift(bucket_size=10, max_buckets=20)
>>> reports = [detector.update(0, 0.0 if i < 200 else 1.0) for i in range(260)]
>>> reports.index(True) - 200 < 20
True
"""

from __future__ import annotations

import numpy as np
from river import drift
from scipy.stats import chi2_contingency

from schemas import DriftEvent

__all__ = ["ErrorDrift", "AdwinErrorDrift", "MixDrift", "DriftMonitor"]


class ErrorDrift:
    """ADWIN on fixed-size buckets, one row per stream (row 0: overall, row ``1 + c``: label column ``c``).

    Parameters
    ----------
    bucket_size
        Outcomes per bucket: a change is tested each time a bucket of a row closes.
    max_buckets
        Buckets kept per row (the longest window is ``bucket_size * max_buckets`` outcomes).
    delta
        ADWIN's confidence: smaller means fewer false alarms and slower detection.
    min_buckets
        Buckets a row needs before it is tested.
    """

    def __init__(
        self, bucket_size: int = 10, max_buckets: int = 32, delta: float = 0.002, min_buckets: int = 4
    ) -> None:
        self.bucket_size, self.max_buckets, self.delta, self.min_buckets = bucket_size, max_buckets, delta, min_buckets
        self.sums = np.zeros((1, max_buckets), dtype=np.float64)  # error sum per bucket, oldest first
        self.filled = np.zeros(1, dtype=np.int64)  # buckets in use per row
        self.partial_sum = np.zeros(1, dtype=np.float64)
        self.partial_count = np.zeros(1, dtype=np.int64)
        #: (older mean, newer mean, outcomes in the newer part) of the last reported increase per row
        self.last_change: tuple[float, float, int] | None = None

    def grow(self, rows: int) -> None:
        extra = rows - len(self.filled)
        if extra > 0:
            self.sums = np.vstack([self.sums, np.zeros((extra, self.max_buckets))])
            self.filled = np.append(self.filled, np.zeros(extra, np.int64))
            self.partial_sum = np.append(self.partial_sum, np.zeros(extra))
            self.partial_count = np.append(self.partial_count, np.zeros(extra, np.int64))

    def update(self, row: int, error: float) -> bool:
        """Add one outcome (an error in [0, 1]) to ``row``; True when the error has risen significantly."""
        self.grow(row + 1)
        self.partial_sum[row] += error
        self.partial_count[row] += 1
        if self.partial_count[row] < self.bucket_size:
            return False
        filled = int(self.filled[row])
        if filled == self.max_buckets:
            self.sums[row, :-1] = self.sums[row, 1:]
            filled -= 1
        self.sums[row, filled] = self.partial_sum[row]
        self.filled[row] = filled + 1
        self.partial_sum[row], self.partial_count[row] = 0.0, 0
        return self._test(row)

    def _test(self, row: int) -> bool:
        filled = int(self.filled[row])
        if filled < self.min_buckets:
            return False
        sums = self.sums[row, :filled]
        m = self.bucket_size
        older = np.cumsum(sums)[:-1]  # cut after bucket i: buckets 0..i are older
        newer = sums.sum() - older
        n0 = m * np.arange(1, filled)
        n1 = m * filled - n0
        mean0, mean1 = older / n0, newer / n1
        harmonic = 1.0 / (1.0 / n0 + 1.0 / n1)
        bound = np.sqrt(np.log(4.0 * m * filled / self.delta) / (2.0 * harmonic))
        different = np.abs(mean1 - mean0) > bound
        if not different.any():
            return False
        cut = int(np.flatnonzero(different)[-1])  # the most recent significant cut: keep the newest buckets only
        rose = bool(mean1[cut] > mean0[cut])
        self.last_change = (float(mean0[cut]), float(mean1[cut]), int(n1[cut]))
        keep = filled - cut - 1
        self.sums[row, :keep] = sums[cut + 1 :]
        self.sums[row, keep:] = 0.0
        self.filled[row] = keep
        return rose

    def state(self, prefix: str) -> tuple[dict, dict[str, np.ndarray]]:
        header = {
            "bucket_size": self.bucket_size,
            "max_buckets": self.max_buckets,
            "delta": self.delta,
            "min_buckets": self.min_buckets,
        }
        arrays = {
            f"{prefix}.sums": self.sums,
            f"{prefix}.filled": self.filled,
            f"{prefix}.partial_sum": self.partial_sum,
            f"{prefix}.partial_count": self.partial_count,
        }
        return header, arrays

    @classmethod
    def from_state(cls, header: dict, arrays: dict[str, np.ndarray], prefix: str) -> ErrorDrift:
        detector = cls(header["bucket_size"], header["max_buckets"], header["delta"], header["min_buckets"])
        detector.sums, detector.filled = arrays[f"{prefix}.sums"], arrays[f"{prefix}.filled"]
        detector.partial_sum = arrays[f"{prefix}.partial_sum"]
        detector.partial_count = arrays[f"{prefix}.partial_count"]
        return detector


class AdwinErrorDrift:
    """River's ADWIN (``river.drift.ADWIN``) per stream, one row per stream (row 0: overall, row ``1 + c``: label column ``c``).

    Parameters
    ----------
    clock
        Outcomes between two of ADWIN's tests of a row (ADWIN's ``clock``; ``RefinerConfig.drift_error_bucket``).
    delta
        ADWIN's confidence: smaller means fewer false alarms and slower detection.

    Notes
    -----
    ADWIN reports a change either way; only a rise of the error is reported here, judged by the
    means of the part of the window ADWIN dropped and the part it kept. As in River, a row's
    window starts afresh on the outcome after a detection.

    The state of a row is River's own: the ``_drift_detected`` flag of the ``ADWIN`` object and
    the bytes of its Rust ``AdaptiveWindowing`` (``__getstate__``: every bucket row, the totals,
    variance and clock, serialised by the extension itself, no pickle). They are restored with
    ``AdaptiveWindowing.__setstate__``, which parses those bytes into the same Rust structure
    and nothing else, so a restored detector continues bit for bit.

    >>> detector = AdwinErrorDrift(clock=10)
    >>> reports = [detector.update(0, 0.0 if i < 200 else 1.0) for i in range(260)]
    >>> reports.index(True) - 200 < 40
    True
    """

    def __init__(self, clock: int = 10, delta: float = 0.002) -> None:
        self.clock, self.delta = clock, delta
        self.rows: list[drift.ADWIN] = []
        #: (older mean, newer mean, outcomes in the newer part) of the last reported increase
        self.last_change: tuple[float, float, int] | None = None

    def _new(self) -> drift.ADWIN:
        return drift.ADWIN(delta=self.delta, clock=self.clock)

    def grow(self, rows: int) -> None:
        while len(self.rows) < rows:
            self.rows.append(self._new())

    def update(self, row: int, error: float) -> bool:
        """Add one outcome (an error in [0, 1]) to ``row``; True when the error has risen significantly."""
        self.grow(row + 1)
        adwin = self.rows[row]
        # River resets a detector on the update after a detection: its window then starts empty
        width, total = (0, 0.0) if adwin.drift_detected else (adwin.width, adwin.total)
        adwin.update(error)
        if not adwin.drift_detected:
            return False
        kept, kept_total = adwin.width, adwin.total
        dropped = width + 1 - kept
        if dropped <= 0 or kept <= 0:
            return False
        before, after = (total + error - kept_total) / dropped, kept_total / kept
        if after <= before:
            return False
        self.last_change = (float(before), float(after), int(kept))
        return True

    def state(self, prefix: str) -> tuple[dict, dict[str, np.ndarray]]:
        rows: list[bytes] = [adwin._helper.__getstate__() for adwin in self.rows]
        offsets: np.ndarray = np.cumsum([0] + [len(r) for r in rows], dtype=np.int64)
        header = {
            "detector": "river.drift.ADWIN",
            "clock": self.clock,
            "delta": self.delta,
            "detected": [bool(adwin.drift_detected) for adwin in self.rows],
        }
        arrays: dict[str, np.ndarray] = {
            f"{prefix}.adwin": np.frombuffer(b"".join(rows), dtype=np.uint8),
            f"{prefix}.adwin_offsets": offsets,
        }
        return header, arrays

    @classmethod
    def from_state(cls, header: dict, arrays: dict[str, np.ndarray], prefix: str) -> AdwinErrorDrift:
        detector = cls(header["clock"], header["delta"])
        raw, offsets = arrays[f"{prefix}.adwin"].tobytes(), arrays[f"{prefix}.adwin_offsets"]
        for i, detected in enumerate(header["detected"]):
            adwin = detector._new()
            adwin._helper.__setstate__(raw[int(offsets[i]) : int(offsets[i + 1])])
            adwin._drift_detected = bool(detected)
            detector.rows.append(adwin)
        return detector


class MixDrift:
    """A G-test of the recent predicted-label mix against the mix before it, block by block.

    Buckets are label columns plus a last one for "nothing at threshold" (it moves as labels
    are added). Parameters are described in the module docstring.
    """

    def __init__(
        self,
        block: int = 100,
        reference_blocks: int = 10,
        recent_blocks: int = 2,
        alpha: float = 1e-6,
        max_learned_share: float = 0.15,
    ) -> None:
        self.block, self.reference_blocks, self.recent_blocks, self.alpha = (
            block,
            reference_blocks,
            recent_blocks,
            alpha,
        )
        self.max_learned_share = max_learned_share
        size = reference_blocks + recent_blocks
        self.counts = np.zeros((size, 1), dtype=np.int64)  # closed blocks, oldest first; column -1 is "none"
        self.learned = np.zeros(size, dtype=np.int64)  # reviews the model had learned when each block closed
        self.filled = 0
        self.current = np.zeros(1, dtype=np.int64)
        self.in_block = 0
        self.last_result: tuple[float, np.ndarray, np.ndarray] | None = None

    def _grow(self, buckets: int) -> None:
        extra = buckets - self.counts.shape[1]
        if extra > 0:  # new label columns go before the "none" column
            self.counts = np.hstack(
                [self.counts[:, :-1], np.zeros((len(self.counts), extra), np.int64), self.counts[:, -1:]]
            )
            self.current = np.concatenate([self.current[:-1], np.zeros(extra, np.int64), self.current[-1:]])

    def update(self, buckets: np.ndarray | list[int], n_labels: int, learned: int = 0) -> list[int]:
        """Count messages by bucket (``n_labels`` for none, else a label column), in order; the
        positions (0-based, within ``buckets``) of the messages that closed a block where a
        change was found. ``learned`` is how many reviews the model has learned so far."""
        self._grow(n_labels + 1)
        found = []
        position = 0
        while position < len(buckets):
            take = min(self.block - self.in_block, len(buckets) - position)
            if take == 1:
                self.current[buckets[position]] += 1
            else:
                self.current += np.bincount(buckets[position : position + take], minlength=len(self.current))
            self.in_block += take
            position += take
            if self.in_block == self.block and self._close(learned):
                found.append(position - 1)
        return found

    def add(self, bucket: int, n_labels: int, learned: int = 0) -> bool:
        """:meth:`update` of one message: True when it closed a block where a change was found."""
        if n_labels + 1 > self.counts.shape[1]:
            self._grow(n_labels + 1)
        self.current[bucket] += 1
        self.in_block += 1
        return self.in_block == self.block and self._close(learned)

    def _close(self, learned: int) -> bool:
        size = len(self.counts)
        if self.filled == size:
            self.counts[:-1] = self.counts[1:]
            self.learned[:-1] = self.learned[1:]
            self.filled -= 1
        self.counts[self.filled] = self.current
        self.learned[self.filled] = learned
        self.filled += 1
        self.current = np.zeros_like(self.current)
        self.in_block = 0
        if self.filled < size:
            return False
        if learned - self.learned[0] > self.max_learned_share * learned:
            return False  # the model itself changed a lot over these blocks (it is still learning): not the stream
        reference = self.counts[: self.reference_blocks].sum(axis=0).astype(np.float64)
        recent = self.counts[self.reference_blocks :].sum(axis=0).astype(np.float64)
        p_value = _g_test(reference, recent)
        if p_value >= self.alpha:
            return False
        self.last_result = (p_value, reference / reference.sum(), recent / recent.sum())
        # the recent blocks start the new reference
        self.counts[: self.recent_blocks] = self.counts[self.reference_blocks :]
        self.counts[self.recent_blocks :] = 0
        self.learned[: self.recent_blocks] = self.learned[self.reference_blocks :]
        self.learned[self.recent_blocks :] = 0
        self.filled = self.recent_blocks
        return True

    def state(self, prefix: str) -> tuple[dict, dict[str, np.ndarray]]:
        header = {
            "block": self.block,
            "reference_blocks": self.reference_blocks,
            "recent_blocks": self.recent_blocks,
            "alpha": self.alpha,
            "max_learned_share": self.max_learned_share,
            "filled": self.filled,
            "in_block": self.in_block,
        }
        return header, {
            f"{prefix}.counts": self.counts,
            f"{prefix}.current": self.current,
            f"{prefix}.learned": self.learned,
        }

    @classmethod
    def from_state(cls, header: dict, arrays: dict[str, np.ndarray], prefix: str) -> MixDrift:
        detector = cls(
            header["block"],
            header["reference_blocks"],
            header["recent_blocks"],
            header["alpha"],
            header["max_learned_share"],
        )
        detector.learned = arrays[f"{prefix}.learned"]
        detector.counts, detector.current = arrays[f"{prefix}.counts"], arrays[f"{prefix}.current"]
        detector.filled, detector.in_block = header["filled"], header["in_block"]
        return detector


def _g_test(a: np.ndarray, b: np.ndarray) -> float:
    """p-value of the G-test that two count vectors come from one distribution.

    The G-test of homogeneity is scipy's log-likelihood test of independence on the 2 x k
    table of both vectors, without Yates' correction; buckets empty in both are left out (they
    carry no evidence), and a vector with no counts at all cannot differ.

    >>> _g_test(np.array([50.0, 50.0]), np.array([50.0, 50.0]))
    1.0
    >>> _g_test(np.array([100.0, 0.0]), np.array([0.0, 100.0])) < 1e-12
    True
    """
    keep = (a + b) > 0
    a, b = a[keep], b[keep]
    if len(a) < 2 or not a.sum() or not b.sum():
        return 1.0
    return float(chi2_contingency(np.vstack([a, b]), correction=False, lambda_="log-likelihood").pvalue)


class DriftMonitor:
    """Both detectors of one dataset and the latest drift events.

    Parameters
    ----------
    max_events
        Events kept (the oldest are dropped first).
    error, mix
        The detectors; defaults as in their classes.

    >>> monitor = DriftMonitor()
    >>> monitor.events()
    ()
    """

    def __init__(
        self, max_events: int = 20, error: ErrorDrift | AdwinErrorDrift | None = None, mix: MixDrift | None = None
    ) -> None:
        self.max_events = max_events
        self.error = error or ErrorDrift()
        self.mix = mix or MixDrift()
        self.observed = 0  # live messages seen (also tells a cache that the live pool changed)
        self.reviewed = 0
        self._events: list[DriftEvent] = []

    def events(self) -> tuple[DriftEvent, ...]:
        """The latest detected changes, oldest first."""
        return tuple(self._events)

    def observe(self, times: np.ndarray, scores: np.ndarray, thresholds: np.ndarray, labels: list[str]) -> None:
        """Count the predicted label of each observed message (rows of ``scores``, in order)."""
        self.observed += len(scores)
        n = len(labels)
        buckets: list[int] | np.ndarray
        if len(scores) == 1:  # one message at a time (observe): plain Python is cheaper than array calls
            top = int(scores[0, :n].argmax()) if n else n
            buckets = [top if n and scores[0, top] >= thresholds[top] else n]
        elif n:
            top = scores[:, :n].argmax(axis=1)
            best = scores[:, :n].max(axis=1)
            buckets = np.where(best >= thresholds[top], top, n)
        else:
            buckets = np.zeros(len(scores), dtype=np.int64)
        for position in self.mix.update(buckets, n, self.reviewed):
            self._report_mix(float(times[position]), labels)

    def observe_one(self, time: float, bucket: int, labels: list[str]) -> None:
        """:meth:`observe` of one message whose predicted label is known: ``bucket`` is the
        column of its top label if that is at threshold, else ``len(labels)`` (none)."""
        self.observed += 1
        if self.mix.add(bucket, len(labels), self.reviewed):
            self._report_mix(float(time), labels)

    def review(
        self, time: float, scores: np.ndarray, pinned: tuple[int, ...], thresholds: np.ndarray, labels: list[str]
    ) -> None:
        """Record the prequential error of one review: ``scores`` are its out-of-sample
        confidences (one per label column known when it was scored), ``pinned`` its label columns."""
        self.reviewed += 1
        n = len(scores)
        predicted = set(np.flatnonzero(scores >= thresholds[:n]).tolist())
        truth = set(pinned)
        union = predicted | truth
        overall = 1.0 - len(predicted & truth) / len(union) if union else 0.0
        if self.error.update(0, overall):
            self._report(None, "review_error", time, self._error_detail("reviews"))
        for column in sorted(union):
            if self.error.update(1 + column, 0.0 if column in predicted and column in truth else 1.0):
                self._report(labels[column], "label_error", time, self._error_detail(repr(labels[column])))

    def _report_mix(self, when: float, labels: list[str]) -> None:
        assert self.mix.last_result is not None  # set by the block that found the change
        _, before, after = self.mix.last_result
        self._report(None, "live_mix", when, _mix_detail(before, after, labels))

    def _error_detail(self, what: str) -> str:
        assert self.error.last_change is not None  # set by the bucket that found the rise
        before, after, n = self.error.last_change
        return f"prequential error of {what} rose from {before:.0%} to {after:.0%} over the last {n} outcomes"

    def _report(self, label: str | None, kind: str, when: float, detail: str) -> None:
        self._events.append(DriftEvent(label=label, kind=kind, when=when, detail=detail))
        del self._events[: -self.max_events]

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        error_header, error_arrays = self.error.state("drift.error")
        mix_header, mix_arrays = self.mix.state("drift.mix")
        header = {
            "max_events": self.max_events,
            "observed": self.observed,
            "reviewed": self.reviewed,
            "events": [e.to_dict() for e in self._events],
            "error": error_header,
            "mix": mix_header,
        }
        return header, {**error_arrays, **mix_arrays}

    @classmethod
    def from_state(cls, header: dict, arrays: dict[str, np.ndarray]) -> DriftMonitor:
        error_class = AdwinErrorDrift if header["error"].get("detector") == "river.drift.ADWIN" else ErrorDrift
        monitor = cls(
            header["max_events"],
            error_class.from_state(header["error"], arrays, "drift.error"),
            MixDrift.from_state(header["mix"], arrays, "drift.mix"),
        )
        monitor.observed, monitor.reviewed = header["observed"], header["reviewed"]
        monitor._events = [DriftEvent.from_dict(e) for e in header["events"]]
        return monitor


def _mix_detail(before: np.ndarray, after: np.ndarray, labels: list[str]) -> str:
    names = list(labels) + ["(no label at threshold)"]
    change = after - before
    order = np.argsort(-np.abs(change), kind="stable")[:3]
    moves = ", ".join(f"{names[i]!r} {before[i]:.0%} -> {after[i]:.0%}" for i in order)
    return f"predicted-label mix of live traffic changed: {moves}"
