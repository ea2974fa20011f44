"""`refinery kafka`: the local broker starts once, answers, holds the service's topics, and carries records."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket

import pytest

from agents import cli
from agents.kafka import broker
from agents.settings import TOPICS, Settings

kafka = pytest.mark.kafka


@kafka
def test_start_is_idempotent(kafka_bootstrap):
    settings = Settings.from_env()
    pid_before = broker.recorded_pid(settings)

    assert broker.start(settings, quiet=True) == kafka_bootstrap
    assert broker.recorded_pid(settings) == pid_before


@kafka
def test_status_reports_a_live_answering_broker(kafka_bootstrap, capsys):
    settings = Settings.from_env()
    info = broker.status(settings)

    assert info["bootstrap"] == kafka_bootstrap
    assert info["answering"] is True
    assert info["alive"] is settings.uses_local_broker
    assert cli.main(["kafka", "status"]) == 0
    assert "answering: True" in capsys.readouterr().out


@kafka
def test_topics_are_created_with_the_partitions_asked_and_snapshots_compacted(settings_for, unique_prefix):
    settings = settings_for(unique_prefix)

    created = broker.create_topics(settings, partitions=3)

    assert created == {settings.topic(name): 3 for name in TOPICS}
    policies = {t["topic"]: t["cleanup.policy"] for t in broker.describe_topics(settings)}
    assert policies == {settings.topic(name): "compact" if name == "snapshots" else "delete" for name in TOPICS}


@kafka
def test_creating_topics_again_keeps_the_existing_ones(settings_for, unique_prefix):
    settings = settings_for(unique_prefix, partitions=2)
    broker.create_topics(settings, names=["messages"])

    again = broker.create_topics(settings, partitions=5, names=["messages", "annotations"])

    assert again == {settings.topic("messages"): 2, settings.topic("annotations"): 5}


@kafka
def test_the_topics_command_creates_every_topic_with_the_prefix(kafka_bootstrap, unique_prefix, monkeypatch, capsys):
    monkeypatch.setenv("REFINERY_KAFKA_BOOTSTRAP", kafka_bootstrap)

    assert cli.main(["kafka", "topics", "--prefix", unique_prefix, "--partitions", "2"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert f"{unique_prefix}snapshots\tpartitions=2\tcleanup.policy=compact" in lines
    assert len([line for line in lines if line.startswith(unique_prefix)]) == len(TOPICS)


@kafka
def test_kafka_python_round_trip(settings_for, unique_prefix):
    from kafka import KafkaConsumer, KafkaProducer

    settings = settings_for(unique_prefix)
    topic = settings.topic("messages")
    broker.create_topics(settings, names=["messages"])
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    for i in range(3):
        producer.send(topic, key=b"support", value=f"m-{i}".encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap,
        group_id=f"{unique_prefix}kp",
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    received = []
    for record in consumer:
        received.append((record.key, record.value))
        if len(received) == 3:
            break
    consumer.commit()
    consumer.close()

    assert received == [(b"support", b"m-0"), (b"support", b"m-1"), (b"support", b"m-2")]


@kafka
def test_aiokafka_round_trip(settings_for, unique_prefix):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    settings = settings_for(unique_prefix)
    topic = settings.topic("annotations")
    broker.create_topics(settings, names=["annotations"])

    async def round_trip():
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait(topic, key=b"support", value=f"a-{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=settings.bootstrap, group_id=f"{unique_prefix}aio", auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            received = []
            while len(received) < 3:
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 10)
                received += [(r.key, r.value) for records in batches.values() for r in records]
            await consumer.commit()
            return received
        finally:
            await consumer.stop()

    assert asyncio.run(asyncio.wait_for(round_trip(), 30)) == [
        (b"support", b"a-0"),
        (b"support", b"a-1"),
        (b"support", b"a-2"),
    ]


def test_a_port_held_by_something_else_is_refused_not_used(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = Settings(home=tmp_path, kafka_port=port)

        with pytest.raises(broker.BrokerError, match=f"127.0.0.1:{port} is already in use"):
            broker.start(settings, quiet=True)


def test_stop_never_signals_a_process_that_is_not_the_recorded_broker(tmp_path):
    settings = Settings(home=tmp_path, kafka_port=1)
    (tmp_path / "kafka.pid").write_text(f"{os.getpid()}\n")  # this very test process

    assert broker.recorded_pid(settings) is None
    assert broker.stop(settings, quiet=True) is False
    assert not (tmp_path / "kafka.pid").exists()


def test_an_external_broker_is_never_fetched_or_stopped(tmp_path):
    settings = dataclasses.replace(Settings(home=tmp_path), external_bootstrap="127.0.0.1:1")

    assert broker.fetch(settings, quiet=True) is None
    assert broker.stop(settings, quiet=True) is False
    assert not (tmp_path / "libs").exists()


# The pinned broker must serve Faust end to end (consumer group, table changelog, transactions
# under exactly_once): a Faust worker is a process of its own, so the app runs in a subprocess.
_FAUST_APP = """
import asyncio, os, sys
import faust
from kafka import KafkaConsumer, KafkaProducer

bootstrap, prefix, guarantee, datadir = sys.argv[1:5]
app = faust.App(prefix + "app", broker="kafka://" + bootstrap, store="memory://", datadir=datadir,
                web_enabled=False, processing_guarantee=guarantee, topic_partitions=2)
source = app.topic(prefix + "messages", value_serializer="raw")
sink = app.topic(prefix + "predictions", value_serializer="raw")
seen = app.Table("seen", default=int)

@app.agent(source)
async def shout(stream):
    async for key, value in stream.items():
        seen[key] += 1
        await sink.send(key=key, value=value.upper())

@app.task
async def feed_and_check():
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(3):
        producer.send(source.get_topic_name(), key=b"support", value=b"m-%d" % i)
    producer.close()
    for _ in range(60):
        await asyncio.sleep(0.5)
        consumer = KafkaConsumer(sink.get_topic_name(), bootstrap_servers=bootstrap,
                                 auto_offset_reset="earliest", consumer_timeout_ms=2000)
        values = [record.value for record in consumer]
        consumer.close()
        if len(values) >= 3:
            print("RESULT", values, seen[b"support"], file=sys.__stdout__, flush=True)
            os._exit(0)
    os._exit(1)

sys.argv = [sys.argv[0], "worker", "-l", "warn"]
app.main()
"""


@kafka
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_faust_agent_consumes_one_topic_and_sends_to_another(settings_for, unique_prefix, tmp_path, guarantee):
    import subprocess
    import sys

    settings = settings_for(unique_prefix, partitions=2)
    broker.create_topics(settings, names=["messages", "predictions"])
    script = tmp_path / "app.py"
    script.write_text(_FAUST_APP)

    result = subprocess.run(
        [sys.executable, str(script), settings.bootstrap, unique_prefix, guarantee, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "RESULT [b'M-0', b'M-1', b'M-2'] 3" in result.stdout


def test_cluster_ids_never_look_like_an_option():
    from agents.kafka.broker import _cluster_id

    ids = [_cluster_id() for _ in range(5000)]  # about 1 in 64 raw UUIDs would start with '-'
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
