"""The command-line options several commands share, declared once (argparse).

- `add_kafka_options`: ``--bootstrap`` and ``--prefix``, for every command that talks to Kafka
  or the worker; `settings_from` turns them (and ``--web-host``/``--web-port`` of
  `add_web_options`) into `agents.settings.Settings`, over the environment (TLS and SASL come
  from the ``REFINERY_KAFKA_*`` variables only); `kafka_refusal` says in one line why the broker
  refuses this client, before a command's client would only time out.
- `add_dataset_option`: ``--dataset NAME``, the dataset the records belong to, everywhere.
- `add_bundled_options`: ``--bundled NAME`` and its loader's options, to use a bundled data set
  (`agents.ingest.datasets`) instead of files; `bundled_kwargs` gives the loader's arguments.
- `add_column_options`: which CSV column holds which field; `mapping_from` gives the
  `agents.ingest.readers.ColumnMapping`.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_kafka_options(parser)
>>> settings = settings_from(parser.parse_args(["--prefix", "t.", "--bootstrap", "kafka:9092"]), env={})
>>> settings.topic("messages"), settings.bootstrap
('t.messages', 'kafka:9092')
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from typing import Any

from agents.ingest.readers import BUNDLED

__all__ = [
    "add_bundled_options",
    "add_column_options",
    "add_dataset_option",
    "add_kafka_options",
    "add_web_options",
    "bundled_kwargs",
    "bundled_mistake",
    "kafka_refusal",
    "mapping_from",
    "settings_from",
]


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    """``--bootstrap`` and ``--prefix``: which broker, which topics."""
    group = parser.add_argument_group("Kafka")
    group.add_argument(
        "--bootstrap",
        default=None,
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (default REFINERY_KAFKA_BOOTSTRAP, else the local broker 127.0.0.1:9092)",
    )
    group.add_argument("--prefix", default=None, help="topic prefix (default REFINERY_TOPIC_PREFIX, else 'refinery.')")


def add_web_options(parser: argparse.ArgumentParser) -> None:
    """``--web-host`` and ``--web-port``: the worker's API and ``/metrics``."""
    group = parser.add_argument_group("web")
    group.add_argument(
        "--web-port", type=int, default=None, help="port of the API and /metrics (default REFINERY_WEB_PORT, else 6066)"
    )
    group.add_argument("--web-host", default=None, help="address to bind (default REFINERY_WEB_HOST, else 127.0.0.1)")


def settings_from(args: argparse.Namespace, env: Mapping[str, str] | None = None):
    """The settings of the environment (`Settings.from_env`), with the shared flags that were given
    (``--bootstrap``, ``--prefix``, ``--web-host``, ``--web-port``) on top."""
    from agents.settings import Settings

    flags = {
        "bootstrap": "external_bootstrap",
        "prefix": "topic_prefix",
        "web_host": "web_host",
        "web_port": "web_port",
    }
    changes = {field: getattr(args, flag) for flag, field in flags.items() if getattr(args, flag, None) is not None}
    try:
        settings = Settings.from_env(env)
    except ValueError as error:  # a variable's value, named by the error: one line, no traceback
        raise SystemExit(f"refinery: error: {error}") from None
    return dataclasses.replace(settings, **changes)


def kafka_refusal(settings) -> str | None:
    """Why the broker of ``settings`` refuses this client (an untrusted certificate, a refused
    SASL login, the wrong protocol), in one line; None when it accepts it or cannot be reached
    (commands report an unreachable broker their own way)."""
    from agents.kafka.security import KafkaAccessError, check_access

    try:
        check_access(settings)
    except KafkaAccessError as error:
        return str(error)
    return None


def add_dataset_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--dataset NAME``: the dataset the records belong to (``--dataset-name``, its former
    name, still works and is not listed)."""
    parser.add_argument("--dataset", dest="dataset", metavar="NAME", help=help)
    parser.add_argument("--dataset-name", dest="dataset", help=argparse.SUPPRESS)


def add_bundled_options(
    parser: argparse.ArgumentParser, names: tuple[str, ...] = BUNDLED, default: str | None = None
) -> argparse._ArgumentGroup:
    """``--bundled NAME`` and the options of its loader (split, domain, annotators)."""
    group = parser.add_argument_group("bundled data sets (from REFINERY_DATASETS)")
    group.add_argument(
        "--bundled",
        choices=names,
        default=default,
        metavar="NAME",
        help=f"use a bundled data set: {', '.join(names)}"
        + (f" (default {default})" if default else " (instead of files)"),
    )
    group.add_argument("--split", default="train", choices=("train", "test"), help="Banking77 split (default train)")
    group.add_argument(
        "--domain", default="banking", choices=("banking", "hotels"), help="NLU++ domain (default banking)"
    )
    group.add_argument(
        "--min-annotators", type=int, default=1, help="Enron: keep labels given by at least N annotators (default 1)"
    )
    return group


def bundled_kwargs(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """The loader arguments (`agents.ingest.datasets.load`) of ``--bundled`` and its options;
    ``--dataset`` renames the data set's records.

    >>> bundled_kwargs(argparse.Namespace(bundled="banking77", split="test", domain="banking", min_annotators=1, dataset=None))
    {'split': 'test'}
    """
    kwargs: dict[str, Any] = {
        "banking77": {"split": args.split},
        "nlupp": {"domain": args.domain},
        "enron": {"min_annotators": args.min_annotators},
    }[args.bundled]
    if getattr(args, "dataset", None):
        kwargs["dataset"] = args.dataset
    return {**kwargs, **extra}


def bundled_mistake(args: argparse.Namespace) -> str | None:
    """The hint for ``--dataset enron`` given to pick a bundled data set (one other than
    ``--bundled``), else None.

    >>> bundled_mistake(argparse.Namespace(dataset="enron", bundled="banking77"))
    '--dataset names the dataset the records belong to; for the bundled data set, use --bundled enron'
    """
    dataset = getattr(args, "dataset", None)
    if dataset in BUNDLED and dataset != getattr(args, "bundled", None):
        return f"--dataset names the dataset the records belong to; for the bundled data set, use --bundled {dataset}"
    return None


def add_column_options(parser: argparse.ArgumentParser) -> None:
    """Which CSV column holds which field, and how a labels cell separates names."""
    columns = parser.add_argument_group("CSV columns (default: the column named like the field, if any)")
    for field, column_help in (
        ("id", "message id (default 'id'; without one: '<file stem>-<row number>')"),
        ("timestamp", "ISO-8601 or epoch seconds"),
        ("subject", "subject"),
        ("body", "message text (default 'body', else 'text')"),
        ("from", "sender"),
        ("to", "recipients"),
        ("cc", "copied recipients"),
        ("thread", "thread id (default 'thread_id')"),
        ("channel", "email, chat, call or other"),
        ("language", "language code"),
        ("dataset", "dataset name"),
        ("label", "review labels: 'A;B > C' or a JSON list (default 'labels', else 'label')"),
    ):
        flags = [f"--{field}-column"] + (["--text-column"] if field == "body" else [])
        dest = {"from": "sender_column", "thread": "thread_column", "label": "labels_column"}.get(
            field, f"{field}_column"
        )
        columns.add_argument(*flags, dest=dest, metavar="NAME", help=column_help)
    columns.add_argument(
        "--label-separator", default=";", metavar="TEXT", help="separates several label names in one cell (default ';')"
    )


def mapping_from(args: argparse.Namespace):
    """The `ColumnMapping` of the column options."""
    from agents.ingest.readers import ColumnMapping

    fields = (
        "id",
        "timestamp",
        "subject",
        "body",
        "sender",
        "to",
        "cc",
        "thread",
        "channel",
        "language",
        "dataset",
        "labels",
    )
    return ColumnMapping(
        **{field: getattr(args, f"{field}_column") for field in fields}, label_separator=args.label_separator
    )
