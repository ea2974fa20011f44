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
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib

import orjson
import pytest

from agents.ingest.datasets import banking77
from agents.settings import PROJECT_ROOT
from agents.worker.sequencer import owner_partition
from pipeline import Refiner, RefinerConfig
from schemas import DeadLetter, Event, Message, MetricsSnapshot, Prediction, SuggestionList
from tests.conftest import TEST_PARTITIONS

pytestmark = pytest.mark.kafka

ENGINE = {"feature_bits": 12, "validation_window": 300, "live_window": 300}
PARTITIONS = TEST_PARTITIONS


# -- helpers -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    """One ``refinery worker`` subprocess."""

    def __init__(self, settings, log_path, port=None, **env):
        self.port = port or _free_port()
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

    def start(self) -> Worker:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agents.cli", "worker", "--loglevel", "info"],
            env=self.env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def get(self, path: str, timeout: float = 5.0, token: str | None = None, body: bytes | None = None):
        """``(status, body)`` of a GET (a POST with ``body``) to the worker's web server."""
        token = token or self.env.get("REFINERY_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers, data=body)
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

    def start(settings, name="worker", port=None, **env) -> Worker:
        worker = Worker(settings, tmp_path / f"{name}.log", port, **env).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill(signal.SIGTERM if worker.alive() else signal.SIGKILL)


def _producer(settings):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5)


def _consumer_records(settings, name: str) -> list:
    """Every record of a topic now (kafka-python's ``ConsumerRecord``s), in partition, offset order."""
    from kafka import KafkaConsumer, TopicPartition

    topic = settings.topic(name)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap, enable_auto_commit=False, group_id=None, fetch_max_bytes=4 * 2**20
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                out += records
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def _read_all(settings, name: str) -> list:
    """Every record of a topic now: ``[(partition, offset, key, value)]`` in partition, offset order."""
    return [(r.partition, r.offset, r.key, r.value) for r in _consumer_records(settings, name)]


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


def _events(settings) -> list[Event]:
    """The ``events`` log, each input record once, at its first position (the sequencer may
    forward a record again after a crash; the engine drops the repeat)."""
    seen, out = set(), []
    for _, _, _, value in _read_all(settings, "events"):
        event = Event.decode(value)
        position = (event.source_topic, event.partition, event.offset)
        if position not in seen:
            seen.add(position)
            out.append(event)
    return out


def _reference(events: list[Event]) -> dict[str, Refiner]:
    """Engines fed the events directly, in a plain loop: what an uninterrupted worker computes."""
    engines: dict[str, Refiner] = {}
    config = RefinerConfig.from_dict({**RefinerConfig().to_dict(), **ENGINE})
    for event in events:
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


def _settle(settings, events: int, worker=None, timeout: float = 90.0) -> dict[str, MetricsSnapshot]:
    """Wait until ``events`` distinct input records are in ``events``, then until every dataset's
    published metrics equal a directly fed engine's (at the published time); return them."""
    log = _wait_for(
        lambda: (lambda e: e if len(e) >= events else None)(_events(settings)), timeout, f"{events} events", worker
    )
    assert len(log) == events
    reference = _reference(log)

    def matches():
        latest = _latest_metrics(settings)
        if set(latest) != set(reference):
            return None
        for dataset, published in latest.items():
            if published.to_dict() != reference[dataset].metrics(now=published.timestamp).to_dict():
                return None
        return latest

    return _wait_for(matches, timeout, "published metrics equal to the engine's", worker)


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

    predictions = _wait_for(
        lambda: (lambda p: p if len(p) >= 300 else None)(_read_all(topics, "predictions")),
        60,
        "300 predictions",
        worker,
    )
    decoded = [Prediction.decode(v) for _, _, _, v in predictions]
    assert sorted(p.message_id for p in decoded) == sorted(m.id for m, _ in pairs)
    assert {k for _, _, k, _ in predictions} == {b"banking77"}

    published = _settle(topics, 300 + reviews, worker)
    assert published["banking77"].reviewed == reviews
    lists = [SuggestionList.decode(v) for *_, v in _read_all(topics, "suggestions")]
    assert {s.kind for s in lists} == {
        "check_label",
        "missed_label",
        "teach_label",
        "low_confidence",
        "rebalance",
        "shuffle",
    }
    assert all(s.dataset == "banking77" for s in lists)
    assert _read_all(topics, "deadletter") == []


def test_the_web_api_and_prometheus_report_the_dataset(topics, workers, datasets):
    worker = workers(topics, REFINERY_API_TOKEN="s3cret")
    worker.wait_ready()
    reviews = _send(_producer(topics), topics, _pairs(120))
    _settle(topics, 120 + reviews, worker)

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
    shuffle = SuggestionList.from_dict(orjson.loads(get("/datasets/banking77/suggestions?kind=shuffle&limit=5")))
    assert shuffle.kind == "shuffle" and 0 < len(shuffle.items) <= 5

    def state():
        return {k: v for k, v in orjson.loads(get("/datasets/banking77/metrics")).items() if k != "timestamp"}

    before = state()
    question = Message(dataset="banking77", id="ad-hoc", timestamp=0, body="my card still has not arrived")
    answer = Prediction.from_dict(orjson.loads(worker.get("/datasets/banking77/predict", body=question.encode())[1]))
    assert answer.message_id == "ad-hoc" and set(answer.confidences) == set(metrics.labels)
    assert state() == before  # predicting learns nothing and is not live traffic
    exposition = get("/metrics").decode()
    assert f'refinery_label_precision{{dataset="banking77",label="{label}"}}' in exposition
    assert f'refinery_dataset_reviewed{{dataset="banking77"}} {float(reviews)}' in exposition
    assert "refinery_processing_seconds_bucket" in exposition and "refinery_consumer_lag" in exposition
    for stage in ("sequencer", "engine"):  # every batch of both agents was timed by its records' age
        (count,) = [
            line
            for line in exposition.splitlines()
            if line.startswith(f'refinery_record_age_seconds_count{{stage="{stage}"}}')
        ]
        assert float(count.split()[-1]) > 0
    # `refinery worker` froze its startup objects, and the collector's pauses are timed (agents.worker.heap)
    (frozen,) = [line for line in exposition.splitlines() if line.startswith("refinery_gc_frozen_objects ")]
    assert float(frozen.split()[-1]) > 10_000
    assert 'refinery_gc_pause_seconds_count{generation="0"}' in exposition


def _malformed(settings, rng: random.Random, n: int) -> list[tuple[str, bytes | None, bytes]]:
    """``n`` bad records of several kinds: (topic, key, value)."""
    message = {"dataset": "banking77", "id": "bad", "timestamp": 0, "body": "hello"}
    wrong_partition = next(
        d
        for d in (f"other-{i}" for i in range(100))
        if owner_partition(d, PARTITIONS) != owner_partition("banking77", PARTITIONS)
    )
    kinds = [
        lambda i: ("messages", b"banking77", b"{not json " + str(i).encode()),
        lambda i: ("messages", b"banking77", bytes(rng.randrange(256) for _ in range(20))),
        lambda i: ("messages", b"banking77", orjson.dumps({**message, "id": f"bad-{i}", "channel": "fax"})),
        lambda i: ("messages", b"banking77", orjson.dumps({**message, "id": ""})),
        lambda i: ("messages", b"banking77", orjson.dumps({**message, "id": f"big-{i}", "body": "x" * 20_000})),
        lambda i: (
            "annotations",
            b"banking77",
            orjson.dumps(
                {
                    "dataset": "banking77",
                    "message_id": f"m{i}",
                    "timestamp": 0,
                    "labels": [{"name": "a"}, {"name": "a"}],
                }
            ),
        ),
        lambda i: (
            "annotations",
            b"banking77",
            orjson.dumps(
                {
                    "dataset": "banking77",
                    "message_id": f"never-seen-{i}",
                    "timestamp": 0,
                    "labels": [{"name": "card_arrival"}],
                }
            ),
        ),
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
        for topic, key, value in bad[i * 5 : (i + 1) * 5]:
            producer.send(topics.topic(topic), key=key, value=value)
    producer.flush()

    dead = _wait_for(
        lambda: (lambda d: d if len(d) >= 1000 else None)(_read_all(topics, "deadletter")),
        90,
        "1000 dead letters",
        worker,
    )
    letters = [DeadLetter.decode(v) for _, _, _, v in dead]
    assert len(letters) == 1000
    assert {d.error for d in letters} == {
        "decode",
        "schema",
        "partition",
        "processing",
        "limit",
    }  # body over the cap: limit
    assert all(d.reason and d.source_topic.startswith(topics.topic_prefix) for d in letters)
    never_seen = [d for d in letters if d.error == "processing"]
    assert len(never_seen) == 125 and all("never-seen" in d.reason for d in never_seen)

    predictions = _wait_for(
        lambda: (lambda p: p if len(p) >= 200 else None)(_read_all(topics, "predictions")),
        60,
        "200 predictions",
        worker,
    )
    assert sorted(Prediction.decode(v).message_id for *_, v in predictions) == sorted(m.id for m, _ in pairs)
    # The events log holds the valid records and the 125 reviews the engine could not apply.
    published = _settle(topics, 200 + valid_reviews + 125, worker)
    assert published["banking77"].reviewed == valid_reviews
    assert worker.alive() and worker.get("/healthz")[0] == 200


# -- crash recovery ----------------------------------------------------------------------------


def test_sigkill_at_random_points_loses_no_review_and_learns_none_twice(topics, workers, datasets):
    rng = random.Random(20261130)
    pairs = _pairs(300)
    # The restarted worker takes over without waiting for a session timeout; snapshots are frequent,
    # so kills land before, during and after them.
    static = {"REFINERY_INSTANCE_ID": "only", "REFINERY_SNAPSHOT_EVERY": "25", "REFINERY_SNAPSHOT_SECONDS": "0.5"}
    worker = workers(topics, **static)
    counts = {}
    kills_done = threading.Event()

    def stream():  # a live stream: messages and reviews at a modest rate while the worker dies
        producer = _producer(topics)
        counts["reviews"] = 0
        for start in range(0, len(pairs), 10):
            if start == len(pairs) - 30:
                kills_done.wait(120)  # however slow the restarts, the last kill lands mid-stream
            counts["reviews"] += _send(producer, topics, pairs[start : start + 10], review_every=2, review_lag=0)
            time.sleep(0.5)

    worker.wait_ready()
    sender = threading.Thread(target=stream)
    sender.start()
    restarted = []
    for kill in range(3):  # at random points while the worker is processing the stream
        worker.wait_ready()
        if kill == 1:  # the later kills land after a snapshot exists, so a restore has one to read
            _wait_for(lambda: "banking77" in _snapshot_manifests(topics), 60, "a first snapshot", worker)
        time.sleep(rng.uniform(0.2, 1.5))
        worker.kill(signal.SIGKILL)
        # Same instance id and address: Faust's assignor checks the worker's URL on a static rejoin.
        worker = workers(topics, name=f"worker-{kill + 1}", port=worker.port, **static)
        restarted.append(worker)
    kills_done.set()
    sender.join()
    worker.wait_ready()

    published = _settle(topics, len(pairs) + counts["reviews"], worker)
    assert published["banking77"].reviewed == counts["reviews"]
    predicted = {Prediction.decode(v).message_id for *_, v in _read_all(topics, "predictions")}
    assert predicted == {m.id for m, _ in pairs}  # at least once: repeats are allowed after a crash
    # A restart restored the dataset from a snapshot (then replayed the rest), not only from the log.
    home = owner_partition("banking77", PARTITIONS)
    from_snapshot = f"partition_restored partition={home} datasets=['banking77']"
    assert any(from_snapshot in w.log_path.read_text() for w in restarted[1:]), [w.log_path for w in restarted]


def _send_to_each(settings, names: list[str], n: int) -> int:
    """``n`` messages (and their reviews) to each dataset of ``names``; the events sent."""
    producer = _producer(settings)
    events = 0
    for i, name in enumerate(names):
        pairs = _pairs(n, dataset=name, skip=n * i)
        events += len(pairs) + _send(producer, settings, pairs)
    return events


def _datasets_on_each_partition() -> list[str]:
    names, covered = [], set()
    for name in (f"bank-{i}" for i in range(1000)):
        p = owner_partition(name, PARTITIONS)
        if p not in covered:
            covered.add(p)
            names.append(name)
        if len(covered) == PARTITIONS:
            return names
    raise AssertionError("no dataset names covering every partition")


def _snapshot_manifests(settings):
    from agents.worker.snapshots import collect

    return collect((key, value) for _, _, key, value in _read_all(settings, "snapshots")).manifests


def _owned(worker) -> set[str]:
    return {row["dataset"] for row in orjson.loads(worker.get("/datasets")[1])["datasets"]}


def _exported(worker) -> set[str]:
    """The datasets whose rating the worker's /metrics exports."""
    text = worker.get("/metrics")[1].decode()
    return set(re.findall(r'^refinery_dataset_rating\{dataset="([^"]+)"\}', text, flags=re.M))


def _readyz(worker) -> dict:
    """The worker's /readyz body; {} while it does not answer 200 (HTTPError is an OSError)."""
    try:
        return orjson.loads(worker.get("/readyz")[1])
    except OSError:
        return {}


def _assigned(worker) -> set[int]:
    return set(_readyz(worker).get("assigned", ()))


def test_two_workers_each_dataset_has_one_owner_and_a_killed_worker_hands_its_datasets_over(topics, workers, datasets):
    names = _datasets_on_each_partition()
    first, second = workers(topics, name="first"), workers(topics, name="second")
    first.wait_ready()
    second.wait_ready()
    _wait_for(
        lambda: (
            _assigned(first)
            and _assigned(second)
            and not (_assigned(first) & _assigned(second))
            and len(_assigned(first) | _assigned(second)) == PARTITIONS
        ),
        60,
        "the partitions shared by both workers",
    )
    events = _send_to_each(topics, names, 60)
    _settle(topics, events, first)
    owned_first, owned_second = _owned(first), _owned(second)
    assert owned_first.isdisjoint(owned_second) and owned_first | owned_second == set(names)
    assert owned_first and owned_second
    for name in owned_first:
        assert owner_partition(name, PARTITIONS) in _assigned(first)
    assert (_exported(first), _exported(second)) == (owned_first, owned_second)  # each reports only its own
    assert b"refinery_worker_ready 1.0" in second.get("/metrics")[1]
    _wait_for(lambda: set(_snapshot_manifests(topics)) == set(names), 30, "a snapshot of every dataset")

    first.kill(signal.SIGKILL)
    _wait_for(
        lambda: _assigned(second) == set(range(PARTITIONS)) and second.get("/readyz")[0] == 200,
        60,
        "the survivor to own every partition",
        second,
    )
    assert _owned(second) == set(names)  # restored from the snapshots, before any new event
    producer = _producer(topics)
    for i, name in enumerate(names):
        pairs = _pairs(40, dataset=name, skip=60 * i + 1000)
        events += len(pairs) + _send(producer, topics, pairs)
    published = _settle(topics, events, second)
    assert _owned(second) == set(names)
    assert set(published) == set(names)
    assert _exported(second) == set(names)


def test_a_sequencer_worker_and_an_engine_worker_share_the_two_hops_and_a_killed_sequencer_loses_nothing(
    topics, workers, datasets
):
    """REFINERY_WORKER_ROLE: one group, the sequencer in one process, the engines in another.
    Each process is given only its agent's partitions; the figures are an uninterrupted
    engine's; a sequencer killed mid-stream is replaced and nothing is lost or learnt twice."""
    inputs = {f"{topics.topic(name)}:{p}" for name in ("messages", "annotations") for p in range(PARTITIONS)}
    static = {"REFINERY_WORKER_ROLE": "sequencer", "REFINERY_INSTANCE_ID": "sequencer"}
    sequencer = workers(topics, name="sequencer", **static)
    engine = workers(topics, name="engine", REFINERY_WORKER_ROLE="engine")
    _wait_for(
        lambda: (
            set(_readyz(sequencer).get("inputs", ())) == inputs
            and _readyz(sequencer).get("assigned") == []
            and _readyz(engine).get("assigned") == list(range(PARTITIONS))
            and _readyz(engine).get("inputs") == []
        ),
        90,
        "the input partitions on the sequencer, the events partitions on the engine",
        engine,
    )
    assert (_readyz(sequencer)["role"], _readyz(engine)["role"]) == ("sequencer", "engine")
    pairs = _pairs(240)
    producer = _producer(topics)
    reviews = _send(producer, topics, pairs[:120])
    _wait_for(lambda: len(_read_all(topics, "predictions")) >= 60, 60, "predictions", engine)
    sequencer.kill(signal.SIGKILL)  # mid-stream: what it forwarded and had not committed is forwarded again
    sequencer = workers(topics, name="sequencer-2", port=sequencer.port, **static)
    reviews += _send(producer, topics, pairs[120:])
    published = _settle(topics, len(pairs) + reviews, engine)
    assert published["banking77"].reviewed == reviews
    predicted = {Prediction.decode(v).message_id for *_, v in _read_all(topics, "predictions")}
    assert predicted == {m.id for m, _ in pairs}
    assert _owned(engine) == {"banking77"} and _owned(sequencer) == set()
    assert _read_all(topics, "deadletter") == []


def test_a_sequencer_worker_added_beside_a_worker_of_role_all_takes_a_share_of_the_inputs(topics, workers, datasets):
    """The way to split a running deployment: start a sequencer worker in the same group. The
    input partitions are shared by both, the events partitions stay with the worker of role all."""
    both = workers(topics, name="all")
    both.wait_ready()
    sequencer = workers(topics, name="sequencer", REFINERY_WORKER_ROLE="sequencer")
    _wait_for(
        lambda: (
            _readyz(sequencer).get("inputs")
            and _readyz(both).get("inputs")
            and len(_readyz(sequencer)["inputs"]) + len(_readyz(both)["inputs"]) == 2 * PARTITIONS
            and _readyz(both).get("assigned") == list(range(PARTITIONS))
            and _readyz(sequencer).get("assigned") == []
        ),
        90,
        "the inputs shared, the events partitions on the worker of role all",
        both,
    )
    pairs = _pairs(100)
    reviews = _send(_producer(topics), topics, pairs)
    published = _settle(topics, len(pairs) + reviews, both)
    assert published["banking77"].reviewed == reviews
    assert {Prediction.decode(v).message_id for *_, v in _read_all(topics, "predictions")} == {m.id for m, _ in pairs}


# -- broker outage -----------------------------------------------------------------------------


def _free_port_pair() -> int:
    """A port p such that p and p + 1 (the controller's) are both free."""
    for _ in range(100):
        port = _free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise AssertionError("no two consecutive free ports")


@pytest.fixture
def own_broker(tmp_path_factory, unique_prefix):
    """A broker of this test's own (its own port and REFINERY_HOME under /tmp), which it may stop:
    never the shared one."""
    from agents.kafka import admin, broker
    from agents.settings import Settings

    shared = Settings.from_env()
    if not broker._fetched(shared):
        pytest.skip(f"the Kafka jars are not in {shared.home / 'libs'}: run `refinery kafka fetch`")
    home = tmp_path_factory.mktemp("outage-broker")
    (home / "libs").symlink_to(shared.home / "libs")  # the jars already fetched; no download
    settings = dataclasses.replace(
        shared,
        external_bootstrap=None,
        home=home,
        kafka_port=_free_port_pair(),
        topic_prefix=unique_prefix,
        partitions=PARTITIONS,
    )
    broker.start(settings, quiet=True)
    try:
        admin.create_topics(settings)
        yield settings
    finally:
        broker.stop(settings, quiet=True)


def _predictions_out(worker) -> int:
    """Predictions the worker has had acknowledged by the broker (its own counter, read over HTTP)."""
    text = worker.get("/metrics")[1].decode()
    found = re.search(r'^refinery_events_out_total\{topic="[^"]*predictions"\} (\S+)$', text, flags=re.M)
    return int(float(found.group(1))) if found else 0


def test_a_worker_owning_every_partition_reports_each_partitions_progress(topics, workers, datasets):
    """Batches mix the ``events`` partitions a worker owns: every one of them moves on, none is
    reported stalled once its events are applied (a batch's last record once stood for all)."""
    names = _datasets_on_each_partition()
    worker = workers(topics, REFINERY_STALL_SECONDS="1", REFINERY_METRICS_SECONDS="0.5")
    worker.wait_ready()
    events = _send_to_each(topics, names, 40)
    _settle(topics, events, worker)
    time.sleep(2.5)  # beyond REFINERY_STALL_SECONDS, several ticks of the lag timer
    status, body = worker.get("/readyz")
    assert status == 200 and orjson.loads(body)["ready"]
    exposition = worker.get("/metrics")[1].decode()
    stalled = [line for line in exposition.splitlines() if line.startswith("refinery_partition_stalled{")]
    assert len(stalled) >= PARTITIONS and all(line.endswith(" 0.0") for line in stalled), stalled


def test_a_30_second_broker_outage_mid_stream_loses_nothing(own_broker, workers, datasets):
    """The broker goes while the stream is under way: 50 messages (and reviews) it has accepted are
    not processed yet, and 50 more are sent while it is away. All are processed after it returns."""
    from agents.kafka import broker

    outage = float(os.environ.get("REFINERY_TEST_OUTAGE_SECONDS", "30"))
    worker = workers(own_broker)
    worker.wait_ready()
    pairs = _pairs(200)
    producer = _producer(own_broker)
    events = len(pairs[:100]) + _send(producer, own_broker, pairs[:100])
    _wait_for(lambda: len(_read_all(own_broker, "predictions")) >= 50, 60, "the stream under way", worker)

    # Work in flight: the worker is paused while the broker accepts 50 more messages, so they are
    # in Kafka, unprocessed, when the broker goes (without the pause it could drain them first).
    worker.process.send_signal(signal.SIGSTOP)
    try:
        events += len(pairs[100:150]) + _send(producer, own_broker, pairs[100:150])  # flushed: acknowledged
        broker.stop(own_broker, quiet=True)
    finally:
        worker.process.send_signal(signal.SIGCONT)
    during = threading.Thread(target=lambda: counts.update(sent=_send(producer, own_broker, pairs[150:])))
    counts: dict[str, int] = {}
    during.start()  # sent while the broker is away: buffered by the producer, delivered on its return
    deadline = time.monotonic() + outage
    predicted_during = []
    try:
        while time.monotonic() < deadline:
            assert worker.alive(), f"the worker died during the outage; see {worker.log_path}"
            predicted_during.append(_predictions_out(worker))
            time.sleep(1)
    finally:
        broker.start(own_broker, quiet=True)  # whatever happens, the worker can then stop cleanly
    assert predicted_during and max(predicted_during) < 150  # accepted before the outage, not yet predicted
    during.join(timeout=120)
    assert not during.is_alive() and "sent" in counts
    events += len(pairs[150:]) + counts["sent"]

    published = _settle(own_broker, events, worker, timeout=120)
    assert published["banking77"].reviewed == events - len(pairs)
    predicted = {Prediction.decode(v).message_id for *_, v in _read_all(own_broker, "predictions")}
    assert predicted == {m.id for m, _ in pairs}
    assert _predictions_out(worker) >= 200
    assert worker.alive()


def test_a_forged_snapshot_is_rejected_with_a_log_line_and_the_dataset_rebuilt_from_its_log(topics, workers, datasets):
    from agents.worker.snapshots import pack

    worker = workers(topics)
    worker.wait_ready()
    pairs = _pairs(150)
    events = len(pairs) + _send(_producer(topics), topics, pairs)
    _settle(topics, events, worker)
    genuine = _wait_for(lambda: _snapshot_manifests(topics).get("banking77"), 30, "a snapshot")
    worker.kill(signal.SIGTERM)

    # Someone without REFINERY_SNAPSHOT_KEY writes a blank engine as the latest snapshot.
    blank = Refiner("banking77", config=RefinerConfig.from_dict({**RefinerConfig().to_dict(), **ENGINE}))
    chunks, manifest = pack(
        zlib.compress(blank.snapshot()),
        dataset="banking77",
        partition=genuine.partition,
        version=genuine.version + 1,
        events_offset=genuine.events_offset,
        sources=genuine.sources,
        key="a guessed key",
    )
    producer = _producer(topics)
    for key, value in chunks + [manifest]:
        producer.send(topics.topic("snapshots"), key=key, value=value, partition=genuine.partition)
    producer.flush()

    restarted = workers(topics, name="restarted")
    restarted.wait_ready()
    more = _pairs(50, skip=150)
    events += len(more) + _send(producer, topics, more)
    _settle(topics, events, restarted)  # the same figures as an engine fed the whole log
    log = restarted.log_path.read_text()
    assert "snapshot_rejected" in log and "HMAC mismatch" in log
    assert "replay_range partition=" in log
