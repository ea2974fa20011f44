"""Specification of recommended actions (pipeline.actions): warnings and weak factors -> suggestion kinds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agents.ingest.datasets import banking77
from pipeline import Refiner, RefinerConfig
from pipeline.actions import recommend
from schemas import Action, Balance, Factor, LabelMetrics, LabelWarning, Rating


def warning(code: str, severity: str = "amber") -> LabelWarning:
    return LabelWarning(code=code, severity=severity, message=f"{code} message", action="x")


def label(ap: float | None, *codes: str, pinned: int = 40) -> LabelMetrics:
    return LabelMetrics(
        precision=None,
        recall=None,
        f1=None,
        average_precision=ap,
        threshold=0.5,
        support=0 if ap is None else 20,
        pinned=pinned,
        warnings=tuple(warning(c) for c in codes),
    )


def rating(coverage: float = 80.0, balance: float = 80.0) -> Rating:
    factors = {
        "all_labels": Factor(score=80.0, band="Good"),
        "underperforming_labels": Factor(score=80.0, band="Good"),
        "coverage": Factor(score=coverage, band="Good" if coverage >= 70 else "Average"),
        "balance": Factor(score=balance, band="Good" if balance >= 70 else "Poor"),
    }
    return Rating(score=80.0, band="Good", ready=False, factors=factors)


HEALTHY = Balance(score=90.0, similarity=0.9, shuffle_share=0.3)


def kinds(actions) -> list[tuple[str, str | None]]:
    return [(a.kind, a.label) for a in actions]


def test_too_few_examples_is_fixed_by_teaching_and_searching():
    actions = recommend({"Refund": label(None, "few_pinned", pinned=3)}, rating(), HEALTHY)
    assert kinds(actions) == [("teach_label", "Refund"), ("search", "Refund")]


def test_inconsistent_reviews_are_fixed_by_check_and_missed_label():
    actions = recommend({"Refund": label(0.4, "low_average_precision"), "Card": label(0.95)}, rating(), HEALTHY)
    assert set(kinds(actions)) == {("check_label", "Refund"), ("missed_label", "Refund")}


def test_a_label_never_predicted_live_is_taught():
    actions = recommend({"Refund": label(0.8, "never_predicted")}, rating(), HEALTHY)
    assert kinds(actions) == [("teach_label", "Refund")]


def test_low_coverage_is_fixed_by_low_confidence_reviews():
    actions = recommend({"Card": label(0.95)}, rating(coverage=40.0), HEALTHY)
    assert kinds(actions) == [("low_confidence", None)]
    assert actions[0].expected_gain == pytest.approx(0.2 * (80 - 40))


def test_low_balance_is_fixed_by_rebalance_for_similarity_and_shuffle_for_the_unbiased_share():
    biased = Balance(score=35.0, similarity=0.5, shuffle_share=0.0)
    actions = recommend({"Card": label(0.95)}, rating(balance=35.0), biased)
    assert set(kinds(actions)) == {("rebalance", None), ("shuffle", None)}
    only_share = recommend(
        {"Card": label(0.95)}, rating(balance=65.0), Balance(score=65.0, similarity=0.93, shuffle_share=0.0)
    )
    assert kinds(only_share)[0] == ("shuffle", None)


def test_nothing_is_recommended_for_a_healthy_model():
    assert recommend({"Card": label(0.95), "Refund": label(0.92)}, rating(), HEALTHY) == ()


def test_actions_are_ordered_by_expected_gain_the_worst_label_first():
    labels = {
        "A": label(0.65, "low_average_precision"),
        "B": label(0.3, "low_average_precision"),
        **{f"L{i}": label(0.95) for i in range(10)},
    }
    actions = recommend(labels, rating(coverage=60.0), HEALTHY)
    gains = [a.expected_gain for a in actions]
    assert gains == sorted(gains, reverse=True)
    order = [a.label for a in actions]
    assert order[:2] == ["B", "B"] and order.index("A") > 1  # B's AP is lower: fixing it gains more
    assert ("low_confidence", None) in kinds(actions)


def test_a_real_engine_reports_actions_and_drift_in_its_metrics(datasets):
    pairs = list(banking77("train", root=datasets))
    order = np.random.default_rng(0).permutation(len(pairs))[:400]
    engine = Refiner("banking77", RefinerConfig(validation_window=1000, live_window=1000), seed=0)
    for i in order:
        message, truth = pairs[i]
        engine.annotate(dataclasses.replace(truth, message=message, mode="search"))
    metrics = engine.metrics(now=1.0).to_dict()
    assert metrics["drift"] == []
    actions = metrics["actions"]
    assert actions and all(set(a) == {"kind", "label", "why", "expected_gain"} for a in actions)
    assert [a["expected_gain"] for a in actions] == sorted((a["expected_gain"] for a in actions), reverse=True)
    # 400 reviews over 77 intents: every intent has too few examples
    assert "teach_label" in {a["kind"] for a in actions} and len(actions) == 20
    assert all(Action.from_dict(a) for a in actions)


def test_a_label_outside_the_map_does_not_dilute_the_gain_of_the_labels_in_it():
    """The "all labels" factor is the MAP of the labels with ``map_min_support`` held-out
    positives: a label with an AP over fewer is not one of them, so a label's share of the
    factor (and the gain of fixing it) does not change when such a label is added."""
    labels = {"Refund": label(0.4, "low_average_precision"), "Card": label(0.95)}
    rare = dataclasses.replace(label(0.9), support=2)
    alone = recommend(labels, rating(), HEALTHY)
    with_rare = recommend({**labels, "Rare": rare}, rating(), HEALTHY)
    assert [a.expected_gain for a in alone if a.label == "Refund"] == [
        a.expected_gain for a in with_rare if a.label == "Refund"
    ]
