"""`refinery kafka`: a real Apache Kafka broker for every machine, and the topics of the service.

The local broker is a single KRaft node (broker and controller in one JVM) listening on
127.0.0.1 only. Its jars come from Maven Central through ``deploy/kafka/pom.xml`` (which pins
the version); its jars, configuration, data, logs and pid file all live under
``Settings.home`` (``REFINERY_HOME``, default ``.kafka/`` in the project).

When ``REFINERY_KAFKA_BOOTSTRAP`` names an external broker, nothing is fetched, started or
stopped: ``start`` only waits until that broker answers and ``topics`` creates topics there.

Python callers use the plain functions; the CLI is a thin layer over them::

    from agents.kafka.broker import ensure_broker
    bootstrap = ensure_broker(Settings.from_env())   # started if needed, topics created
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from agents.settings import PROJECT_ROOT, TOPICS, Settings

__all__ = [
    "BrokerError",
    "POM",
    "add_arguments",
    "create_topics",
    "describe_topics",
    "ensure_broker",
    "fetch",
    "is_answering",
    "is_running",
    "kafka_version",
    "recorded_pid",
    "run",
    "start",
    "status",
    "stop",
    "wait_until_ready",
]

POM = PROJECT_ROOT / "deploy" / "kafka" / "pom.xml"
#: Compacted topics: only the latest value per key matters (DESIGN.md section 3).
COMPACTED = frozenset({"snapshots"})
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
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BrokerError(f"mvn failed (exit {result.returncode}): {' '.join(command)}\n{result.stdout[-4000:]}")
    # Swap in whole: a half-copied libs/ must never look fetched.
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    _say(f"Kafka {kafka_version()}: {len(list(libs.glob('*.jar')))} jars in {libs}", quiet)
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


def is_answering(bootstrap: str, timeout: float = 5.0) -> bool:
    """Whether a Kafka broker at ``bootstrap`` answers a metadata request within ``timeout`` s."""
    host, port = _split_bootstrap(bootstrap)
    try:
        if not _port_open(port, host):
            return False
    except OSError:
        return False
    try:
        _metadata(bootstrap, timeout)
        return True
    except Exception:
        return False


def _metadata(bootstrap: str, timeout: float) -> dict:
    from kafka import KafkaAdminClient

    ms = max(int(timeout * 1000), 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="refinery-broker-check", request_timeout_ms=ms, bootstrap_timeout_ms=ms
    )
    try:
        return admin.describe_cluster()
    finally:
        admin.close()


def is_running(settings: Settings) -> bool:
    """Whether the broker of ``settings`` answers; for a local one, also that it is our process."""
    if settings.uses_local_broker and recorded_pid(settings) is None:
        return False
    return is_answering(settings.bootstrap)


def wait_until_ready(bootstrap: str, timeout: float = 90.0, *, alive=None, log_file: Path | None = None) -> None:
    """Block until the broker at ``bootstrap`` answers a metadata request.

    ``alive``, if given, is called between attempts; when it returns False the broker process
    has died and waiting stops at once. Raises `BrokerError` on either failure.
    """
    deadline = time.monotonic() + timeout
    where = f"; see {log_file}" if log_file else ""
    while True:
        if alive is not None and not alive():
            raise BrokerError(f"the Kafka broker for {bootstrap} exited while starting{where}")
        if is_answering(bootstrap, timeout=min(5.0, max(deadline - time.monotonic(), 1.0))):
            return
        if time.monotonic() >= deadline:
            raise BrokerError(f"no Kafka broker answered at {bootstrap} within {timeout:g} s{where}")
        time.sleep(0.5)


# -- start / stop ------------------------------------------------------------------------------


def _server_properties(settings: Settings) -> str:
    port, controller = settings.kafka_port, _controller_port(settings)
    return f"""\
# Written by `refinery kafka start`; rewritten at every start: edit agents/broker.py instead.
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


def _format_storage(settings: Settings) -> None:
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
    )
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise BrokerError(
            f"formatting {_data_dir(settings)} failed (exit {result.returncode}):\n{result.stdout[-4000:]}"
        )


def start(settings: Settings, timeout: float = 90.0, *, quiet: bool = False) -> str:
    """Start the local broker unless it already runs; wait until it answers; return the bootstrap.

    Idempotent. With an external broker, only waits until it answers. Raises `BrokerError` when
    the port is held by something else, the process dies, or it does not answer in ``timeout`` s.
    """
    bootstrap = settings.bootstrap
    if not settings.uses_local_broker:
        _say(f"external broker {bootstrap} (REFINERY_KAFKA_BOOTSTRAP): waiting until it answers", quiet)
        wait_until_ready(bootstrap, timeout)
        return bootstrap

    pid = recorded_pid(settings)
    if pid is not None:
        if not is_answering(bootstrap):
            _say(f"Kafka (pid {pid}) is starting; waiting for {bootstrap}", quiet)
            wait_until_ready(
                bootstrap, timeout, alive=lambda: recorded_pid(settings) is not None, log_file=_log_file(settings)
            )
        _say(f"Kafka already running: pid {pid}, bootstrap {bootstrap}", quiet)
        return bootstrap

    for port in (settings.kafka_port, _controller_port(settings)):
        if _port_open(port):
            raise BrokerError(
                f"127.0.0.1:{port} is already in use by a process that is not the broker of {settings.home} "
                f"(another project's Kafka?). Stop it, or choose other ports with REFINERY_KAFKA_PORT "
                f"(uses that port and the next), or point REFINERY_KAFKA_BOOTSTRAP at it to use it."
            )

    fetch(settings, quiet=quiet)
    (settings.home / "logs").mkdir(parents=True, exist_ok=True)
    _data_dir(settings).mkdir(parents=True, exist_ok=True)
    _properties_file(settings).write_text(_server_properties(settings))
    (settings.home / "log4j2.properties").write_text(_log4j2_properties(settings))
    _format_storage(settings)

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
    _say(f"Kafka {kafka_version()} starting: pid {process.pid}, bootstrap {bootstrap}, log {log_file}", quiet)
    try:
        wait_until_ready(bootstrap, timeout, alive=lambda: process.poll() is None, log_file=log_file)
    except BrokerError:
        if process.poll() is None:
            stop(settings, quiet=True)
        raise
    _say(f"Kafka ready at {bootstrap}", quiet)
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
        os.kill(pid, signal.SIGKILL)
        while recorded_pid(settings) is not None:
            time.sleep(0.1)
    _pid_file(settings).unlink(missing_ok=True)
    _say(f"Kafka (pid {pid}) stopped", quiet)
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
        "answering": is_answering(settings.bootstrap, timeout=3.0),
    }


# -- topics ------------------------------------------------------------------------------------


def create_topics(settings: Settings, partitions: int | None = None, names=None) -> dict[str, int]:
    """Create the service's topics (``names`` without prefix, default all of `TOPICS`).

    Every topic gets ``partitions`` (default ``settings.partitions``) partitions, replication 1;
    `COMPACTED` ones get ``cleanup.policy=compact``. Existing topics are left as they are.
    Returns ``{full topic name: partition count}`` as the broker reports them.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError

    partitions = partitions or settings.partitions
    names = list(names or TOPICS)
    wanted = {settings.topic(name): name for name in names}
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap, client_id="refinery-topics")
    try:
        missing = {topic: name for topic, name in wanted.items() if topic not in set(admin.list_topics())}
        if missing:
            new_topics = {
                topic: {
                    "num_partitions": partitions,
                    "replication_factor": 1,
                    "configs": {"cleanup.policy": "compact"} if name in COMPACTED else {},
                }
                for topic, name in missing.items()
            }
            response = admin.create_topics(new_topics, raise_errors=False)
            for topic in response["topics"]:
                error = topic["error_code"]
                if error not in (0, TopicAlreadyExistsError.errno):
                    raise BrokerError(
                        f"creating topic {topic['name']} failed: error {error} "
                        f"{topic.get('error_message') or ''}".rstrip()
                    )
            admin.wait_for_topics(list(missing), timeout_ms=30_000)
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(wanted))}
    finally:
        admin.close()


def delete_topics(settings: Settings, names=None) -> list[str]:
    """Delete the service's topics under ``settings.topic_prefix`` (``names`` without prefix,
    default all of `TOPICS`) that exist; returns the names deleted. Nothing else is touched."""
    from kafka import KafkaAdminClient

    wanted = [settings.topic(name) for name in (names or TOPICS)]
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap, client_id="refinery-topics")
    try:
        existing = [topic for topic in wanted if topic in set(admin.list_topics())]
        if existing:
            admin.delete_topics(existing)
        return existing
    finally:
        admin.close()


def describe_topics(settings: Settings, names=None) -> list[dict]:
    """``[{"topic", "partitions", "cleanup.policy"}]`` for the service's topics that exist."""
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    wanted = [settings.topic(name) for name in (names or TOPICS)]
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap, client_id="refinery-topics")
    try:
        existing = [topic for topic in wanted if topic in set(admin.list_topics())]
        if not existing:
            return []
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(existing)}
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": None}) for topic in existing],
            config_filter="all",
        )["topic"]
        return [
            {
                "topic": topic,
                "partitions": described[topic],
                "cleanup.policy": configs.get(topic, {}).get("cleanup.policy", {}).get("value"),
            }
            for topic in existing
        ]
    finally:
        admin.close()


def ensure_broker(settings: Settings, timeout: float = 90.0) -> str:
    """Start the local broker if it is not running, create the topics, return the bootstrap."""
    bootstrap = start(settings, timeout, quiet=True)
    create_topics(settings)
    return bootstrap


# -- CLI ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("fetch", "start", "stop", "status", "topics"),
        help="fetch the jars; start or stop the local broker; show its status; create topics",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=90.0,
        help="seconds to wait for the broker to answer (start) or exit (stop) (default 90)",
    )
    parser.add_argument(
        "--partitions", type=int, default=None, help="partitions of new topics (default REFINERY_PARTITIONS, else 4)"
    )
    parser.add_argument("--prefix", default=None, help="topic prefix (default REFINERY_TOPIC_PREFIX, else 'refinery.')")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    settings = Settings.from_env()
    if args.prefix is not None:
        settings = dataclasses.replace(settings, topic_prefix=args.prefix)
    try:
        if args.action == "fetch":
            fetch(settings)
        elif args.action == "start":
            start(settings, args.timeout)
        elif args.action == "stop":
            stop(settings, min(args.timeout, 30.0))
        elif args.action == "status":
            info = status(settings)
            for key, value in info.items():
                print(f"{key}: {value}")
            # Success means usable and, for a local broker, ours: a stranger on our port is not.
            return 0 if info["answering"] and (info["alive"] or not info["local"]) else 1
        elif args.action == "topics":
            if not is_answering(settings.bootstrap):
                raise BrokerError(f"no Kafka broker answers at {settings.bootstrap}: run `refinery kafka start` first")
            create_topics(settings, args.partitions)
            for topic in describe_topics(settings):
                print(f"{topic['topic']}\tpartitions={topic['partitions']}\tcleanup.policy={topic['cleanup.policy']}")
    except BrokerError as error:
        print(f"refinery kafka {args.action}: {error}", file=sys.stderr)
        return 1
    return 0


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, flush=True)
