"""Streams for automations on a real broker: declared by configuration and through the API,
written exactly as routed from the published predictions, kept across a worker's crash, read by
the consumer example of docs/examples, and precise at high-precision thresholds on Banking77."""

from __future__ import annotations

import functools
import random
import signal
import subprocess
import sys

import orjson
import pytest

from agents.ingest.datasets import banking77
from agents.settings import PROJECT_ROOT
from schemas import Message, Prediction, Stream, StreamMessage
from tests.worker.test_worker_kafka import _pairs, _producer, _read_all, _send, _wait_for, workers  # noqa: F401

pytestmark = pytest.mark.kafka

CONSUMER = PROJECT_ROOT / "docs" / "examples" / "stream_consumer.py"


@pytest.fixture
def stream_topics(topics):
    """The test's topics; afterwards its ``stream-declarations`` and ``streams.*`` topics go too."""
    yield topics
    from agents.kafka.admin import admin_client

    try:
        with admin_client(topics) as admin:
            mine = [t for t in admin.list_topics() if t.startswith(topics.topic_prefix + "stream")]
            if mine:
                admin.delete_topics(mine)
    except Exception:
        pass


def _call(worker, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    import urllib.request

    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def _stream_records(settings, name: str) -> list[StreamMessage]:
    return [StreamMessage.decode(v) for *_, v in _read_all(settings, f"streams.{name}")]


def _learned(worker, reviews: int) -> bool:
    """Whether the worker's last published metrics count ``reviews`` (cheap: nothing is scored)."""
    rows = orjson.loads(worker.get("/datasets", timeout=30)[1])["datasets"]
    return any(row["model_version"] is not None and row["model_version"] >= reviews for row in rows)


def _caught_up(settings, name: str, expected: set[bytes]) -> list[StreamMessage] | None:
    """The records of ``streams.<name>`` once they are exactly ``expected`` (repeats aside)."""
    records = _stream_records(settings, name)
    return records if {r.encode() for r in records} == expected else None


def _routed(settings, streams: list[Stream], messages: dict[str, Message]) -> dict[str, set[bytes]]:
    """What each stream must hold: its route of every published prediction (deduplicated)."""
    out: dict[str, set[bytes]] = {s.name: set() for s in streams}
    for *_, value in _read_all(settings, "predictions"):
        p = Prediction.decode(value)
        for stream in streams:
            record = stream.route(p, messages[p.message_id])
            if record is not None:
                out[stream.name].add(record.encode())
    return out


def test_streams_write_what_they_route_keep_their_declarations_across_a_crash_and_feed_an_automation(
    stream_topics, workers, datasets
):
    settings = stream_topics
    configured = Stream(name="cards", dataset="banking77", threshold="balanced")
    env = {"REFINERY_STREAMS": orjson.dumps([configured.to_dict()]).decode()}
    worker = workers(settings, **env)
    worker.wait_ready()

    loose = {"dataset": "banking77", "threshold": 0.05, "filter": {"channels": ["chat"]}}
    status, body = _call(worker, "PUT", "/streams/loose", loose)
    assert status == 200 and body["source"] == "api" and body["topic"] == settings.topic("streams.loose")
    status, body = _call(worker, "PUT", "/streams/bad", {"dataset": "banking77", "threshold": "precise"})
    assert status == 400 and body["error"].startswith("stream.threshold: expected one of 'balanced'")
    status, body = _call(worker, "PUT", "/streams/cards", {"dataset": "banking77", "threshold": 0.5})
    assert status == 409 and "REFINERY_STREAMS" in body["error"]

    pairs = _pairs(300, skip=2000)
    _send(_producer(settings), settings, pairs)
    _wait_for(lambda: len(_read_all(settings, "predictions")) >= 300, 60, "300 predictions", worker)
    worker.kill(signal.SIGKILL)  # before or after its first snapshot: replayed events re-route

    worker = workers(settings, name="restarted", **env)
    worker.wait_ready()
    listed = {s["name"]: s["source"] for s in _call(worker, "GET", "/streams")[1]["streams"]}
    assert listed == {"cards": "configuration", "loose": "api"}
    more = _pairs(100, skip=2300)
    _send(_producer(settings), settings, more)
    messages = {m.id: m for m, _ in pairs + more}
    _wait_for(
        lambda: {Prediction.decode(v).message_id for *_, v in _read_all(settings, "predictions")} >= set(messages),
        60,
        "400 distinct predictions",
        worker,
    )

    streams = [configured, Stream.from_dict({"name": "loose", **loose})]
    expected = _routed(settings, streams, messages)
    for stream in streams:
        written = _wait_for(
            functools.partial(_caught_up, settings, stream.name, expected[stream.name]),
            30,
            f"streams.{stream.name} equal to its route of the predictions",
            worker,
        )
        assert {r.message_id for r in written} & {m.id for m, _ in more}  # the declaration outlived the crash
    assert len(expected["loose"]) > len(expected["cards"]) > 0

    automation = subprocess.run(
        [
            sys.executable,
            str(CONSUMER),
            "--stream",
            "cards",
            "--idle-seconds",
            "10",  # counted from its first poll, before it has joined its group: room for a slow join
            "--group",
            f"{settings.topic_prefix}automation-cards",  # a group of this test's own
            "--routes",
            '{"card_arrival": "cards-team"}',
        ],
        env={"REFINERY_KAFKA_BOOTSTRAP": settings.bootstrap, "REFINERY_TOPIC_PREFIX": settings.topic_prefix},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert automation.returncode == 0, automation.stderr
    actions = [orjson.loads(line) for line in automation.stdout.splitlines()]
    distinct = {(r.message_id, r.model_version) for r in map(StreamMessage.decode, expected["cards"])}
    assert {(a["message_id"], a["model_version"]) for a in actions} == distinct and len(actions) == len(distinct)
    arrivals = [a for a in actions if "card_arrival" in a["labels"]]
    assert all(a["team"] == "cards-team" for a in arrivals)

    assert _call(worker, "DELETE", "/streams/loose") == (200, {"deleted": "loose"})
    assert _call(worker, "GET", "/streams/loose")[0] == 404
    assert _call(worker, "DELETE", "/streams/cards")[0] == 409


def test_a_high_precision_stream_delivers_precise_labels_on_banking77_test_messages(stream_topics, workers, datasets):
    """The suite's small version of bench/bench_streams.py: 3,000 training messages, half of them
    reviewed, then 1,000 test messages through a high-precision stream of the test split only.

    At this size a fifth of the 1,500 reviews are held out (issue 9), a few per label, so the
    thresholds are rougher than at bench scale (0.93 there, in-process 0.79 here against 0.51
    for the balanced thresholds of the same predictions): the stream must beat the balanced
    route of the same predictions clearly, and reach 0.75."""
    settings = stream_topics
    precise = Stream.from_dict(
        {
            "name": "precise",
            "dataset": "banking77",
            "threshold": "high_precision",
            "filter": {"metadata": {"split": "test"}},
        }
    )
    worker = workers(  # the default model and validation window: the thresholds of production
        settings,
        REFINERY_ENGINE_CONFIG='{"live_window": 300}',  # cheaper metrics; predictions do not read it
        REFINERY_STREAMS=orjson.dumps([precise.to_dict()]).decode(),
        REFINERY_SNAPSHOT_EVERY="100000",  # the default model's snapshots are large: rarely
        REFINERY_SNAPSHOT_SECONDS="600",
        REFINERY_METRICS_SECONDS="10",
    )
    worker.wait_ready()
    train = list(banking77())
    random.Random(0).shuffle(train)
    reviews = _send(_producer(settings), settings, train[:3000], review_every=2, review_lag=2)
    _wait_for(
        functools.partial(_learned, worker, reviews),
        600,
        f"{reviews} reviews learned",
        worker,
    )
    test = list(banking77(split="test"))
    random.Random(1).shuffle(test)
    test = test[:1000]
    producer = _producer(settings)
    for m, _ in test:
        producer.send(settings.topic("messages"), key=b"banking77", value=m.encode())
    producer.flush()
    truth = {m.id: {label.name for label in review.labels} for m, review in test}
    _wait_for(
        lambda: {Prediction.decode(v).message_id for *_, v in _read_all(settings, "predictions")} >= set(truth),
        300,
        "a prediction of every test message",
        worker,
    )
    messages = {m.id: m for m, _ in [*train[:3000], *test]}
    expected = _routed(settings, [precise], messages)["precise"]
    _wait_for(
        functools.partial(_caught_up, settings, "precise", expected),
        60,
        "streams.precise equal to its route of the predictions",
        worker,
    )
    records = [StreamMessage.decode(raw) for raw in expected]
    labels = [(r.message_id, label.name) for r in records for label in r.labels]
    precision = sum(name in truth[message_id] for message_id, name in labels) / len(labels)
    assert {r.message_id for r in records} <= set(truth)  # the filter keeps the training messages out
    assert len(labels) >= 250  # it delivers a useful share, not a handful
    balanced = [
        (p.message_id, label)
        for p in (Prediction.decode(v) for *_, v in _read_all(settings, "predictions"))
        if p.message_id in truth
        for label, t in p.thresholds.items()
        if t.balanced is not None and p.confidences[label] >= t.balanced
    ]
    balanced_precision = sum(name in truth[message_id] for message_id, name in balanced) / len(balanced)
    assert precision >= 0.75, f"precision {precision:.3f} over {len(labels)} labels"
    assert precision >= balanced_precision + 0.15, (precision, balanced_precision)
