"""Specification of the label model's fast path (pipeline.model): its shortcuts give the plain
array code's answers, to the bit."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from pipeline.model import OnlineLinear, SparseRows, _segment_sums


def _learn_plainly(model: OnlineLinear, x: SparseRows, y: np.ndarray) -> np.ndarray:
    """OnlineLinear.learn of a batch as first written (the reference): the weight rows gathered
    for the scores and again for the step, a repeated feature's steps summed by reduceat."""
    n = model.n_labels
    gathered = model.weights[x.indices][:, :n]
    gathered *= x.values[:, None]
    before = expit(np.add.reduceat(gathered, x.indptr[:-1], axis=0))
    gradient = before - y[:, :n]
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
    squared = model.feature_sq[features] + np.einsum("ij,ij->i", step, step) / n
    model.feature_sq[features] = squared
    step *= (model.learning_rate / np.sqrt(squared + 1e-6))[:, None]
    weight_rows = model.weights[features]
    weight_rows[:, :n] -= step
    model.weights[features] = weight_rows
    return before


def _batch(rng: np.random.Generator, n_features: int, rows: int, common: int) -> SparseRows:
    """``rows`` sparse vectors sharing ``common`` features (so a feature repeats up to ``rows``
    times), each with features of its own and the bias."""
    shared = rng.choice(n_features - 1, common, replace=False)
    vectors = []
    for _ in range(rows):
        own = rng.choice(n_features - 1, int(rng.integers(1, 40)), replace=False)
        keep = shared[rng.random(common) < 0.7]
        indices = np.unique(np.concatenate([own, keep])).astype(np.int32)
        indices = np.append(indices, np.int32(n_features - 1))
        vectors.append((indices, rng.random(len(indices)).astype(np.float32)))
    return SparseRows.stack(vectors)


def test_a_batch_step_gives_the_plain_codes_scores_and_weights_to_the_bit():
    rng = np.random.default_rng(0)
    fast, plain = OnlineLinear(n_features=2**9 + 1), OnlineLinear(n_features=2**9 + 1)
    for model in (fast, plain):
        for _ in range(21):  # past the first capacity: the matrix is wider than the labels
            model.add_label(0.3)
    for step in range(60):
        rows = int(rng.integers(2, 40))  # features repeated up to 40 times: short and long runs
        x = _batch(rng, 2**9 + 1, rows, common=int(rng.integers(1, 30)))
        y = rng.random((rows, fast.capacity)) < 0.2
        before_fast, before_plain = fast.learn(x, y), _learn_plainly(plain, x, y)
        assert before_fast.tobytes() == before_plain.tobytes(), step
        assert fast.weights.tobytes() == plain.weights.tobytes(), step
        assert fast.feature_sq.tobytes() == plain.feature_sq.tobytes(), step


def test_segment_sums_equal_reduceat_at_every_run_length():
    rng = np.random.default_rng(1)
    for length in range(1, 20):  # reduceat's inner sum turns pairwise at 8 terms (runs of 9)
        for _ in range(30):
            runs = rng.integers(1, length + 1, size=int(rng.integers(1, 12)))
            runs[rng.integers(len(runs))] = length
            rows = (rng.standard_normal((int(runs.sum()), int(rng.integers(1, 70)))) * 100).astype(np.float32)
            starts = np.concatenate([[0], np.cumsum(runs)[:-1]])
            assert _segment_sums(rows, starts).tobytes() == np.add.reduceat(rows, starts, axis=0).tobytes()
