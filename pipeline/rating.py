"""Label warnings, the four rating factors and the 0-100 model rating (DESIGN.md section 4).

>>> band(72.5), band(49.9), band(90)
('Good', 'Poor', 'Excellent')
>>> balance_score(similarity=0.9, shuffle_share=0.3, healthy_share=0.15)
93.0
"""

from __future__ import annotations

import math

from schemas import Factor, LabelWarning, Rating

__all__ = ["band", "balance_score", "label_warnings", "rate", "FACTOR_WEIGHTS"]

#: How much each factor weighs in the overall score.
FACTOR_WEIGHTS = {"all_labels": 0.4, "underperforming_labels": 0.2, "coverage": 0.2, "balance": 0.2}
#: Share of labels (the worst by average precision) rated by the "underperforming labels" factor.
WORST_SHARE = 0.1


def band(score: float) -> str:
    """Poor 0-49, Average 50-69, Good 70-89, Excellent 90-100."""
    if score >= 90:
        return "Excellent"
    if score >= 70:
        return "Good"
    if score >= 50:
        return "Average"
    return "Poor"


def balance_score(similarity: float | None, shuffle_share: float | None, healthy_share: float) -> float | None:
    """0-100: mostly how alike reviewed and live messages are, partly the share of unbiased reviews."""
    if similarity is None:
        return None
    share = min(1.0, (shuffle_share or 0.0) / healthy_share)
    return round(100.0 * (0.7 * similarity + 0.3 * share), 4)


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
    label_aps: dict[str, float],
    coverage: float | None,
    balance: float | None,
    mean_f1: float | None,
    red_warnings: int,
    live_messages: int,
    similarity: float | None,
    shuffle_share: float | None,
) -> Rating:
    """The model rating from per-label average precision, coverage and balance.

    ``label_aps`` holds the labels with positives in the validation window.
    """
    aps = sorted(label_aps.values())
    mean_ap = sum(aps) / len(aps) if aps else None
    worst = aps[: max(1, math.ceil(WORST_SHARE * len(aps)))] if aps else []
    worst_ap = sum(worst) / len(worst) if worst else None
    factors = {
        "all_labels": _factor(
            mean_ap, {"mean_average_precision": mean_ap, "mean_f1": mean_f1, "labels": float(len(aps))}
        ),
        "underperforming_labels": _factor(
            worst_ap,
            {
                "mean_average_precision": worst_ap,
                "labels": float(len(worst)),
                "worst_average_precision": aps[0] if aps else None,
            },
        ),
        "coverage": _factor(coverage, {"coverage": coverage, "live_messages": float(live_messages)}),
        "balance": _factor(
            None if balance is None else balance / 100.0, {"similarity": similarity, "shuffle_share": shuffle_share}
        ),
    }
    score = round(sum(FACTOR_WEIGHTS[name] * factor.score for name, factor in factors.items()), 4)
    ready = band(score) in ("Good", "Excellent") and all(f.score >= 70 for f in factors.values()) and red_warnings == 0
    return Rating(score=score, band=band(score), ready=ready, factors=factors)


def _factor(unit_score: float | None, metrics: dict[str, float | None]) -> Factor:
    score = 0.0 if unit_score is None else round(100.0 * min(1.0, max(0.0, unit_score)), 4)
    return Factor(score=score, band=band(score), metrics=metrics)
