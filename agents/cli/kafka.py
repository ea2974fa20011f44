"""`refinery kafka fetch|start|stop|status|topics`: the local broker and the service's topics.

A thin command over `agents.kafka.broker` (the broker process) and `agents.kafka.admin` (the
topics of `schemas.topics.TOPICS`)::

    refinery kafka start                 # fetch if needed, start on 127.0.0.1:9092, wait until it answers
    refinery kafka topics --partitions 4 # create every topic (idempotent) and list them
"""

from __future__ import annotations

import argparse
import sys

from agents.cli import options

__all__ = ["ACTIONS", "add_arguments", "run"]

#: The actions, in the order a newcomer uses them.
ACTIONS = ("fetch", "start", "stop", "status", "topics")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", choices=ACTIONS, help="fetch the jars; start or stop the local broker; show its status; create topics"
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
    parser.add_argument(
        "--secured",
        action="store_true",
        help="start: also TLS, mutual-TLS and SASL (SCRAM, PLAIN) listeners on the next ports, with a throwaway "
        "CA (docs/service.md, Secured Kafka); needs a fresh REFINERY_HOME",
    )
    options.add_kafka_options(parser)  # --bootstrap and --prefix, as for every other command


def run(args: argparse.Namespace) -> int:
    from agents.kafka import admin, broker

    settings = options.settings_from(args)
    try:
        if args.action == "fetch":
            broker.fetch(settings)
        elif args.action == "start":
            broker.start(settings, args.timeout, secured=args.secured)
        elif args.action == "stop":
            broker.stop(settings, min(args.timeout, 30.0))
        elif args.action == "status":
            info = broker.status(settings)
            for key, value in info.items():
                print(f"{key}: {value}")
            # Success means usable and, for a local broker, ours: a stranger on our port is not.
            return 0 if info["answering"] and (info["alive"] or not info["local"]) else 1
        elif args.action == "topics":
            refusal = options.kafka_refusal(settings)
            if refusal:
                raise broker.BrokerError(refusal)
            if not broker.is_answering(settings):
                raise broker.BrokerError(
                    f"no Kafka broker answers at {settings.bootstrap}: run `refinery kafka start` first"
                )
            admin.create_topics(settings, args.partitions)
            for topic in admin.describe_topics(settings):
                print(f"{topic['topic']}\tpartitions={topic['partitions']}\tcleanup.policy={topic['cleanup.policy']}")
    except (broker.BrokerError, admin.TopicError) as error:
        print(f"refinery kafka {args.action}: {error}", file=sys.stderr)
        return 1
    return 0
