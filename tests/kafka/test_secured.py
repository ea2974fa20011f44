"""Secured Kafka end to end: a second, throwaway local broker started with ``--secured``
(`agents.kafka.secured`: a CA made by openssl for this module, SSL with client certificates,
SASL_SSL and SASL_PLAINTEXT with a SCRAM user made by Kafka's storage tool), in a temporary
REFINERY_HOME on ports of its own, sharing the jars of the shared broker (which is never touched).

The worker, ``send``, ``tail``, ``status`` and ``kafka topics`` run over SASL_SSL with SCRAM; a
wrong password and an untrusted certificate are one clear line, at once, for every command.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request

import orjson
import pytest

from agents.ingest.sender import make_producer
from agents.kafka import admin, broker, secured
from agents.kafka.ranges import read_range
from agents.kafka.security import KafkaAccessError, check_access
from agents.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.kafka


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports on 127.0.0.1."""
    for base in range(31092, 40000, 10):
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports for the secured broker")


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory):
    """The Settings of a secured broker of this module's own (its plaintext listener)."""
    jars = Settings.from_env().home / "libs"
    if not jars.is_dir():
        pytest.fail(f"no Kafka jars at {jars}: run `refinery kafka fetch`", pytrace=False)
    home = tmp_path_factory.mktemp("secured-kafka")
    (home / "libs").symlink_to(jars)
    settings = Settings(home=home, kafka_port=_free_ports(5), partitions=2)
    try:
        broker.start(settings, timeout=180, quiet=True, secured=True)
    except broker.BrokerError as error:
        broker.stop(settings, quiet=True)
        pytest.fail(f"the secured broker did not start: {error}", pytrace=False)
    try:
        yield settings
    finally:
        broker.stop(settings, quiet=True)


def _env(secured_broker, protocol="SASL_SSL", mechanism="SCRAM-SHA-512", prefix="sec.", **changes) -> dict[str, str]:
    """The environment of a client of one secured listener (``changes``: REFINERY_KAFKA_* overrides)."""
    env = {
        **secured.client_env(secured_broker, protocol, mechanism),
        "REFINERY_TOPIC_PREFIX": prefix,
        "REFINERY_PARTITIONS": "2",
    }
    env.update({f"REFINERY_KAFKA_{name.upper()}": value for name, value in changes.items()})
    return {name: value for name, value in env.items() if value is not None}


def _refinery(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REFINERY_")}
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args],
        env={**clean, "PYTHONPATH": str(PROJECT_ROOT), **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [("SSL", None), ("SASL_SSL", "SCRAM-SHA-256"), ("SASL_SSL", "PLAIN"), ("SASL_PLAINTEXT", "SCRAM-SHA-512")],
)
def test_admin_producer_and_side_reader_work_over_each_secured_listener(secured_broker, protocol, mechanism):
    prefix = f"{protocol.lower()}-{(mechanism or 'cert').lower()}."
    settings = Settings.from_env(_env(secured_broker, protocol, mechanism or "PLAIN", prefix))

    assert check_access(settings) is True
    assert admin.create_topics(settings, partitions=1, names=["messages"]) == {f"{prefix}messages": 1}
    producer = make_producer(settings)
    producer.send(settings.topic("messages"), key=b"support", value=b"over " + protocol.encode())
    producer.flush()
    producer.close()
    records = asyncio.run(read_range(settings, settings.topic("messages"), 0, None, None, timeout=30))

    assert [(key, value) for _, key, value in records] == [(b"support", b"over " + protocol.encode())]


def test_worker_send_tail_and_status_run_over_sasl_ssl_with_scram(secured_broker, tmp_path, datasets):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        web_port = sock.getsockname()[1]
    env = {
        **_env(secured_broker),
        "REFINERY_WEB_PORT": str(web_port),
        "REFINERY_METRICS_SECONDS": "0.5",
        "REFINERY_SESSION_TIMEOUT": "6",
        "REFINERY_ENGINE_CONFIG": '{"feature_bits": 12}',
        "REFINERY_DATA_DIR": str(tmp_path / "worker-data"),
    }
    topics = _refinery(env, "kafka", "topics")
    assert topics.returncode == 0, topics.stderr
    assert "sec.predictions\tpartitions=2" in topics.stdout

    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "worker"],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env},
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(worker, web_port, tmp_path / "worker.log")
        sent = _refinery(
            env, "send", "--bundled", "banking77", "--kind", "both", "--limit", "30",
            "--rejects", str(tmp_path / "rejects.jsonl"), "--quiet",
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        tail = _refinery(env, "tail", "predictions", "--from-beginning", "--max", "30", "--timeout", "60")
        assert tail.returncode == 0, tail.stderr
        predicted = [orjson.loads(line) for line in tail.stdout.splitlines()]
        assert len(predicted) == 30 and {line["key"] for line in predicted} == {"banking77"}
        assert len({line["value"]["message_id"] for line in predicted}) == 30

        status = _wait_status(env, f"http://127.0.0.1:{web_port}")
        assert status.stdout.startswith("banking77: rating "), status.stdout
        from_topic = _refinery(env, "status", "banking77", "--url", "http://127.0.0.1:9")  # the metrics topic
        assert from_topic.returncode == 0, from_topic.stderr
        assert from_topic.stdout.startswith("banking77: rating ")
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
    assert "Traceback" not in (tmp_path / "worker.log").read_text(errors="replace")


def _wait_ready(worker: subprocess.Popen, port: int, log_path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.poll() is None, f"worker exited ({worker.returncode}): {log_path.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1.0) as response:
                if orjson.loads(response.read())["assigned"]:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"worker not ready after {timeout} s: {log_path.read_text()[-3000:]}")


def _wait_status(env, url: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    deadline = time.monotonic() + timeout
    while True:
        status = _refinery(env, "status", "banking77", "--url", url)
        if status.returncode == 0 or time.monotonic() > deadline:
            assert status.returncode == 0, status.stderr
            return status
        time.sleep(1.0)


COMMANDS = {
    "worker": ("worker",),
    "send": ("send", "{tmp}/message.jsonl", "--quiet"),
    "tail": ("tail", "messages", "--timeout", "5"),
    "status": ("status", "banking77", "--url", "http://127.0.0.1:9"),
    "kafka topics": ("kafka", "topics"),
}


def _arguments(command: str, tmp_path) -> list[str]:
    (tmp_path / "message.jsonl").write_text(
        '{"dataset": "support", "id": "m-1", "timestamp": 0, "body": "Card not arrived"}\n'
    )
    return [argument.replace("{tmp}", str(tmp_path)) for argument in COMMANDS[command]]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_wrong_password_is_one_clear_line(secured_broker, tmp_path, command):
    env = _env(secured_broker, sasl_password_file=None, sasl_password="not-the-password")

    result = _refinery(env, *_arguments(command, tmp_path), timeout=60)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SASL SCRAM-SHA-512 login refused for user 'refinery'" in lines[0]
    assert "REFINERY_KAFKA_SASL_PASSWORD" in lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_an_untrusted_certificate_is_one_clear_line(secured_broker, tmp_path, command):
    other_ca = Settings(home=tmp_path, kafka_port=secured_broker.kafka_port)
    secured.prepare(other_ca)  # a CA of its own, which never signed the broker's certificate
    env = _env(secured_broker, ssl_cafile=str(tmp_path / "tls" / "ca.pem"))

    result = _refinery(env, *_arguments(command, tmp_path), timeout=60)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "the broker's certificate is not trusted" in lines[0]
    assert "REFINERY_KAFKA_SSL_CAFILE" in lines[0]


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_a_client_speaking_the_wrong_protocol_is_told_so(secured_broker, protocol):
    unencrypted = {"security_protocol": protocol, "ssl_cafile": None}
    if protocol == "PLAINTEXT":  # no security settings at all: the most common mistake
        unencrypted.update(sasl_mechanism=None, sasl_username=None, sasl_password_file=None)
    settings = Settings.from_env(_env(secured_broker, **unencrypted))

    with pytest.raises(KafkaAccessError, match=f"does this listener speak {protocol}\\?"):
        check_access(settings, timeout=20)
