"""Specification of the validation metrics (pipeline.metrics) and the rating (pipeline.rating)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from pipeline.metrics import (
    auc,
    average_precision,
    binned_thresholds,
    choose_thresholds,
    precision_recall_f1,
    threshold_counts,
    thresholds_from_counts,
)
from pipeline.rating import balance_score, band, label_warnings, mean_average_precision, rate
from schemas import LabelWarning, Rating


@pytest.fixture
def scored():
    rng = np.random.default_rng(7)
    positives = rng.random(400) < 0.2
    scores = np.clip(rng.normal(0.35 + 0.3 * positives, 0.15), 0, 1).round(3)  # ties included
    return scores, positives


def test_average_precision_is_the_area_under_the_precision_recall_curve_as_scikit_learn_computes_it(scored):
    scores, positives = scored
    assert average_precision(scores, positives) == pytest.approx(average_precision_score(positives, scores))


def test_average_precision_is_undefined_without_positives():
    assert average_precision(np.array([0.2, 0.9]), np.array([False, False])) is None


def test_auc_agrees_with_scikit_learn_ties_included(scored):
    scores, positives = scored
    assert auc(scores, positives) == pytest.approx(roc_auc_score(positives, scores))


def test_precision_recall_and_f1_count_scores_at_the_threshold_as_predicted():
    assert precision_recall_f1(np.array([0.5, 0.4, 0.6]), np.array([True, True, False]), 0.5) == (0.5, 0.5, 0.5)


def test_balanced_threshold_maximises_f1(scored):
    scores, positives = scored
    chosen = choose_thresholds(scores, positives).balanced
    best = max(precision_recall_f1(scores, positives, t)[2] for t in np.unique(scores))
    assert precision_recall_f1(scores, positives, chosen)[2] == pytest.approx(best)


def test_high_precision_threshold_is_the_lowest_reaching_the_target(scored):
    scores, positives = scored
    chosen = choose_thresholds(scores, positives, precision_target=0.9).high_precision
    assert precision_recall_f1(scores, positives, chosen)[0] >= 0.9
    lower = [t for t in np.unique(scores[positives]) if t < chosen]
    assert all(precision_recall_f1(scores, positives, t)[0] < 0.9 for t in lower)


def test_high_recall_threshold_is_the_highest_keeping_the_target(scored):
    scores, positives = scored
    chosen = choose_thresholds(scores, positives, recall_target=0.8).high_recall
    assert precision_recall_f1(scores, positives, chosen)[1] >= 0.8
    higher = [t for t in np.unique(scores) if t > chosen]
    assert all(precision_recall_f1(scores, positives, t)[1] < 0.8 for t in higher)


def test_binned_thresholds_agree_with_the_exact_curve_to_the_grid_resolution(scored):
    scores, positives = scored
    exact = choose_thresholds(scores, positives, precision_target=0.9, recall_target=0.8)
    binned = binned_thresholds(scores[:, None], positives[:, None], np.array([0.9]), np.array([0.8]))
    assert [float(t[0]) for t in binned] == pytest.approx(
        [exact.balanced, exact.high_precision, exact.high_recall], abs=1e-3
    )


def test_an_unreachable_precision_target_gives_no_threshold():
    thresholds = choose_thresholds(np.array([0.9, 0.8]), np.array([False, True]), precision_target=0.95)
    assert thresholds.high_precision is None


def test_bands_follow_the_design():
    assert [band(s) for s in (0, 49.99, 50, 69.99, 70, 89.99, 90, 100)] == [
        "Poor",
        "Poor",
        "Average",
        "Average",
        "Good",
        "Good",
        "Excellent",
        "Excellent",
    ]


def test_balance_is_unknown_without_a_similarity_and_penalised_by_few_unbiased_reviews():
    assert balance_score(None, 0.5, 0.15) is None
    assert balance_score(1.0, 0.0, 0.15) < balance_score(1.0, 0.15, 0.15) == 100.0


def test_a_label_with_few_pinned_examples_gets_a_red_then_amber_warning_to_teach_it():
    red = label_warnings(
        "A", pinned=3, support=3, average_precision=0.9, search_share=0.0, predicted_live=None, few_red=10, few_amber=25
    )
    amber = label_warnings(
        "A",
        pinned=15,
        support=15,
        average_precision=0.9,
        search_share=0.0,
        predicted_live=None,
        few_red=10,
        few_amber=25,
    )
    assert [(w.code, w.severity, w.action) for w in red] == [("few_pinned", "red", "teach_label")]
    assert [(w.code, w.severity) for w in amber] == [("few_pinned", "amber")]


def test_low_average_precision_biased_and_never_predicted_labels_are_warned_with_an_action():
    warnings = label_warnings(
        "A", pinned=40, support=30, average_precision=0.4, search_share=0.8, predicted_live=0, few_red=10, few_amber=25
    )
    assert {(w.code, w.severity, w.action) for w in warnings} == {
        ("low_average_precision", "red", "check_label"),
        ("likely_biased", "amber", "shuffle"),
        ("never_predicted", "amber", "teach_label"),
    }


def _warning(severity: str, code: str = "few_pinned") -> LabelWarning:
    return LabelWarning(code=code, severity=severity, message="", action="teach_label")


def _rate(aps: dict, warnings: dict | None = None, coverage: float = 0.9) -> Rating:
    warnings = {name: () for name in aps} if warnings is None else warnings
    return rate(aps, warnings, aps, coverage, 95.0, 0.9, 1000, 0.95, 0.3, 0.0)


def test_the_rating_has_four_factors_and_is_ready_only_when_all_are_good_without_red_or_amber_warnings():
    aps = {f"L{i}": 0.95 for i in range(20)}
    good = _rate(aps)
    assert set(good.factors) == {"all_labels", "underperforming_labels", "coverage", "balance"}
    assert good.ready and good.band == "Excellent"
    assert not _rate(aps, {**{n: () for n in aps}, "L3": (_warning("red"),)}).ready
    assert not _rate(aps, {**{n: () for n in aps}, "L3": (_warning("amber"),)}).ready
    assert not _rate(aps, coverage=0.6).ready


def test_the_underperforming_factor_rates_the_labels_with_the_most_significant_warnings_not_the_lowest_ap():
    aps = {**{f"L{i}": 0.9 for i in range(18)}, "low1": 0.5, "low2": 0.6}
    warnings = {**{name: () for name in aps}, "L0": (_warning("red"),), "L1": (_warning("amber"), _warning("amber"))}
    rating = _rate(aps, warnings)
    assert rating.factors["underperforming_labels"].metrics["labels"] == 2.0
    assert rating.factors["underperforming_labels"].score == pytest.approx(90.0)  # L0 and L1, not low1 and low2
    without = _rate(aps)  # no warnings anywhere: the lowest AP are the least significant
    assert without.factors["underperforming_labels"].score == pytest.approx(55.0)


def test_the_all_labels_factor_is_the_published_map():
    rating = rate(
        {"A": 0.9, "B": 0.7}, {"A": (), "B": (), "C": ()}, {"A": 0.9, "B": 0.7, "C": 0.1}, 0.9, 90.0, 0.8, 100, 0.9, 0.2
    )
    assert rating.factors["all_labels"].metrics["mean_average_precision"] == mean_average_precision(
        {"A": 0.9, "B": 0.7}
    )
    assert rating.factors["all_labels"].score == pytest.approx(80.0)


def test_balance_counts_reviews_found_by_search_against_it():
    assert balance_score(0.9, 0.2, 0.2, 0.0) > balance_score(0.9, 0.2, 0.2, 0.4)
    assert balance_score(1.0, 0.2, 0.2, 0.0) == 100.0 and balance_score(1.0, 0.1, 0.2, 0.0) == 85.0


@pytest.mark.parametrize("seed", range(20))
def test_thresholds_from_added_counts_are_those_of_the_stacked_windows(seed):
    """A window counted ``w`` times plus another (the held-out set pooled with the learned
    reviews): the counts add up, so the thresholds are those of the stacked rows, to the bit."""
    rng = np.random.default_rng(seed)
    labels, weight = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    held = rng.random((int(rng.integers(0, 40)), labels)).astype(np.float32)
    learned = rng.random((int(rng.integers(0, 200)), labels)).astype(np.float32)
    held_pinned, learned_pinned = rng.random(held.shape) < 0.3, rng.random(learned.shape) < 0.2
    targets = np.full(labels, 0.8), np.full(labels, 0.9)
    stacked = binned_thresholds(
        np.vstack([np.repeat(held, weight, axis=0), learned]),
        np.vstack([np.repeat(held_pinned, weight, axis=0), learned_pinned]),
        *targets,
    )
    h, le = threshold_counts(held, held_pinned), threshold_counts(learned, learned_pinned)
    added = thresholds_from_counts(weight * h[0] + le[0], weight * h[1] + le[1], *targets)
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(added, stacked))
