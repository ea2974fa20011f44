"""The thresholds a stream routes by, in-process: how precise each kind is on Banking77's test split.

The same engine a ``refinery worker`` runs (default configuration, ``live_window`` 300 as in the
suite's stream test), fed the first ``--train`` Banking77 training messages in a seeded shuffled
order, every other one reviewed two messages later (as ``tests/worker/test_streams_kafka.py``
sends them). Then the test messages are observed (the first 1,000 shuffled ones below 10,000
training messages, all 3,080 otherwise), and for each threshold kind a prediction carries
(``Prediction.thresholds``: balanced, high precision, high recall) the labels that reach it are
scored against the test split's labels: precision and labels per message. A stream routes
exactly these labels (`schemas.Stream.route`), so this is the stream's precision without the
broker; ``bench_streams.py`` measures it end to end.

Run: ``.venv/bin/python bench/bench_stream_thresholds.py [--train 10003] [--holdout-share 0.2]``
(a minute at 3,000 messages, a few at 10,003).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.ingest.datasets import banking77  # noqa: E402
from pipeline import Refiner, RefinerConfig  # noqa: E402

KINDS = ("balanced", "high_precision", "high_recall")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=10_003, help="training messages streamed")
    parser.add_argument("--holdout-share", type=float, default=RefinerConfig().holdout_share)
    args = parser.parse_args(argv)
    train = list(banking77())
    random.Random(0).shuffle(train)
    engine = Refiner("banking77", RefinerConfig(live_window=300, holdout_share=args.holdout_share), seed=0)
    pending = []
    for i, (message, review) in enumerate(train[: args.train]):
        engine.observe(message)
        if i % 2 == 0:
            pending.append(review)
        if len(pending) > 2:
            engine.annotate(dataclasses.replace(pending.pop(0), mode="shuffle"))
    test = list(banking77(split="test"))
    random.Random(1).shuffle(test)
    test = test[:1000] if args.train < 10_000 else test
    truth = {m.id: {label.name for label in review.labels} for m, review in test}
    predictions = engine.observe_many([m for m, _ in test])
    print(
        f"Banking77: {min(args.train, len(train))} training messages, {engine.reviewed_count} reviewed "
        f"(holdout_share {args.holdout_share}), {len(test)} test messages"
    )
    print(f"  {'threshold':15} {'precision':>9} {'labels':>7} {'labels/message':>15}")
    for kind in KINDS:
        reached = [
            (p.message_id, label)
            for p in predictions
            for label, t in p.thresholds.items()
            if getattr(t, kind) is not None and p.confidences[label] >= getattr(t, kind)
        ]
        precision = sum(label in truth[m] for m, label in reached) / max(len(reached), 1)
        print(f"  {kind:15} {precision:9.3f} {len(reached):7} {len(reached) / len(test):15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
