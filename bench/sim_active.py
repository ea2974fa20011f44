"""Simulation 3: active learning with ``teach_label`` + ``low_confidence`` against ``shuffle`` (Banking77).

The 10,003 Banking77 training messages are observed as live traffic (the unreviewed pool). A
simulated reviewer then labels, round after round, ``--batch`` messages chosen by the
suggestions (half ``teach_label`` over all labels, half ``low_confidence``; the other kind fills
in when one runs short) with their true intent; the baseline reviewer labels ``shuffle``'s
choices instead. After every ``--every`` reviews the model scores the 3,080 test messages
(without observing them); the figure is the number of reviews each needs to reach
``--target`` test accuracy (top label = true intent).

Seeds change the engine's seed (replay, shuffle order); the data order is fixed by the pool.

Run: ``.venv/bin/python bench/sim_active.py [--seeds 3] [--target 0.85]``
"""

from __future__ import annotations

import argparse

import numpy as np
from sim_common import Timer, at, load, review, scores_of
from sim_common import engine as make_engine


def run(strategy: str, pairs, test_features, test_truth, args) -> list[tuple[int, float]]:
    engine = make_engine("banking77", args.seed, validation_window=5000, live_window=len(pairs) + 1)
    engine.observe_many([at(m, t) for t, (m, _) in enumerate(pairs)])
    truth = {m.id: r.labels[0].name for m, r in pairs}
    message = {m.id: m for m, _ in pairs}
    curve, reviewed, t = [], 0, len(pairs)
    while reviewed < args.max_reviews:
        if strategy == "shuffle":
            chosen = [s.message_id for s in engine.suggestions("shuffle", limit=args.batch)]
        else:
            half = args.batch // 2
            teach = [s.message_id for s in engine.suggestions("teach_label", limit=args.batch)]
            low = [s.message_id for s in engine.suggestions("low_confidence", limit=args.batch)]
            chosen = list(dict.fromkeys(teach[:half] + low[:half] + teach[half:] + low[half:]))[: args.batch]
        mode = "shuffle" if strategy == "shuffle" else "teach"
        for message_id in chosen:
            t += 1
            engine.annotate(review(message[message_id], [truth[message_id]], mode, t))
        reviewed += len(chosen)
        if reviewed % args.every == 0:
            scores = scores_of(engine, test_features)
            predicted = np.array(engine.labels)[np.argmax(scores, axis=1)]
            accuracy = float(np.mean(predicted == test_truth))
            curve.append((reviewed, accuracy))
            if accuracy >= args.target:
                break
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--max-reviews", type=int, default=10_000)
    args = parser.parse_args()
    clock = Timer()
    pairs = load("banking77", split="train")
    test = load("banking77", split="test")
    probe = make_engine("banking77", 0)
    test_features = [probe._features(m) for m, _ in test]
    test_truth = np.array([r.labels[0].name for _, r in test])
    totals = {"teach_label+low_confidence": [], "shuffle": []}
    for seed in range(args.seeds):
        args.seed = seed
        for strategy in totals:
            curve = run(strategy, pairs, test_features, test_truth, args)
            reached = next((n for n, accuracy in curve if accuracy >= args.target), None)
            totals[strategy].append(reached or args.max_reviews)
            trace = " ".join(f"{n}:{a:.3f}" for n, a in curve)
            print(
                f"  seed {seed} {strategy:28s} reviews to {args.target:.2f}: {reached}  [{clock}]\n    {trace}",
                flush=True,
            )
    ours, baseline = sum(totals["teach_label+low_confidence"]), sum(totals["shuffle"])
    print(
        f"Banking77 active learning over {args.seeds} seeds: {ours / args.seeds:.0f} reviews on average vs "
        f"{baseline / args.seeds:.0f} with shuffle ({1 - ours / baseline:.0%} fewer; target >= 30%)"
    )


if __name__ == "__main__":
    main()
