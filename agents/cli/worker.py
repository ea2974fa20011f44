"""`refinery worker`: run one streaming worker (Faust) until Ctrl-C or SIGTERM.

Start as many as you like with the same topic prefix: they form one consumer group and share
the ``events`` partitions, each dataset owned by exactly one of them (docs/service.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--web-port", type=int, default=None, help="port of the API and /metrics (default REFINERY_WEB_PORT, else 6066)"
    )
    parser.add_argument("--web-host", default=None, help="address to bind (default REFINERY_WEB_HOST, else 127.0.0.1)")
    parser.add_argument(
        "--loglevel",
        "-l",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log level (default info)",
    )
    parser.add_argument("--logfile", "-f", default=None, help="log to this file instead of stderr")
    parser.add_argument("--prefix", default=None, help="topic prefix (default REFINERY_TOPIC_PREFIX, else 'refinery.')")
    parser.add_argument(
        "--bootstrap",
        default=None,
        help="Kafka bootstrap servers (default REFINERY_KAFKA_BOOTSTRAP, else the local broker)",
    )
    parser.add_argument(
        "--group", default=None, help="consumer group / Faust app id (default REFINERY_GROUP, else '<prefix>worker')"
    )
    parser.add_argument("--data-dir", default=None, help="Faust's data directory (default REFINERY_DATA_DIR)")


def run(args: argparse.Namespace) -> int:
    import faust

    from agents.settings import Settings
    from agents.worker.app import WorkerOptions, create_app

    settings = Settings.from_env()
    changes = {}
    if args.web_port is not None:
        changes["web_port"] = args.web_port
    if args.web_host is not None:
        changes["web_host"] = args.web_host
    if args.prefix is not None:
        changes["topic_prefix"] = args.prefix
    if args.bootstrap is not None:
        changes["external_bootstrap"] = args.bootstrap
    settings = dataclasses.replace(settings, **changes)
    options = WorkerOptions.from_env()
    if args.group or args.data_dir:
        options = dataclasses.replace(
            options,
            group=args.group or options.group,
            data_dir=args.data_dir and os.path.abspath(args.data_dir) or options.data_dir,
        )
    app = create_app(settings, options)
    worker = faust.Worker(app, loglevel=args.loglevel.upper(), logfile=args.logfile, quiet=True)
    logging.getLogger("refinery").setLevel(args.loglevel.upper())
    # The recovery reader assigns partitions often; aiokafka announces each at INFO.
    logging.getLogger("aiokafka.consumer.subscription_state").setLevel(logging.WARNING)
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0
