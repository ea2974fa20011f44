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

__all__ = ["average_precision", "precision_recall_f1", "choose_thresholds", "auc", "Curve"]


class Curve:
    """The precision-recall curve of one label: one point per distinct score, highest first."""

    def __init__(self, scores: np.ndarray, positives: np.ndarray) -> None:
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
        return Thresholds(balanced=_unit(balanced), high_precision=_unit(high_precision), high_recall=_unit(high_recall))


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """Area under the precision-recall curve: mean precision at each positive; None without positives."""
    return Curve(np.asarray(scores), np.asarray(positives, dtype=bool)).average_precision()


def precision_recall_f1(scores: np.ndarray, positives: np.ndarray, threshold: float) -> tuple[float | None, float | None, float | None]:
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


def choose_thresholds(scores: np.ndarray, positives: np.ndarray, precision_target: float = 0.95,
                      recall_target: float = 0.95) -> Thresholds:
    """The three thresholds of DESIGN.md: ``balanced`` (max F1), ``high_precision`` (lowest
    threshold reaching the precision target), ``high_recall`` (highest keeping the recall target)."""
    return Curve(np.asarray(scores), np.asarray(positives, dtype=bool)).thresholds_at(precision_target, recall_target)


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
