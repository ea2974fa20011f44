"""The topics of Refinery (DESIGN.md section 3), declared once.

Every other list of topics is read from `TOPICS`: the settings (`agents.settings.TOPICS`, the
names), the worker's topic names (`agents.settings.Settings.topics`), the broker tooling
(`agents.kafka.admin.create_topics` compacts what is `Topic.compacted`) and the JSON Schema
files (`schemas.jsonschema`, one file per `Topic.record`, and the index ``topics.json``).
Names carry no prefix here; `agents.settings.Settings.topic` adds it.

>>> TOPICS["messages"]
Topic(name='messages', record=<class 'schemas.events.Message'>, key='dataset', direction='in', compacted=False)
>>> [topic.name for topic in TOPICS.values() if topic.compacted]
['snapshots']
>>> topic("message")
Traceback (most recent call last):
...
KeyError: "no topic 'message': the topics are messages, annotations, predictions, metrics, suggestions, deadletter, events, snapshots"
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Literal

from schemas._typed import Record
from schemas.events import (
    Annotation,
    DeadLetter,
    Event,
    Message,
    MetricsSnapshot,
    Prediction,
    Stream,
    StreamMessage,
    SuggestionList,
)

__all__ = ["STREAMS", "STREAM_OUTPUT", "TOPICS", "Direction", "Key", "Topic", "stream_topic", "topic"]

#: How records are keyed: by dataset name (so a dataset's records share one partition), by
#: stream name (``stream-declarations``), or not at all for partitioning (``None``).
Key = Literal["dataset", "stream"] | None
#: ``in``: written by producers, read by the worker; ``out``: written by the worker for
#: dashboards and automations; ``internal``: written and read by the worker only.
Direction = Literal["in", "out", "internal"]


@dataclasses.dataclass(frozen=True)
class Topic:
    """One topic of the service.

    Parameters
    ----------
    name
        The name without prefix, e.g. ``messages``.
    record
        The `schemas` type every record's value decodes to; None for ``snapshots``, whose
        chunks and manifests are the worker's own format (`agents.worker.snapshots`).
    key
        ``"dataset"`` when records are keyed by their dataset, None otherwise.
    direction
        ``in``, ``out`` or ``internal`` (see `Direction`).
    compacted
        Whether the topic is created with ``cleanup.policy=compact`` (only the latest value per
        key matters) rather than deleted by retention.
    """

    name: str
    record: type[Record] | None
    key: Key
    direction: Direction
    compacted: bool = False


def _registry(*topics: Topic) -> Mapping[str, Topic]:
    return types.MappingProxyType({t.name: t for t in topics})


#: Every topic by name, in the order of DESIGN.md section 3. Iterating gives the names.
TOPICS: Mapping[str, Topic] = _registry(
    Topic("messages", Message, key="dataset", direction="in"),
    Topic("annotations", Annotation, key="dataset", direction="in"),
    Topic("predictions", Prediction, key="dataset", direction="out"),
    Topic("metrics", MetricsSnapshot, key="dataset", direction="out"),
    Topic("suggestions", SuggestionList, key="dataset", direction="out"),
    # Not keyed for partitioning: a record may have no dataset (undecodable input). The key is
    # the dataset when one is known, for readers that filter by key.
    Topic("deadletter", DeadLetter, key=None, direction="out"),
    Topic("events", Event, key="dataset", direction="internal"),
    # A manifest's key is its dataset, a chunk's starts with it; both go to the partition of
    # the dataset's ``events`` (agents.worker.snapshots).
    Topic("snapshots", None, key="dataset", direction="internal", compacted=True),
)


#: Streams for automations (docs/streams.md), beside the registry of DESIGN.md section 3: the
#: declarations (compacted, keyed by stream name, one partition, a tombstone deletes), read
#: whole by every worker; and one output topic per stream, ``streams.<name>`` (`stream_topic`),
#: keyed by dataset, whose records the `STREAM_OUTPUT` entry describes.
STREAMS = Topic("stream-declarations", Stream, key="stream", direction="in", compacted=True)
STREAM_OUTPUT = Topic("streams.<name>", StreamMessage, key="dataset", direction="out")


def stream_topic(name: str) -> str:
    """The topic (without prefix) a stream writes to.

    >>> stream_topic("urgent-refunds")
    'streams.urgent-refunds'
    """
    return f"streams.{name}"


def topic(name: str) -> Topic:
    """The `Topic` called ``name`` (without prefix); a KeyError listing the topics otherwise."""
    try:
        return TOPICS[name]
    except KeyError:
        raise KeyError(f"no topic {name!r}: the topics are {', '.join(TOPICS)}") from None
