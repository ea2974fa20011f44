"""Specification of a publication's shortcuts (issue 11): ``metrics`` and the suggestion lists
come out exactly as the plain computations they replace would give them.

Each shortcut is checked against the straightforward computation it replaces (a full sort,
scipy's whole product, scoring from scratch), on real data where the data matters.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given
from hypothesis import strategies as st

from agents.ingest.datasets import banking77, enron
from pipeline import Refiner, RefinerConfig, suggestions
from pipeline.engine import LABEL_KINDS, suggestion_list
from pipeline.suggestions import _matrix, _near, _ranked
from schemas import SUGGESTION_KINDS, Annotation, Message

CONFIG = RefinerConfig(validation_window=2000, live_window=1500, holdout_window=400)


def feed(engine: Refiner, pairs, reviewed_every: int = 3) -> None:
    """Observe every message; review every ``reviewed_every``-th (modes in turn, message inline)."""
    modes = ("shuffle", "check", "label", "missed", "search")
    for i, (message, review) in enumerate(pairs):
        engine.observe(message)
        if i % reviewed_every == 0:
            engine.annotate(dataclasses.replace(review, message=message, mode=modes[i % len(modes)]))


@pytest.fixture(scope="module")
def engine(datasets):
    """Banking77: 1,200 messages in a fixed random order, a third of them reviewed."""
    pairs = list(banking77("train", root=datasets))
    order = np.random.default_rng(3).permutation(len(pairs))[:1200]
    engine = Refiner("banking77", CONFIG, seed=1)
    feed(engine, [pairs[i] for i in order])
    return engine


@pytest.fixture(scope="module")
def emails(datasets):
    """Enron: 300 long emails with two-level labels, a third of them reviewed."""
    pairs = list(enron(root=datasets))[:300]
    engine = Refiner("enron", CONFIG, seed=1)
    feed(engine, pairs)
    return engine


def publication(engine: Refiner, limit: int = 20) -> list[bytes]:
    """Everything a worker publishes for ``engine``, encoded: metrics, then every list."""
    metrics = engine.metrics(now=1.0)
    out = [metrics.encode()]
    for kind in SUGGESTION_KINDS:
        for label in [None, *sorted(metrics.labels)] if kind in LABEL_KINDS else [None]:
            out.append(suggestion_list(engine, kind, now=1.0, label=label, limit=limit).encode())
    return out


# ------------------------------------------------------------------ ranking the top of a pool


@given(
    st.lists(st.sampled_from([0.0, -0.0, 0.25, 0.5, 1.0, np.inf, -np.inf, np.nan]), min_size=0, max_size=60),
    st.integers(0, 70),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_ranked_is_the_head_of_a_full_sort_of_the_finite_values(values, k, tiebreak, seed):
    """Many ties (repeated values, signed zeros, a tiebreak with ties of its own): the same
    indices in the same order as sorting everything."""
    value = np.array(values, dtype=np.float64)
    key = np.random.default_rng(seed).integers(0, 3, len(value)).astype(np.float64) if tiebreak else None
    full = np.lexsort((key, -value)) if key is not None else np.argsort(-value, kind="stable")
    full = full[np.isfinite(value[full])]
    assert _ranked(value, key, k).tolist() == full[:k].tolist()


# ------------------------------------------------------------------ near-duplicates


def near_by_scipy(unit: scipy.sparse.csr_matrix, rows: np.ndarray, threshold: float) -> np.ndarray:
    x = unit[rows]
    return np.tril((x @ x.T).toarray() > threshold, -1)


@pytest.mark.parametrize("most_pairs", [400_000, 0])
@pytest.mark.parametrize("texts", ["engine", "emails"])
def test_near_duplicates_are_those_of_scipys_product_even_at_the_threshold(texts, most_pairs, request, monkeypatch):
    """Real messages (chat lines, long emails), thresholds set exactly at cosines scipy computed:
    a cosine one float32 step off would flip a comparison (also when too many pairs leave the
    product to scipy)."""
    monkeypatch.setattr(suggestions, "_MAX_PAIRS", most_pairs)
    engine = request.getfixturevalue(texts)
    ids = list(engine.live.index)
    unit = _matrix([engine.live.features[engine.live.index[i]] for i in ids], engine.n_features)
    rng = np.random.default_rng(0)
    for size in (2, 9, 58, 108):
        rows = rng.choice(len(ids), size=size, replace=False)
        x = unit[rows]
        cosines = np.tril((x @ x.T).toarray(), -1)
        for threshold in [0.8, *rng.choice(cosines[cosines > 0], 3).tolist()]:
            assert np.array_equal(_near(unit, rows, threshold), near_by_scipy(unit, rows, threshold))


def test_near_duplicates_of_rows_repeating_a_feature_are_still_scipys():
    rows = [(np.array([4, 1, 4]), np.array([0.5, 1.0, 0.5])), (np.array([1, 4]), np.array([1.0, 1.0]))]
    unit = _matrix(rows * 3, 8)
    for threshold in (0.5, 0.9, 0.99):
        assert np.array_equal(_near(unit, np.arange(6), threshold), near_by_scipy(unit, np.arange(6), threshold))


# ------------------------------------------------------------------ the diverse lists


def diverse_in_full(engine: Refiner, value: np.ndarray, limit: int) -> list[int]:
    """The diverse list as first written: sort the whole pool, compare all candidates at once."""
    pools, max_similarity = engine.suggester._current(engine), engine.suggester.max_similarity
    order = np.lexsort((pools.shuffle_key, -value))
    order = order[np.isfinite(value[order])]
    if not len(order) or not limit:
        return []
    candidates = order[: min(4 * limit + 20, 2000)]
    x = _matrix([pools.live_features[i] for i in candidates], pools.n_features)
    similarity = (x @ x.T).toarray()
    chosen: list[int] = []
    waiting: list[int] = []
    for k in range(len(candidates)):
        if chosen and similarity[k, chosen].max() > max_similarity:
            waiting.append(k)
            continue
        chosen.append(k)
        if len(chosen) == limit:
            break
    picked = [int(candidates[k]) for k in chosen + waiting[: limit - len(chosen)]]
    if len(picked) < limit:
        picked += [int(i) for i in order[len(candidates) : len(candidates) + limit - len(picked)]]
    return picked


@pytest.mark.parametrize("limit", [0, 1, 5, 50, 400])
def test_diverse_lists_are_those_of_sorting_and_comparing_everything(engine, limit):
    """Every label's teach_label closeness, ties included (values rounded to two decimals)."""
    pools = engine.suggester._current(engine)
    for column in range(0, len(pools.labels), 7):
        value = 1.0 - np.abs(pools.live_scores[:, column] - pools.thresholds[column])
        for ranked in (value, np.round(value, 2)):
            assert engine.suggester._diverse(pools, ranked, limit) == diverse_in_full(engine, ranked, limit)


def test_the_diverse_list_moves_near_duplicates_to_the_end():
    """A pool of repeated messages: the picks are distinct texts first, then the repeats."""
    repeated = Refiner("banking77", CONFIG, seed=1)
    texts = ["my card has not arrived", "how do I top up", "exchange rate is wrong", "cancel my transfer"]
    repeated.observe_many(
        [
            Message(dataset="banking77", id=f"m{i}", timestamp=float(i), body=texts[i % 4] + "!" * (i // 4))
            for i in range(40)
        ]
    )
    listed = repeated.suggestions("low_confidence", limit=10)
    bodies = [texts[int(s.message_id[1:]) % 4] for s in listed]
    assert sorted(bodies[:4]) == sorted(texts) and len(listed) == 10
    pools = repeated.suggester._current(repeated)
    value = np.ones(len(pools.live_ids))  # no label yet: every message as unsure as the others
    assert repeated.suggester._diverse(pools, value, 10) == diverse_in_full(repeated, value, 10)


# ------------------------------------------------------------------ one scoring of the live window


def test_metrics_and_lists_are_the_same_whatever_was_computed_before(engine):
    """A fresh engine (nothing cached), the same state published again, and lists asked for
    before metrics: the same bytes."""
    fresh = Refiner.restore(engine.snapshot())
    reference = publication(fresh)
    assert publication(engine) == reference
    assert publication(engine) == reference
    again = Refiner.restore(engine.snapshot())
    early = [suggestion_list(again, kind, now=1.0, limit=20).encode() for kind in SUGGESTION_KINDS]
    assert publication(again) == reference
    assert early == [suggestion_list(fresh, kind, now=1.0, limit=20).encode() for kind in SUGGESTION_KINDS]


@pytest.mark.parametrize("event", ["messages", "review", "removal"])
@pytest.mark.parametrize("first", ["metrics", "lists"])
def test_a_publication_after_an_event_matches_one_of_a_fresh_engine(engine, datasets, event, first):
    """Lists were ranked and metrics scored the live window; then an event changes the state:
    neither the next metrics nor the lists may reuse what was worked out before it."""
    state = Refiner.restore(engine.snapshot())
    state.suggestions("shuffle")  # pools of the state before (their shuffle keys outlive them)
    state.metrics(now=1.0)  # leaves its scores of the live window for the next pools
    messages = [m for m, _ in zip((m for m, _ in banking77("test", root=datasets)), range(50))]
    if event == "messages":
        state.observe_many(messages)
    elif event == "review":
        message = messages[0]
        state.annotate(Annotation(dataset="banking77", message_id=message.id, timestamp=9e9, message=message))
    else:
        reviewed = next(iter(state.reviewed))
        state.annotate(Annotation(dataset="banking77", message_id=reviewed, timestamp=9e9, action="remove"))
    fresh = Refiner.restore(state.snapshot())
    if first == "metrics":
        assert state.metrics(now=1.0) == fresh.metrics(now=1.0)
    assert [suggestion_list(state, k, now=1.0, limit=20).encode() for k in SUGGESTION_KINDS] == [
        suggestion_list(fresh, k, now=1.0, limit=20).encode() for k in SUGGESTION_KINDS
    ]
    assert state.suggester._pools.live_ids == fresh.suggester._pools.live_ids
    assert state.suggester._pools.live_scores.tobytes() == fresh.suggester._pools.live_scores.tobytes()
    assert state.metrics(now=1.0) == fresh.metrics(now=1.0)


def test_the_unreviewed_pool_is_scored_as_from_scratch(emails):
    """Two-level labels (a parent raised to its child): the pool's scores, taken from metrics'
    scoring, equal the model's scores of those messages now."""
    emails.metrics(now=1.0)
    ids, scores, _ = emails.unreviewed_pool()
    assert emails._live_cache is None  # taken by the pool
    fresh_ids, fresh_scores, _ = Refiner.restore(emails.snapshot()).unreviewed_pool()
    assert ids == fresh_ids and scores.tobytes() == fresh_scores.tobytes()


def _published(engine: Refiner) -> list[bytes]:
    """A publication's bytes: the metrics, then every list (every label of the label kinds)."""
    metrics = engine.metrics(now=5.0)
    lists = [
        suggestion_list(engine, kind, now=5.0, label=label, limit=20).encode()
        for kind in SUGGESTION_KINDS
        for label in (sorted(metrics.labels) if kind in LABEL_KINDS else [None])
    ]
    return [metrics.encode(), *lists]


@pytest.mark.parametrize("name", ["banking77", "enron"])
def test_a_frozen_copy_publishes_what_the_engine_would_have_when_it_was_taken(datasets, name):
    """The worker takes the copy under its lock and publishes from it while the engine goes on:
    new reviews (new labels), live messages overwriting the window's slots, a removal."""
    pairs = list(banking77("train", root=datasets))[:1500] if name == "banking77" else list(enron(root=datasets))[:400]
    engine = Refiner(name, dataclasses.replace(CONFIG, live_window=500), seed=2)
    feed(engine, pairs[: len(pairs) // 2])
    frozen = engine.frozen()
    expected = _published(engine)
    labels = len(engine.labels)
    feed(engine, pairs[len(pairs) // 2 :])
    removed = pairs[0][0]
    engine.annotate(Annotation(dataset=name, message_id=removed.id, timestamp=1e9, action="remove"))
    assert len(engine.labels) > labels
    assert _published(frozen) == expected != _published(engine)


def test_a_frozen_copy_of_an_engine_with_a_plugged_river_model_keeps_the_model_as_it_was(datasets):
    from river import naive_bayes

    pairs = list(banking77("train", root=datasets))[:300]
    engine = Refiner("banking77", CONFIG, seed=2, model=naive_bayes.ComplementNB())
    feed(engine, pairs[:150])
    frozen, expected = engine.frozen(), _published(engine)
    feed(engine, pairs[150:])
    assert _published(frozen) == expected != _published(engine)


def test_a_frozen_copy_refuses_to_score_a_message_it_does_not_hold(engine):
    message = Message(dataset="banking77", id="new", timestamp=1.0, body="a sentence never seen xqzvw")
    with pytest.raises(IndexError, match="scores only the messages it holds"):
        engine.frozen().predict(message)
