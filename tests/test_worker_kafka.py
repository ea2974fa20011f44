"""The streaming worker on a real broker: end to end, dead letters, crash recovery, two workers.

Every test has its own topic prefix (hence its own topics and consumer group) and runs
``refinery worker`` as subprocesses it starts and stops by pid. The reference for "the same
figures" is a `pipeline.Refiner` fed directly, in a plain loop, with the ``events`` log the
worker consumed (each input record once, at its first position): exactly what an
uninterrupted worker computes.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import orjson
import pytest

from agents.config import PROJECT_ROOT
from agents.datasets import banking77
from agents.sequencer import owner_partition
from pipeline import Refiner, RefinerConfig
from schemas import DeadLetter, Event, MetricsSnapshot, Prediction, SuggestionList

pytestmark = pytest.mark.kafka

ENGINE = {"feature_bits": 12, "validation_window": 300, "live_window": 300}
PARTITIONS = 4


# -- helpers -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    """One ``refinery worker`` subprocess."""

    def __init__(self, settings, log_path, **env):
        self.port = _free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "PYTHONPATH": str(PROJECT_ROOT),
            "REFINERY_KAFKA_BOOTSTRAP": settings.bootstrap,
            "REFINERY_TOPIC_PREFIX": settings.topic_prefix,
            "REFINERY_PARTITIONS": str(PARTITIONS),
            "REFINERY_WEB_PORT": str(self.port),
            "REFINERY_ENGINE_CONFIG": orjson.dumps(ENGINE).decode(),
            "REFINERY_METRICS_SECONDS": "0.5",
            "REFINERY_SNAPSHOT_EVERY": "100",
            "REFINERY_SNAPSHOT_SECONDS": "1",
            "REFINERY_SESSION_TIMEOUT": "6",
            "REFINERY_DATA_DIR": str(log_path.parent / f"data-{self.port}"),
            **env,
        }
        self.process = None

    def start(self) -> "Worker":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "agents.cli", "worker", "--loglevel", "info"],
                                        env=self.env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        return self

    def get(self, path: str, timeout: float = 5.0, token: str | None = None):
        token = token or self.env.get("REFINERY_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"worker exited ({self.process.returncode}); see {self.log_path}"
            try:
                status, body = self.get("/readyz", timeout=1.0)
                if status == 200 and orjson.loads(body)["assigned"]:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"worker not ready after {timeout} s; see {self.log_path}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.alive():
            self.process.send_signal(sig)
            self.process.wait(timeout=30)


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []

    def start(settings, name="worker", **env) -> Worker:
        worker = Worker(settings, tmp_path / f"{name}.log", **env).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill(signal.SIGTERM if worker.alive() else signal.SIGKILL)


@pytest.fixture
def topics(settings_for, unique_prefix):
    from agents.broker import create_topics

    settings = settings_for(unique_prefix, partitions=PARTITIONS)
    create_topics(settings)
    return settings


def _producer(settings):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5)


def _read_all(settings, name: str) -> list:
    """Every record of a topic now: ``[(partition, offset, key, value)]`` in partition, offset order."""
    from kafka import KafkaConsumer, TopicPartition

    topic = settings.topic(name)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for tp, records in consumer.poll(timeout_ms=500).items():
                out += [(tp.partition, r.offset, r.key, r.value) for r in records]
        return sorted(out, key=lambda r: (r[0], r[1]))
    finally:
        consumer.close()


def _wait_for(condition, timeout: float, what: str, worker: Worker | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if worker is not None:
            assert worker.alive(), f"worker died while waiting for {what}; see {worker.log_path}"
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _reference(settings) -> dict[str, Refiner]:
    """Engines fed the ``events`` log directly: each input record once, at its first position."""
    engines: dict[str, Refiner] = {}
    seen = set()
    config = RefinerConfig.from_dict({**RefinerConfig().to_dict(), **ENGINE})
    for _, _, _, value in _read_all(settings, "events"):
        event = Event.decode(value)
        position = (event.source_topic, event.partition, event.offset)
        if position in seen:
            continue
        seen.add(position)
        record = event.message or event.annotation
        engine = engines.setdefault(record.dataset, Refiner(record.dataset, config=config, seed=0))
        try:
            engine.observe(event.message) if event.message is not None else engine.annotate(event.annotation)
        except ValueError:
            pass  # the worker dead-letters these; the engine is unchanged
    return engines


def _latest_metrics(settings) -> dict[str, MetricsSnapshot]:
    latest = {}
    for _, _, _, value in _read_all(settings, "metrics"):
        snapshot = MetricsSnapshot.decode(value)
        latest[snapshot.dataset] = snapshot
    return latest


def _final_metrics(settings, reviews: dict[str, int], timeout: float = 60.0, worker=None) -> dict[str, MetricsSnapshot]:
    """The published metrics once every dataset reports all its reviews learnt."""
    def done():
        latest = _latest_metrics(settings)
        if all(d in latest and latest[d].reviewed == n for d, n in reviews.items()):
            return latest
        return None
    return _wait_for(done, timeout, f"metrics with {reviews} reviews", worker)


def _same_figures(published: MetricsSnapshot, engine: Refiner) -> None:
    expected = engine.metrics(now=published.timestamp)
    assert published.to_dict() == expected.to_dict()


def _pairs(n: int, dataset: str = "banking77", skip: int = 0):
    return list(itertools.islice(banking77(dataset=dataset), skip, skip + n))


def _reviewed(pair):
    """The review with the message inline: Kafka does not order the two input topics, so a review
    may reach the engine before its message (DESIGN.md section 2)."""
    message, review = pair
    return dataclasses.replace(review, message=message)


def _send(producer, settings, pairs, review_every: int = 2, review_lag: int = 2):
    """Messages in order; every ``review_every``-th message is reviewed ``review_lag`` messages later."""
    reviewed = 0
    for i, (message, _) in enumerate(pairs):
        key = message.dataset.encode()
        producer.send(settings.topic("messages"), key=key, value=message.encode())
        j = i - review_lag
        if j >= 0 and j % review_every == 0:
            producer.send(settings.topic("annotations"), key=key, value=_reviewed(pairs[j]).encode())
            reviewed += 1
    producer.flush()
    return reviewed


# -- end to end --------------------------------------------------------------------------------


def test_end_to_end_one_prediction_per_message_and_the_same_figures_as_the_engine(topics, workers, datasets):
    worker = workers(topics)
    worker.wait_ready()
    pairs = _pairs(300)
    reviews = _send(_producer(topics), topics, pairs)

    predictions = _wait_for(lambda: (lambda p: p if len(p) >= 300 else None)(_read_all(topics, "predictions")),
                            60, "300 predictions", worker)
    decoded = [Prediction.decode(v) for _, _, _, v in predictions]
    assert sorted(p.message_id for p in decoded) == sorted(m.id for m, _ in pairs)
    assert {k for _, _, k, _ in predictions} == {b"banking77"}

    published = _final_metrics(topics, {"banking77": reviews}, worker=worker)
    reference = _reference(topics)
    _same_figures(published["banking77"], reference["banking77"])
    assert _read_all(topics, "deadletter") == []


def test_the_web_api_and_prometheus_report_the_dataset(topics, workers, datasets):
    worker = workers(topics, REFINERY_API_TOKEN="s3cret")
    worker.wait_ready()
    reviews = _send(_producer(topics), topics, _pairs(120))
    _final_metrics(topics, {"banking77": reviews}, worker=worker)

    assert worker.get("/healthz", token="wrong")[0] == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        worker.get("/datasets", token="wrong")
    assert refused.value.code == 401

    def get(path):
        return worker.get(path, timeout=10)[1]

    assert [row["dataset"] for row in orjson.loads(get("/datasets"))["datasets"]] == ["banking77"]
    metrics = MetricsSnapshot.from_dict(orjson.loads(get("/datasets/banking77/metrics")))
    assert metrics.reviewed == reviews
    label = sorted(metrics.labels)[0]
    curve = orjson.loads(get(f"/datasets/banking77/curve?label={urllib.parse.quote(label)}"))
    assert curve["support"] == metrics.labels[label].support and curve["points"]
    exposition = get("/metrics").decode()
    assert f'refinery_label_precision{{dataset="banking77",label="{label}"}}' in exposition
    assert f'refinery_dataset_reviewed{{dataset="banking77"}} {float(reviews)}' in exposition
    assert "refinery_processing_seconds_bucket" in exposition and "refinery_consumer_lag" in exposition


def _malformed(settings, rng: random.Random, n: int) -> list[tuple[str, bytes | None, bytes]]:
    """``n`` bad records of several kinds: (topic, key, value)."""
    message = {"dataset": "banking77", "id": "bad", "timestamp": 0, "body": "hello"}
    wrong_partition = next(d for d in (f"other-{i}" for i in range(100))
                           if owner_partition(d, PARTITIONS) != owner_partition("banking77", PARTITIONS))
    kinds = [
        lambda i: ("messages", b"banking77", b"{not json " + str(i).encode()),
        lambda i: ("messages", b"banking77", bytes(rng.randrange(256) for _ in range(20))),
        lambda i: ("messages", b"banking77", orjson.dumps({**message, "id": f"bad-{i}", "channel": "fax"})),
        lambda i: ("messages", b"banking77", orjson.dumps({**message, "id": ""})),
        lambda i: ("messages", b"banking77", orjson.dumps({**message, "id": f"big-{i}", "body": "x" * 20_000})),
        lambda i: ("annotations", b"banking77", orjson.dumps({"dataset": "banking77", "message_id": f"m{i}", "timestamp": 0,
                                                              "labels": [{"name": "a"}, {"name": "a"}]})),
        lambda i: ("annotations", b"banking77", orjson.dumps({"dataset": "banking77", "message_id": f"never-seen-{i}",
                                                              "timestamp": 0, "labels": [{"name": "card_arrival"}]})),
        # keyed by another dataset's name, so it lands on a partition its own dataset does not own
        lambda i: ("messages", b"banking77", orjson.dumps({**message, "dataset": wrong_partition})),
    ]
    return [kinds[i % len(kinds)](i) for i in range(n)]


def test_a_thousand_malformed_events_are_dead_lettered_and_every_valid_one_is_processed(topics, workers, datasets):
    worker = workers(topics, REFINERY_MAX_BODY_BYTES="10000")
    worker.wait_ready()
    rng = random.Random(7)
    bad = _malformed(topics, rng, 1000)
    pairs = _pairs(200)
    producer = _producer(topics)
    valid_reviews = 0
    for i, (message, review) in enumerate(pairs):
        producer.send(topics.topic("messages"), key=b"banking77", value=message.encode())
        if i % 2 == 0:
            producer.send(topics.topic("annotations"), key=b"banking77", value=_reviewed((message, review)).encode())
            valid_reviews += 1
        for topic, key, value in bad[i * 5:(i + 1) * 5]:
            producer.send(topics.topic(topic), key=key, value=value)
    producer.flush()

    dead = _wait_for(lambda: (lambda d: d if len(d) >= 1000 else None)(_read_all(topics, "deadletter")),
                     90, "1000 dead letters", worker)
    letters = [DeadLetter.decode(v) for _, _, _, v in dead]
    assert len(letters) == 1000
    assert {d.error for d in letters} == {"decode", "schema", "partition", "processing"}
    assert all(d.reason and d.source_topic.startswith(topics.topic_prefix) for d in letters)
    never_seen = [d for d in letters if d.error == "processing"]
    assert len(never_seen) == 125 and all("never-seen" in d.reason for d in never_seen)

    predictions = _wait_for(lambda: (lambda p: p if len(p) >= 200 else None)(_read_all(topics, "predictions")),
                            60, "200 predictions", worker)
    assert sorted(Prediction.decode(v).message_id for *_, v in predictions) == sorted(m.id for m, _ in pairs)
    published = _final_metrics(topics, {"banking77": valid_reviews}, worker=worker)
    _same_figures(published["banking77"], _reference(topics)["banking77"])
    assert worker.alive() and worker.get("/healthz")[0] == 200
