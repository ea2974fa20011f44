"""The local Apache Kafka broker: fetch its jars, start, stop, and ask whether it answers.

The local broker is a single KRaft node (broker and controller in one JVM) listening on
127.0.0.1 only. Its jars come from Maven Central through ``deploy/kafka/pom.xml`` (which pins
the version); its jars, configuration, data, logs and pid file all live under
``Settings.home`` (``REFINERY_HOME``, default ``.kafka/`` in the project).

When ``REFINERY_KAFKA_BOOTSTRAP`` names an external broker, nothing is fetched, started or
stopped: `start` only waits until that broker answers.

Topics are administered by `agents.kafka.admin`; `refinery kafka` (`agents.cli.kafka`) is a thin
command over both::

    from agents.kafka.broker import ensure_broker
    bootstrap = ensure_broker(Settings.from_env())   # started if needed, topics created
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from agents.kafka.admin import TopicError, create_topics, describe_cluster
from agents.settings import PROJECT_ROOT, KafkaSecurity, Settings
from agents.worker.observability import log_event

__all__ = [
    "DEFAULT_HEAP_OPTS",
    "POM",
    "BrokerError",
    "ensure_broker",
    "fetch",
    "is_answering",
    "is_running",
    "kafka_version",
    "recorded_pid",
    "start",
    "status",
    "stop",
    "wait_until_ready",
]

log = logging.getLogger("refinery.kafka")

POM = PROJECT_ROOT / "deploy" / "kafka" / "pom.xml"
#: The JVM shares a 2-core machine with the tests; Kafka's own default (1 GiB) is more than needed.
DEFAULT_HEAP_OPTS = "-Xms256m -Xmx512m"


class BrokerError(RuntimeError):
    """The broker could not be fetched, started, reached or stopped; the message says what to do."""


# -- paths -------------------------------------------------------------------------------------


def _libs(settings: Settings) -> Path:
    return settings.home / "libs"


def _pid_file(settings: Settings) -> Path:
    return settings.home / "kafka.pid"


def _properties_file(settings: Settings) -> Path:
    return settings.home / "server.properties"


def _log_file(settings: Settings) -> Path:
    return settings.home / "logs" / "kafka.out"


def _data_dir(settings: Settings) -> Path:
    return settings.home / "data"


def _controller_port(settings: Settings) -> int:
    return settings.kafka_port + 1


def kafka_version() -> str:
    """The Kafka version pinned in ``deploy/kafka/pom.xml``."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not match:
        raise BrokerError(f"{POM}: no <kafka.version> property")
    return match.group(1).strip()


# -- fetch -------------------------------------------------------------------------------------


def _fetched(settings: Settings) -> bool:
    return (_libs(settings) / f"kafka_2.13-{kafka_version()}.jar").is_file()


def fetch(settings: Settings, *, quiet: bool = False) -> Path | None:
    """Copy the pinned Kafka broker's jars into ``<home>/libs`` with Maven; skip if already there.

    Returns the libs directory. A no-op (returning None) with an external broker.
    """
    if not settings.uses_local_broker:
        _say(f"external broker {settings.bootstrap} (REFINERY_KAFKA_BOOTSTRAP): nothing to fetch", quiet)
        return None
    libs = _libs(settings)
    if _fetched(settings):
        _say(f"Kafka {kafka_version()} already in {libs}", quiet)
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) not found on PATH: install it (apt-get install maven) and retry")
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    _say(f"fetching Kafka {kafka_version()} from Maven Central into {libs} ...", quiet)
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BrokerError(f"mvn failed (exit {result.returncode}): {' '.join(command)}\n{result.stdout[-4000:]}")
    # Swap in whole: a half-copied libs/ must never look fetched.
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    _say(f"Kafka {kafka_version()}: {len(list(libs.glob('*.jar')))} jars in {libs}", quiet)
    log_event(log, logging.INFO, "broker_fetched", version=kafka_version(), libs=str(libs))
    return libs


# -- process and port checks ------------------------------------------------------------------


def recorded_pid(settings: Settings) -> int | None:
    """The pid in ``<home>/kafka.pid`` if that process is alive and is this home's broker."""
    try:
        pid = int(_pid_file(settings).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _is_our_broker(pid, settings) else None


def _is_our_broker(pid: int, settings: Settings) -> bool:
    # Checking the command line guards against a recycled pid: we never signal anything else.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return False
    if state in ("Z", "X"):
        _reap(pid)
        return False
    args = [part.decode(errors="replace") for part in cmdline]
    return "kafka.Kafka" in args and str(_properties_file(settings)) in args


def _reap(pid: int) -> None:
    # A broker started by this very process stays a zombie until waited for.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _split_bootstrap(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    return host or "127.0.0.1", int(port)


def _plaintext(settings: Settings) -> Settings:
    # The local broker is always reached, managed and checked on its plaintext listener.
    return dataclasses.replace(settings, kafka_security=KafkaSecurity()) if settings.uses_local_broker else settings


def is_answering(where: Settings | str, timeout: float = 5.0) -> bool:
    """Whether a Kafka broker at ``where`` (settings, with their security, or a plaintext
    bootstrap string) answers a metadata request within ``timeout`` s."""
    bootstrap = where.bootstrap if isinstance(where, Settings) else where
    host, port = _split_bootstrap(bootstrap)
    try:
        if not _port_open(port, host):
            return False
    except OSError:
        return False
    try:
        describe_cluster(where, timeout)
        return True
    except Exception:
        return False


def is_running(settings: Settings) -> bool:
    """Whether the broker of ``settings`` answers; for a local one, also that it is our process."""
    if settings.uses_local_broker and recorded_pid(settings) is None:
        return False
    return is_answering(_plaintext(settings))


def wait_until_ready(where: Settings | str, timeout: float = 90.0, *, alive=None, log_file: Path | None = None) -> None:
    """Block until the broker at ``where`` (as for `is_answering`) answers a metadata request.

    ``alive``, if given, is called between attempts; when it returns False the broker process
    has died and waiting stops at once. Raises `BrokerError` on either failure.
    """
    deadline = time.monotonic() + timeout
    bootstrap = where.bootstrap if isinstance(where, Settings) else where
    see = f"; see {log_file}" if log_file else ""
    while True:
        if alive is not None and not alive():
            raise BrokerError(f"the Kafka broker for {bootstrap} exited while starting{see}")
        if is_answering(where, timeout=min(5.0, max(deadline - time.monotonic(), 1.0))):
            return
        if time.monotonic() >= deadline:
            raise BrokerError(f"no Kafka broker answered at {bootstrap} within {timeout:g} s{see}")
        time.sleep(0.5)


# -- start / stop ------------------------------------------------------------------------------


def _server_properties(settings: Settings) -> str:
    port, controller = settings.kafka_port, _controller_port(settings)
    return f"""\
# Written by `refinery kafka start`; rewritten at every start: edit agents/kafka/broker.py instead.
# One KRaft node that is both broker and controller, reachable from this machine only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={_data_dir(settings)}
num.partitions={settings.partitions}
auto.create.topics.enable=true
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Tests and demos join consumer groups constantly: no reason to wait for more members.
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=104857600
"""


def _log4j2_properties(settings: Settings) -> str:
    log = settings.home / "logs" / "server.log"
    return f"""\
# Written by `refinery kafka start`: the broker logs to {log}.
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
"""


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise BrokerError("java not found: install a JDK 17 or newer (apt-get install openjdk-17-jre-headless)")
    return java


def _java_command(settings: Settings, main: str, *args: str) -> list[str]:
    heap = os.environ.get("KAFKA_HEAP_OPTS") or DEFAULT_HEAP_OPTS
    return [
        _java(),
        *heap.split(),
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={settings.home / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={settings.home / 'logs'}",
        "-cp",
        str(_libs(settings) / "*"),
        main,
        *args,
    ]


def _cluster_id() -> str:
    """A new Kafka cluster id: a UUID in URL-safe base64 without padding, never starting with
    '-' (the tool's argument parser would take it for an option; Kafka's own Uuid.randomUuid
    avoids it the same way)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _format_storage(settings: Settings, *extra: str) -> None:
    if (_data_dir(settings) / "meta.properties").exists():
        return
    cluster_id = _cluster_id()
    command = _java_command(
        settings,
        "kafka.tools.StorageTool",
        "format",
        "--ignore-formatted",
        "-t",
        cluster_id,
        "-c",
        str(_properties_file(settings)),
        *extra,
    )
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(
            f"formatting {_data_dir(settings)} failed (exit {result.returncode}):\n{result.stdout[-4000:]}"
        )


def start(settings: Settings, timeout: float = 90.0, *, quiet: bool = False, secured: bool = False) -> str:
    """Start the local broker unless it already runs; wait until it answers; return the bootstrap.

    Idempotent. With an external broker, only waits until it answers. Raises `BrokerError` when
    the port is held by something else, the process dies, or it does not answer in ``timeout`` s.
    ``secured`` adds TLS and SASL listeners beside the plaintext one (`agents.kafka.secured`);
    it needs a fresh ``REFINERY_HOME`` (or one started secured before).
    """
    bootstrap = settings.bootstrap
    if not settings.uses_local_broker:
        _say(f"external broker {bootstrap} (REFINERY_KAFKA_BOOTSTRAP): waiting until it answers", quiet)
        wait_until_ready(settings, timeout)
        return bootstrap
    plaintext = _plaintext(settings)

    pid = recorded_pid(settings)
    if pid is not None:
        if not is_answering(plaintext):
            _say(f"Kafka (pid {pid}) is starting; waiting for {bootstrap}", quiet)
            wait_until_ready(
                plaintext, timeout, alive=lambda: recorded_pid(settings) is not None, log_file=_log_file(settings)
            )
        _say(f"Kafka already running: pid {pid}, bootstrap {bootstrap}", quiet)
        return bootstrap

    from agents.kafka import secured as tls

    extra_ports = list(tls.ports(settings).values()) if secured else []
    for port in (settings.kafka_port, _controller_port(settings), *extra_ports):
        if _port_open(port):
            raise BrokerError(
                f"127.0.0.1:{port} is already in use by a process that is not the broker of {settings.home} "
                f"(another project's Kafka?). Stop it, or choose other ports with REFINERY_KAFKA_PORT "
                f"(uses that port and the next), or point REFINERY_KAFKA_BOOTSTRAP at it to use it."
            )

    fetch(settings, quiet=quiet)
    properties, format_extra = _server_properties(settings), []
    if secured:
        if (_data_dir(settings) / "meta.properties").exists() and not (settings.home / "tls").is_dir():
            raise BrokerError(
                f"{settings.home} holds a broker formatted without --secured (no SCRAM user): "
                f"start the secured broker in a fresh REFINERY_HOME"
            )
        try:
            tls.prepare(settings)
        except RuntimeError as error:
            raise BrokerError(str(error)) from error
        properties += tls.listener_properties(settings)
        format_extra = tls.format_arguments(settings)
    (settings.home / "logs").mkdir(parents=True, exist_ok=True)
    _data_dir(settings).mkdir(parents=True, exist_ok=True)
    _properties_file(settings).write_text(properties)
    _properties_file(settings).chmod(0o600)  # the secured one holds passwords
    (settings.home / "log4j2.properties").write_text(_log4j2_properties(settings))
    _format_storage(settings, *format_extra)

    log_file = _log_file(settings)
    command = _java_command(settings, "kafka.Kafka", str(_properties_file(settings)))
    with open(log_file, "ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=settings.home,
        )
    _pid_file(settings).write_text(f"{process.pid}\n")
    log_event(log, logging.INFO, "broker_starting", pid=process.pid, bootstrap=bootstrap, log=str(log_file))
    _say(f"Kafka {kafka_version()} starting: pid {process.pid}, bootstrap {bootstrap}, log {log_file}", quiet)
    try:
        wait_until_ready(plaintext, timeout, alive=lambda: process.poll() is None, log_file=log_file)
    except BrokerError:
        if process.poll() is None:
            stop(settings, quiet=True)
        raise
    _say(f"Kafka ready at {bootstrap}", quiet)
    if secured:
        listeners = ", ".join(f"{name} on 127.0.0.1:{port}" for name, port in tls.ports(settings).items())
        client = " ".join(f"{name}={value}" for name, value in tls.client_env(settings).items())
        _say(f"secured listeners: {listeners}; a SASL_SSL/SCRAM client:\n  export {client}", quiet)
    log_event(log, logging.INFO, "broker_ready", pid=process.pid, bootstrap=bootstrap)
    return bootstrap


def stop(settings: Settings, timeout: float = 30.0, *, quiet: bool = False) -> bool:
    """Stop the local broker recorded in ``<home>/kafka.pid``: SIGTERM, then SIGKILL after ``timeout`` s.

    Returns whether a broker was stopped. Never signals any other process.
    """
    if not settings.uses_local_broker:
        _say(f"external broker {settings.bootstrap} (REFINERY_KAFKA_BOOTSTRAP): not ours to stop", quiet)
        return False
    pid = recorded_pid(settings)
    if pid is None:
        _pid_file(settings).unlink(missing_ok=True)
        _say("Kafka is not running", quiet)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while recorded_pid(settings) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    if recorded_pid(settings) is not None:
        _say(f"Kafka (pid {pid}) still running after {timeout:g} s: SIGKILL", quiet)
        log_event(log, logging.WARNING, "broker_killed", pid=pid, seconds=timeout)
        os.kill(pid, signal.SIGKILL)
        while recorded_pid(settings) is not None:
            time.sleep(0.1)
    _pid_file(settings).unlink(missing_ok=True)
    _say(f"Kafka (pid {pid}) stopped", quiet)
    log_event(log, logging.INFO, "broker_stopped", pid=pid, bootstrap=settings.bootstrap)
    return True


def status(settings: Settings) -> dict:
    """What is known of the broker: pid, alive, answering, bootstrap (and home for a local one)."""
    pid = recorded_pid(settings) if settings.uses_local_broker else None
    return {
        "bootstrap": settings.bootstrap,
        "local": settings.uses_local_broker,
        "home": str(settings.home) if settings.uses_local_broker else None,
        "version": kafka_version() if settings.uses_local_broker else None,
        "pid": pid,
        "alive": pid is not None,
        "answering": is_answering(_plaintext(settings), timeout=3.0),
    }


# -- broker and topics -------------------------------------------------------------------


def ensure_broker(settings: Settings, timeout: float = 90.0) -> str:
    """Start the local broker if it is not running, create the topics, return the bootstrap."""
    bootstrap = start(settings, timeout, quiet=True)
    try:
        create_topics(settings)
    except TopicError as error:  # one error type for callers of this one call
        raise BrokerError(str(error)) from error
    return bootstrap


def _say(text: str, quiet: bool) -> None:
    # What a person at the terminal reads (`refinery kafka ...`); the log lines carry the same facts.
    if not quiet:
        print(text, flush=True)
