"""What to review next: the six suggestion kinds of DESIGN.md section 5.

Every list is drawn from one of two bounded pools that the engine already keeps:

- the **reviewed** pool is the validation window: each review with its *out-of-sample*
  confidences (recorded before the model learned from it) and its pinned labels;
- the **unreviewed** pool is the live window minus every reviewed message, scored by the
  current model (and by the balance model), so a message leaves all unreviewed lists the
  moment it is reviewed.

How each kind ranks (best first; ``score`` is higher for a better suggestion):

``check_label`` (L)
    Reviews pinned with L, by lowest out-of-sample confidence for L *relative to L's mean
    self-confidence* ``t_L`` (the mean confidence of L over the window's reviews pinned with L,
    the per-label threshold of confident learning, Northcutt et al. 2021). When another label
    looks more likely than L does (both relative to their own ``t``), the review ranks higher:
    ``score = other / (other + self)`` with ``self = p_L / t_L`` and ``other`` the largest
    ``p_j / t_j`` over labels not pinned. Reviews whose latest review was itself made from a
    check or missed list are left out: a person has just confirmed them.
``missed_label`` (L)
    Reviews not pinned with L, by highest out-of-sample confidence for L, measured as log-odds
    above L's threshold in force (``score = logit(p_L) - logit(threshold_L)``; above 0 the model
    would have predicted L). Dividing by ``t_L`` instead, as for ``check_label``, ranked worse on
    NLU++ (bench/README.md): rare labels have a low ``t_L`` that inflates their scores.
``teach_label`` (L)
    Unreviewed messages whose confidence for L is closest to L's threshold in force
    (``score = 1 - |p_L - threshold_L|``): where one review teaches the model the most. With
    ``label=None``, margin sampling: the smallest gap between the two most confident leaf labels
    (``score = 1 - (p_first - p_second)``; parents are left out, they always tie with a child),
    where the model hesitates between two labels. On Banking77 it reached a target accuracy with
    fewer reviews than the best single label's closeness or the summed label variance (bench/README.md).
``low_confidence``
    Unreviewed messages with no informative label at threshold, by lowest top confidence.
``rebalance``
    Unreviewed messages by how unlike the reviewed set the balance model finds them.
``shuffle``
    A uniform random order of the unreviewed pool, fixed by the engine's seed and each message
    id (a keyed hash), so it needs no random state and a message keeps its place as others come
    and go.

With ``label=None`` the check and missed kinds rank (message, label) pairs of all labels
together, a message appearing once, with its best label. ``teach_label``, ``low_confidence`` and
``rebalance`` lists are kept diverse: a candidate whose hashed features have a cosine
similarity above ``max_similarity`` with one already chosen waits until the end of the list.
Ties are broken by the shuffle order.

Lists are computed on demand from the engine's state and cached until the next observed
message or review; nothing here needs its own snapshot.

>>> from pipeline import Refiner
>>> r = Refiner(dataset="support", seed=0)
>>> for i, (text, label) in enumerate([("where is my card", "Card"), ("refund me please", "Refund")] * 3):
...     _ = r.annotate({"dataset": "support", "message_id": f"r{i}", "timestamp": i, "labels": [{"name": label}],
...                     "message": {"dataset": "support", "id": f"r{i}", "timestamp": i, "body": text}})
>>> _ = r.observe_many([{"dataset": "support", "id": f"m{i}", "timestamp": 10 + i, "body": body}
...                     for i, body in enumerate(["card refund", "my card", "hello"])])
>>> [s.message_id for s in r.suggestions("shuffle")] == [s.message_id for s in r.suggestions("shuffle")]
True
>>> sorted(s.message_id for s in r.suggestions("teach_label", label="Card"))
['m0', 'm1', 'm2']
"""

from __future__ import annotations

import functools
import hashlib
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse

from schemas import SUGGESTION_KINDS, Suggestion

if TYPE_CHECKING:  # the engine imports this module
    from pipeline.refiner import Refiner

__all__ = ["KINDS", "LABEL_KINDS", "Suggester", "SuggestionPool"]

KINDS = SUGGESTION_KINDS
#: Kinds ranked for a label (or, with ``label=None``, for every label at once).
LABEL_KINDS = ("check_label", "missed_label", "teach_label")
#: Review modes whose reviews confirm labels and leave check and missed lists.
_CONFIRMING_MODES = ("check", "missed")
#: A label's mean self-confidence is never taken below this (labels still being learned).
_MIN_SELF_CONFIDENCE = 0.05
#: Candidates compared for diversity (the rest of a very long list follows in rank order).
_MAX_CANDIDATES = 2000
#: Pairs of shared features `_near` adds itself (beyond, scipy's product needs less memory).
_MAX_PAIRS = 400_000


class _Pools:
    """Both pools of one engine state, with the derived arrays every kind needs."""

    def __init__(self, engine: Refiner, seed: int, earlier: _Pools | None = None) -> None:
        n = len(engine.labels)
        self.labels = list(engine.labels)
        self.thresholds = np.asarray(engine.thresholds[:n], dtype=np.float64)
        self.informative = np.asarray(engine.informative[:n], dtype=bool)
        parents = {name.rsplit(" > ", 1)[0] for name in self.labels if " > " in name}
        self.leaves = np.array([name not in parents for name in self.labels], dtype=bool)  # labels with no child label
        reviews = engine.reviews
        slots = reviews.occupied()
        self.reviewed_ids = [reviews.slot_ids[s] for s in slots]
        self.reviewed_scores = reviews.scores[slots, :n].astype(np.float64)
        self.reviewed_pinned = reviews.pinned[slots, :n]
        self.confirmed = np.array([reviews.modes[s] in _CONFIRMING_MODES for s in slots], dtype=bool)
        positives = self.reviewed_pinned.sum(axis=0)
        mean = np.divide(
            (self.reviewed_scores * self.reviewed_pinned).sum(axis=0),
            positives,
            out=np.full(n, 0.5),
            where=positives > 0,
        )
        self.self_confidence = np.maximum(mean, _MIN_SELF_CONFIDENCE)
        self.live_ids, self.live_scores, balance = engine.unreviewed_pool()
        self.live_scores = self.live_scores[:, :n].astype(np.float64)
        self.reviewed_likeness = np.asarray(balance, dtype=np.float64)
        self.live_features = [engine.live.features[engine.live.index[i]] for i in self.live_ids]
        self.n_features = engine.n_features
        # a message keeps its key from pool to pool: only the messages new to the pool are hashed
        known: dict[str, float] = earlier.shuffle_keys if earlier is not None and earlier.seed == seed else {}
        self.seed: int = seed
        self.shuffle_key = np.array(
            [key if (key := known.get(i)) is not None else _uniform(seed, i) for i in self.live_ids], dtype=np.float64
        )
        self.shuffle_keys: dict[str, float] = dict(zip(self.live_ids, self.shuffle_key.tolist()))

    @functools.cached_property
    def unit_features(self) -> scipy.sparse.csr_matrix:
        """The live pool's features as rows of unit length, built once for every diverse list
        (row by row the same bits as `_matrix` of any subset: each row is scaled on its own)."""
        return _matrix(self.live_features, self.n_features)

    @functools.cached_property
    def check_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Every review's confidences relative to each label's mean self-confidence, and how
        suspicious each pinned label is (``-inf`` where the label is not pinned, or the review confirmed)."""
        relative = self.reviewed_scores / self.self_confidence
        other = np.where(self.reviewed_pinned, 0.0, relative).max(axis=1, keepdims=True)
        suspicion = other / (other + relative + 1e-12)
        return relative, np.where(self.reviewed_pinned & ~self.confirmed[:, None], suspicion, -np.inf)

    @functools.cached_property
    def likeliest_other(self) -> tuple[np.ndarray, np.ndarray]:
        """Per review, the label not pinned with the highest relative confidence (the first
        pinned one when every label is pinned) and that relative confidence (-1 when pinned)."""
        relative, _ = self.check_matrix
        alternative = np.where(self.reviewed_pinned, -1.0, relative)
        columns = np.argmax(alternative, axis=1)
        return columns, alternative[np.arange(len(alternative)), columns]

    @functools.cached_property
    def missed_matrix(self) -> np.ndarray:
        """Log-odds of every review's confidences above each label's threshold (``-inf`` where pinned or confirmed)."""
        above = _logit(self.reviewed_scores) - _logit(self.thresholds)
        return np.where(~self.reviewed_pinned & ~self.confirmed[:, None], above, -np.inf)


class Suggester:
    """Ranks messages to review next from an engine's pools (see the module docstring).

    Parameters
    ----------
    max_similarity
        Cosine similarity of hashed features above which two messages count as near-duplicates
        in the diverse lists.
    """

    def __init__(self, max_similarity: float = 0.8) -> None:
        self.max_similarity = max_similarity
        self._token: tuple[int, int, int, int] | None = None  # the engine state the pools were built from
        self._pools: _Pools | None = None

    def suggest(self, engine: Refiner, kind: str, label: str | None = None, limit: int = 50) -> list[Suggestion]:
        """The ``limit`` best suggestions of ``kind`` (for ``label``) in ``engine``'s current state."""
        return self.pool(engine).suggest(kind, label, limit)

    def pool(self, engine: Refiner) -> SuggestionPool:
        """``engine``'s pools as they are now, to rank lists from later (`SuggestionPool`)."""
        return SuggestionPool(
            self, self._current(engine), dict(engine.label_index), engine.dataset, engine.model_version
        )

    def _current(self, engine: Refiner) -> _Pools:
        token = (engine.steps, engine.drift.observed, engine.model_version, len(engine.labels))
        if token != self._token or self._pools is None:
            self._pools, self._token = _Pools(engine, engine.seed, self._pools), token
        return self._pools

    # ------------------------------------------------------------------ reviewed pool

    def _check_label(self, pools: _Pools, column: int | None, limit: int) -> list[Suggestion]:
        scores = pools.reviewed_scores
        if not len(scores) or not scores.shape[1]:
            return []
        relative, suspicion = pools.check_matrix
        rows, columns, values = _best(suspicion, column, limit)
        others, other_relative = pools.likeliest_other
        likelier = (other_relative[rows] > relative[rows, columns]).tolist()
        out = []
        for row, c, value, p, t, j, other, hinted in zip(
            rows.tolist(),
            columns.tolist(),
            values.tolist(),
            scores[rows, columns].tolist(),
            pools.self_confidence[columns].tolist(),
            others[rows].tolist(),
            scores[rows, others[rows]].tolist(),
            likelier,
        ):
            name = pools.labels[c]
            hint = f"; it looked more like {pools.labels[j]!r} ({other:.0%})" if hinted else ""
            out.append(
                Suggestion(
                    message_id=pools.reviewed_ids[row],
                    kind="check_label",
                    label=name,
                    score=round(value, 6),
                    reason=(
                        f"Reviewed with {name!r}, but before learning from it the model gave that label "
                        f"{p:.0%} (its reviewed examples average {t:.0%}){hint}: {name!r} may be misapplied."
                    ),
                )
            )
        return out

    def _missed_label(self, pools: _Pools, column: int | None, limit: int) -> list[Suggestion]:
        scores = pools.reviewed_scores
        if not len(scores) or not scores.shape[1]:
            return []
        rows, columns, values = _best(pools.missed_matrix, column, limit)
        return [
            Suggestion(
                message_id=pools.reviewed_ids[row],
                kind="missed_label",
                label=pools.labels[c],
                score=round(value, 6),
                reason=(
                    f"Reviewed without {pools.labels[c]!r}, but before learning from it the model gave that label "
                    f"{p:.0%} (threshold {threshold:.0%}, its reviewed examples average {t:.0%}): "
                    f"{pools.labels[c]!r} may be missing."
                ),
            )
            for row, c, value, p, threshold, t in zip(
                rows.tolist(),
                columns.tolist(),
                values.tolist(),
                scores[rows, columns].tolist(),
                pools.thresholds[columns].tolist(),
                pools.self_confidence[columns].tolist(),
            )
        ]

    # ------------------------------------------------------------------ unreviewed pool

    def _teach_label(self, pools: _Pools, column: int | None, limit: int) -> list[Suggestion]:
        scores = pools.live_scores
        if not len(scores) or not scores.shape[1]:
            return []
        if column is not None:
            value = 1.0 - np.abs(scores[:, column] - pools.thresholds[column])
            chosen = self._diverse(pools, value, limit)
            name, threshold = pools.labels[column], f"{pools.thresholds[column]:.0%}"
            return [
                Suggestion(
                    message_id=pools.live_ids[i],
                    kind="teach_label",
                    label=name,
                    score=round(v, 6),
                    reason=(
                        f"The model gives {name!r} {p:.0%}, close to its threshold {threshold}: "
                        "reviewing it teaches the model the most about that label."
                    ),
                )
                for i, p, v in zip(chosen, scores[chosen, column].tolist(), value[chosen].tolist())
            ]
        leaves = np.flatnonzero(pools.leaves)
        ranked = np.argsort(-scores[:, leaves], axis=1, kind="stable")[:, :2]
        first, second = leaves[ranked[:, 0]], leaves[ranked[:, -1]]
        rows = np.arange(len(scores))
        margin = scores[rows, first] - (scores[rows, second] if len(leaves) > 1 else 0.0)
        value = 1.0 - margin
        chosen = self._diverse(pools, value, limit)
        out = []
        for i in chosen:
            a, b = pools.labels[first[i]], pools.labels[second[i]]
            between = (
                f"between {a!r} ({scores[i, first[i]]:.0%}) and {b!r} ({scores[i, second[i]]:.0%})"
                if len(leaves) > 1
                else f"about {a!r} ({scores[i, first[i]]:.0%})"
            )
            out.append(
                Suggestion(
                    message_id=pools.live_ids[i],
                    kind="teach_label",
                    label=a,
                    score=_r(value[i]),
                    reason=f"The model hesitates {between}: reviewing it teaches the model the most.",
                )
            )
        return out

    def _low_confidence(self, pools: _Pools, column: None, limit: int) -> list[Suggestion]:
        scores = pools.live_scores
        if not len(scores):
            return []
        if scores.shape[1]:
            at = scores >= pools.thresholds
            covered = (at & pools.informative).any(axis=1)
            top = np.argmax(scores, axis=1)
            best = scores[np.arange(len(scores)), top]
        else:
            covered = np.zeros(len(scores), dtype=bool)
            top, best = np.zeros(len(scores), dtype=np.int64), np.zeros(len(scores))
        value = np.where(covered, -np.inf, 1.0 - best)
        chosen = self._diverse(pools, value, limit)
        out = []
        for i in chosen:
            what = (
                f"the most confident is {pools.labels[top[i]]!r} at {best[i]:.0%}"
                if scores.shape[1]
                else "the model knows no label yet"
            )
            out.append(
                Suggestion(
                    message_id=pools.live_ids[i],
                    kind="low_confidence",
                    label=None,
                    score=_r(value[i]),
                    reason=f"No informative label at threshold ({what}): reviewing it raises coverage.",
                )
            )
        return out

    def _rebalance(self, pools: _Pools, column: None, limit: int) -> list[Suggestion]:
        value = 1.0 - pools.reviewed_likeness
        chosen = self._diverse(pools, value, limit)
        return [
            Suggestion(
                message_id=pools.live_ids[i],
                kind="rebalance",
                label=None,
                score=_r(value[i]),
                reason=(
                    f"Unlike the reviewed messages (the balance model gives it {pools.reviewed_likeness[i]:.0%} "
                    "reviewed-likeness): reviewing it makes the reviewed set more representative of the stream."
                ),
            )
            for i in chosen
        ]

    def _shuffle(self, pools: _Pools, column: None, limit: int) -> list[Suggestion]:
        order = np.argsort(pools.shuffle_key, kind="stable")[:limit]
        return [
            Suggestion(
                message_id=pools.live_ids[i],
                kind="shuffle",
                label=None,
                score=_r(1.0 - pools.shuffle_key[i]),
                reason="A uniformly random unreviewed message: an unbiased sample of the stream.",
            )
            for i in order
        ]

    def _diverse(self, pools: _Pools, value: np.ndarray, limit: int) -> list[int]:
        """Indices of the best ``value`` (finite only), near-duplicates of earlier picks moved to the end."""
        if not limit:
            return []
        most = min(4 * limit + 20, _MAX_CANDIDATES)
        order = _ranked(value, pools.shuffle_key, most + limit)  # the candidates, then the list's fill
        if not len(order):
            return []
        candidates = order[:most]
        chosen, waiting = self._spread(pools.unit_features, candidates, limit)
        picked = [int(candidates[k]) for k in chosen + waiting[: limit - len(chosen)]]
        if len(picked) < limit:
            picked += [int(i) for i in order[len(candidates) : len(candidates) + limit - len(picked)]]
        return picked

    def _spread(self, unit: scipy.sparse.csr_matrix, candidates: np.ndarray, limit: int) -> tuple[list[int], list[int]]:
        """Walk ``candidates`` in order: each within ``max_similarity`` of no earlier pick is
        picked, the others wait; stop at ``limit`` picks. Positions (in ``candidates``) of the
        picks and of the waiting ones.

        Near-duplicates are few, so the similarities of the first ``limit + 8`` candidates
        usually settle the list (then of ``2 * limit + 8``, then of all of them): a similarity
        depends on its two rows alone, so the walk is the same as over all candidates at once.
        """
        for size in (limit + 8, 2 * limit + 8, len(candidates)):
            size = min(size, len(candidates))
            near = _near(unit, candidates[:size], self.max_similarity)
            crowded = np.count_nonzero(near, axis=1).tolist()  # earlier candidates each is near
            chosen: list[int] = []
            waiting: list[int] = []
            for k in range(size):
                if crowded[k] and chosen and near[k, chosen].any():
                    waiting.append(k)
                    continue
                chosen.append(k)
                if len(chosen) == limit:
                    return chosen, waiting
            if size == len(candidates):
                break
        return chosen, waiting


def _near(unit: scipy.sparse.csr_matrix, rows: np.ndarray, threshold: float) -> np.ndarray:
    """Which of the ``rows`` of ``unit`` (vectors of unit length) are near-duplicates of an
    earlier one: ``near[k, j]`` for ``j < k`` says whether their cosine is above ``threshold``
    (the entries on and above the diagonal are False).

    The cosines are those of scipy's ``x @ x.T`` (``x = unit[rows]``) to the bit: float32
    products added in float32 one by one, in the order row ``k`` stores its features. They are
    computed from the pairs of entries sharing a feature alone (``np.add.at`` adds in order),
    the lower triangle only, without scipy's fixed cost per product (2.5x faster for 58
    chat messages); when the pairs are too many (long texts sharing most features) or a row
    repeats a feature, scipy computes them.

    >>> x = _matrix([(np.array([1, 2]), np.array([1.0, 1.0])), (np.array([1, 2]), np.array([1.0, 0.9])),
    ...              (np.array([3]), np.array([1.0]))], 4)
    >>> _near(x, np.arange(3), 0.8).astype(int).tolist()
    [[0, 0, 0], [1, 0, 0], [0, 0, 0]]
    """
    n = len(rows)
    starts = unit.indptr[rows]
    lengths = unit.indptr[rows + 1] - starts
    total = int(lengths.sum())
    if n < 2 or not total:
        return np.zeros((n, n), dtype=bool)
    firsts = np.cumsum(lengths) - lengths
    entries = np.arange(total) + np.repeat(starts - firsts, lengths)  # row by row, in stored order
    features, values = unit.indices[entries], unit.data[entries]
    owner = np.repeat(np.arange(n), lengths)
    order = np.argsort(features, kind="stable")  # by feature, then by row: partners of an entry come before it
    grouped = features[order]
    opens = np.empty(total, dtype=bool)
    opens[0] = True
    np.not_equal(grouped[1:], grouped[:-1], out=opens[1:])
    starts_at = np.flatnonzero(opens)
    group_start = np.repeat(starts_at, np.diff(np.append(starts_at, total)))
    position = np.empty(total, dtype=np.int64)
    position[order] = np.arange(total)
    counts = position - group_start[position]  # entries of earlier rows with the same feature
    pairs = int(counts.sum())
    owners = owner[order]
    repeated = bool((~opens[1:] & (owners[1:] == owners[:-1])).any())  # a row with a feature twice
    if pairs > _MAX_PAIRS or repeated:
        x = unit[rows]
        return np.tril((x @ x.T).toarray() > threshold, -1)
    entry = np.repeat(np.arange(total), counts)  # in row k's stored order, as scipy adds
    partner = order[
        np.repeat(group_start[position], counts) + np.arange(pairs) - np.repeat(np.cumsum(counts) - counts, counts)
    ]
    cosines = np.zeros(n * n, dtype=np.float32)
    np.add.at(cosines, owner[entry] * n + owner[partner], values[entry] * values[partner])
    return cosines.reshape(n, n) > threshold


def _ranked(value: np.ndarray, tiebreak: np.ndarray | None, k: int) -> np.ndarray:
    """The first ``k`` indices of the finite entries of ``value``, highest first, ties broken by
    the lowest ``tiebreak`` (if given), then by index: ``np.lexsort((tiebreak, -value))`` (or a
    stable argsort of ``-value``) restricted to finite values, without sorting the whole array.

    >>> _ranked(np.array([0.5, np.inf, 0.9, 0.5, np.nan, 0.1]), np.array([0.3, 0, 0, 0.2, 0, 0]), 3)
    array([2, 3, 0])
    """
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    key = -value
    finite = np.isfinite(key)
    if k < np.count_nonzero(finite):
        # every entry at or above the k-th highest (ties with it included), then sorted exactly
        kth = np.partition(np.where(finite, key, np.inf), k - 1)[k - 1]
        finite &= key <= kth
    rows = np.flatnonzero(finite)
    keys = (key[rows],) if tiebreak is None else (tiebreak[rows], key[rows])
    return rows[np.lexsort(keys)][:k]


class SuggestionPool:
    """An engine's suggestion pools at one state, and the lists ranked from them: what
    `Suggester.suggest` would have answered in that state, whatever the engine does meanwhile.

    The pools are copies (ids, scores, flags) and the live messages' features, which the
    windows replace but never change, so ranking reads nothing of the engine: the worker builds
    a pool beside the metrics, under its lock, and ranks every list of a publication without
    holding the engine, all of them at one model version (`model_version`).

    >>> from pipeline import Refiner
    >>> engine = Refiner("support", seed=0)
    >>> for i in range(3):
    ...     _ = engine.observe({"dataset": "support", "id": f"m-{i}", "timestamp": i, "body": f"card {i} lost"})
    >>> pool = engine.suggestion_pool()
    >>> _ = engine.observe({"dataset": "support", "id": "m-3", "timestamp": 3, "body": "a new one"})
    >>> [s.message_id for s in pool.suggest("shuffle", limit=5)] == [
    ...     s.message_id for s in engine.suggestions("shuffle", limit=5) if s.message_id != "m-3"]
    True
    """

    def __init__(
        self, suggester: Suggester, pools: _Pools, label_index: dict[str, int], dataset: str, model_version: int
    ) -> None:
        self._suggester = suggester
        self._pools = pools
        self._label_index = label_index
        self.dataset = dataset
        self.model_version = model_version

    def suggest(self, kind: str, label: str | None = None, limit: int = 50) -> list[Suggestion]:
        """The ``limit`` best suggestions of ``kind`` (for ``label``) at the pool's state."""
        column = _request(kind, label, limit, self._label_index, self.dataset)
        return getattr(self._suggester, "_" + kind)(self._pools, column, limit)


def _request(kind: str, label: str | None, limit: int, label_index: dict[str, int], dataset: str) -> int | None:
    """The label's column for a list of ``kind`` (None without a label); ValueError for a bad request."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if label is not None and kind not in LABEL_KINDS:
        raise ValueError(f"label: {kind} lists take no label (only {', '.join(LABEL_KINDS)} do), got {label!r}")
    if label is not None and label not in label_index:
        raise ValueError(f"label: {label!r} is not a label of dataset {dataset!r} (no review has pinned it)")
    if not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit: expected a non-negative integer, got {limit!r}")
    return None if label is None else label_index[label]


def _best(values: np.ndarray, column: int | None, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and values of the highest finite entries: of ``column``, or each row's best."""
    if column is None:
        columns = np.argmax(values, axis=1)
        picked = values[np.arange(len(values)), columns]
    else:
        columns = np.full(len(values), column)
        picked = values[:, column]
    order = _ranked(picked, None, limit)
    return order, columns[order], picked[order]


def _matrix(features: list[tuple[np.ndarray, np.ndarray]], n_features: int) -> scipy.sparse.csr_matrix:
    """The vectors as rows of a sparse matrix, each scaled to unit length."""
    indptr = np.zeros(len(features) + 1, dtype=np.int64)
    np.cumsum([len(i) for i, _ in features], out=indptr[1:])
    indices = np.concatenate([i for i, _ in features]) if features else np.zeros(0, np.int32)
    values = (np.concatenate([v for _, v in features]) if features else np.zeros(0)).astype(np.float32)
    matrix = scipy.sparse.csr_matrix((values, indices, indptr), shape=(len(features), n_features))
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = scipy.sparse.diags((1.0 / np.maximum(norms, 1e-12)).astype(np.float32))
    return (scale @ matrix).astype(np.float32)  # rows of unit length: products are cosines


def _uniform(seed: int, message_id: str) -> float:
    """A number in [0, 1) fixed by the seed and the message id (a keyed BLAKE2b hash).

    >>> _uniform(0, "m-1") == _uniform(0, "m-1") != _uniform(1, "m-1")
    True
    """
    digest = hashlib.blake2b(message_id.encode("utf-8"), digest_size=8, key=seed.to_bytes(8, "little")).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _r(value: float) -> float:
    return round(float(value), 6)
