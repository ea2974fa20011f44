"""Simulation 4: annotating bias, and how ``rebalance`` repairs it compared with ``shuffle`` (Banking77).

An engine observes ``--live`` Banking77 training messages (a fixed random sample: the stream).
Reviewers first label only messages of 10 of the 77 intents, as if found by search
(``--biased`` reviews, mode ``search``): the balance factor of the rating must drop below
Good (70). From that state two reviewers continue, in rounds of ``--batch``: one labels the
messages ``rebalance`` suggests (mode ``rebalance``), the other those ``shuffle`` suggests
(mode ``shuffle``), each with the true intent. The figure is the number of reviews each needs
until the balance factor is Good again (and, for context, the reviewed-vs-live similarity).

Each seed draws its own live sample and its own 10 intents.

Run: ``.venv/bin/python bench/sim_bias.py [--seeds 5]``
"""

from __future__ import annotations

import argparse

import numpy as np
from sim_common import Timer, at, load, review
from sim_common import engine as make_engine

from pipeline import Refiner


def balance(engine: Refiner) -> tuple[float, float | None]:
    metrics = engine.metrics()
    return metrics.rating.factors["balance"].score, metrics.balance.similarity


def repair(engine: Refiner, kind: str, truth: dict, messages: dict, args, t: float) -> tuple[int | None, list]:
    trace, reviewed = [], 0
    while reviewed < args.max_reviews:
        for s in engine.suggestions(kind, limit=args.batch):
            t += 1
            engine.annotate(review(messages[s.message_id], [truth[s.message_id]], kind, t))
            reviewed += 1
        score, similarity = balance(engine)
        trace.append((reviewed, score, similarity))
        if score >= 70:
            return reviewed, trace
    return None, trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--live", type=int, default=5000)
    parser.add_argument("--biased", type=int, default=300)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--max-reviews", type=int, default=3000)
    args = parser.parse_args()
    clock = Timer()
    pairs = load("banking77", split="train")
    totals = {"rebalance": [], "shuffle": []}
    for seed in range(args.seeds):
        for kind, needed in run(pairs, seed, args, clock).items():
            totals[kind].append(needed or args.max_reviews)
    ours, baseline = np.mean(totals["rebalance"]), np.mean(totals["shuffle"])
    print(
        f"over {args.seeds} seeds: rebalance needs {ours:.0f} reviews on average to bring balance back to Good, "
        f"shuffle {baseline:.0f} ({1 - ours / baseline:.0%} fewer)"
    )


def run(pairs, seed: int, args, clock) -> dict[str, int | None]:
    rng = np.random.default_rng(seed)
    sample = [pairs[i] for i in rng.permutation(len(pairs))[: args.live]]
    intents = sorted({r.labels[0].name for _, r in pairs})
    searched = set(rng.permutation(intents)[:10].tolist())
    truth = {m.id: r.labels[0].name for m, r in sample}
    messages = {m.id: at(m, t) for t, (m, _) in enumerate(sample)}

    engine = make_engine("banking77", seed, live_window=args.live)
    engine.observe_many(messages.values())
    found = [m for m, _ in sample if truth[m.id] in searched][: args.biased]
    t = float(args.live)
    for message in found:
        t += 1
        engine.annotate(review(messages[message.id], [truth[message.id]], "search", t))
    score, similarity = balance(engine)
    print(
        f"seed {seed}: {args.live} live messages, {len(found)} reviews of 10 intents only (search): balance factor "
        f"{score:.1f} ({'below' if score < 70 else 'NOT below'} Good), similarity {similarity}  [{clock}]"
    )
    blob = engine.snapshot()
    results = {}
    for kind in ("rebalance", "shuffle"):
        needed, trace = repair(Refiner.restore(blob), kind, truth, messages, args, t)
        results[kind] = needed
        steps = " ".join(
            f"{n}:{s:.0f}/{sim if sim is None else round(sim, 2)}" for n, s, sim in trace[:: max(1, len(trace) // 10)]
        )
        print(
            f"  {kind:9s}: balance factor Good after {needed} reviews  (reviews:factor/similarity {steps})", flush=True
        )
    return results


if __name__ == "__main__":
    main()
