"""`refinery replay FILE`: run a labelled data file through the engine in-process, no broker.

Messages are observed in a seeded shuffled order for the bundled data sets (their files are
sorted by label, which live traffic never is; ``--order file`` keeps file order) and in file
order for a FILE (``--order shuffled`` shuffles it too); a seeded random share of them (``--review-share``, half by
default) is reviewed with the file's labels (mode ``shuffle``), each review arriving ``--delay``
messages after its message (reviews still pending at the end arrive then). A progress bar runs
meanwhile; at the end the rating, its factors and a per-label table are printed, with a hint
when the run says little (nothing reviewed, no label pinned). It is the quickest way to see
Refinery on one's own data.

The file is read by the same readers as `refinery send` (`agents.ingest.readers`), as labelled
messages:

- CSV: a text column (``text`` or ``body``, else ``--text-column``) and a labels column
  (``labels`` or ``label``, else ``--label-column``; several names in one cell separated by
  ``;`` or ``--label-separator``, or a JSON list); every other column is metadata;
- JSON Lines or a JSON list of records ``{"id", "text" | "body", "subject"?, "labels": ["A",
  "B > C"] | [{"name": "A"}, ...], ...}`` (other message fields are kept), or reviews carrying
  their message inline;
- ``--bundled banking77|nlupp|enron``: the shared real data sets (``agents.ingest.datasets``).

The events carry ``--dataset NAME`` (default: the file's name without extension, or the data
set's own). Records that fail validation are skipped and counted by reason.

Examples::

    refinery replay my.csv
    refinery replay --bundled banking77 --review-share 0.3 --delay 100
    refinery replay --bundled banking77 --order file     # labels arrive one after another
    refinery replay tickets.csv --text-column body --label-column queue --label-separator "|"
    refinery replay --bundled enron --model river.naive_bayes.ComplementNB --model-params '{"alpha": 0.5}'
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from agents.cli import options

__all__ = ["ORDERS", "add_arguments", "hints", "replay", "report", "run", "shuffled"]

#: The share of messages reviewed unless ``--review-share`` says otherwise.
REVIEW_SHARE = 0.5
#: ``--order``: a seeded shuffle, or the file's own order.
ORDERS = ("shuffled", "file")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="CSV, JSONL or JSON file of labelled messages")
    parser.add_argument(
        "--format", choices=("csv", "jsonl", "json"), help="input format (default: from the file extension)"
    )
    options.add_dataset_option(
        parser, "the dataset the events carry (default: the file's name, or the bundled data set's)"
    )
    options.add_bundled_options(parser)
    options.add_column_options(parser)
    run_group = parser.add_argument_group("the replay")
    run_group.add_argument(
        "--review-share",
        type=float,
        default=REVIEW_SHARE,
        help=f"share of messages reviewed, 0-1 (default {REVIEW_SHARE})",
    )
    run_group.add_argument("--delay", type=int, default=0, help="a review arrives this many messages after its message")
    run_group.add_argument("--limit", type=int, default=None, help="replay at most this many messages")
    run_group.add_argument(
        "--order",
        choices=ORDERS,
        default=None,
        help="shuffled (seeded by --seed; the default for --bundled, whose files are sorted by label) "
        "or file (the default for a FILE)",
    )
    run_group.add_argument(
        "--seed", type=int, default=0, help="seeds the shuffle, which messages are reviewed and the engine"
    )
    run_group.add_argument(
        "--config", default="{}", help="RefinerConfig fields as JSON, e.g. '{\"validation_window\": 2000}'"
    )
    run_group.add_argument(
        "--model",
        default=None,
        help="a River classifier's import path instead of the engine's own model, "
        "e.g. river.naive_bayes.ComplementNB (RefinerConfig.model)",
    )
    run_group.add_argument("--model-params", default="{}", help="its parameters as JSON, e.g. '{\"alpha\": 0.5}'")
    run_group.add_argument("--labels", type=int, default=40, help="rows of the per-label table (worst first)")
    run_group.add_argument(
        "--no-progress", action="store_true", help="no progress bar (there is none when stderr is not a terminal)"
    )


def run(args: argparse.Namespace) -> int:
    from agents.ingest.readers import InputError
    from pipeline import Refiner, RefinerConfig

    if not 0.0 <= args.review_share <= 1.0:
        raise SystemExit(
            f"refinery replay: error: --review-share: expected a share between 0 and 1, got {args.review_share}"
        )
    if args.delay < 0:
        raise SystemExit(f"refinery replay: error: --delay: expected a number of messages >= 0, got {args.delay}")
    if args.file is None and args.bundled is None:
        hint = options.bundled_mistake(args)
        raise SystemExit(f"refinery replay: error: give a FILE or --bundled NAME{f' ({hint})' if hint else ''}")
    if args.file is not None and args.bundled is not None:
        raise SystemExit("refinery replay: error: give a FILE or --bundled NAME, not both")
    try:
        config = RefinerConfig.from_dict({**RefinerConfig().to_dict(), **json.loads(args.config)})
    except (ValueError, TypeError) as error:
        raise SystemExit(f"refinery replay: error: --config: {error}") from None
    if args.model:
        try:
            plugged = {"model": args.model, "model_params": json.loads(args.model_params)}
            config = RefinerConfig.from_dict({**config.to_dict(), **plugged})
        except (ValueError, TypeError) as error:
            raise SystemExit(f"refinery replay: error: --model/--model-params: {error}") from None
    skipped: collections.Counter = collections.Counter()
    try:
        pairs = _pairs(args, lambda number, rejected: skipped.update([rejected.group or rejected.reason]))
    except InputError as error:
        raise SystemExit(f"refinery replay: error: {error}") from None
    if (args.order or ("shuffled" if args.bundled is not None else "file")) == "shuffled":
        pairs = shuffled(pairs, args.seed)
    if args.limit is not None:
        pairs = _limited(pairs, args.limit)
    try:
        engine, count = replay(
            pairs,
            lambda dataset: Refiner(dataset, config=config, seed=args.seed),
            review_share=args.review_share,
            delay=args.delay,
            seed=args.seed,
            progress=not args.no_progress and sys.stderr.isatty(),
            total=_total(args),
        )
    except (ValueError, OSError) as error:
        raise SystemExit(f"refinery replay: error: {error}") from None
    if engine is None:
        raise SystemExit(f"refinery replay: error: the input holds no valid labelled message{_skipped(skipped, args)}")
    print(report(engine, count, args.labels))
    for line in hints(engine, count, args.review_share):
        print(f"hint: {line}")
    if skipped:
        print(_skipped(skipped, args).lstrip("; "))
    return 0


def replay(
    pairs, make_engine, *, review_share: float, delay: int, seed: int, progress: bool = True, total: int | None = None
):
    """Feed ``(Message, Annotation)`` pairs through one engine; returns ``(engine, messages)``."""
    from tqdm import tqdm

    from schemas import Annotation

    chosen = random.Random(seed)
    pending: deque = deque()  # (due after this many messages, annotation)
    engine, count = None, 0
    bar = tqdm(total=total, unit="msg", disable=not progress, desc="replay")
    for message, annotation in pairs:
        if engine is None:
            engine = make_engine(message.dataset)
        elif message.dataset != engine.dataset:
            raise ValueError(
                f"the input holds records of several datasets ({engine.dataset!r}, {message.dataset!r}, ...): "
                f"replay them one at a time"
            )
        engine.observe(message)
        count += 1
        if chosen.random() < review_share:
            review = Annotation.from_dict({**annotation.to_dict(), "mode": "shuffle", "message": message.to_dict()})
            pending.append((count + delay, review))
        while pending and pending[0][0] <= count:
            engine.annotate(pending.popleft()[1])
        bar.update(1)
        if count % 500 == 0:
            bar.set_postfix(reviewed=engine.model_version)
    while pending:
        engine.annotate(pending.popleft()[1])
    bar.close()
    return engine, count


def shuffled(pairs, seed: int) -> list:
    """The pairs in a seeded random order (the demo's): the same seed, the same order.

    >>> shuffled(range(5), 0), shuffled(range(5), 0) == shuffled(range(5), 0)
    ([2, 1, 0, 4, 3], True)
    """
    out = list(pairs)
    random.Random(seed).shuffle(out)
    return out


def report(engine, messages: int, label_rows: int = 40) -> str:
    """The rating, the factor table and the per-label table, as text."""
    snap = engine.metrics()
    rating = snap.rating
    lines = [
        "",
        f"dataset {snap.dataset}: {messages} messages observed, {snap.reviewed} reviewed, model version {snap.model_version}",
        f"rating {rating.score:.1f}/100  {rating.band}  ready: {'yes' if rating.ready else 'no'}",
        f"MAP {_fmt(snap.map)}   coverage {_fmt(snap.coverage)}   balance {_fmt(snap.balance.score, 1)} "
        f"(similarity {_fmt(snap.balance.similarity)}, shuffle share {_fmt(snap.balance.shuffle_share)}, "
        f"search share {_fmt(snap.balance.search_share)})",
        "",
        f"{'factor':24} {'score':>6}  {'band':10} metrics",
    ]
    for name, factor in rating.factors.items():
        metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in factor.metrics.items())
        lines.append(f"{name:24} {factor.score:6.1f}  {factor.band:10} {metrics}")
    header = f"{'label':36} {'prec':>6} {'recall':>6} {'f1':>6} {'AP':>6} {'thresh':>6} {'support':>7} {'pinned':>6}  warnings"
    lines += ["", header]
    ordered = sorted(
        snap.labels.items(),
        key=lambda item: (-1 if item[1].average_precision is None else item[1].average_precision, item[0]),
    )
    for name, label in ordered[:label_rows]:
        warnings = ", ".join(f"{w.code} ({w.severity}: {w.action})" for w in label.warnings)
        lines.append(
            f"{name[:36]:36} {_fmt(label.precision):>6} {_fmt(label.recall):>6} {_fmt(label.f1):>6} "
            f"{_fmt(label.average_precision):>6} {label.threshold:6.3f} {label.support:7d} {label.pinned:6d}  {warnings}"
        )
    if len(ordered) > label_rows:
        lines.append(f"... {len(ordered) - label_rows} more labels (worst average precision shown first; --labels N)")
    return "\n".join(lines)


def hints(engine, messages: int, review_share: float) -> list[str]:
    """What to change when the run says little: nothing reviewed, or no label pinned.

    >>> from pipeline import Refiner
    >>> hints(Refiner("d"), 10, 0.05)
    ['no message was reviewed (--review-share 0.05 of 10 messages chose none), so there is nothing to rate: raise --review-share (1.0 reviews every message)']
    """
    snap = engine.metrics()
    if snap.reviewed == 0:
        return [
            f"no message was reviewed (--review-share {review_share:g} of {messages} messages chose none), "
            f"so there is nothing to rate: raise --review-share (1.0 reviews every message)"
        ]
    if not snap.labels:
        return [
            f"the {snap.reviewed} reviews pin no label (every labels cell is empty?): name the labels column "
            f"with --label-column, and their separator with --label-separator"
        ]
    return []


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _limited(pairs, limit: int):
    for i, pair in enumerate(pairs):
        if i >= limit:
            return
        yield pair


_SIZES = {
    ("banking77", "train"): 10_003,
    ("banking77", "test"): 3_080,
    ("nlupp", "banking"): 2_071,
    ("nlupp", "hotels"): 1_009,
    ("enron", None): 1_702,
}


def _total(args) -> int | None:
    """Messages the progress bar expects (known for the shared data sets)."""
    key = {"banking77": args.split, "nlupp": args.domain}.get(args.bundled) if args.bundled else None
    size = _SIZES.get((args.bundled, key)) if args.bundled else None
    if size is None:
        return args.limit
    return min(size, args.limit) if args.limit is not None else size


def _pairs(args, rejected) -> Iterator:
    if args.bundled is not None:
        from agents.ingest import datasets

        return datasets.load(args.bundled, **options.bundled_kwargs(args))
    from agents.ingest.readers import (
        ColumnMapping,
        Defaults,
        InputError,
        csv_header,
        file_format,
        labelled_pairs,
        read_records,
        require_file,
    )

    path = require_file(args.file)
    fmt = file_format(path, args.format)
    mapping = options.mapping_from(args)
    if fmt == "csv" and not {"body", "subject"} & set(mapping.resolve(csv_header(path))):
        raise InputError(
            f"{path}: no message text: name its column with {ColumnMapping.flag('body')} "
            f"(the header has: {', '.join(csv_header(path))})"
        )
    # A file's labelled messages without a time all get 0: the replay's order is the file's.
    defaults = Defaults(dataset=args.dataset or path.stem, timestamp=0.0)
    return labelled_pairs(read_records(path, mapping, "annotations", defaults, fmt), rejected)


def _skipped(skipped: collections.Counter, args) -> str:
    """The line about the records skipped as invalid, by reason ('' when none were)."""
    if not skipped:
        return ""
    reasons = "; ".join(f"{count} x {group}" for group, count in skipped.most_common(3))
    more = f"; and {len(skipped) - 3} other reasons" if len(skipped) > 3 else ""
    dataset = args.dataset or Path(args.file).stem
    return (
        f"; skipped {sum(skipped.values())} invalid records: {reasons}{more} "
        f"(`refinery send {args.file} --dataset {dataset} --dry-run` writes each one to a rejects file)"
    )
