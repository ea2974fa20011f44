"""Label warnings, the four rating factors and the 0-100 model rating (DESIGN.md section 4).

>>> band(72.5), band(49.9), band(90)
('Good', 'Poor', 'Excellent')
>>> balance_score(similarity=0.9, shuffle_share=0.3, healthy_share=0.2)
93.0
>>> balance_score(similarity=0.9, shuffle_share=0.3, healthy_share=0.2, search_share=0.5)
69.75
"""

from __future__ import annotations

import math

from schemas import Band, Factor, LabelWarning, Rating

__all__ = [
    "band",
    "balance_score",
    "label_warnings",
    "mean_average_precision",
    "underperforming",
    "rate",
    "FACTOR_WEIGHTS",
    "WORST_SHARE",
]

#: How much each factor weighs in the overall score.
FACTOR_WEIGHTS = {"all_labels": 0.4, "underperforming_labels": 0.2, "coverage": 0.2, "balance": 0.2}
#: Share of labels (those with the most significant warnings) rated by the "underperforming labels" factor.
WORST_SHARE = 0.1
#: How much a warning weighs when labels are ranked by their warnings.
_SEVERITY_WEIGHT = {"red": 2, "amber": 1}


def band(score: float) -> Band:
    """Poor 0-49, Average 50-69, Good 70-89, Excellent 90-100."""
    if score >= 90:
        return "Excellent"
    if score >= 70:
        return "Good"
    if score >= 50:
        return "Average"
    return "Poor"


def balance_score(
    similarity: float | None, shuffle_share: float | None, healthy_share: float, search_share: float | None = 0.0
) -> float | None:
    """0-100: mostly how alike reviewed and unreviewed messages are, partly the share of unbiased
    (shuffle, rebalance) reviews against its healthy target, reduced by the share found by search.

    ``100 * (0.7 * similarity + 0.3 * min(1, shuffle_share / healthy_share)) * (1 - search_share / 2)``:
    CM names these three inputs (similarity, "ideally 20%+" shuffle, too much search); how it
    weighs them is not published, so the weights are ours (docs/refine.md).
    """
    if similarity is None:
        return None
    share = min(1.0, (shuffle_share or 0.0) / healthy_share)
    return round(100.0 * (0.7 * similarity + 0.3 * share) * (1.0 - 0.5 * (search_share or 0.0)), 4)


def mean_average_precision(label_aps: dict[str, float]) -> float | None:
    """The one MAP: the mean of the given labels' APs (the published ``map`` and the "all labels"
    factor both call this on the same labels), rounded to 6 places; None without labels.

    >>> mean_average_precision({"A": 0.9, "B": 0.6}), mean_average_precision({})
    (0.75, None)
    """
    return round(sum(label_aps.values()) / len(label_aps), 6) if label_aps else None


def underperforming(warnings: dict[str, tuple[LabelWarning, ...]], label_aps: dict[str, float]) -> list[str]:
    """The labels the "underperforming labels" factor rates: the ``WORST_SHARE`` of ``warnings``'
    labels with the most significant warnings (red counts 2, amber 1), lowest AP first among equals.

    >>> red = LabelWarning(code="few_pinned", severity="red", message="", action="teach_label")
    >>> underperforming({"A": (), "B": (red,), "C": ()}, {"A": 0.5, "B": 0.9, "C": 0.8})
    ['B']
    >>> underperforming({"A": (), "C": ()}, {"A": 0.5, "C": 0.8})
    ['A']
    """
    if not warnings:
        return []

    def significance(name: str) -> tuple[int, float, str]:
        weight = sum(_SEVERITY_WEIGHT[w.severity] for w in warnings[name])
        return -weight, label_aps.get(name, -1.0), name

    ranked = sorted(warnings, key=significance)
    return ranked[: max(1, math.ceil(WORST_SHARE * len(ranked)))]


def label_warnings(
    name: str,
    *,
    pinned: int,
    support: int,
    average_precision: float | None,
    search_share: float,
    predicted_live: int | None,
    few_red: int,
    few_amber: int,
) -> tuple[LabelWarning, ...]:
    """The problems of one label, each with the suggestion kind that fixes it.

    ``predicted_live`` is how many messages of the live window have the label at threshold
    (None when the live window is too small to judge).
    """
    warnings = []
    if pinned < few_amber:
        warnings.append(
            LabelWarning(
                code="few_pinned",
                severity="red" if pinned < few_red else "amber",
                message=f"{name!r} has {pinned} pinned example{'' if pinned == 1 else 's'}; at least {few_amber} are needed for reliable predictions",
                action="teach_label",
            )
        )
    if average_precision is not None and support >= 5 and average_precision < 0.7:
        warnings.append(
            LabelWarning(
                code="low_average_precision",
                severity="red" if average_precision < 0.5 else "amber",
                message=(
                    f"{name!r} has average precision {average_precision:.2f}: reviews may be inconsistent "
                    "(check_label, missed_label) or it may overlap another label (consider merging them)"
                ),
                action="check_label",
            )
        )
    if pinned >= 5 and search_share > 0.5:
        warnings.append(
            LabelWarning(
                code="likely_biased",
                severity="amber",
                message=f"{search_share:.0%} of {name!r}'s pinned examples were found by search; its examples may not be representative",
                action="shuffle",
            )
        )
    if predicted_live == 0 and pinned > 0:
        warnings.append(
            LabelWarning(
                code="never_predicted",
                severity="amber",
                message=f"{name!r} is never predicted at its threshold on recent live traffic",
                action="teach_label",
            )
        )
    return tuple(warnings)


def rate(
    map_aps: dict[str, float],
    warnings: dict[str, tuple[LabelWarning, ...]],
    label_aps: dict[str, float],
    coverage: float | None,
    balance: float | None,
    mean_f1: float | None,
    live_messages: int,
    similarity: float | None,
    shuffle_share: float | None,
    search_share: float | None = None,
) -> Rating:
    """The model rating (CM's four factors) and whether the model is ready.

    ``map_aps`` holds the APs of the labels counted in the published MAP (the "all labels"
    factor is that MAP); ``warnings`` the warnings of every label that matters (a label with a
    current pinned review); ``label_aps`` every label's AP where it has one. "Underperforming
    labels" rates the 10% of labels with the most significant warnings (:func:`underperforming`)
    by their mean AP. Ready: Good or better overall and on every factor, and no red or amber
    warning on any label that matters.
    """
    mean_ap = mean_average_precision(map_aps)
    worst = underperforming(warnings, label_aps)
    worst_aps = [label_aps[name] for name in worst if name in label_aps]
    worst_ap = sum(worst_aps) / len(worst_aps) if worst_aps else None
    factors = {
        "all_labels": _factor(
            mean_ap, {"mean_average_precision": mean_ap, "mean_f1": mean_f1, "labels": float(len(map_aps))}
        ),
        "underperforming_labels": _factor(
            worst_ap,
            {
                "mean_average_precision": worst_ap,
                "labels": float(len(worst)),
                "warnings": float(sum(len(warnings[name]) for name in worst)),
                "worst_average_precision": min(worst_aps) if worst_aps else None,
            },
        ),
        "coverage": _factor(coverage, {"coverage": coverage, "live_messages": float(live_messages)}),
        "balance": _factor(
            None if balance is None else balance / 100.0,
            {"similarity": similarity, "shuffle_share": shuffle_share, "search_share": search_share},
        ),
    }
    score = round(sum(FACTOR_WEIGHTS[name] * factor.score for name, factor in factors.items()), 4)
    warned = any(w.severity in ("red", "amber") for ws in warnings.values() for w in ws)
    ready = band(score) in ("Good", "Excellent") and all(f.score >= 70 for f in factors.values()) and not warned
    return Rating(score=score, band=band(score), ready=ready, factors=factors)


def _factor(unit_score: float | None, metrics: dict[str, float | None]) -> Factor:
    score = 0.0 if unit_score is None else round(100.0 * min(1.0, max(0.0, unit_score)), 4)
    return Factor(score=score, band=band(score), metrics=metrics)
