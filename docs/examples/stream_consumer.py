"""An automation reading a Refinery stream: route each message to a team by its labels.

It reads ``<prefix>streams.<name>`` (docs/streams.md) in a consumer group of its own, so a
restarted automation goes on where it stopped. Each record is a `schemas.StreamMessage`
(JSON Schema: schemas/json/stream_message.schema.json): the message, its labels at the
stream's thresholds and the model version. Delivery is at least once, so it skips a
``(message_id, model_version)`` it has already handled, and commits after acting.

Run (a stream ``precise`` declared as in docs/streams.md)::

    python docs/examples/stream_consumer.py --stream precise --routes '{"card_arrival": "cards-team"}'

It prints one JSON line per action: ``{"message_id", "labels", "team", "model_version"}``;
``--max-messages N`` and ``--idle-seconds S`` stop it (both unset: it runs until Ctrl-C). It
needs only kafka-python and the standard library: an automation does not import Refinery.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def team_for(labels: list[dict], routes: dict[str, str], default: str) -> str:
    """The team of the most confident label that has a route (labels come most confident first).

    >>> team_for([{"name": "card_arrival", "confidence": 0.97}], {"card_arrival": "cards"}, "triage")
    'cards'
    >>> team_for([], {"card_arrival": "cards"}, "triage")
    'triage'
    """
    for label in labels:
        if label["name"] in routes:
            return routes[label["name"]]
    return default


def main(argv: list[str] | None = None) -> int:
    from kafka import KafkaConsumer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stream", required=True, help="the stream's name")
    parser.add_argument("--bootstrap", default=os.environ.get("REFINERY_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--prefix", default=os.environ.get("REFINERY_TOPIC_PREFIX", "refinery."))
    parser.add_argument("--group", default=None, help="consumer group (default: automation-<stream>)")
    parser.add_argument("--routes", default="{}", help='JSON {"label": "team"}')
    parser.add_argument("--default-team", default="triage")
    parser.add_argument("--max-messages", type=int, default=None, help="stop after acting on this many")
    parser.add_argument("--idle-seconds", type=float, default=None, help="stop after this long without a record")
    args = parser.parse_args(argv)
    routes = json.loads(args.routes)

    consumer = KafkaConsumer(
        f"{args.prefix}streams.{args.stream}",
        bootstrap_servers=args.bootstrap,
        group_id=args.group or f"automation-{args.stream}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    handled: set[tuple[str, int]] = set()  # at least once: a repeat is skipped
    acted, idle = 0, 0.0
    try:
        while args.max_messages is None or acted < args.max_messages:
            batches = consumer.poll(timeout_ms=500)
            if not batches:
                idle += 0.5
                if args.idle_seconds is not None and idle >= args.idle_seconds:
                    break
                continue
            idle = 0.0
            for records in batches.values():
                for record in records:
                    item = json.loads(record.value)
                    key = (item["message_id"], item["model_version"])
                    if key in handled:
                        continue
                    handled.add(key)
                    action = {
                        "message_id": item["message_id"],
                        "labels": [label["name"] for label in item["labels"]],
                        "team": team_for(item["labels"], routes, args.default_team),
                        "model_version": item["model_version"],
                    }
                    print(json.dumps(action), flush=True)
                    acted += 1
            consumer.commit()  # after acting: a crash repeats, never loses
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
