"""`refinery tail` and `refinery status` against a real broker (no worker needed)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import orjson
import pytest

from agents.settings import PROJECT_ROOT
from schemas import Balance, Factor, LabelMetrics, Message, MetricsSnapshot, Rating

pytestmark = pytest.mark.kafka


def _refinery(settings, *args, timeout=60):
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "REFINERY_KAFKA_BOOTSTRAP": settings.bootstrap,
        "REFINERY_TOPIC_PREFIX": settings.topic_prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _send(settings, topic, records):
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.bootstrap)
    for key, value in records:
        producer.send(settings.topic(topic), key=key, value=value)
    producer.flush()
    producer.close()


def test_tail_prints_each_record_decoded_and_says_why_one_does_not_decode(topics):
    good = Message(dataset="support", id="m-1", timestamp=0, body="Card?")
    _send(topics, "messages", [(b"support", good.encode()), (b"support", b"{broken")])
    result = _refinery(topics, "tail", "messages", "--from-beginning", "--max", "2", "--timeout", "20")
    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [line["key"] for line in lines] == ["support", "support"]
    assert lines[0]["value"] == good.to_dict()
    assert lines[1]["value"]["undecodable"].startswith("message: expected a JSON object")


def test_status_falls_back_to_the_metrics_topic_when_no_worker_answers(topics):
    snapshot = MetricsSnapshot(
        dataset="support",
        timestamp=0,
        model_version=40,
        reviewed=40,
        labels={
            "Card > Delivery": LabelMetrics(
                precision=0.8, recall=0.5, f1=0.615, average_precision=0.7, threshold=0.3, support=10, pinned=14
            )
        },
        map=0.7,
        coverage=0.42,
        balance=Balance(score=55.0, similarity=0.8, shuffle_share=0.1),
        rating=Rating(score=61.0, band="Average", ready=False, factors={"coverage": Factor(score=42.0, band="Poor")}),
    )
    older = dataclasses.replace(snapshot, reviewed=1, model_version=1)
    _send(topics, "metrics", [(b"support", older.encode()), (b"support", snapshot.encode())])
    result = _refinery(topics, "status", "support", "--url", "http://127.0.0.1:9")  # nothing listens there
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "support: rating 61.0 (Average), not ready; 40 reviewed, model version 40"
    assert "Card > Delivery" in result.stdout and "0.800" in result.stdout


def test_status_of_an_unknown_dataset_says_so_and_fails(topics):
    result = _refinery(topics, "status", "nobody", "--url", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert "no metrics for dataset 'nobody'" in result.stderr
