"""The online multi-label model: one logistic regression per label, learned together.

:class:`OnlineLinear` is a River estimator (``river.base.MultiLabelClassifier``): River's verbs
(``learn_one``, ``predict_proba_one``, ``predict_one`` on a dict of features and ``{label:
bool}`` targets, and the mini-batch ``learn_many``, ``predict_proba_many``) work on it, so do
River's tools (``evaluate.progressive_val_score``, ``river.checks``). Inside the engine it is
driven through a vectorised fast path on sparse arrays (:meth:`OnlineLinear.learn`,
:meth:`OnlineLinear.predict_proba`, :meth:`OnlineLinear.proba_one`), because River's own
``OneVsRestClassifier(LogisticRegression)`` walks one Python dict per label for every message;
at 77 labels that is far too slow for the service's targets (bench/README.md has the figures).
It is the same model, per-label logistic regression trained online by gradient steps, written
as array operations:

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

In River's dict API a feature whose name is an integer in ``[0, n_features - 1)`` is that
dimension of the hashed space (the engine's own features, see ``Refiner.features``); any other
name is hashed into it (CRC-32), a string value ``v`` of feature ``k`` becomes the feature
``"k=v"`` with value 1, and the bias feature is added. A label of the model missing from ``y``
is a negative, as in a review.

>>> model = OnlineLinear(n_features=2 ** 10 + 1)
>>> for _ in range(20):
...     model.learn_one({"card": 1.0, "lost": 1.0}, {"Card": True, "Refund": False})
...     model.learn_one({"money": 1.0, "back": 1.0}, {"Card": False, "Refund": True})
>>> model.predict_one({"card": 1.0})
{'Card': True, 'Refund': False}
>>> model.predict_proba_one({"card": 1.0})["Card"][True] > 0.8
True

The fast path, on a sparse batch (indices and values of each row, the bias feature last):

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

import typing
import zlib

import numpy as np
from river import base
from scipy.special import expit

if typing.TYPE_CHECKING:
    import pandas as pd

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


class OnlineLinear(base.MultiLabelClassifier):
    """Per-label logistic regression over hashed features, learned online with AdaGrad.

    The last row of the weight matrix holds the labels' biases: every input vector carries the
    constant feature ``n_features - 1`` with value 1 (:class:`pipeline.features.Featurizer`
    appends it, and so does the dict API), so scoring and learning treat the bias like any
    other weight.

    Parameters
    ----------
    n_features
        Dimension of the input space, the constant bias feature included.
    learning_rate
        AdaGrad's base step.
    min_capacity
        Columns allocated at the first label.
    """

    def __init__(self, n_features: int = 2**17 + 1, learning_rate: float = 0.5, min_capacity: int = 16) -> None:
        if not isinstance(n_features, int) or n_features < 2:
            raise ValueError(
                f"OnlineLinear.n_features: expected an integer >= 2 (features and the bias), got {n_features!r}"
            )
        self.n_features = n_features
        self.learning_rate = learning_rate
        self.min_capacity = min_capacity
        self.n_labels = 0
        #: Label names in column order (River's dict API reads and writes labels by name).
        self.labels: list = []
        self._columns: dict = {}
        self.weights = np.zeros((n_features, 0), dtype=np.float32)
        self.feature_sq = np.zeros(n_features, dtype=np.float32)

    # ------------------------------------------------------------------ River's API: dicts

    def learn_one(self, x: dict, y: dict) -> None:
        """One AdaGrad step on the features ``x`` with the targets ``y`` (``{label: bool}``);
        a label not seen before takes a new column, a known label missing from ``y`` is a negative."""
        self._learn_targets([self._vector(x)], [y])

    def predict_proba_one(self, x: dict, **kwargs: typing.Any) -> dict:
        """``{label: {False: 1 - p, True: p}}`` for every label learned so far."""
        if not self.n_labels:
            return {}
        row = self.proba_one(*self._vector(x)).tolist()
        return {label: {False: 1.0 - p, True: p} for label, p in zip(self.labels, row)}

    def predict_one(self, x: dict, **kwargs: typing.Any) -> dict:
        """``{label: p >= 0.5}`` for every label learned so far."""
        if not self.n_labels:
            return {}
        row = self.proba_one(*self._vector(x))
        return {label: bool(p >= 0.5) for label, p in zip(self.labels, row.tolist())}

    def learn_many(self, X: pd.DataFrame, Y: pd.DataFrame) -> None:
        """One AdaGrad step on a mini-batch: rows of ``X`` (features), columns of ``Y`` (labels,
        bool). A batch step is not a loop of ``learn_one`` steps: the rows share one step, as the
        engine's experience replay does. Missing values (NaN) are absent features, or negatives."""
        vectors = [self._vector({k: v for k, v in row.items() if v == v}) for row in X.to_dict("records")]
        targets = [{k: bool(v) for k, v in row.items() if v == v} for row in Y.to_dict("records")]
        self._learn_targets(vectors, targets)

    def predict_proba_many(self, X: pd.DataFrame) -> pd.DataFrame:
        """Probability of each label (columns) for each row of ``X``; rows scored as by
        :meth:`predict_proba_one`, to the bit."""
        import pandas as pd

        rows = [self._vector({k: v for k, v in row.items() if v == v}) for row in X.to_dict("records")]
        scores = self.predict_proba(SparseRows.stack(rows)) if rows else np.zeros((0, self.n_labels), np.float32)
        return pd.DataFrame(scores.astype(np.float64), index=X.index, columns=list(self.labels))

    def predict_many(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each label's decision (probability >= 0.5) for each row of ``X``."""
        return self.predict_proba_many(X) >= 0.5

    def _vector(self, x: dict) -> tuple[np.ndarray, np.ndarray]:
        """A dict of features as the sparse vector of the hashed space (sorted unique indices,
        duplicates summed, the bias last)."""
        space = self.n_features - 1
        indices, values = [], []
        for key, value in x.items():
            if isinstance(value, str):
                key, value = f"{key}={value}", 1.0
            if type(key) is int or isinstance(key, np.integer):  # not bool: type() is exact, np.integer is no bool
                index = int(key) if 0 <= key < space else zlib.crc32(str(key).encode("utf-8")) % space
            else:
                index = zlib.crc32(str(key).encode("utf-8")) % space
            indices.append(index)
            values.append(float(value))
        found, where = np.unique(np.array(indices, dtype=np.int64), return_inverse=True)
        summed = np.bincount(where, weights=values, minlength=len(found)) if len(found) else np.zeros(0)
        return (np.append(found, space).astype(np.int32), np.append(summed, 1.0).astype(np.float32))

    def _learn_targets(self, vectors: list[tuple[np.ndarray, np.ndarray]], targets: list[dict]) -> None:
        for y in targets:
            for label in y:
                if label not in self._columns:
                    self.add_label(name=label)
        if not vectors:
            return
        matrix = np.zeros((len(vectors), self.n_labels), dtype=np.float32)
        for row, y in enumerate(targets):
            for label, value in y.items():
                matrix[row, self._columns[label]] = bool(value)
        self.learn(SparseRows.stack(vectors), matrix)

    # ------------------------------------------------------------------ the fast path: sparse arrays

    @property
    def capacity(self) -> int:
        return self.weights.shape[1]

    @property
    def bias(self) -> np.ndarray:
        """The labels' biases (a view of the weight matrix's last row)."""
        return self.weights[-1, : self.n_labels]

    def add_label(self, prior: float = 0.5, name: typing.Hashable | None = None) -> int:
        """Give a new label the next column (its number, unless ``name`` is given: the label's
        name in the dict API); its bias starts at the log-odds of ``prior``."""
        if self.n_labels == self.capacity:
            self._grow(_next_capacity(self.capacity, self.min_capacity))
        column = self.n_labels
        self.n_labels += 1
        key = column if name is None else name
        self.labels.append(key)
        self._columns[key] = column
        prior = min(max(prior, 1e-4), 1 - 1e-4)
        self.weights[-1, column] = np.float32(np.log(prior / (1 - prior)))
        return column

    def _grow(self, capacity: int) -> None:
        weights = np.zeros((self.n_features, capacity), np.float32)
        weights[:, : self.capacity] = self.weights
        self.weights = weights

    def decision(self, x: SparseRows) -> np.ndarray:
        """Raw scores (log-odds), ``n_rows x n_labels``; each row computed on its own."""
        n = self.n_labels
        if n == 0 or len(x) == 0:
            return np.zeros((len(x), n), dtype=np.float32)
        return self._decision(x, self.weights[x.indices], n)

    @staticmethod
    def _decision(x: SparseRows, gathered: np.ndarray, n: int) -> np.ndarray:
        """The first ``n`` columns' scores of ``x`` from its gathered weight rows (scaled in
        place): whole rows are scaled (contiguous, cheaper than a column slice), only the
        ``n`` label columns are summed (reduceat sums each column on its own, so the sums of
        a slice are those of the whole)."""
        gathered *= x.values[:, None]
        return np.add.reduceat(gathered[:, :n], x.indptr[:-1], axis=0)

    def proba_one(self, indices: np.ndarray, values: np.ndarray) -> np.ndarray:
        """:meth:`predict_proba` of one sparse vector, bit-identical to its row in any batch
        (the same products summed in the same order), on a path with fewer array calls."""
        n = self.n_labels
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        gathered = self.weights.take(indices, axis=0)  # all columns: contiguous, so cheaper to scale
        gathered *= values[:, None]
        return expit(np.add.reduceat(gathered[:, :n], _FIRST, axis=0)[0])  # the label columns summed

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
        if len(x) == 1:  # one vector: its indices are unique, its weight rows serve the score and the step
            features = x.indices
            weight_rows = self.weights.take(features, axis=0)
            before = expit(np.add.reduceat((weight_rows * x.values[:, None])[:, :n], _FIRST, axis=0))
            step = x.values[:, None] * (before - y[:, :n])
        else:
            # Each feature's weight row is gathered once (whole rows: much faster to gather and
            # scatter than a column slice), for the scores and the step alike.
            features, where, order, starts = _distinct(x.indices)
            weight_rows = self.weights[features]
            before = expit(self._decision(x, weight_rows[where], n))
            step = (before - y[:, :n])[np.repeat(np.arange(len(x)), np.diff(x.indptr))[order]]
            step *= x.values[order, None]
            if len(starts) < len(step):
                step = _segment_sums(step, starts)
        squared = self.feature_sq[features] + np.einsum("ij,ij->i", step, step) / n
        self.feature_sq[features] = squared
        step *= (self.learning_rate / np.sqrt(squared + 1e-6))[:, None]
        weight_rows[:, :n] -= step
        self.weights[features] = weight_rows
        return before

    def rehearse(self, x: SparseRows, y: np.ndarray) -> None:
        """:meth:`learn`, for a caller that needs no scores (experience replay)."""
        self.learn(x, y)

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
        cls,
        state: dict[str, np.ndarray],
        n_features: int,
        learning_rate: float,
        min_capacity: int = 16,
        labels: list | None = None,
    ) -> OnlineLinear:
        """The model :meth:`state` describes; ``labels`` names its columns (their numbers by default)."""
        model = cls(n_features, learning_rate, min_capacity)
        n = state["weights"].shape[1]
        capacity = 0
        while capacity < n:
            capacity = _next_capacity(capacity, min_capacity)
        model._grow(capacity)
        model.n_labels = n
        model.labels = list(range(n)) if labels is None else list(labels)[:n]
        model._columns = {name: column for column, name in enumerate(model.labels)}
        rows = state["rows"]
        model.weights[rows, :n] = state["weights"]
        model.feature_sq[rows] = state["feature_sq"]
        return model


#: reduceat's segment starts for a single vector.
_FIRST = np.zeros(1, dtype=np.int64)


def _distinct(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The distinct ``features`` of a batch's ``indices`` (sorted), and for each index its
    position among them (``where``), the stable sorting ``order`` of the indices and where each
    feature's run starts in that order (``starts``).

    >>> features, where, order, starts = _distinct(np.array([5, 2, 5, 7], np.int32))
    >>> features.tolist(), where.tolist(), order.tolist(), starts.tolist()
    ([2, 5, 7], [1, 0, 1, 2], [1, 0, 2, 3], [0, 1, 3])
    """
    order = np.argsort(indices, kind="stable")
    ordered = indices[order]
    first = np.empty(len(ordered), dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    where = np.empty(len(ordered), dtype=np.intp)
    where[order] = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    return ordered[starts], where, order, starts


def _segment_sums(rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``np.add.reduceat(rows, starts, axis=0)`` to the bit, in a few array operations per
    repeat rather than one call per segment: in a batch most features occur once, and
    reduceat's cost per segment dominated the step.

    reduceat sums a segment ``a0, a1, ..., ak`` as ``a0 + (a1 + ... + ak)``, the inner sum
    sequential up to 7 terms (numpy's pairwise summation takes over from 8): segments of up to
    ``_SHORT_SEGMENT`` rows are summed that way here, longer ones by reduceat itself.

    >>> rows = np.arange(10, dtype=np.float32).reshape(5, 2)
    >>> _segment_sums(rows, np.array([0, 1, 4])).tolist()
    [[0.0, 1.0], [12.0, 15.0], [8.0, 9.0]]
    """
    sums = rows[starts]
    lengths = np.diff(starts, append=len(rows))
    longer = np.flatnonzero(lengths > 1)
    if not len(longer):
        return sums
    long = longer[lengths[longer] > _SHORT_SEGMENT]
    if len(long):  # the long runs, gathered together, summed by reduceat (runs are summed independently)
        longer = longer[lengths[longer] <= _SHORT_SEGMENT]
        runs = lengths[long]
        firsts = np.cumsum(runs) - runs
        rows_of_runs = np.arange(int(runs.sum())) + np.repeat(starts[long] - firsts, runs)
        sums[long] = np.add.reduceat(rows[rows_of_runs], firsts, axis=0)
    tails = rows[starts[longer] + 1]  # a1, then a1 + a2, ...: the inner sum, in order
    offset, open_ = 2, np.flatnonzero(lengths[longer] > 2)
    while len(open_):
        tails[open_] += rows[starts[longer[open_]] + offset]
        offset += 1
        open_ = open_[lengths[longer[open_]] > offset]
    sums[longer] += tails
    return sums


#: Longest segment :func:`_segment_sums` sums itself (one row and a sequential inner sum of 7).
_SHORT_SEGMENT = 8


def _next_capacity(capacity: int, minimum: int) -> int:
    return max(minimum, capacity + max(1, capacity // 2))
