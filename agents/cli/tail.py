"""`refinery tail TOPIC`: print the decoded records of a Refinery topic as they arrive.

One JSON object per line: ``{"partition", "offset", "key", "value"}``, where ``value`` is the
record parsed with the topic's schema type (or ``{"undecodable": reason, "raw": base64}`` when it
does not parse, which is normal on the input topics: that is what ``deadletter`` is for).

>>> decode_record("deadletter", b'{"source_topic": "t", "partition": 0, "offset": 1, "raw": "", "reason": "r", "timestamp": 0}')["reason"]
'r'
>>> decode_record("messages", b"{oops")["undecodable"]
'message: expected a JSON object, got invalid JSON (unexpected character, expected a string key: line 1 column 2 (char 1))'
"""

from __future__ import annotations

import argparse
import base64
import sys

from agents.cli import options
from schemas.topics import TOPICS

__all__ = ["SCHEMAS", "add_arguments", "decode_record", "run"]

#: Topic (without prefix) -> the schema type of its values (the registry's; ``snapshots`` has none).
SCHEMAS = {name: topic.record for name, topic in TOPICS.items() if topic.record is not None}


def decode_record(topic: str, value: bytes | None) -> dict | None:
    """The record's value as a dict, decoded with the schema type of ``topic``."""
    import schemas
    from agents.worker.snapshots import CHUNK_MAGIC, Manifest, SnapshotRejected

    if value is None:
        return None
    if topic == "snapshots":
        if value.startswith(CHUNK_MAGIC):
            return {"chunk_bytes": len(value) - len(CHUNK_MAGIC)}
        try:
            manifest = Manifest.decode(value)
        except SnapshotRejected as error:
            return {"undecodable": str(error)}
        return {
            "manifest": {
                "dataset": manifest.dataset,
                "version": manifest.version,
                "events_offset": manifest.events_offset,
                "chunks": len(manifest.chunks),
                "size": manifest.size,
            }
        }
    kind = SCHEMAS[topic]
    try:
        return kind.decode(value).to_dict()
    except schemas.SchemaError as error:
        return {"undecodable": str(error), "raw": base64.b64encode(value).decode("ascii")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", choices=(*SCHEMAS, "snapshots"), help="which topic (without prefix)")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest record, not at the end")
    parser.add_argument("--dataset", default=None, metavar="NAME", help="only records whose key is this dataset")
    parser.add_argument("--max", type=int, default=None, help="stop after this many records")
    parser.add_argument("--timeout", type=float, default=None, help="stop after this many seconds without a record")
    options.add_kafka_options(parser)


def run(args: argparse.Namespace) -> int:
    import orjson
    from kafka import KafkaConsumer, TopicPartition

    from agents.kafka.security import kafka_python_kwargs

    settings = options.settings_from(args)
    topic = settings.topic(args.topic)
    refusal = options.kafka_refusal(settings)
    if refusal:
        print(f"refinery tail: error: {refusal}", file=sys.stderr)
        return 1
    consumer = KafkaConsumer(
        **kafka_python_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=int(args.timeout * 1000) if args.timeout else float("inf"),
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            print(
                f"refinery tail: no topic {topic} at {settings.bootstrap} (create it: refinery kafka topics)",
                file=sys.stderr,
            )
            return 1
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        (consumer.seek_to_beginning if args.from_beginning else consumer.seek_to_end)(*tps)
        shown = 0
        for record in consumer:
            key = record.key.decode("utf-8", errors="replace") if record.key is not None else None
            if args.dataset is not None and key != args.dataset:
                continue
            line = {
                "partition": record.partition,
                "offset": record.offset,
                "key": key,
                "value": decode_record(args.topic, record.value),
            }
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()
            shown += 1
            if args.max is not None and shown >= args.max:
                break
    finally:
        consumer.close()
    return 0
