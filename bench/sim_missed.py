"""Simulation 2: finding labels missing from multi-label reviews with ``missed_label`` (NLU++).

NLU++ utterances carry several intents each. In 10% of the multi-label reviews one true
intent (chosen at random) is dropped; the reviews stream through the engine in a fixed shuffled
order, the validation window holding all of them. Then ``missed_label`` (all labels,
``limit=k``, k = the number of dropped (message, intent) pairs) is scored by recall@k of the
dropped pairs, against cleanlab's multi-label per-class label quality
(``get_label_quality_scores_per_class``, self-confidence) on the *same* out-of-sample
probabilities, cut at k over the (message, absent intent) pairs, and against
``find_multilabel_issues_per_class`` (cleanlab's own issue set). A random pick of k absent pairs
finds about ``k / pairs`` of them.

Both NLU++ domains (banking, hotels), ``--seeds`` seeds each.

Run: ``.venv/bin/python bench/sim_missed.py [--seeds 3]``
"""

from __future__ import annotations

import argparse

import numpy as np
from sim_common import Timer, load, review
from sim_common import engine as make_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--share", type=float, default=0.1)
    args = parser.parse_args()
    clock = Timer()
    figures = []
    for domain in ("banking", "hotels"):
        pairs = load("nlupp", domain=domain)
        figures += [run(pairs, domain, seed, args.share, clock) for seed in range(args.seeds)]
    names = (
        "missed_label recall@k",
        "cleanlab per-class ranking recall@k",
        "cleanlab issue set recall",
        "cleanlab issue set precision",
        "random pick recall@k",
    )
    print(f"mean over both domains and {args.seeds} seeds:")
    for name, values in zip(names, zip(*figures)):
        print(f"  {name:38s} {np.mean(values):.3f}")


def run(pairs, domain: str, seed: int, share: float, clock) -> tuple[float, ...]:
    rng = np.random.default_rng(seed)
    multi = [i for i, (_, r) in enumerate(pairs) if len(r.labels) >= 2]
    chosen = set(rng.choice(multi, size=int(share * len(multi)), replace=False).tolist())
    given, dropped = {}, set()
    for i, (message, truth) in enumerate(pairs):
        labels = sorted(a.name for a in truth.labels)
        if i in chosen:
            gone = labels.pop(int(rng.integers(len(labels))))
            dropped.add((message.id, gone))
        given[message.id] = labels
    engine = make_engine(pairs[0][0].dataset, seed, validation_window=len(pairs))
    for t, i in enumerate(rng.permutation(len(pairs))):
        message = pairs[i][0]
        engine.annotate(review(message, given[message.id], "shuffle", t))
    k = len(dropped)
    found = {(s.message_id, s.label) for s in engine.suggestions("missed_label", limit=k)}
    recall = len(found & dropped) / k

    ids, scores, pinned = engine.validation_records()
    target = np.zeros_like(pinned)
    column = engine.label_index
    for r, message_id in enumerate(ids):
        for name in given[message_id]:
            target[r, column[name]] = True
    is_dropped = np.zeros_like(pinned)
    for message_id, name in dropped:
        if name in column:
            is_dropped[ids.index(message_id), column[name]] = True
    labels_list = [np.flatnonzero(row).tolist() for row in target]
    from cleanlab.multilabel_classification.filter import find_multilabel_issues_per_class
    from cleanlab.multilabel_classification.rank import get_label_quality_scores_per_class

    quality = get_label_quality_scores_per_class(labels_list, scores.astype(np.float64))
    quality = np.where(target, np.inf, quality)  # only absent pairs can be missed labels
    top = np.argsort(quality, axis=None, kind="stable")[:k]
    cl_recall = float(is_dropped.ravel()[top].sum()) / k
    issues = find_multilabel_issues_per_class(labels_list, scores.astype(np.float64))
    mask = np.column_stack(issues) if isinstance(issues, list) else issues
    flagged = mask & ~target
    cl_set_recall = float((flagged & is_dropped).sum()) / k
    cl_set_precision = float((flagged & is_dropped).sum()) / max(1, int(flagged.sum()))
    absent = int((~target).sum())

    print(
        f"NLU++ {domain}: {len(pairs)} reviews, {k} dropped (message, intent) pairs among {absent} absent pairs, "
        f"seed {seed}  [{clock}]"
    )
    print(f"  missed_label recall@{k}:                                  {recall:.3f}")
    print(f"  cleanlab per-class self-confidence ranking recall@{k}:    {cl_recall:.3f}")
    print(
        f"  cleanlab find_multilabel_issues_per_class: {int(flagged.sum())} absent pairs flagged, "
        f"recall {cl_set_recall:.3f}, precision {cl_set_precision:.3f}"
    )
    print(f"  random pick recall@{k}:                                   {k / absent:.4f}", flush=True)
    return recall, cl_recall, cl_set_recall, cl_set_precision, k / absent


if __name__ == "__main__":
    main()
