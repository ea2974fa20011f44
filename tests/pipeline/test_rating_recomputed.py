"""The rating, "ready", MAP, the label warnings that block "ready", and the check_label and
missed_label scores, recomputed here from their written definitions, never by calling the code
under test, and compared with what the engine reports.

The definitions (DESIGN.md section 4, docs/refine.md *The rating: Communications Mining's rules*,
docs/monitoring.md), as issue 9 set them:

- the per-label figures (support, AP) come from the held-out reviews, re-scored by the current
  model: a label's *support* is its held-out positives;
- MAP (one MAP): the mean AP of the labels with at least ``map_min_support`` held-out positives;
  the published ``map`` and the *all labels* factor are that same number;
- *underperforming labels*: the labels that matter (a current pinned review) ranked by their
  warnings (red counts 2, amber 1), lowest AP first among equals (a label with no AP yet first
  of all); the first 10% of them (at least one); the factor is 100 x their mean AP (over those
  with an AP; 0 when none has one);
- *coverage* = 100 x coverage; *balance* = the balance score,
  ``100 x (0.7 x similarity + 0.3 x min(1, shuffle_share / 0.2)) x (1 - search_share / 2)``,
  the shares counted over every current review (shuffle and rebalance reviews are unbiased);
  a factor without data scores 0;
- overall = 0.4 all labels + 0.2 underperforming + 0.2 coverage + 0.2 balance;
- bands: Poor < 50 <= Average < 70 <= Good < 90 <= Excellent;
- ready = overall Good or better, every factor Good or better, and no red or amber warning on
  a label that matters;
- warnings: ``few_pinned`` below ``few_pinned_amber`` pinned examples (red below
  ``few_pinned_red``); ``low_average_precision`` with support >= 5 and AP below 0.7 (red below
  0.5);
- ``check_label`` (L): ``other / (other + p_L / t_L)``, ``t_L`` L's mean out-of-sample confidence
  over the reviews pinned with L (never below 0.05, pipeline/suggestions.py), ``other`` the largest
  ``p_j / t_j`` over labels not pinned; reviews pinned with L only, those last reviewed from a
  check or missed list left out; with no label, each review once, with its most suspicious label;
- ``missed_label`` (L): ``logit(p_L) - logit(threshold_L)`` over reviews not pinned with L (same
  exclusion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agents.ingest.datasets import banking77
from pipeline import Refiner, RefinerConfig
from pipeline.rating import balance_score, rate
from schemas import Annotation, LabelAssignment, LabelWarning

CONFIG = RefinerConfig(validation_window=2000, live_window=600)
WEIGHTS = {"all_labels": 0.4, "underperforming_labels": 0.2, "coverage": 0.2, "balance": 0.2}
HEALTHY_SHUFFLE_SHARE = 0.2  # CM's "ideally 20%+"
MAP_MIN_SUPPORT = 5  # held-out positives a label needs to count in MAP (the documented default)
EDGES = (50.0, 70.0, 90.0)


# -- the definitions, written out ------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    """What the rating needs to know of one label."""

    ap: float | None
    support: int  # held-out positives
    red: int = 0
    amber: int = 0
    matters: bool = True  # has a current pinned review


def expected_band(score: float) -> str:
    return "Excellent" if score >= 90 else "Good" if score >= 70 else "Average" if score >= 50 else "Poor"


def expected_map(labels: dict[str, Label], min_support: int) -> float | None:
    aps = [m.ap for m in labels.values() if m.ap is not None and m.support >= min_support]
    return sum(aps) / len(aps) if aps else None


def expected_underperforming(labels: dict[str, Label]) -> list[str]:
    matter = [name for name, m in labels.items() if m.matters]
    ranked = sorted(
        matter,
        key=lambda n: (-(2 * labels[n].red + labels[n].amber), -math.inf if labels[n].ap is None else labels[n].ap),
    )
    return ranked[: max(1, math.ceil(0.1 * len(ranked)))] if ranked else []


def expected_factors(
    labels: dict[str, Label], coverage: float | None, balance: float | None, min_support: int
) -> dict[str, float]:
    mean_ap = expected_map(labels, min_support)
    worst = [labels[n].ap for n in expected_underperforming(labels) if labels[n].ap is not None]
    return {
        "all_labels": 100.0 * mean_ap if mean_ap is not None else 0.0,
        "underperforming_labels": 100.0 * sum(worst) / len(worst) if worst else 0.0,
        "coverage": 100.0 * coverage if coverage is not None else 0.0,
        "balance": balance if balance is not None else 0.0,
    }


def expected_overall(factors: dict[str, float]) -> float:
    return sum(WEIGHTS[name] * score for name, score in factors.items())


def expected_ready(factors: dict[str, float], labels: dict[str, Label]) -> bool:
    warned = any(m.red + m.amber for m in labels.values() if m.matters)
    return expected_overall(factors) >= 70 and all(score >= 70 for score in factors.values()) and not warned


def expected_balance(similarity: float | None, shuffle_share: float | None, search_share: float | None) -> float | None:
    if similarity is None:
        return None
    shuffle = min(1.0, (shuffle_share or 0.0) / HEALTHY_SHUFFLE_SHARE)
    return 100.0 * (0.7 * similarity + 0.3 * shuffle) * (1.0 - (search_share or 0.0) / 2)


def expected_severities(pinned: int, support: int, ap: float | None, config: RefinerConfig) -> dict[str, str]:
    """The severity of the ``few_pinned`` and ``low_average_precision`` warnings a label must have."""
    out = {}
    if pinned < config.few_pinned_amber:
        out["few_pinned"] = "red" if pinned < config.few_pinned_red else "amber"
    if ap is not None and support >= 5 and ap < 0.7:
        out["low_average_precision"] = "red" if ap < 0.5 else "amber"
    return out


def _near_an_edge(score: float) -> bool:
    return any(abs(score - edge) < 1e-3 for edge in EDGES)


def _warnings(label: Label) -> tuple[LabelWarning, ...]:
    def one(severity: str) -> LabelWarning:
        return LabelWarning(code="few_pinned", severity=severity, message="", action="teach_label")

    return tuple(one("red") for _ in range(label.red)) + tuple(one("amber") for _ in range(label.amber))


def _rate(labels: dict[str, Label], coverage: float | None, balance: float | None):
    """The code under test, given the inputs its caller (Refiner.metrics) gives it."""
    label_aps = {name: m.ap for name, m in labels.items() if m.ap is not None}
    map_aps = {name: ap for name, ap in label_aps.items() if labels[name].support >= MAP_MIN_SUPPORT}
    warnings = {name: _warnings(m) for name, m in labels.items() if m.matters}
    return rate(map_aps, warnings, label_aps, coverage, balance, None, 100, None, None)


# -- the rating function over any input ----------------------------------------------------------

_labels = st.lists(
    st.builds(
        Label,
        ap=st.none() | st.floats(0.0, 1.0),
        support=st.integers(0, 12),
        red=st.integers(0, 2),
        amber=st.integers(0, 2),
        matters=st.booleans(),
    ),
    max_size=40,
).map(lambda ls: {f"L{i}": m for i, m in enumerate(ls)})


@given(
    labels=_labels,
    coverage=st.none() | st.floats(0.0, 1.0),
    balance=st.none() | st.floats(0.0, 100.0),
)
def test_the_rating_of_any_input_is_the_weighted_factors_with_bands_and_ready_as_defined(labels, coverage, balance):
    factors = expected_factors(labels, coverage, balance, MAP_MIN_SUPPORT)
    overall = expected_overall(factors)
    assume(not _near_an_edge(overall) and not any(_near_an_edge(f) for f in factors.values()))
    rating = _rate(labels, coverage, balance)
    assert {name: f.score for name, f in rating.factors.items()} == pytest.approx(factors, abs=1e-3)
    assert {name: f.band for name, f in rating.factors.items()} == {n: expected_band(s) for n, s in factors.items()}
    assert rating.score == pytest.approx(overall, abs=1e-3)
    assert rating.band == expected_band(overall)
    assert rating.ready == expected_ready(factors, labels)
    mean_ap = expected_map(labels, MAP_MIN_SUPPORT)
    assert rating.factors["all_labels"].metrics["mean_average_precision"] == (
        None if mean_ap is None else pytest.approx(mean_ap, abs=1e-6)
    )


@given(
    similarity=st.none() | st.floats(0.0, 1.0),
    shares=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)).filter(lambda s: s[0] + s[1] <= 1.0),
)
def test_the_balance_score_of_any_input_follows_its_formula_with_a_20_percent_shuffle_target(similarity, shares):
    shuffle_share, search_share = shares
    score = balance_score(similarity, shuffle_share, RefinerConfig().healthy_shuffle_share, search_share)
    expected = expected_balance(similarity, shuffle_share, search_share)
    assert score == (None if expected is None else pytest.approx(expected, abs=1e-3))


def test_underperforming_labels_are_those_with_the_most_significant_warnings_not_the_lowest_ap():
    labels = {f"L{i}": Label(ap=0.5 + 0.05 * i, support=10) for i in range(10)}  # L0 has the lowest AP
    labels["L8"] = Label(ap=0.9, support=10, amber=1)
    labels["L9"] = Label(ap=0.95, support=10, red=1)  # one red outweighs one amber
    assert expected_underperforming(labels) == ["L9"]
    assert _rate(labels, 0.9, 90.0).factors["underperforming_labels"].score == pytest.approx(95.0)
    labels["L8"] = Label(ap=0.9, support=10, amber=3)  # three ambers outweigh one red
    assert _rate(labels, 0.9, 90.0).factors["underperforming_labels"].score == pytest.approx(90.0)


def test_the_all_labels_factor_is_the_one_map_over_labels_with_enough_held_out_positives():
    labels = {"A": Label(ap=0.9, support=5), "B": Label(ap=0.7, support=9), "C": Label(ap=0.1, support=4)}
    factor = _rate(labels, 0.9, 90.0).factors["all_labels"]
    assert factor.score == pytest.approx(80.0)  # C (4 held-out positives) is not in MAP
    assert factor.metrics["mean_average_precision"] == pytest.approx(0.8)


GOOD = {"labels": {f"L{i}": Label(ap=0.95, support=20) for i in range(20)}, "coverage": 0.9, "balance": 90.0}


def _with(**labels: Label) -> dict[str, Label]:
    return {**GOOD["labels"], **labels}


@pytest.mark.parametrize(
    "change, ready",
    [
        ({}, True),
        ({"labels": _with(L0=Label(ap=0.2, support=20))}, False),  # the underperforming factor below Good
        ({"labels": {f"L{i}": Label(ap=0.6, support=20) for i in range(20)}}, False),  # all labels below Good
        ({"coverage": 0.65}, False),
        ({"coverage": None}, False),  # no live traffic: coverage unknown
        ({"balance": 65.0}, False),
        ({"balance": None}, False),
        ({"labels": _with(L0=Label(ap=0.95, support=20, red=1))}, False),
        ({"labels": _with(L0=Label(ap=0.95, support=20, amber=1))}, False),  # amber blocks ready too
        ({"labels": _with(X=Label(ap=None, support=0, red=1, matters=False))}, True),  # not a label that matters
        ({"labels": {}}, False),  # no label yet
        ({"labels": {f"L{i}": Label(ap=0.95, support=4) for i in range(20)}}, False),  # none in MAP yet
    ],
    ids=[
        "all-good",
        "worst-label",
        "all-labels",
        "coverage",
        "no-coverage",
        "balance",
        "no-balance",
        "red",
        "amber",
        "warned-but-unpinned",
        "no-labels",
        "no-map",
    ],
)
def test_each_ready_condition_alone_decides_ready(change, ready):
    case = {**GOOD, **change}
    factors = expected_factors(case["labels"], case["coverage"], case["balance"], MAP_MIN_SUPPORT)
    assert expected_ready(factors, case["labels"]) is ready  # the definition itself, then the code
    assert _rate(case["labels"], case["coverage"], case["balance"]).ready is ready


# -- the engine's published figures ----------------------------------------------------------------


def _review(message, label: str, mode: str) -> Annotation:
    return Annotation(
        dataset=message.dataset,
        message_id=message.id,
        timestamp=message.timestamp,
        labels=(LabelAssignment(name=label),),
        mode=mode,
        message=message,
    )


@pytest.fixture(scope="module")
def engines(datasets):
    """Banking77 engines at three stages (young, trained, trained with a biased review set),
    every 25th review's label flipped and every 40th made from a check list."""
    pairs = list(banking77("train", root=datasets))
    order = np.random.default_rng(1).permutation(len(pairs))
    pairs = [pairs[i] for i in order[:2600]]
    names = sorted({r.labels[0].name for _, r in pairs})

    def build(reviews: int, mode: str = "shuffle", only=None) -> Refiner:
        engine = Refiner("banking77", CONFIG, seed=0)
        engine.observe_many([m for m, _ in pairs[2000:2300]])  # live traffic first: the balance model's other side
        done = 0
        for i, (message, truth) in enumerate(pairs[:2000]):
            if done >= reviews:
                break
            label = truth.labels[0].name
            if only is not None and label not in only:
                continue
            if i % 25 == 24:
                label = names[(names.index(label) + 5) % len(names)]
            engine.annotate(_review(message, label, "check" if i % 40 == 39 else mode))
            done += 1
        engine.observe_many([m for m, _ in pairs[2300:]])
        return engine

    return {
        "young": build(60),
        "trained": build(1500),
        "biased": build(400, mode="search", only=set(names[:12])),
    }


STAGES = pytest.mark.parametrize("stage", ["young", "trained", "biased"])


def _labels_of(snapshot) -> dict[str, Label]:
    return {
        name: Label(
            ap=m.average_precision,
            support=m.support,
            red=sum(w.severity == "red" for w in m.warnings),
            amber=sum(w.severity == "amber" for w in m.warnings),
            matters=m.pinned > 0,
        )
        for name, m in snapshot.labels.items()
    }


@STAGES
def test_the_published_rating_factors_ready_map_and_warnings_follow_their_definitions(engines, stage):
    engine = engines[stage]
    snapshot = engine.metrics()
    labels = _labels_of(snapshot)
    assert any(m.ap is not None for m in labels.values()), "no label has an AP: nothing is recomputed"
    for name, m in snapshot.labels.items():
        reported = {w.code: w.severity for w in m.warnings if w.code in ("few_pinned", "low_average_precision")}
        assert reported == expected_severities(m.pinned, m.support, m.average_precision, CONFIG), name
    assert len(engine.reviewed) == snapshot.reviewed  # the registry forgot nothing: the shares can be counted
    modes = [mode for _, mode in engine.reviewed.values()]
    shuffle_share = sum(mode in ("shuffle", "rebalance") for mode in modes) / len(modes)
    search_share = sum(mode == "search" for mode in modes) / len(modes)
    assert snapshot.balance.shuffle_share == pytest.approx(shuffle_share, abs=1e-6)
    assert snapshot.balance.search_share == pytest.approx(search_share, abs=1e-6)
    balance = expected_balance(snapshot.balance.similarity, shuffle_share, search_share)
    if balance is None:
        assert snapshot.balance.score is None
    else:
        assert snapshot.balance.score == pytest.approx(balance, abs=1e-3)
    factors = expected_factors(labels, snapshot.coverage, balance, MAP_MIN_SUPPORT)
    assert {name: f.score for name, f in snapshot.rating.factors.items()} == pytest.approx(factors, abs=1e-3)
    assert snapshot.rating.score == pytest.approx(expected_overall(factors), abs=1e-3)
    assert snapshot.rating.band == expected_band(expected_overall(factors))
    assert snapshot.rating.ready == expected_ready(factors, labels)
    mean_ap = expected_map(labels, MAP_MIN_SUPPORT)
    assert snapshot.map == (None if mean_ap is None else pytest.approx(mean_ap, abs=1e-5))  # one MAP
    assert snapshot.rating.factors["all_labels"].metrics["mean_average_precision"] == snapshot.map


@STAGES
def test_the_per_label_figures_come_from_the_held_out_reviews(engines, datasets, stage):
    """About ``holdout_share`` of the reviews are held out, a label's support is its held-out
    positives and its AP the AP of their scores (sklearn's definition). The scores are the
    validation twin's (the model in force less the held-out reviews: tests/pipeline/test_refiner.py
    checks them exactly), so they are not the model in force's, which learned those reviews."""
    from sklearn.metrics import average_precision_score

    engine = engines[stage]
    snapshot = engine.metrics()
    ids, scores, pinned = engine.holdout_records()
    assert set(ids) <= set(engine.reviewed)
    messages = {m.id: m for m, _ in banking77("train", root=datasets)}
    in_force = np.array([list(engine.predict(messages[i]).confidences.values()) for i in ids[:20]])
    assert not np.allclose(in_force, scores[:20], atol=1e-4)
    assert 0.5 * CONFIG.holdout_share * snapshot.reviewed <= len(ids) <= 2.0 * CONFIG.holdout_share * snapshot.reviewed
    checked = 0
    for column, name in enumerate(engine.labels):
        m = snapshot.labels[name]
        assert m.support == int(pinned[:, column].sum()), name
        if m.support and m.support < len(ids):
            ap = average_precision_score(pinned[:, column], scores[:, column].astype(np.float64))
            assert m.average_precision == pytest.approx(ap, abs=1e-5), name
            checked += 1
    assert checked


def test_the_stages_cover_both_sides_of_the_conditions(engines):
    """The engine-level checks above see red and amber warnings and none, factors below and above
    Good, labels outside MAP, and an underperforming label that is not among the lowest APs."""
    snapshots = {stage: engine.metrics() for stage, engine in engines.items()}
    labels = {stage: _labels_of(snap) for stage, snap in snapshots.items()}
    assert sum(m.red for m in labels["young"].values()) > 0
    assert any(m.amber for ls in labels.values() for m in ls.values())
    scores = [f.score for snap in snapshots.values() for f in snap.rating.factors.values()]
    assert min(scores) < 70 <= max(scores)
    assert any(snap.map is not None for snap in snapshots.values())
    assert any(m.ap is not None and m.support < MAP_MIN_SUPPORT for ls in labels.values() for m in ls.values())
    assert all(snap.balance.similarity is not None for snap in snapshots.values())
    by_ap = {
        stage: sorted(m.ap for m in ls.values() if m.matters and m.ap is not None)[: len(expected_underperforming(ls))]
        for stage, ls in labels.items()
    }
    assert any(
        sorted(ls[n].ap for n in expected_underperforming(ls) if ls[n].ap is not None) != by_ap[stage]
        for stage, ls in labels.items()
    )


def _pools(engine: Refiner):
    ids, scores, pinned = engine.validation_records()
    scores = scores.astype(np.float64)
    confirmed = np.array([engine.reviewed[i][1] in ("check", "missed") for i in ids])
    positives = pinned.sum(axis=0)
    mean_self = np.array(
        [scores[pinned[:, c], c].mean() if positives[c] else 0.5 for c in range(scores.shape[1])], dtype=np.float64
    )
    return ids, scores, pinned, confirmed, np.maximum(mean_self, 0.05)


def expected_check(engine: Refiner) -> dict[tuple[str, str], float]:
    """check_label's score of every (review, pinned label) pair it may list."""
    ids, scores, pinned, confirmed, t = _pools(engine)
    out = {}
    for r, message_id in enumerate(ids):
        if confirmed[r]:
            continue
        relative = scores[r] / t
        others = [relative[j] for j in range(len(relative)) if not pinned[r, j]]
        other = max(others) if others else 0.0
        for c in np.flatnonzero(pinned[r]):
            out[(message_id, engine.labels[c])] = other / (other + relative[c])
    return out


def expected_missed(engine: Refiner) -> dict[tuple[str, str], float]:
    """missed_label's score of every (review, label not pinned) pair it may list."""
    ids, scores, pinned, confirmed, _ = _pools(engine)

    def logit(p):
        p = min(max(p, 1e-6), 1 - 1e-6)
        return math.log(p / (1 - p))

    thresholds = [float(engine.thresholds[c]) for c in range(len(engine.labels))]
    out = {}
    for r, message_id in enumerate(ids):
        if confirmed[r]:
            continue
        for c in np.flatnonzero(~pinned[r]):
            out[(message_id, engine.labels[c])] = logit(scores[r, c]) - logit(thresholds[c])
    return out


def _assert_ranked_by(items, expected: dict, limit: int, label: str | None) -> None:
    pool = {pair: score for pair, score in expected.items() if label is None or pair[1] == label}
    if label is None:  # each review once, with its best label
        best: dict[str, float] = {}
        for (message_id, _), score in pool.items():
            best[message_id] = max(best.get(message_id, -math.inf), score)
        top = sorted(best.values(), reverse=True)[:limit]
    else:
        top = sorted(pool.values(), reverse=True)[:limit]
    assert len(items) == len(top) > 0
    for s in items:
        assert s.score == pytest.approx(expected[(s.message_id, s.label)], abs=2e-6)
    assert [s.score for s in items] == pytest.approx(top, abs=2e-6)
    if label is None:
        assert len({s.message_id for s in items}) == len(items)


@pytest.mark.parametrize("label", [None, "card_arrival", "top_up_failed"])
def test_check_label_scores_and_order_follow_the_definition(engines, label):
    engine = engines["trained"]
    items = engine.suggestions("check_label", label=label, limit=40)
    expected = expected_check(engine)
    _assert_ranked_by(items, expected, 40, label)
    confirmed = {i for i, (_, mode) in engine.reviewed.items() if mode == "check"}
    assert confirmed and not confirmed & {s.message_id for s in engine.suggestions("check_label", limit=5000)}


@pytest.mark.parametrize("label", [None, "card_arrival", "top_up_failed"])
def test_missed_label_scores_and_order_follow_the_definition(engines, label):
    engine = engines["trained"]
    items = engine.suggestions("missed_label", label=label, limit=40)
    _assert_ranked_by(items, expected_missed(engine), 40, label)
