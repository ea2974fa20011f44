"""Simulation 1: finding mislabelled reviews with ``check_label`` (Banking77).

10% of the review labels of Banking77's 10,003 training messages are flipped to another intent
at random; the reviews stream through the engine in a fixed shuffled order (validation window
holding all of them). Then ``check_label`` (all labels, ``limit=k``, k = the number flipped)
is scored by precision@k at finding the flipped messages, against:

- cleanlab's ``find_label_issues`` on the *same* out-of-sample probabilities (the engine's
  recorded scores, each row normalised to sum to 1), both its own issue set and its ranking
  (``get_label_quality_scores``, self-confidence and normalized margin) cut at k;
- a random pick of k reviews (expected 10%).

Run: ``.venv/bin/python bench/sim_mislabels.py [--seeds 3] [--noise 0.1]``
"""

from __future__ import annotations

import argparse

import numpy as np
from sim_common import Timer, load, review
from sim_common import engine as make_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.1)
    args = parser.parse_args()
    clock = Timer()
    pairs = load("banking77", split="train")
    figures = [run(pairs, seed, args.noise, clock) for seed in range(args.seeds)]
    names = (
        "check_label precision@k",
        "cleanlab find_label_issues, first k",
        "cleanlab find_label_issues, whole set",
        "cleanlab self-confidence ranking",
        "cleanlab normalized-margin ranking",
        "random pick",
    )
    print(f"mean over {args.seeds} seeds:")
    for name, values in zip(names, zip(*figures)):
        print(f"  {name:42s} {np.mean(values):.3f}")


def run(pairs, seed: int, noise: float, clock) -> tuple[float, ...]:
    labels = sorted({r.labels[0].name for _, r in pairs})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    flipped = set(rng.choice(len(pairs), size=int(noise * len(pairs)), replace=False).tolist())
    given = {}
    for i, (message, truth) in enumerate(pairs):
        label = truth.labels[0].name
        if i in flipped:
            label = labels[(labels.index(label) + 1 + rng.integers(len(labels) - 1)) % len(labels)]
        given[message.id] = label
    flipped_ids = {pairs[i][0].id for i in flipped}

    engine = make_engine("banking77", seed, validation_window=len(pairs))
    for t, i in enumerate(order):
        message = pairs[i][0]
        engine.annotate(review(message, [given[message.id]], "shuffle", t))
    k = len(flipped_ids)
    ours = engine.suggestions("check_label", limit=k)
    precision = sum(s.message_id in flipped_ids for s in ours) / k

    ids, scores, pinned = engine.validation_records()
    columns = {name: c for c, name in enumerate(engine.labels)}
    noisy = np.array([columns[given[i]] for i in ids])
    is_flipped = np.array([i in flipped_ids for i in ids])
    probabilities = scores / scores.sum(axis=1, keepdims=True)

    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    issues = find_label_issues(noisy, probabilities, return_indices_ranked_by="self_confidence")
    cl_set_precision = float(is_flipped[issues].mean()) if len(issues) else 0.0
    cl_first_k = float(is_flipped[issues[:k]].sum()) / k
    cl_topk = np.argsort(get_label_quality_scores(noisy, probabilities), kind="stable")[:k]
    cl_precision = float(is_flipped[cl_topk].mean())
    nm_topk = np.argsort(get_label_quality_scores(noisy, probabilities, method="normalized_margin"), kind="stable")[:k]
    nm_precision = float(is_flipped[nm_topk].mean())
    random_pick = rng.choice(len(ids), size=k, replace=False)
    random_precision = float(is_flipped[random_pick].mean())

    print(f"Banking77 train, {len(pairs)} reviews, {k} flipped ({noise:.0%}), seed {seed}  [{clock}]")
    print(f"  check_label precision@{k}:                         {precision:.3f}")
    print(
        f"  cleanlab find_label_issues ({len(issues)} issues) precision: {cl_set_precision:.3f}, "
        f"its first {k} (ranked by self-confidence): {cl_first_k:.3f}"
    )
    print(f"  cleanlab self-confidence ranking precision@{k}:     {cl_precision:.3f}")
    print(f"  cleanlab normalized-margin ranking precision@{k}:   {nm_precision:.3f}")
    print(f"  random pick precision@{k}:                          {random_precision:.3f}", flush=True)
    return precision, cl_first_k, cl_set_precision, cl_precision, nm_precision, random_precision


if __name__ == "__main__":
    main()
