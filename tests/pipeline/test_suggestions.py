"""Specification of the suggestion lists (pipeline.suggestions, DESIGN.md section 5)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agents.ingest.datasets import banking77, nlupp
from pipeline import Refiner, RefinerConfig
from schemas import Annotation, LabelAssignment, Message, Suggestion

CONFIG = RefinerConfig(validation_window=3000, live_window=3000)


def reviewed_as(message: Message, labels, mode="shuffle", t=None) -> Annotation:
    return Annotation(
        dataset=message.dataset,
        message_id=message.id,
        timestamp=message.timestamp if t is None else t,
        labels=tuple(LabelAssignment(name=n) for n in labels),
        mode=mode,
        message=message,
    )


@pytest.fixture(scope="module")
def banking(datasets):
    """2,400 Banking77 training messages in a fixed random order (the file is sorted by intent)."""
    pairs = list(banking77("train", root=datasets))
    order = np.random.default_rng(0).permutation(len(pairs))[:2400]
    return [pairs[i] for i in order]


@pytest.fixture(scope="module")
def flipped_engine(banking):
    """1,800 Banking77 reviews, every 30th with a wrong (neighbouring) intent; 600 more messages observed."""
    names = sorted({r.labels[0].name for _, r in banking})
    engine = Refiner("banking77", CONFIG, seed=0)
    flipped = set()
    for i, (message, truth) in enumerate(banking[:1800]):
        label = truth.labels[0].name
        if i % 30 == 29:
            label = names[(names.index(label) + 7) % len(names)]
            flipped.add(message.id)
        engine.annotate(reviewed_as(message, [label]))
    engine.observe_many([m for m, _ in banking[1800:]])
    return engine, flipped


@pytest.fixture(scope="module")
def young_engine(banking):
    """A model still learning: 200 reviews (most thresholds still at the default), 600 messages observed."""
    engine = Refiner("banking77", CONFIG, seed=0)
    for message, truth in banking[:200]:
        engine.annotate(reviewed_as(message, [truth.labels[0].name]))
    engine.observe_many([m for m, _ in banking[1800:]])
    return engine


def test_check_label_finds_flipped_reviews_far_above_chance(flipped_engine):
    engine, flipped = flipped_engine
    items = engine.suggestions("check_label", limit=len(flipped))
    precision = sum(s.message_id in flipped for s in items) / len(flipped)
    assert precision >= 0.3  # a random pick finds 1 in 30


def test_check_label_for_one_label_lists_only_reviews_pinned_with_it_lowest_confidence_first(flipped_engine):
    engine, _ = flipped_engine
    label = "card_arrival"
    items = engine.suggestions("check_label", label=label, limit=20)
    ids, scores, pinned = engine.validation_records()
    row = {message_id: r for r, message_id in enumerate(ids)}
    column = engine.label_index[label]
    assert items and all(s.label == label and pinned[row[s.message_id], column] for s in items)
    assert [s.score for s in items] == sorted((s.score for s in items), reverse=True)
    assert label in items[0].reason and "misapplied" in items[0].reason


def test_a_review_confirmed_from_a_check_list_leaves_the_check_list(banking):
    engine = Refiner("banking77", CONFIG, seed=0)
    for message, truth in banking[:300]:
        engine.annotate(reviewed_as(message, [r.name for r in truth.labels]))
    first = engine.suggestions("check_label", limit=1)[0]
    message = next(m for m, _ in banking[:300] if m.id == first.message_id)
    engine.annotate(reviewed_as(message, [first.label], mode="check"))
    assert first.message_id not in {s.message_id for s in engine.suggestions("check_label", limit=300)}


def test_missed_label_finds_intents_dropped_from_multi_label_reviews(datasets):
    pairs = list(nlupp("banking", root=datasets))[:1500]
    engine = Refiner(pairs[0][0].dataset, CONFIG, seed=0)
    dropped = set()
    for i, (message, truth) in enumerate(pairs):
        labels = sorted(a.name for a in truth.labels)
        if len(labels) >= 2 and i % 10 == 0 and i >= 500:
            dropped.add((message.id, labels[0]))
            labels = labels[1:]
        engine.annotate(reviewed_as(message, labels))
    items = engine.suggestions("missed_label", limit=len(dropped))
    recall = len({(s.message_id, s.label) for s in items} & dropped) / len(dropped)
    assert recall >= 0.15  # among ~70,000 (review, absent label) pairs


def test_missed_label_never_suggests_a_label_the_review_pinned(flipped_engine):
    engine, _ = flipped_engine
    ids, _, pinned = engine.validation_records()
    row = {message_id: r for r, message_id in enumerate(ids)}
    items = engine.suggestions("missed_label", limit=100)
    assert len(items) == 100
    for s in items:
        assert not pinned[row[s.message_id], engine.label_index[s.label]]


def test_teach_label_ranks_unreviewed_messages_by_closeness_to_the_labels_threshold(flipped_engine):
    engine, _ = flipped_engine
    label = "card_arrival"
    items = engine.suggestions("teach_label", label=label, limit=30)
    ids, scores, _ = engine.unreviewed_pool()
    column, threshold = engine.label_index[label], float(engine.thresholds[engine.label_index[label]])
    closeness = {i: 1 - abs(float(s) - threshold) for i, s in zip(ids, scores[:, column])}
    assert len(items) == 30 and all(s.message_id not in engine.reviewed for s in items)
    assert all(abs(s.score - closeness[s.message_id]) < 1e-5 for s in items)
    assert items[0].score == pytest.approx(max(closeness.values()), abs=1e-6)


def test_teach_label_lists_are_not_near_duplicates(flipped_engine, banking):
    engine = Refiner.restore(flipped_engine[0].snapshot())
    original = banking[1800][0]
    # thirty copies of one message, worded identically, join the pool
    engine.observe_many([dataclasses.replace(original, id=f"copy-{k}") for k in range(30)])
    label = engine.suggestions("teach_label", limit=1)[0].label
    items = engine.suggestions("teach_label", label=label, limit=20)
    assert len(items) == 20
    copies = [s for s in items if s.message_id.startswith("copy-") or s.message_id == original.id]
    assert len(copies) <= 1
    features = [engine.live.features[engine.live.index[s.message_id]] for s in items]
    dense = np.zeros((len(features), engine.n_features), np.float32)
    for r, (indices, values) in enumerate(features):
        dense[r, indices] = values / np.linalg.norm(values)
    similarity = dense @ dense.T
    np.fill_diagonal(similarity, 0)
    assert similarity.max() <= engine.suggester.max_similarity + 1e-6


def test_a_message_leaves_every_unreviewed_list_once_reviewed(young_engine, banking):
    engine = Refiner.restore(young_engine.snapshot())
    kinds = ("teach_label", "low_confidence", "rebalance", "shuffle")
    tops = {kind: engine.suggestions(kind, limit=1)[0].message_id for kind in kinds}
    truth = dict((m.id, r) for m, r in banking)
    messages = dict((m.id, m) for m, _ in banking)
    for message_id in set(tops.values()):
        engine.annotate(reviewed_as(messages[message_id], [a.name for a in truth[message_id].labels], mode="teach"))
    for kind in kinds:
        listed = {s.message_id for s in engine.suggestions(kind, limit=1000)}
        assert listed and not listed & set(tops.values()), kind


def test_low_confidence_lists_only_messages_without_an_informative_label_at_threshold(young_engine):
    engine = young_engine
    items = engine.suggestions("low_confidence", limit=50)
    ids, scores, _ = engine.unreviewed_pool()
    row = {message_id: r for r, message_id in enumerate(ids)}
    assert items
    for s in items:
        at = scores[row[s.message_id]] >= engine.thresholds
        assert not (at & engine.informative).any()
        assert s.score == pytest.approx(1 - float(scores[row[s.message_id]].max()), abs=1e-5)


def test_rebalance_picks_the_topics_a_biased_review_set_left_out(banking):
    intents = sorted({r.labels[0].name for _, r in banking})
    searched = set(intents[:8])
    engine = Refiner("banking77", CONFIG, seed=0)
    engine.observe_many([m for m, _ in banking])
    for message, truth in banking:
        if truth.labels[0].name in searched:
            engine.annotate(reviewed_as(message, [truth.labels[0].name], mode="search"))
    items = engine.suggestions("rebalance", limit=50)
    assert len(items) == 50
    truth = {m.id: r.labels[0].name for m, r in banking}
    from_left_out = sum(truth[s.message_id] not in searched for s in items) / len(items)
    share_left_out = sum(truth[i] not in searched for i in engine.unreviewed_pool()[0]) / len(
        engine.unreviewed_pool()[0]
    )
    assert from_left_out >= share_left_out
    assert from_left_out > 0.95


def test_shuffle_is_fixed_by_the_seed_and_ignores_global_randomness(banking):
    def shuffled(seed, noise):
        np.random.seed(noise)
        engine = Refiner("banking77", CONFIG, seed=seed)
        engine.observe_many([m for m, _ in banking[:500]])
        return [s.message_id for s in engine.suggestions("shuffle", limit=40)]

    assert shuffled(0, 1) == shuffled(0, 2)
    assert shuffled(0, 1) != shuffled(1, 1)


def test_shuffle_keeps_the_order_of_the_others_when_one_is_reviewed(banking):
    engine = Refiner("banking77", CONFIG, seed=3)
    engine.observe_many([m for m, _ in banking[:500]])
    before = [s.message_id for s in engine.suggestions("shuffle", limit=40)]
    message = next(m for m, _ in banking[:500] if m.id == before[5])
    engine.annotate(reviewed_as(message, ["card_arrival"]))
    after = [s.message_id for s in engine.suggestions("shuffle", limit=39)]
    assert len(before) == 40
    assert after == before[:5] + before[6:]


def test_a_shuffle_is_a_uniform_sample_of_the_pool(banking):
    engine = Refiner("banking77", CONFIG, seed=0)
    engine.observe_many([m for m, _ in banking[:2000]])
    position = {m.id: k for k, (m, _) in enumerate(banking[:2000])}
    positions = [position[s.message_id] for s in engine.suggestions("shuffle", limit=400)]
    # a uniform sample of positions 0..1999 has mean ~1000 (standard error ~29)
    assert abs(np.mean(positions) - 1000) < 120


def test_every_suggestion_is_a_schemas_suggestion_with_a_reason(young_engine):
    engine = young_engine
    for kind in ("check_label", "missed_label", "teach_label", "low_confidence", "rebalance", "shuffle"):
        items = engine.suggestions(kind, limit=5)
        assert len(items) == 5, kind
        for s in items:
            assert isinstance(s, Suggestion) and s.kind == kind and s.reason.endswith(".")
            assert Suggestion.from_dict(s.to_dict()) == s


def test_wrong_requests_say_what_is_wrong(flipped_engine):
    engine, _ = flipped_engine
    with pytest.raises(ValueError, match="kind: expected one of"):
        engine.suggestions("teach")
    with pytest.raises(ValueError, match="shuffle lists take no label"):
        engine.suggestions("shuffle", label="card_arrival")
    with pytest.raises(ValueError, match="'nonexistent' is not a label"):
        engine.suggestions("check_label", label="nonexistent")


def test_an_empty_engine_suggests_nothing():
    engine = Refiner("support", CONFIG)
    assert all(
        engine.suggestions(kind) == []
        for kind in ("check_label", "missed_label", "teach_label", "low_confidence", "rebalance", "shuffle")
    )


@pytest.mark.parametrize("state", ["flipped_engine", "young_engine"])
def test_suggestions_survive_snapshot_and_restore(state, request):
    engine = request.getfixturevalue(state)
    engine = engine[0] if isinstance(engine, tuple) else engine
    restored = Refiner.restore(engine.snapshot())
    for kind in ("check_label", "missed_label", "teach_label", "low_confidence", "rebalance", "shuffle"):
        assert restored.suggestions(kind, limit=20) == engine.suggestions(kind, limit=20), kind
        assert engine.suggestions(kind, limit=20) or kind == "low_confidence", kind


def test_lists_follow_new_reviews_and_messages(flipped_engine, banking):
    engine = Refiner.restore(flipped_engine[0].snapshot())
    before = engine.suggestions("teach_label", limit=10)
    assert len(before) == 10
    for message, truth in banking[1800:1900]:
        engine.annotate(reviewed_as(message, [truth.labels[0].name], mode="teach"))
    assert engine.suggestions("teach_label", limit=10) != before


def test_teach_label_over_all_labels_prefers_messages_hesitating_between_two_labels(flipped_engine):
    engine, _ = flipped_engine
    items = engine.suggestions("teach_label", limit=20)
    assert len(items) == 20
    ids, scores, _ = engine.unreviewed_pool()
    top_two = np.sort(scores, axis=1)[:, -2:]
    hesitation = dict(zip(ids, (1 - (top_two[:, 1] - top_two[:, 0])).tolist()))
    assert all(abs(s.score - hesitation[s.message_id]) < 1e-4 for s in items)
    assert items[0].score == pytest.approx(max(hesitation.values()), abs=1e-4)
    assert "hesitates between" in items[0].reason


def test_teach_label_over_all_labels_ignores_parents_tied_with_their_child():
    engine = Refiner("support", CONFIG, seed=0)
    texts = {
        "Card > Delivery": "my card has not arrived",
        "Card > Pin": "I forgot my pin",
        "Refund": "please refund my money",
    }
    for i in range(30):
        for name, text in texts.items():
            engine.annotate(reviewed_as(Message(dataset="support", id=f"r-{i}-{name}", timestamp=i, body=text), [name]))
    engine.observe_many(
        [
            Message(dataset="support", id=f"live-{i}", timestamp=100 + i, body=body)
            for i, body in enumerate(["card not arrived", "pin forgotten", "refund money please"])
        ]
    )
    items = engine.suggestions("teach_label", limit=3)
    assert len(items) == 3
    assert all(s.label != "Card" for s in items)
    assert all(s.score < 0.999 for s in items)  # a parent tied with its child would give a margin of 0
