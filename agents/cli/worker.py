"""`refinery worker`: run one streaming worker (Faust) until Ctrl-C or SIGTERM.

Start as many as you like with the same topic prefix: they form one consumer group and share
the ``events`` partitions, each dataset owned by exactly one of them (docs/service.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from agents.cli import options

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loglevel",
        "-l",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log level (default info)",
    )
    parser.add_argument("--logfile", "-f", default=None, help="log to this file instead of stderr")
    parser.add_argument(
        "--group", default=None, help="consumer group / Faust app id (default REFINERY_GROUP, else '<prefix>worker')"
    )
    parser.add_argument("--data-dir", default=None, help="Faust's data directory (default REFINERY_DATA_DIR)")
    parser.add_argument(
        "--role",
        default=None,
        choices=("all", "sequencer", "engine"),  # agents.worker.options.ROLES (too heavy to import here)
        help="the agents this worker runs: both (all), the sequencer alone, or the engines alone "
        "(default REFINERY_WORKER_ROLE, else all; docs/service.md, Roles)",
    )
    options.add_kafka_options(parser)
    options.add_web_options(parser)


def run(args: argparse.Namespace) -> int:
    settings = options.settings_from(args)
    # Faust's clients would retry a refused login or an untrusted certificate forever, quietly.
    refusal = options.kafka_refusal(settings)
    if refusal:
        print(f"refinery worker: error: {refusal}", file=sys.stderr)
        return 1

    import faust

    from agents.worker.app import WorkerOptions, create_app
    from agents.worker.heap import freeze_startup
    from agents.worker.sizes import check_start

    worker_options = WorkerOptions.from_env()
    if args.group or args.data_dir or args.role:
        worker_options = dataclasses.replace(
            worker_options,
            group=args.group or worker_options.group,
            data_dir=args.data_dir and os.path.abspath(args.data_dir) or worker_options.data_dir,
            role=args.role or worker_options.role,
        )
    check_start(settings, worker_options)  # settings in range, sizes that add up, the snapshot key
    _check_broker(settings)
    app = create_app(settings, worker_options)
    worker = faust.Worker(app, loglevel=args.loglevel.upper(), logfile=args.logfile, quiet=True)
    logging.getLogger("refinery").setLevel(args.loglevel.upper())
    # The recovery reader assigns partitions often; aiokafka announces each at INFO.
    logging.getLogger("aiokafka.consumer.subscription_state").setLevel(logging.WARNING)
    # Everything alive now lives as long as the worker: later collections skip it (a full
    # collection walked it all, 100-130 ms with the loop and the engine stopped: agents.worker.heap)
    freeze_startup()
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0


def _check_broker(settings) -> None:
    """Refuse to start when the broker would refuse records the worker may send (issue 13)."""
    from agents.settings import SettingError
    from agents.worker.sizes import broker_max_message_bytes, check_broker

    try:
        sizes = broker_max_message_bytes(settings)
    except Exception as error:  # not reachable yet: the worker waits for it; records are checked as sent
        logging.getLogger("refinery.worker").warning("broker limits not checked: %r", error)
        return
    problems = check_broker(settings, sizes)
    if problems:
        raise SettingError.line(problems[0])
