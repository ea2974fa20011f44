"""The online multi-label model: one logistic regression per label, learned together.

River's ``OneVsRestClassifier(LogisticRegression)`` walks one Python dict per label for every
message; at 77 labels that is far too slow for the service's targets (bench/README.md has the
figures). This is the same model, per-label logistic regression trained online by gradient
steps, written as array operations:

- weights are a float32 matrix ``n_features x capacity`` over the hashed feature space
  (:mod:`pipeline.features`); a label seen for the first time takes the next free column, its
  bias starting at the prior odds of a new label; capacity grows by half when full;
- scoring a batch gathers the weight rows of every feature present and sums each message's
  rows with ``np.add.reduceat`` (one segment per message, summed in a fixed order), so a
  message gets bit-identical scores alone or in a batch;
- the biases are the matrix's last row, reached through a constant input feature;
- learning is AdaGrad with one accumulator per feature row (shared by the labels, which keeps
  memory at one matrix); a step may carry several examples (a review and the reviews
  rehearsed with it, see :mod:`pipeline.refiner`).

>>> import numpy as np
>>> model = OnlineLinear(n_features=9)  # 8 features and the bias
>>> model.add_label()
0
>>> x = SparseRows.stack([(np.array([3, 8], np.int32), np.array([1.0, 1.0], np.float32))])
>>> for _ in range(20):
...     _ = model.learn(x, np.array([[1.0]], np.float32))
>>> bool(model.predict_proba(x)[0, 0] > 0.9)
True
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

__all__ = ["OnlineLinear", "SparseRows"]


class SparseRows:
    """A batch of sparse vectors in CSR layout: row ``i`` is ``indices[indptr[i]:indptr[i+1]]``
    with ``values`` alike. Every row must have at least one entry (messages always do: their
    channel is a feature)."""

    __slots__ = ("indptr", "indices", "values")

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
        self.indptr, self.indices, self.values = indptr, indices, values

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def stack(cls, rows: list[tuple[np.ndarray, np.ndarray]]) -> SparseRows:
        """Stack sparse vectors ``(indices, values)``."""
        if len(rows) == 1:
            indices, values = rows[0]
            return cls(np.array([0, len(indices)], dtype=np.int64), indices, values)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        if not rows:
            return cls(indptr, np.zeros(0, np.int32), np.zeros(0, np.float32))
        np.cumsum([len(i) for i, _ in rows], out=indptr[1:])
        return cls(indptr, np.concatenate([i for i, _ in rows]), np.concatenate([v for _, v in rows]))


class OnlineLinear:
    """Per-label logistic regression over hashed features, learned online with AdaGrad.

    The last row of the weight matrix holds the labels' biases: every input vector carries the
    constant feature ``n_features - 1`` with value 1 (:class:`pipeline.features.Featurizer`
    appends it), so scoring and learning treat the bias like any other weight.

    Parameters
    ----------
    n_features
        Dimension of the input space, the constant bias feature included.
    learning_rate
        AdaGrad's base step.
    min_capacity
        Columns allocated at the first label.
    """

    def __init__(self, n_features: int, learning_rate: float = 0.5, min_capacity: int = 16) -> None:
        self.n_features = n_features
        self.learning_rate = learning_rate
        self.min_capacity = min_capacity
        self.n_labels = 0
        self.weights = np.zeros((n_features, 0), dtype=np.float32)
        self.feature_sq = np.zeros(n_features, dtype=np.float32)

    @property
    def capacity(self) -> int:
        return self.weights.shape[1]

    @property
    def bias(self) -> np.ndarray:
        """The labels' biases (a view of the weight matrix's last row)."""
        return self.weights[-1, : self.n_labels]

    def add_label(self, prior: float = 0.5) -> int:
        """Give a new label the next column; its bias starts at the log-odds of ``prior``."""
        if self.n_labels == self.capacity:
            self._grow(_next_capacity(self.capacity, self.min_capacity))
        column = self.n_labels
        self.n_labels += 1
        prior = min(max(prior, 1e-4), 1 - 1e-4)
        self.weights[-1, column] = np.float32(np.log(prior / (1 - prior)))
        return column

    def _grow(self, capacity: int) -> None:
        extra = capacity - self.capacity
        self.weights = np.ascontiguousarray(np.hstack([self.weights, np.zeros((self.n_features, extra), np.float32)]))

    def decision(self, x: SparseRows) -> np.ndarray:
        """Raw scores (log-odds), ``n_rows x n_labels``; each row computed on its own."""
        n = self.n_labels
        if n == 0 or len(x) == 0:
            return np.zeros((len(x), n), dtype=np.float32)
        return self._decision(x, self._gather(x))

    def _gather(self, x: SparseRows) -> np.ndarray:
        gathered = self.weights[x.indices]
        return gathered if self.n_labels == self.capacity else gathered[:, : self.n_labels]

    @staticmethod
    def _decision(x: SparseRows, gathered: np.ndarray) -> np.ndarray:
        gathered *= x.values[:, None]
        return np.add.reduceat(gathered, x.indptr[:-1], axis=0)

    def proba_one(self, indices: np.ndarray, values: np.ndarray) -> np.ndarray:
        """:meth:`predict_proba` of one sparse vector, bit-identical to its row in any batch
        (the same products summed in the same order), on a path with fewer array calls."""
        n = self.n_labels
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        gathered = self.weights.take(indices, axis=0)  # all columns: contiguous, so cheaper to scale
        gathered *= values[:, None]
        return expit(np.add.reduceat(gathered, _FIRST, axis=0)[0, :n])

    def predict_proba(self, x: SparseRows) -> np.ndarray:
        """Probabilities, ``n_rows x n_labels``."""
        return expit(self.decision(x))

    def learn(self, x: SparseRows, y: np.ndarray) -> np.ndarray:
        """One AdaGrad step on the examples ``x`` with targets ``y`` (``n_rows x >= n_labels``,
        0/1 or bool).

        Returns the probabilities of ``x`` before the step (the same as :meth:`predict_proba`
        would have given), so a caller needing out-of-sample scores pays no second pass.
        """
        n = self.n_labels
        if n == 0 or len(x) == 0:
            return np.zeros((len(x), n), dtype=np.float32)
        weight_rows = None
        if len(x) == 1:  # one vector: its weight rows, gathered once, serve the score and the step
            weight_rows = self.weights.take(x.indices, axis=0)
            before = expit(np.add.reduceat(weight_rows * x.values[:, None], _FIRST, axis=0)[:, :n])
        else:
            before = expit(self._decision(x, self._gather(x)))
        gradient = before - y[:, :n]
        if len(x) == 1:  # a vector's indices are unique: no aggregation
            features = x.indices
            step = x.values[:, None] * gradient
        else:
            order = np.argsort(x.indices, kind="stable")
            features = x.indices[order]
            first = np.empty(len(features), dtype=bool)
            first[0] = True
            np.not_equal(features[1:], features[:-1], out=first[1:])
            rows = np.repeat(np.arange(len(x)), np.diff(x.indptr))[order]
            step = gradient[rows]
            step *= x.values[order, None]
            starts = np.flatnonzero(first)
            if len(starts) < len(features):
                step = np.add.reduceat(step, starts, axis=0)
                features = features[starts]
        squared = self.feature_sq[features] + np.einsum("ij,ij->i", step, step) / n
        self.feature_sq[features] = squared
        step *= (self.learning_rate / np.sqrt(squared + 1e-6))[:, None]
        if weight_rows is None:
            weight_rows = self.weights[features]  # whole rows: much faster to gather and scatter than a column slice
        weight_rows[:, :n] -= step
        self.weights[features] = weight_rows
        return before

    def state(self) -> dict[str, np.ndarray]:
        """The arrays that define the model; only rows ever touched (and the bias row) are kept."""
        touched = np.flatnonzero(self.feature_sq[:-1]).astype(np.int32)
        touched = np.append(touched, np.int32(self.n_features - 1))
        return {
            "rows": touched,
            "weights": np.ascontiguousarray(self.weights[touched, : self.n_labels]),
            "feature_sq": self.feature_sq[touched],
        }

    @classmethod
    def from_state(
        cls, state: dict[str, np.ndarray], n_features: int, learning_rate: float, min_capacity: int = 16
    ) -> OnlineLinear:
        model = cls(n_features, learning_rate, min_capacity)
        n = state["weights"].shape[1]
        capacity = 0
        while capacity < n:
            capacity = _next_capacity(capacity, min_capacity)
        model._grow(capacity)
        model.n_labels = n
        rows = state["rows"]
        model.weights[rows, :n] = state["weights"]
        model.feature_sq[rows] = state["feature_sq"]
        return model


#: reduceat's segment starts for a single vector.
_FIRST = np.zeros(1, dtype=np.int64)


def _next_capacity(capacity: int, minimum: int) -> int:
    return max(minimum, capacity + max(1, capacity // 2))
