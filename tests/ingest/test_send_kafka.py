"""`refinery send` through a real broker: what is sent is exactly what a consumer reads back."""

from __future__ import annotations

import json
import time

import pytest

from agents import cli
from agents.ingest import datasets
from schemas import Annotation, Message

pytestmark = pytest.mark.kafka


def consume(bootstrap: str, topic: str, timeout: float = 60.0) -> list[tuple[bytes, bytes]]:
    """Every record of ``topic`` as (key, value), partition by partition, in offset order."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="test-ingest",
    )
    try:
        deadline = time.monotonic() + timeout
        partitions = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                time.sleep(0.2)
        assert partitions, f"topic {topic} does not exist"
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        records: dict[int, list] = {p.partition: [] for p in assigned}
        while any(consumer.position(p) < ends[p] for p in assigned) and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=500, max_records=5_000).items():
                records[tp.partition].extend((r.key, r.value) for r in batch)
        return [record for p in sorted(records) for record in records[p]]
    finally:
        consumer.close()


@pytest.fixture
def topics(kafka_bootstrap, unique_prefix, monkeypatch):
    """The input topics of a fresh prefix, created on the test broker; ``refinery send`` uses them."""
    from agents.kafka.broker import create_topics
    from agents.settings import Settings

    monkeypatch.setenv("REFINERY_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("REFINERY_TOPIC_PREFIX", unique_prefix)
    settings = Settings.from_env()
    create_topics(settings, names=["messages", "annotations"])
    return {name: settings.topic(name) for name in ("messages", "annotations")}


@pytest.mark.usefixtures("datasets")
def test_every_banking77_training_message_arrives_unchanged(topics, kafka_bootstrap, tmp_path, capsys):
    code = cli.main(["send", "--dataset", "banking77", "--quiet", "--rejects", str(tmp_path / "rejects.jsonl")])

    assert code == 0
    assert capsys.readouterr().out.startswith(f"sent 10003 ({topics['messages']}: 10003) in ")
    received = consume(kafka_bootstrap, topics["messages"])
    assert len(received) == 10_003
    assert {key for key, _ in received} == {b"banking77"}
    # One key, so one partition: the broker keeps the order in which they were sent.
    assert [Message.decode(value) for _, value in received] == [message for message, _ in datasets.banking77("train")]
    assert not (tmp_path / "rejects.jsonl").exists()


GOOD = [
    {
        "dataset": "support",
        "id": "m-1",
        "timestamp": "2026-11-30T09:15:00Z",
        "channel": "email",
        "subject": "Card not arrived",
        "body": "Hello, I ordered a card two weeks ago",
        "from": "ann@example.com",
        "to": "help@bank.example",
        "metadata": {"country": "UK", "amount": 120.5},
    },
    {"dataset": "support", "id": "m-2", "timestamp": 1796030200, "channel": "chat", "body": "refund please"},
    {"dataset": "support", "id": "m-3", "timestamp": 1796030300, "subject": "Only a subject"},
    {
        "dataset": "support",
        "message_id": "m-1",
        "timestamp": "2026-11-30T09:20:00Z",
        "mode": "teach",
        "annotator": "ann",
        "labels": [{"name": "Card > Delivery"}, {"name": "Urgent", "sentiment": "negative"}],
    },
    {
        "dataset": "support",
        "message_id": "m-9",
        "timestamp": 1796030400,
        "labels": [],
        "message": {"dataset": "support", "id": "m-9", "timestamp": 1796030000, "body": "none of your labels"},
    },
    {
        "dataset": "sales",
        "id": "s-1",
        "timestamp": 1796030500,
        "channel": "call",
        "body": "a transcript",
        "thread_id": "t-1",
    },
]

# (line as written, exact reason, summary group)
BAD = [
    (
        '{"dataset": "support", "timestamp": 1, "body": "no id"}',
        "message.id: expected a value (the field is required), got nothing",
    ),
    (
        '{"dataset": "support", "id": "e-1", "timestamp": 1, "subject": "", "body": "  "}',
        "message.body: expected a subject or a body (a message without text cannot be classified), got neither",
    ),
    (
        '{"dataset": "support", "id": "e-2", "timestamp": "yesterday", "body": "x"}',
        "message.timestamp: expected an ISO-8601 timestamp or epoch seconds, got 'yesterday'",
    ),
    (
        '{"dataset": "support", "id": "e-3", "timestamp": 1, "channel": "fax", "body": "x"}',
        "message.channel: expected one of 'email', 'chat', 'call', 'other', got 'fax'",
    ),
    (
        '{"dataset": "support", "message_id": "m-2", "timestamp": 1, "labels": [{"name": "A > > B"}]}',
        "annotation.labels[0].name: expected a label name whose parts ('Parent > Child') are all non-empty, got 'A > > B'",
    ),
    (
        '{"dataset": "support", "id": "e-4", "timestamp": 1, "body": "' + "x" * 2_500 + '"}',
        "message.body: expected at most 2000 UTF-8 bytes, got 2500 bytes",
    ),
    (
        '{"dataset": "support", "id": "e-5", "timestamp": 1, "body": "cut off',
        "message: expected a JSON object, got invalid JSON (unexpected end of data: line 1 column 69 (char 68))",
    ),
    ('{"dataset": "support", "id": "e-6", "timestamp": 1, "body": 42}', "message.body: expected a string, got 42"),
    (
        '{"dataset": "support", "id": "e-7", "timestamp": 1, "body": "x", "sender": "ann"}',
        "message.sender: expected a known field (body, cc, channel, dataset, from, id, language, metadata, "
        "subject, thread_id, timestamp, to), got an unknown field",
    ),
    (
        '{"dataset": "support", "message_id": "m-3", "timestamp": 1, "labels": "Card"}',
        "annotation.labels: expected a list, got 'Card'",
    ),
]


def test_bad_rows_are_reported_with_their_reason_and_every_good_row_arrives(topics, kafka_bootstrap, tmp_path, capsys):
    # Good and bad rows interleaved, and a line of bytes that are not UTF-8 at the end.
    lines = (
        [json.dumps(row) for row in GOOD[:3]] + [line for line, _ in BAD[:5]] + [json.dumps(row) for row in GOOD[3:]]
    )
    lines += [line for line, _ in BAD[5:]]
    source = tmp_path / "mixed.jsonl"
    source.write_bytes("\n".join(lines).encode() + b'\n{"id": "caf\xe9"}\n')

    code = cli.main(["send", str(source), "--quiet", "--max-body-bytes", "2000"])

    assert code == 0  # rejects alone do not fail a run
    out = capsys.readouterr().out
    assert out.startswith(f"sent 6 ({topics['annotations']}: 2, {topics['messages']}: 4) in ")
    assert "; rejected 11; failed 0\n" in out
    for _, reason in BAD:
        group = reason.rsplit(", got ", 1)[0]
        assert f"       1  {group}\n" in out
    assert "       1  message: expected UTF-8 encoded JSON\n" in out

    rejects = [json.loads(line) for line in (tmp_path / "mixed.jsonl.rejects.jsonl").read_text().splitlines()]
    bad_lines = [4, 5, 6, 7, 8, 12, 13, 14, 15, 16]
    assert [(entry["line"], entry["reason"]) for entry in rejects] == [
        *zip(bad_lines, [reason for _, reason in BAD]),
        (17, "message: expected UTF-8 encoded JSON, got invalid byte 0xe9 at position 11"),
    ]
    assert rejects[0]["raw"] == json.loads(BAD[0][0])

    messages = consume(kafka_bootstrap, topics["messages"])
    annotations = consume(kafka_bootstrap, topics["annotations"])
    assert sorted(Message.decode(value).id for _, value in messages) == ["m-1", "m-2", "m-3", "s-1"]
    received = sorted((Message.decode(value) for _, value in messages), key=lambda m: m.id)
    assert received == sorted((Message.from_dict(row) for row in GOOD if "id" in row), key=lambda m: m.id)
    received = sorted((Annotation.decode(value) for _, value in annotations), key=lambda a: a.message_id)
    assert received == [Annotation.from_dict(row) for row in GOOD if "message_id" in row]
    assert {(key, Message.decode(value).dataset) for key, value in messages} == {
        (b"support", "support"),
        (b"sales", "sales"),
    }


def test_a_send_the_producer_refuses_is_reported_as_failed_and_exits_1(topics, kafka_bootstrap, tmp_path, capsys):
    # Valid by a raised body limit, but over the producer's 1 MiB request limit.
    huge = {"dataset": "support", "id": "big", "timestamp": 1, "body": "x" * 1_500_000}
    small = {"dataset": "support", "id": "small", "timestamp": 1, "body": "fits"}
    source = tmp_path / "big.jsonl"
    source.write_text(json.dumps(huge) + "\n" + json.dumps(small) + "\n")

    code = cli.main(["send", str(source), "--quiet", "--max-body-bytes", "2000000"])

    assert code == 1
    out = capsys.readouterr().out
    assert out.startswith(f"sent 1 ({topics['messages']}: 1) in ")
    assert (
        "; rejected 0; failed 1\nfailed sends, by error:\n       1  [Error 10] MessageSizeTooLargeError: The message is "
        in out
    )
    [entry] = [json.loads(line) for line in (tmp_path / "big.jsonl.rejects.jsonl").read_text().splitlines()]
    assert (entry["line"], entry["stage"], entry["raw"]["id"]) == (1, "send", "big")
    assert entry["reason"].startswith("send failed: [Error 10] MessageSizeTooLargeError: The message is ")
    assert [Message.decode(value).id for _, value in consume(kafka_bootstrap, topics["messages"])] == ["small"]
