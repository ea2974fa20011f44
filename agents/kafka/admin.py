"""Topic administration: create, delete and describe the service's topics on any broker.

Every call to Kafka's admin API goes through one context, `admin_client`, which opens a
``KafkaAdminClient`` and always closes it. Which topics exist, how they are keyed and which are
compacted is the registry's business (`schemas.topics.TOPICS`); these functions only apply it::

    from agents.kafka.admin import create_topics
    create_topics(Settings.from_env())   # every topic of the registry, idempotent

Names passed in (``names=["messages"]``) carry no prefix; results name the full topics.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from agents.kafka.security import kafka_python_kwargs
from agents.settings import Settings
from agents.worker.observability import log_event
from schemas.topics import TOPICS, topic

if TYPE_CHECKING:
    from kafka import KafkaAdminClient

__all__ = [
    "REPLICATION",
    "TopicError",
    "admin_client",
    "create_named_topics",
    "create_topics",
    "delete_topics",
    "describe_cluster",
    "describe_topics",
]

log = logging.getLogger("refinery.kafka")

#: Partitions are replicated once: the local broker is a single node.
REPLICATION = 1


class TopicError(RuntimeError):
    """The broker refused to create a topic; the message names the topic and Kafka's error."""


@contextlib.contextmanager
def admin_client(
    where: Settings | str, *, client_id: str = "refinery-admin", timeout: float | None = None
) -> Iterator[KafkaAdminClient]:
    """A ``KafkaAdminClient`` for the broker of ``where`` (Settings, with their security, or a
    plaintext bootstrap string), closed on exit.

    ``timeout`` (seconds) bounds connecting and each request; None keeps kafka-python's defaults.
    Connecting fails with kafka-python's ``NoBrokersAvailable`` when nothing answers.
    """
    from kafka import KafkaAdminClient

    limits = {}
    if timeout is not None:
        ms = max(int(timeout * 1000), 1000)
        limits = {"request_timeout_ms": ms, "bootstrap_timeout_ms": ms}
    admin = KafkaAdminClient(**kafka_python_kwargs(where), client_id=client_id, **limits)
    try:
        yield admin
    finally:
        admin.close()


def describe_cluster(where: Settings | str, timeout: float) -> dict:
    """The cluster's metadata (brokers, controller, cluster id): proof that a broker answers."""
    with admin_client(where, client_id="refinery-broker-check", timeout=timeout) as admin:
        return admin.describe_cluster()


def _wanted(settings: Settings, names: Iterable[str] | None) -> dict[str, str]:
    """``{full topic name: registry name}`` of ``names`` (default: every topic)."""
    return {settings.topic(name): topic(name).name for name in (names or TOPICS)}


def create_topics(
    settings: Settings, partitions: int | None = None, names: Iterable[str] | None = None
) -> dict[str, int]:
    """Create the service's topics (``names`` without prefix, default every topic of the registry).

    Every topic gets ``partitions`` (default ``settings.partitions``) partitions, replication 1;
    those the registry marks `schemas.topics.Topic.compacted` get ``cleanup.policy=compact``.
    Existing topics are left as they are. Returns ``{full topic name: partition count}`` as the
    broker reports them. Raises `TopicError` when the broker refuses one.
    """
    partitions = partitions or settings.partitions
    wanted = _wanted(settings, names)
    return create_named_topics(settings, {full: (partitions, TOPICS[name].compacted) for full, name in wanted.items()})


def create_named_topics(settings: Settings, wanted: dict[str, tuple[int, bool]]) -> dict[str, int]:
    """Create topics by full name, ``{name: (partitions, compacted)}``, like `create_topics`
    (existing ones are left as they are): for topics outside the registry, such as a stream's
    ``streams.<name>`` (`schemas.topics.stream_topic`)."""
    from kafka.errors import TopicAlreadyExistsError

    with admin_client(settings, client_id="refinery-topics") as admin:
        existing = set(admin.list_topics())
        missing = {full: shape for full, shape in wanted.items() if full not in existing}
        if missing:
            new_topics = {
                full: {
                    "num_partitions": count,
                    "replication_factor": REPLICATION,
                    "configs": {"cleanup.policy": "compact"} if compacted else {},
                }
                for full, (count, compacted) in missing.items()
            }
            response = admin.create_topics(new_topics, raise_errors=False)
            for created in response["topics"]:
                error = created["error_code"]
                if error not in (0, TopicAlreadyExistsError.errno):
                    raise TopicError(
                        f"creating topic {created['name']} failed: error {error} "
                        f"{created.get('error_message') or ''}".rstrip()
                    )
            admin.wait_for_topics(list(missing), timeout_ms=30_000)
            log_event(
                log,
                logging.INFO,
                "topics_created",
                topics=sorted(missing),
                partitions=sorted({count for count, _ in missing.values()}),
                bootstrap=settings.bootstrap,
            )
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(wanted))}


def delete_topics(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Delete the service's topics under ``settings.topic_prefix`` (``names`` without prefix,
    default every topic of the registry) that exist; return the names deleted. Nothing else is
    touched."""
    wanted = list(_wanted(settings, names))
    with admin_client(settings, client_id="refinery-topics") as admin:
        existing = set(admin.list_topics())
        deleted = [full for full in wanted if full in existing]
        if deleted:
            admin.delete_topics(deleted)
            log_event(log, logging.INFO, "topics_deleted", topics=deleted, bootstrap=settings.bootstrap)
        return deleted


def describe_topics(settings: Settings, names: Iterable[str] | None = None) -> list[dict]:
    """``[{"topic", "partitions", "cleanup.policy"}]`` for the service's topics that exist."""
    from kafka.admin import ConfigResource, ConfigResourceType

    wanted = list(_wanted(settings, names))
    with admin_client(settings, client_id="refinery-topics") as admin:
        listed = set(admin.list_topics())
        existing = [full for full in wanted if full in listed]
        if not existing:
            return []
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(existing)}
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, full, {"cleanup.policy": None}) for full in existing],
            config_filter="all",
        )["topic"]
        return [
            {
                "topic": full,
                "partitions": described[full],
                "cleanup.policy": configs.get(full, {}).get("cleanup.policy", {}).get("value"),
            }
            for full in existing
        ]
