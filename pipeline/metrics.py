"""Validation metrics over a window of out-of-sample scores (DESIGN.md section 4).

Pure functions of arrays: ``scores`` are the confidences recorded before the model learned
from each review, ``positives`` whether the review pinned the label.

>>> import numpy as np
>>> scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2])
>>> positives = np.array([True, False, True, False, False])
>>> round(average_precision(scores, positives), 4)
0.8333
>>> precision_recall_f1(scores, positives, 0.5)
(0.6666666666666666, 1.0, 0.8)
>>> choose_thresholds(scores, positives, precision_target=0.95, recall_target=0.95)
Thresholds(balanced=0.7, high_precision=0.9, high_recall=0.7)
>>> auc(np.array([0.9, 0.1, 0.8, 0.2]), np.array([True, False, True, False]))
1.0
"""

from __future__ import annotations

import numpy as np

from schemas import Thresholds

__all__ = [
    "average_precision",
    "precision_recall_f1",
    "choose_thresholds",
    "binned_thresholds",
    "threshold_counts",
    "thresholds_from_counts",
    "auc",
    "Curve",
    "label_curve",
    "THRESHOLD_BINS",
]


class Curve:
    """The precision-recall curve of one label: one point per distinct score, highest first."""

    def __init__(self, scores: np.ndarray, positives: np.ndarray) -> None:
        if not len(scores):
            scores, positives = np.zeros(1), np.zeros(1, dtype=bool)  # one negative: no curve, no support
        order = np.argsort(-scores, kind="stable")
        ranked = scores[order]
        hits = positives[order].astype(np.int64)
        true_positives = np.cumsum(hits)
        # A threshold sits at each distinct score: keep the last row of each group of ties.
        ends = np.append(ranked[1:] != ranked[:-1], True)
        self.thresholds = ranked[ends].astype(np.float64)
        self.true_positives = true_positives[ends]
        self.predicted = (np.arange(1, len(ranked) + 1))[ends]
        self.support = int(true_positives[-1]) if len(ranked) else 0
        self.precision = self.true_positives / self.predicted
        self.recall = self.true_positives / self.support if self.support else np.zeros_like(self.precision)

    def average_precision(self) -> float | None:
        if not self.support:
            return None
        gained = np.diff(self.true_positives, prepend=0) / self.support
        return float(np.sum(gained * self.precision))

    def thresholds_at(self, precision_target: float, recall_target: float) -> Thresholds:
        if not self.support:
            return Thresholds()
        f1 = _f1(self.precision, self.recall)
        balanced = float(self.thresholds[int(np.argmax(f1))])
        precise = np.flatnonzero(self.precision >= precision_target)
        high_precision = float(self.thresholds[precise[-1]]) if len(precise) else None
        recalled = np.flatnonzero(self.recall >= recall_target)
        high_recall = float(self.thresholds[recalled[0]]) if len(recalled) else None
        return Thresholds(
            balanced=_unit(balanced), high_precision=_unit(high_precision), high_recall=_unit(high_recall)
        )


def label_curve(scores: np.ndarray, positives: np.ndarray) -> Curve:
    """The curve of one label, ignoring the rows scored below every positive.

    Every threshold worth choosing sits at a positive's score, and rows below the lowest
    positive change no precision at those thresholds: dropping them first makes a window of
    thousands of reviews cost only its top rows.
    """
    if not positives.any():
        return Curve(scores[:0], positives[:0])
    keep = scores >= scores[positives].min()
    return Curve(scores[keep], positives[keep])


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """Area under the precision-recall curve: mean precision at each positive; None without positives."""
    return label_curve(np.asarray(scores), np.asarray(positives, dtype=bool)).average_precision()


def precision_recall_f1(
    scores: np.ndarray, positives: np.ndarray, threshold: float
) -> tuple[float | None, float | None, float | None]:
    """Precision, recall and F1 of predicting ``score >= threshold``; None where undefined."""
    predicted = np.asarray(scores) >= threshold
    positives = np.asarray(positives, dtype=bool)
    true_positives = int(np.count_nonzero(predicted & positives))
    n_predicted, n_positive = int(np.count_nonzero(predicted)), int(np.count_nonzero(positives))
    precision = true_positives / n_predicted if n_predicted else None
    recall = true_positives / n_positive if n_positive else None
    if precision is None or recall is None:
        f1 = None if n_positive == 0 and n_predicted == 0 else 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def choose_thresholds(
    scores: np.ndarray, positives: np.ndarray, precision_target: float = 0.95, recall_target: float = 0.95
) -> Thresholds:
    """The three thresholds of DESIGN.md: ``balanced`` (max F1), ``high_precision`` (lowest
    threshold reaching the precision target), ``high_recall`` (highest keeping the recall target)."""
    return label_curve(np.asarray(scores), np.asarray(positives, dtype=bool)).thresholds_at(
        precision_target, recall_target
    )


def auc(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None unless both classes are present."""
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    n_pos = int(np.count_nonzero(positives))
    n_neg = len(scores) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average ranks over ties
    starts = np.flatnonzero(np.append(True, ranked[1:] != ranked[:-1]))
    ends = np.append(starts[1:], len(ranked))
    average = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(average, ends - starts)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    total = precision + recall
    return np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)


def _unit(value: float | None) -> float | None:
    return None if value is None else min(1.0, max(0.0, round(value, 6)))


#: Resolution of :func:`binned_thresholds`: thresholds are multiples of 1/THRESHOLD_BINS.
THRESHOLD_BINS = 1000


def binned_thresholds(
    scores: np.ndarray, pinned: np.ndarray, precision_targets: np.ndarray, recall_targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three thresholds of every label at once, on a grid of ``1/THRESHOLD_BINS``.

    ``scores`` and ``pinned`` are ``n_reviews x n_labels``; the targets are per label. Returns
    ``(balanced, high_precision, high_recall)`` arrays, NaN where a label has no positive or
    its target cannot be reached. Only grid points holding a positive are candidates (as in
    :func:`label_curve`). One pass of counting instead of a sort per label: cheap enough to
    refresh the thresholds in force while reviews stream in.

    >>> s = np.array([[0.9], [0.8], [0.7], [0.3]]); y = np.array([[True], [False], [True], [False]])
    >>> [float(t[0]) for t in binned_thresholds(s, y, np.array([0.95]), np.array([0.95]))]
    [0.7, 0.9, 0.7]
    """
    n, labels = scores.shape
    if n == 0 or labels == 0:
        nan = np.full(labels, np.nan)
        return nan, nan.copy(), nan.copy()
    return thresholds_from_counts(*threshold_counts(scores, pinned), precision_targets, recall_targets)


def threshold_counts(scores: np.ndarray, pinned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The counts :func:`binned_thresholds` chooses from: per label (row) and grid point
    (column ``i`` holds the scores in ``[i, i + 1) / THRESHOLD_BINS``, the last one 1), the
    reviews that pin the label and all reviews. Whole numbers as float64, so the counts of
    several windows add up exactly (a window counted ``w`` times: ``w *`` its counts).

    >>> s = np.array([[0.9], [0.8], [0.7], [0.3]]); y = np.array([[True], [False], [True], [False]])
    >>> positives, everything = threshold_counts(s, y)
    >>> positives[0, [300, 700, 800, 900]].tolist(), everything[0, [300, 700, 800, 900]].tolist()
    ([0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0])
    """
    n, labels = scores.shape
    width = THRESHOLD_BINS + 1
    if n == 0 or labels == 0:
        return np.zeros((labels, width)), np.zeros((labels, width))
    grid = np.minimum((scores * np.float32(THRESHOLD_BINS)).astype(np.int32), THRESHOLD_BINS)
    grid += np.arange(labels, dtype=np.int32) * width
    flat = grid.ravel()
    positives = np.bincount(flat, weights=pinned.ravel().astype(np.float64), minlength=labels * width).reshape(
        labels, width
    )
    everything = np.bincount(flat, minlength=labels * width).reshape(labels, width).astype(np.float64)
    return positives, everything


def thresholds_from_counts(
    positives: np.ndarray, everything: np.ndarray, precision_targets: np.ndarray, recall_targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`binned_thresholds` from the counts of :func:`threshold_counts`."""
    labels, width = positives.shape
    if labels == 0:
        nan = np.full(0, np.nan)
        return nan, nan.copy(), nan.copy()
    # counts at or above each grid point
    true_positives = positives[:, ::-1].cumsum(axis=1)[:, ::-1]
    predicted = everything[:, ::-1].cumsum(axis=1)[:, ::-1]
    support = true_positives[:, :1]
    candidate = positives > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, true_positives / predicted, 0.0)
        recall = np.where(support > 0, true_positives / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    points = np.arange(width) / THRESHOLD_BINS
    f1 = np.where(candidate, f1, -1.0)
    best = width - 1 - np.argmax(f1[:, ::-1], axis=1)  # the highest grid point of maximum F1
    balanced = np.where(support[:, 0] > 0, points[best], np.nan)
    precise = candidate & (precision >= precision_targets[:, None])
    lowest = np.argmax(precise, axis=1)
    high_precision = np.where(precise.any(axis=1), points[lowest], np.nan)
    recalled = candidate & (recall >= recall_targets[:, None])
    highest = width - 1 - np.argmax(recalled[:, ::-1], axis=1)
    high_recall = np.where(recalled.any(axis=1), points[highest], np.nan)
    return balanced, high_precision, high_recall
