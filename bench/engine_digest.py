"""One SHA-256 over everything the engine returns and holds on Enron, Banking77 and NLU++ streams.

Two trees print the same digest when a change to the engine's observe, annotate or featurising
paths keeps every result exact: the feature vectors (their bytes), every prediction of
``observe``, ``observe_many`` and ``annotate`` (and what ``annotate`` reports), the metrics,
every suggestion kind and ``Refiner.snapshot()`` (the model's weights to the bit) at
checkpoints. Streams:

- ``enron``: the order of ``bench_speed.py --sections enron`` (chunks of 200: reviews with the
  message inline, then the live copies observed one by one and again in batches of 100), under
  the default configuration and two others (quoted text at 0.3 with metadata, no bigrams and
  ``max_chars`` 700; replay off and nothing held out);
- ``banking77``: 3,000 messages observed in batches, about a third reviewed: without the message
  (taken from the live window), with the observed message inline, with an inline message
  whose text or metadata differs from the observed one (so a wrongly reused vector would
  show), re-reviews and removals, in every review mode; without and with metadata features;
- ``nlupp``: NLU++ banking (multi-label, some utterances with no intent), observed then reviewed
  with the message inline;
- ``river``: 400 Banking77 events through a plugged River model.

Run: ``PYTHONPATH=TREE .venv/bin/python bench/engine_digest.py [--verbose]`` (about 1-2 minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # PYTHONPATH (another tree's code) comes first
for _entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
    if _entry:
        sys.path.insert(0, _entry)

import numpy as np  # noqa: E402

from agents.ingest.datasets import banking77, enron, nlupp  # noqa: E402
from pipeline import Refiner, RefinerConfig  # noqa: E402
from pipeline.engine import suggestion_lists  # noqa: E402
from schemas import Annotation, Message  # noqa: E402

MODES = ("label", "shuffle", "check", "search", "teach", "missed", "rebalance", "low_confidence")
NOW = 2_000_000_000.0


class Digest:
    """Accumulates the engine's outputs; ``part`` names the stream for ``--verbose``."""

    def __init__(self, verbose: bool) -> None:
        self.total, self.part, self.verbose = hashlib.sha256(), hashlib.sha256(), verbose

    def add(self, data: bytes) -> None:
        self.part.update(data)

    def prediction(self, prediction) -> None:
        self.add(prediction.encode() if prediction is not None else b"none")

    def annotate(self, engine: Refiner, annotation) -> None:
        try:
            outcome = engine.annotate(annotation)
        except ValueError as error:
            self.add(f"error {error}".encode())
            return
        self.add(repr(outcome).encode())
        self.prediction(outcome.prediction)

    def checkpoint(self, engine: Refiner, name: str) -> None:
        self.add(engine.metrics(now=NOW).encode())
        for listed in suggestion_lists(engine, now=NOW, limit=20, labels=engine.labels[:5]):
            self.add(listed.encode())
        self.add(engine.snapshot())
        if self.verbose:
            print(f"{name}: {self.part.hexdigest()[:16]}", file=sys.stderr)
        self.total.update(self.part.digest())
        self.part = hashlib.sha256()


def enron_stream(digest: Digest, config: RefinerConfig, name: str) -> None:
    pairs = list(enron("bench"))
    order = np.random.default_rng(0).permutation(len(pairs))
    engine = Refiner("bench", config, seed=3)
    reviews, live = [], []
    for i in order:
        message, review = pairs[i]
        reviews.append(Annotation.from_dict({**review.to_dict(), "message": message.to_dict(), "mode": "shuffle"}))
        live.append(Message.from_dict({**message.to_dict(), "id": f"live-{message.id}"}))
    for message in live[:300]:  # the featurizer's vectors themselves
        indices, values = engine.featurizer.transform(message.subject, message.body, message.channel, message.metadata)
        digest.add(indices.tobytes() + values.tobytes())
    for start in range(0, len(reviews), 200):
        for annotation in reviews[start : start + 200]:
            digest.annotate(engine, annotation)
        for message in live[start : start + 200]:
            digest.prediction(engine.observe(message))
        for first in range(start, min(start + 200, len(live)), 100):
            for prediction in engine.observe_many(live[first : min(first + 100, start + 200)]):
                digest.prediction(prediction)
        if start in (0, 800):
            digest.checkpoint(engine, f"{name} at {start}")
    digest.checkpoint(engine, f"{name} end")


def banking_stream(digest: Digest, config: RefinerConfig, name: str) -> None:
    pairs = list(banking77("train", "bank"))[:3000]
    engine = Refiner("bank", config, seed=7)
    for start in range(0, len(pairs), 150):
        batch = pairs[start : start + 150]
        for prediction in engine.observe_many([message for message, _ in batch]):
            digest.prediction(prediction)
        for k, (message, review) in enumerate(batch[::3]):
            mode = MODES[(start + k) % len(MODES)]
            shape = (start // 3 + k) % 4
            if shape == 0:  # the message from the live window
                fields = {**review.to_dict(), "mode": mode}
            elif shape == 1:  # the observed message inline, as sent
                fields = {**review.to_dict(), "mode": mode, "message": message.to_dict()}
            elif shape == 2:  # an inline message whose text differs from the one observed
                changed = {**message.to_dict(), "body": message.body + " please", "subject": "again"}
                fields = {**review.to_dict(), "mode": mode, "message": changed}
            else:  # the observed message inline, with other metadata (True: equal to 1, another feature)
                metadata = {"split": "other" if k % 2 else True, "extra": 1}
                changed = {**message.to_dict(), "metadata": metadata, "timestamp": message.timestamp + 1}
                fields = {**review.to_dict(), "mode": mode, "message": changed}
            digest.annotate(engine, Annotation.from_dict(fields))
        if start and start % 600 == 0:  # re-reviews (other labels) and removals of earlier messages
            for _, review in pairs[start - 600 : start : 37]:
                fields = {**review.to_dict(), "labels": [{"name": "card_arrival"}], "mode": "check"}
                digest.annotate(engine, Annotation.from_dict(fields))
            for _, review in pairs[start - 590 : start : 53]:
                digest.annotate(engine, Annotation.from_dict({**review.to_dict(), "action": "remove", "labels": []}))
        if start == 1500:
            digest.checkpoint(engine, f"{name} at 1500")
    missing = Annotation.from_dict({**pairs[0][1].to_dict(), "message_id": "never-seen"})
    digest.annotate(engine, missing)
    digest.checkpoint(engine, f"{name} end")


def nlupp_stream(digest: Digest) -> None:
    pairs = list(nlupp("banking"))
    engine = Refiner("nlupp-banking", RefinerConfig(), seed=1)
    for start in range(0, len(pairs), 100):
        batch = pairs[start : start + 100]
        for message, _ in batch[:50]:
            digest.prediction(engine.observe(message))
        for prediction in engine.observe_many([message for message, _ in batch[50:]]):
            digest.prediction(prediction)
        for message, review in batch[::2]:
            digest.annotate(engine, Annotation.from_dict({**review.to_dict(), "message": message.to_dict()}))
    digest.checkpoint(engine, "nlupp end")


def river_stream(digest: Digest) -> None:
    pairs = list(banking77("train", "river"))[:300]
    config = RefinerConfig(model="river.linear_model.LogisticRegression")
    engine = Refiner("river", config, seed=2)
    for i, (message, review) in enumerate(pairs):
        digest.prediction(engine.observe(message))
        if i % 3 == 0:
            fields = {**review.to_dict(), "message": message.to_dict()} if i % 2 else review.to_dict()
            digest.annotate(engine, Annotation.from_dict(fields))
    digest.checkpoint(engine, "river end")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--verbose", action="store_true", help="print each stream's part of the digest")
    args = parser.parse_args(argv)
    digest = Digest(args.verbose)
    enron_stream(digest, RefinerConfig(), "enron default")
    enron_stream(
        digest,
        RefinerConfig(quoted_weight=0.3, metadata_fields=("folder",), bigrams=False, max_chars=700),
        "enron quoted 0.3, metadata, no bigrams, 700 chars",
    )
    enron_stream(digest, RefinerConfig(replay=0, holdout_share=0.0), "enron no replay, nothing held out")
    banking_stream(digest, RefinerConfig(live_window=1500), "banking77")
    banking_stream(digest, RefinerConfig(metadata_fields=("split", "extra")), "banking77 with metadata")
    nlupp_stream(digest)
    river_stream(digest)
    print(digest.total.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
