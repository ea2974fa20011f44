"""The worker's fuzz run on the real broker: hostile records (random and mutated: deep nesting,
huge numbers, invalid UTF-8, duplicate keys, truncations, type swaps...) mixed with valid ones.

Every record is dead-lettered or forwarded to ``events`` and processed there (none lost), every
valid message is predicted, the published metrics equal an engine fed the ``events`` log
directly, and the worker stays live and ready. ``bench/bench_fuzz.py`` runs the same with 10,000
mutated records and more (``REFINERY_TEST_FUZZ_RECORDS`` sets the count here).
"""

from __future__ import annotations

import itertools
import os

import orjson
import pytest

from agents.ingest.datasets import banking77
from agents.worker.deadletter import ERRORS
from tests.worker.fuzz import account, fuzz_records, valid_message_ids
from tests.worker.test_worker_kafka import _producer, _read_all, _settle, _wait_for, workers  # noqa: F401

pytestmark = pytest.mark.kafka

HOSTILE = int(os.environ.get("REFINERY_TEST_FUZZ_RECORDS", "2000"))


def produce(settings, records) -> list[tuple[str, int, int]]:
    """Send the records as raw bytes; their (topic, partition, offset) in send order."""
    producer = _producer(settings)
    futures = [
        (settings.topic(r.role), producer.send(settings.topic(r.role), key=r.key, value=r.value)) for r in records
    ]
    producer.flush()
    out = []
    for topic, future in futures:
        metadata = future.get(timeout=30)
        out.append((topic, metadata.partition, metadata.offset))
    producer.close()
    return out


def test_hostile_records_mixed_with_valid_ones_are_each_dead_lettered_or_processed_and_the_worker_stays_ready(
    topics, workers, datasets
):
    pairs = list(itertools.islice(banking77(root=datasets), HOSTILE // 4 + 50))
    records = fuzz_records(pairs, HOSTILE, seed=13)
    valid_ids = valid_message_ids(records)
    assert sum(not r.valid for r in records) == HOSTILE
    assert {r.kind for r in records} >= {"mutated", "deep_nesting", "huge_number", "invalid_utf8", "random_bytes"}

    worker = workers(topics)
    worker.wait_ready()
    sent = produce(topics, records)

    def tally():
        t = account(
            sent,
            valid_ids,
            [(p, o, v) for p, o, _, v in _read_all(topics, "events")],
            [v for *_, v in _read_all(topics, "deadletter")],
            [v for *_, v in _read_all(topics, "predictions")],
            topics.topic("events"),
        )
        return t if not t.lost and not t.unpredicted and not t.unprocessed_events else None

    result = _wait_for(tally, 180, "every record dead-lettered or processed", worker)
    assert result.dead_lettered + result.forwarded >= result.sent == len(records)
    assert set(result.by_error) <= set(ERRORS) and result.dead_lettered >= HOSTILE // 2
    # The engine's state is exactly what a plain loop over the events log computes.
    _settle(topics, result.forwarded, worker, timeout=180)
    assert worker.alive()
    assert worker.get("/healthz")[0] == 200
    status, body = worker.get("/readyz")
    assert status == 200 and orjson.loads(body)["ready"]
