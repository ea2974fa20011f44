"""Streams for automations end to end: how precise a high-precision stream is on Banking77's test split.

A ``refinery worker`` subprocess (default engine configuration) on topics of a fresh prefix is
declared three streams by ``REFINERY_STREAMS``, each of the test split only (a metadata filter,
``split = test``): ``precise`` (``high_precision``), ``balanced`` and ``recall``
(``high_recall``). It is sent every Banking77 training message in a seeded shuffled order, half
of them reviewed (each review ``--review-lag`` messages after its message, message inline); once
the worker has learned every review, the 3,080 test messages. Then:

* each stream's records, read from the broker, are checked against the route of the published
  predictions (`schemas.Stream.route`): every record and no other (PASS/FAIL);
* per stream: messages delivered, labels per message, and the precision of the delivered labels
  against the test split's labels (each test message has one);
* the size of a ``predictions`` record with and without the thresholds it now carries.

The local broker must run. The worker is stopped by pid and the prefix's topics deleted.

Run: ``.venv/bin/python bench/bench_streams.py [--review-share 0.5] [--seed 0] [--review-lag 20]``
(a few minutes: the worker applies some 18,000 events).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson  # noqa: E402
from bench_service import Worker, read_values, stream  # noqa: E402

from agents.ingest.datasets import banking77  # noqa: E402
from agents.kafka import admin  # noqa: E402
from agents.settings import Settings  # noqa: E402
from schemas import Message, Prediction, Stream, StreamMessage  # noqa: E402

DATASET = "banking77"
KINDS = {"precise": "high_precision", "balanced": "balanced", "recall": "high_recall"}


def _caught_up(settings: Settings, topic: str, expected: set[bytes]) -> list[bytes] | None:
    """The values of ``topic`` once they are exactly ``expected`` (repeats aside)."""
    values = read_values(settings, topic)
    return values if set(values) == expected else None


def _wait(condition, timeout: float, what: str, worker: Worker):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.check_alive()
        value = condition()
        if value:
            return value
        time.sleep(1.0)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--review-share", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--review-lag", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)

    from kafka import KafkaProducer

    settings = dataclasses.replace(Settings.from_env(), topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
    admin.create_topics(settings)
    streams = [
        Stream.from_dict(
            {"name": name, "dataset": DATASET, "threshold": kind, "filter": {"metadata": {"split": "test"}}}
        )
        for name, kind in KINDS.items()
    ]
    os.environ["REFINERY_STREAMS"] = orjson.dumps([s.to_dict() for s in streams]).decode()
    os.environ["REFINERY_SNAPSHOT_EVERY"] = "100000"  # the default engine's snapshots are large
    os.environ["REFINERY_METRICS_SECONDS"] = "30"
    train = stream(10_003, args.review_share, args.review_lag, args.seed)
    reviews = sum(not isinstance(e, Message) for e in train)
    test = [m for m, _ in banking77(split="test")]
    truth = {m.id: {label.name for label in review.labels} for m, review in banking77(split="test")}
    with tempfile.TemporaryDirectory() as workdir:
        worker = Worker(settings, Path(workdir))
        try:
            worker.wait_ready()
            producer = KafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5)
            key = DATASET.encode()
            started = time.perf_counter()
            for event in train:
                topic = "messages" if isinstance(event, Message) else "annotations"
                producer.send(settings.topic(topic), key=key, value=event.encode())
            producer.flush()
            _wait(  # the last published metrics (cheap: the API's /metrics would score the windows)
                lambda: any((row["model_version"] or 0) >= reviews for row in worker.get("/datasets")["datasets"]),
                args.timeout,
                f"{reviews} reviews learned",
                worker,
            )
            for message in test:
                producer.send(settings.topic("messages"), key=key, value=message.encode())
            producer.flush()
            predictions = _wait(
                lambda: (lambda p: p if {x.message_id for x in p} >= set(truth) else None)(
                    [Prediction.decode(v) for v in read_values(settings, settings.topic("predictions"))]
                ),
                args.timeout,
                "a prediction of every test message",
                worker,
            )
            seconds = time.perf_counter() - started
            messages = {m.id: m for m in test} | {e.id: e for e in train if isinstance(e, Message)}
            print(
                f"worker: {len(train) - reviews} training messages ({reviews} reviewed), then {len(test)} test "
                f"messages, in {seconds:.0f} s"
            )
            ok = True
            for s in streams:
                expected = {r.encode() for p in predictions if (r := s.route(p, messages[p.message_id])) is not None}
                written = _wait(
                    functools.partial(_caught_up, settings, settings.topic(f"streams.{s.name}"), expected),
                    120,
                    f"streams.{s.name}",
                    worker,
                )
                records = {(r.message_id, r.model_version): r for r in map(StreamMessage.decode, written)}.values()
                labels = [(r.message_id, label.name) for r in records for label in r.labels]
                correct = sum(name in truth[message_id] for message_id, name in labels)
                print(
                    f"stream {s.name:9} ({KINDS[s.name]:14}): {len(records):5d} of {len(test)} test messages, "
                    f"{len(labels) / max(1, len(records)):.2f} labels each, precision {correct / max(1, len(labels)):.3f} "
                    f"({correct}/{len(labels)}), equal to the route of the predictions: PASS"
                )
                ok &= {r.message_id for r in records} <= set(truth)
            sizes = [len(v) for v in read_values(settings, settings.topic("predictions"))[-len(test) :]]
            bare = [
                len(
                    orjson.dumps(
                        {k: v for k, v in p.to_dict().items() if k not in ("thresholds", "thresholds_version")}
                    )
                )
                for p in predictions[-len(test) :]
            ]
            listed = [len(p.thresholds) for p in predictions[-len(test) :]]
            print(
                f"prediction record: {sum(sizes) / len(sizes):.0f} B with thresholds ({sum(listed) / len(listed):.1f} "
                f"labels listed), {sum(bare) / len(bare):.0f} B without"
            )
            return 0 if ok else 1
        finally:
            worker.stop()
            try:
                admin.delete_topics(settings)
                with admin.admin_client(settings) as client:
                    client.delete_topics([t for t in client.list_topics() if t.startswith(settings.topic("stream"))])
            except Exception:
                pass


if __name__ == "__main__":
    sys.exit(main())
