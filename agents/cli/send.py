"""`refinery send`: validate messages and reviews from files (or a bundled data set) and send
them to Kafka.

The readers (`agents.ingest.readers`) parse and validate, the sender (`agents.ingest.sender`)
sends and writes the rejects file; this module turns the command line into their arguments and
prints one summary per input. See docs/ingest.md.

Examples::

    refinery send my.csv --dataset support          # a CSV of text and labels: messages and their reviews
    refinery send events.jsonl                      # records that name their dataset
    refinery send --bundled banking77 --kind both   # a bundled data set
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

from agents.cli import options

__all__ = ["add_arguments", "run"]

# The reject groups of a record that names no dataset (schemas' wording).
_NO_DATASET = ("message.dataset: expected a value", "annotation.dataset: expected a value")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("what to send")
    source.add_argument(
        "files", nargs="*", type=Path, metavar="FILE", help="CSV, JSONL or JSON (a list, or one object) files"
    )
    options.add_dataset_option(
        source,
        "the dataset of records that name none (needed for a CSV file without a dataset "
        "column); with --bundled, renames the data set",
    )
    source.add_argument(
        "--kind",
        choices=("messages", "annotations", "both"),
        help="what to send of each record: the message, its review, or both (default: guessed; a CSV "
        "file with text and labels columns gives both, JSON records with message_id are reviews; "
        "--bundled sends messages)",
    )
    source.add_argument(
        "--format", choices=("csv", "jsonl", "json"), help="input format (default: from the file extension)"
    )
    source.add_argument(
        "--limit", type=int, help="stop after the first N records of each file (with --bundled: N items)"
    )
    options.add_bundled_options(parser)
    options.add_column_options(parser)

    fill = parser.add_argument_group("defaults for fields a record leaves out")
    fill.add_argument(
        "--channel", choices=("email", "chat", "call", "other"), help="channel of messages that name none"
    )
    fill.add_argument("--mode", help="mode of reviews that name none (with --bundled: default 'label')")
    fill.add_argument("--annotator", help="annotator of reviews that name none")

    options.add_kafka_options(parser)
    out = parser.add_argument_group("where to")
    out.add_argument(
        "--topic", help="send every record to this topic (default: <prefix>messages / <prefix>annotations)"
    )
    out.add_argument(
        "--rejects",
        type=Path,
        help="rejects file (default: <input>.rejects.jsonl, or <name>.rejects.jsonl with --bundled)",
    )
    out.add_argument(
        "--max-body-bytes", type=int, help="largest accepted body in UTF-8 bytes (default: REFINERY_MAX_BODY_BYTES)"
    )
    out.add_argument("--dry-run", action="store_true", help="validate only; send nothing")
    out.add_argument("--strict", action="store_true", help="exit 1 when any record is rejected")
    out.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from agents.ingest.readers import KINDS, InputError
    from agents.ingest.sender import describe, make_producer, send_records

    settings = options.settings_from(args)
    if not args.files and not args.bundled:
        hint = options.bundled_mistake(args)
        return _usage_error(f"give input files or --bundled NAME{f' ({hint})' if hint else ''}")
    if args.files and args.bundled:
        return _usage_error("give input files or --bundled NAME, not both")
    if args.rejects and len(args.files) > 1:
        return _usage_error(
            "--rejects names the rejects file of one input; with several, each gets <input>.rejects.jsonl"
        )
    max_body = args.max_body_bytes or settings.max_body_bytes
    try:
        runs = list(_bundled_run(args, max_body) if args.bundled else _file_runs(args, max_body))
    except (InputError, FileNotFoundError) as error:
        return _usage_error(str(error))

    topics = {name: args.topic or settings.topic(name) for name in KINDS if name != "both"}
    from kafka.errors import KafkaError

    producer = None
    failed = rejected = 0
    try:
        refusal = None if args.dry_run else options.kafka_refusal(settings)
        if refusal:
            print(f"refinery send: error: {refusal}", file=sys.stderr)
            return 1
        producer = None if args.dry_run else make_producer(settings)
        for records, total, unit, rejects_path, notes in runs:
            summary = send_records(
                records,
                topics,
                producer=producer,
                dry_run=args.dry_run,
                rejects_path=rejects_path,
                unit=unit,
                progress=not args.quiet and sys.stderr.isatty(),
                total=total,
            )
            summary.notes.extend(notes)
            if any(group.startswith(_NO_DATASET) for group in summary.rejected):
                summary.notes.append("some records name no dataset: name it with --dataset NAME")
            print(summary.render())
            failed += summary.total_failed
            rejected += summary.total_rejected
    except KafkaError as error:  # the broker cannot be reached, most often
        print(
            f"refinery send: error: Kafka at {settings.bootstrap}: {describe(error)} (is the broker running? "
            f"`refinery kafka start`, or name another with --bootstrap)",
            file=sys.stderr,
        )
        return 1
    finally:
        if producer is not None:
            producer.close(timeout=10)
    return 1 if failed or (args.strict and rejected) else 0


def _usage_error(message: str) -> int:
    print(f"refinery send: error: {message}", file=sys.stderr)
    return 2


def _first(records: Iterable[tuple[int, Any]], limit: int | None) -> Iterator[tuple[int, Any]]:
    """The records of the first ``limit`` positions (a labelled message sent as both is one)."""
    positions, last = 0, None
    for number, record in records:
        if number != last:
            positions, last = positions + 1, number
        if limit is not None and positions > limit:
            return
        yield number, record


def _bundled_run(args: argparse.Namespace, max_body: int) -> Iterator[tuple]:
    """(records, total, unit, rejects path, notes) of a bundled data set."""
    from agents.ingest import datasets
    from agents.ingest.readers import pair_records

    kind = args.kind or "messages"
    # Loaded whole (a few seconds at most) so that the progress bar knows the total;
    # validation and sending stream, and are what the summary times.
    pairs = list(datasets.load(args.bundled, **options.bundled_kwargs(args, mode=args.mode or "label")))[: args.limit]
    records = pair_records(pairs, kind, max_body)
    total = len(pairs) * (2 if kind == "both" else 1)
    yield records, total, "item", args.rejects or Path(f"{args.bundled}.rejects.jsonl"), []


def _file_runs(args: argparse.Namespace, max_body: int) -> Iterator[tuple]:
    """(records, total, unit, rejects path, notes) of every input file; each is opened (and
    refused if unreadable) before anything is sent."""
    from datetime import datetime

    from agents.ingest.readers import UNITS, Defaults, csv_header, file_format, read_records, require_file

    started = round(time.time())
    mapping = options.mapping_from(args)
    for path in args.files:
        fmt = file_format(require_file(path), args.format)
        # CSV rows without a timestamp column carry the run's start; JSON records carry their own.
        defaults = Defaults(
            dataset=args.dataset,
            channel=args.channel,
            mode=args.mode,
            annotator=args.annotator,
            timestamp=float(started) if fmt == "csv" else None,
            max_body_bytes=max_body,
        )
        records = read_records(path, mapping, args.kind, defaults, fmt)
        notes = []
        if fmt == "csv" and "timestamp" not in mapping.resolve(csv_header(path)):
            moment = datetime.fromtimestamp(started, UTC).isoformat().replace("+00:00", "Z")
            notes.append(f"{path} has no timestamp column: its records carry this run's start time, {moment}")
        rejects_path = args.rejects or path.with_name(path.name + ".rejects.jsonl")
        yield _first(records, args.limit), None, UNITS[fmt], rejects_path, notes
