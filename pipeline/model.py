"""The online multi-label model: one logistic regression per label, learned together.

River's ``OneVsRestClassifier(LogisticRegression)`` walks one Python dict per label for every
message; at 77 labels that is far too slow for the service's targets (bench/README.md has the
figures). This is the same model, per-label logistic regression trained online by gradient
steps, written as array operations:

- weights are a float32 matrix ``n_features x capacity`` over the hashed feature space
  (:mod:`pipeline.features`); a label seen for the first time takes the next free column, its
  bias starting at the prior odds of a new label; capacity grows by half when full;
- scoring a batch is a sparse (CSR) times dense product, computed row by row in a fixed order,
  so a message gets bit-identical scores alone or in a batch;
- learning is AdaGrad with one accumulator per feature (shared by the labels, which keeps
  memory at one matrix) and one per label bias; a step may carry several examples (a review
  and the reviews rehearsed with it, see :mod:`pipeline.refiner`).

>>> import numpy as np
>>> from scipy.sparse import csr_matrix
>>> model = OnlineLinear(n_features=8)
>>> model.add_label()
0
>>> x = csr_matrix((np.ones(1, np.float32), np.array([3]), np.array([0, 1])), shape=(1, 8))
>>> for _ in range(20):
...     model.learn(x, np.array([[1.0]], np.float32))
>>> bool(model.predict_proba(x)[0, 0] > 0.9)
True
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

__all__ = ["OnlineLinear", "to_csr"]


def to_csr(rows: list[tuple[np.ndarray, np.ndarray]], n_features: int) -> csr_matrix:
    """Stack sparse vectors ``(indices, values)`` into one CSR matrix."""
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    if rows:
        np.cumsum([len(i) for i, _ in rows], out=indptr[1:])
        indices = np.concatenate([i for i, _ in rows]) if indptr[-1] else np.zeros(0, np.int32)
        data = np.concatenate([v for _, v in rows]) if indptr[-1] else np.zeros(0, np.float32)
    else:
        indices, data = np.zeros(0, np.int32), np.zeros(0, np.float32)
    return csr_matrix((data.astype(np.float32, copy=False), indices.astype(np.int32, copy=False), indptr),
                      shape=(len(rows), n_features))


class OnlineLinear:
    """Per-label logistic regression over hashed features, learned online with AdaGrad.

    Parameters
    ----------
    n_features
        Dimension of the (hashed) input space.
    learning_rate
        AdaGrad's base step.
    """

    def __init__(self, n_features: int, learning_rate: float = 0.5, min_capacity: int = 16) -> None:
        self.n_features = n_features
        self.learning_rate = learning_rate
        self.min_capacity = min_capacity
        self.n_labels = 0
        self.weights = np.zeros((n_features, 0), dtype=np.float32)
        self.bias = np.zeros(0, dtype=np.float32)
        self.feature_sq = np.zeros(n_features, dtype=np.float32)
        self.bias_sq = np.zeros(0, dtype=np.float32)

    @property
    def capacity(self) -> int:
        return self.weights.shape[1]

    def add_label(self, prior: float = 0.5) -> int:
        """Give a new label the next column; its bias starts at the log-odds of ``prior``."""
        if self.n_labels == self.capacity:
            self._grow(_next_capacity(self.capacity, self.min_capacity))
        column = self.n_labels
        self.n_labels += 1
        prior = min(max(prior, 1e-4), 1 - 1e-4)
        self.bias[column] = np.float32(np.log(prior / (1 - prior)))
        return column

    def _grow(self, capacity: int) -> None:
        extra = capacity - self.capacity
        self.weights = np.ascontiguousarray(np.hstack([self.weights, np.zeros((self.n_features, extra), np.float32)]))
        self.bias = np.concatenate([self.bias, np.zeros(extra, np.float32)])
        self.bias_sq = np.concatenate([self.bias_sq, np.zeros(extra, np.float32)])

    def decision(self, x: csr_matrix) -> np.ndarray:
        """Raw scores (log-odds), ``n_rows x n_labels``; each row computed independently."""
        if self.n_labels == 0:
            return np.zeros((x.shape[0], 0), dtype=np.float32)
        return (x @ self.weights)[:, : self.n_labels] + self.bias[: self.n_labels]

    def predict_proba(self, x: csr_matrix) -> np.ndarray:
        """Probabilities, ``n_rows x n_labels``."""
        return _sigmoid(self.decision(x))

    def learn(self, x: csr_matrix, y: np.ndarray, weight: np.ndarray | None = None) -> None:
        """One AdaGrad step on the examples ``x`` with targets ``y`` (``n_rows x n_labels``)."""
        n = self.n_labels
        if n == 0 or x.shape[0] == 0:
            return
        gradient = self.predict_proba(x) - y[:, :n]
        if weight is not None:
            gradient *= weight[:, None]
        columns, inverse = np.unique(x.indices, return_inverse=True)
        local = csr_matrix((x.data, inverse.astype(np.int32), x.indptr), shape=(x.shape[0], len(columns)))
        step = np.asarray(local.T @ gradient, dtype=np.float32)  # len(columns) x n
        self.feature_sq[columns] += (step * step).mean(axis=1)
        scale = self.learning_rate / np.sqrt(self.feature_sq[columns] + 1e-6)
        self.weights[columns, :n] -= step * scale[:, None]
        bias_step = gradient.sum(axis=0)
        self.bias_sq[:n] += bias_step * bias_step
        self.bias[:n] -= self.learning_rate * bias_step / np.sqrt(self.bias_sq[:n] + 1e-6)

    def state(self) -> dict[str, np.ndarray]:
        """The arrays that define the model; only feature rows ever touched are kept."""
        touched = np.flatnonzero(self.feature_sq).astype(np.int32)
        return {
            "rows": touched,
            "weights": np.ascontiguousarray(self.weights[touched, : self.n_labels]),
            "feature_sq": self.feature_sq[touched],
            "bias": self.bias[: self.n_labels].copy(),
            "bias_sq": self.bias_sq[: self.n_labels].copy(),
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], n_features: int, learning_rate: float,
                   min_capacity: int = 16) -> "OnlineLinear":
        model = cls(n_features, learning_rate, min_capacity)
        n = len(state["bias"])
        capacity = 0
        while capacity < n:
            capacity = _next_capacity(capacity, min_capacity)
        model._grow(capacity)
        model.n_labels = n
        rows = state["rows"]
        model.weights[rows, :n] = state["weights"]
        model.feature_sq[rows] = state["feature_sq"]
        model.bias[:n] = state["bias"]
        model.bias_sq[:n] = state["bias_sq"]
        return model


def _next_capacity(capacity: int, minimum: int) -> int:
    return max(minimum, capacity + max(1, capacity // 2))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))).astype(np.float32)
