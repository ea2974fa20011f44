"""Recommended next actions: each label warning and weak rating factor, mapped to the
suggestion kind that fixes it, ordered by its expected effect on the model rating.

The rating (:mod:`pipeline.rating`) is a weighted sum of four factors, each 0-100. An action's
``expected_gain`` is the rating points it would add if it brought what it fixes to a *target*:

- a label (warnings ``few_pinned``, ``never_predicted``, ``low_average_precision``) to an
  average precision of ``TARGET_AP``: the "all labels" factor (the MAP of the ``n_labels``
  labels with at least ``map_min_support`` held-out positives) gains
  ``(TARGET_AP - ap) / n_labels`` and, when the label is among the worst rated, the
  "underperforming labels" factor gains ``(TARGET_AP - ap) / n_worst``. A label with no positive
  in the window yet counts with an AP of 0 (it joins the mean once taught);
- coverage to ``TARGET_SCORE`` (the middle of the Good band);
- balance to ``TARGET_SCORE``, split between its two parts: similarity of the reviewed set to
  the stream (``rebalance``) and the share of unbiased reviews (``shuffle``).

Which kind fixes what:

=============================  ==================================================
warning or weak factor          actions
=============================  ==================================================
``few_pinned``                  ``teach_label`` (L), then ``search`` for more (L)
``never_predicted``             ``teach_label`` (L)
``low_average_precision``       ``check_label`` (L), ``missed_label`` (L)
``likely_biased``               ``shuffle`` (L's examples are not representative)
coverage below Good             ``low_confidence``
balance below Good              ``rebalance`` (similarity), ``shuffle`` (unbiased share)
=============================  ==================================================

``search`` is not a suggestion list: the person looks for examples by keyword (the review
mode ``search``); it gets half of ``teach_label``'s gain.

>>> from schemas import Balance, Factor, LabelMetrics, LabelWarning, Rating
>>> few = LabelWarning(code="few_pinned", severity="red", message="...", action="teach_label")
>>> labels = {"Refund": LabelMetrics(precision=None, recall=None, f1=None, average_precision=None,
...                                  threshold=0.5, support=0, pinned=3, warnings=(few,))}
>>> good = Factor(score=80.0, band="Good")
>>> rating = Rating(score=80.0, band="Good", ready=False, factors=dict.fromkeys(
...     ("all_labels", "underperforming_labels", "coverage", "balance"), good))
>>> [(a.kind, a.label) for a in recommend(labels, rating, Balance(score=80.0, similarity=0.9, shuffle_share=0.2))]
[('teach_label', 'Refund'), ('search', 'Refund')]
"""

from __future__ import annotations

import math

from pipeline.rating import FACTOR_WEIGHTS, WORST_SHARE, underperforming
from schemas import Action, Balance, LabelMetrics, Rating

__all__ = ["recommend", "TARGET_AP", "TARGET_SCORE"]

#: Average precision a label's fix aims for.
TARGET_AP = 0.9
#: Factor score a factor's fix aims for (the middle of the Good band).
TARGET_SCORE = 80.0
#: Factor scores below this are weak (below Good).
GOOD = 70.0


def recommend(
    labels: dict[str, LabelMetrics],
    rating: Rating,
    balance: Balance,
    healthy_shuffle_share: float = 0.2,
    limit: int = 20,
    map_min_support: int = 5,
) -> tuple[Action, ...]:
    """The recommended actions for a metrics snapshot's parts, highest expected gain first.

    ``map_min_support`` is the engine's (``RefinerConfig.map_min_support``): the "all labels"
    factor is the mean AP of the labels with that many held-out positives, so a label's share
    of it is one over their number.
    """
    actions: list[Action] = []
    rated = sorted((m.average_precision, name) for name, m in labels.items() if m.average_precision is not None)
    n_rated = max(1, sum(m.average_precision is not None and m.support >= map_min_support for m in labels.values()))
    n_worst = max(1, math.ceil(WORST_SHARE * len(rated)))
    # the labels the rating's "underperforming labels" factor rates (the most significant warnings)
    worst = set(
        underperforming(
            {name: m.warnings for name, m in labels.items() if m.pinned > 0},
            {name: ap for ap, name in rated},
        )
    )
    worst_ceiling = rated[n_worst][0] if len(rated) > n_worst else TARGET_AP

    def label_gain(name: str, metrics: LabelMetrics) -> float:
        ap = metrics.average_precision or 0.0
        gain = 100.0 * FACTOR_WEIGHTS["all_labels"] * max(0.0, TARGET_AP - ap) / n_rated
        if name in worst or metrics.average_precision is None:
            # it leaves the worst set once it passes the next label up
            gain += (
                100.0
                * FACTOR_WEIGHTS["underperforming_labels"]
                * max(0.0, min(TARGET_AP, worst_ceiling) - ap)
                / n_worst
            )
        return gain

    for name in sorted(labels):
        metrics = labels[name]
        codes = {w.code: w for w in metrics.warnings}
        gain = label_gain(name, metrics)
        if "few_pinned" in codes:
            actions.append(
                Action(
                    kind="teach_label",
                    label=name,
                    expected_gain=_r(gain),
                    why=f"{codes['few_pinned'].message}: teach it on the messages the model is least sure of",
                )
            )
            actions.append(
                Action(
                    kind="search",
                    label=name,
                    expected_gain=_r(gain / 2),
                    why=f"{name!r} has {metrics.pinned} pinned example{'' if metrics.pinned == 1 else 's'}: search for more by keyword",
                )
            )
        elif "never_predicted" in codes:
            actions.append(
                Action(
                    kind="teach_label",
                    label=name,
                    expected_gain=_r(gain),
                    why=f"{codes['never_predicted'].message}: teach it on live messages near its threshold",
                )
            )
        if "low_average_precision" in codes:
            ap = metrics.average_precision or 0.0
            actions.append(
                Action(
                    kind="check_label",
                    label=name,
                    expected_gain=_r(gain),
                    why=f"{name!r} has average precision {ap:.2f}: check reviews where it may be misapplied",
                )
            )
            actions.append(
                Action(
                    kind="missed_label",
                    label=name,
                    expected_gain=_r(gain),
                    why=f"{name!r} has average precision {ap:.2f}: find reviews where it may be missing",
                )
            )
        if "likely_biased" in codes:
            share_gain = _balance_gains(balance, healthy_shuffle_share)[1]
            actions.append(
                Action(
                    kind="shuffle",
                    label=name,
                    expected_gain=_r(share_gain / n_rated),
                    why=f"{codes['likely_biased'].message}: review shuffled messages to find it in context",
                )
            )

    coverage = rating.factors.get("coverage")
    if coverage is not None and coverage.score < GOOD:
        actions.append(
            Action(
                kind="low_confidence",
                label=None,
                expected_gain=_r(FACTOR_WEIGHTS["coverage"] * (TARGET_SCORE - coverage.score)),
                why=f"coverage is {coverage.band} ({coverage.score:.0f}/100): review messages no informative label covers",
            )
        )
    factor = rating.factors.get("balance")
    if factor is not None and factor.score < GOOD:
        similarity_gain, share_gain = _balance_gains(balance, healthy_shuffle_share)
        if similarity_gain > 0:
            actions.append(
                Action(
                    kind="rebalance",
                    label=None,
                    expected_gain=_r(similarity_gain),
                    why=(
                        f"balance is {factor.band} ({factor.score:.0f}/100): reviewed messages are "
                        f"{balance.similarity or 0:.0%} similar to the stream; review those least like them"
                    ),
                )
            )
        if share_gain > 0:
            actions.append(
                Action(
                    kind="shuffle",
                    label=None,
                    expected_gain=_r(share_gain),
                    why=(
                        f"balance is {factor.band} ({factor.score:.0f}/100): {balance.shuffle_share or 0:.0%} "
                        f"of reviews are unbiased, {healthy_shuffle_share:.0%} is healthy; review shuffled messages"
                    ),
                )
            )
    actions.sort(key=lambda a: (-a.expected_gain, a.kind, a.label or ""))
    return tuple(actions[:limit])


def _balance_gains(balance: Balance, healthy_share: float) -> tuple[float, float]:
    """Rating points from raising similarity, and the unbiased share, as far as the target allows.

    Balance is ``(70 * similarity + 30 * min(1, share / healthy)) * (1 - search_share / 2)``
    (:func:`pipeline.rating.balance_score`).
    """
    weight = FACTOR_WEIGHTS["balance"]
    similarity = balance.similarity or 0.0
    share = min(1.0, (balance.shuffle_share or 0.0) / healthy_share)
    searched = 1.0 - 0.5 * (balance.search_share or 0.0)
    room = max(0.0, TARGET_SCORE - (balance.score or 0.0))
    similarity_gain = min(room, 70.0 * (1.0 - similarity) * searched)
    share_gain = min(room, 30.0 * (1.0 - share) * searched)
    return weight * similarity_gain, weight * share_gain


def _r(value: float) -> float:
    return round(float(value), 4)
