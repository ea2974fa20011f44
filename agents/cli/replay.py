"""`refinery replay FILE`: run a labelled data file through the engine in-process, no broker.

Messages are observed in file order; a seeded random share of them is reviewed with the
file's labels (mode ``shuffle``), each review arriving ``--delay`` messages after its message
(reviews still pending at the end arrive then). A progress bar runs meanwhile; at the end the
rating, its factors and a per-label table are printed. It is the quickest way to see Refinery
on one's own data.

Inputs:

- JSON Lines or a JSON list of records carrying labels: ``{"id", "text" | "body",
  "subject"?, "labels": ["A", "B > C"] | [{"name": "A"}, ...], ...}`` (any other fields of a
  message, such as ``channel`` or ``metadata``, are kept);
- CSV with ``--text-column`` (default ``text``) and ``--label-column`` (default ``label``;
  several labels in one cell separated by ``--label-separator``);
- ``--dataset banking77|nlupp|enron``: the shared real data sets (``agents.ingest.datasets``).

Examples::

    refinery replay --dataset banking77 --review-share 0.3 --delay 100
    refinery replay tickets.csv --text-column body --label-column queue --label-separator ";"
    refinery replay --dataset enron --model river.naive_bayes.ComplementNB --model-params '{"alpha": 0.5}'
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path

__all__ = ["add_arguments", "run", "read_records", "replay"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="JSONL, JSON or CSV file of labelled messages")
    parser.add_argument(
        "--dataset",
        choices=("banking77", "nlupp", "enron"),
        help="replay one of the shared real data sets instead of a file",
    )
    parser.add_argument("--split", default="train", help="banking77 split (train or test)")
    parser.add_argument("--domain", default="banking", help="nlupp domain (banking or hotels)")
    parser.add_argument("--name", default=None, help="dataset name the events carry (default: from the input)")
    parser.add_argument("--text-column", default="text", help="CSV column holding the message text")
    parser.add_argument("--label-column", default="label", help="CSV column holding the label(s)")
    parser.add_argument("--label-separator", default=None, help="separator of several labels in one CSV cell")
    parser.add_argument("--review-share", type=float, default=0.2, help="share of messages reviewed (0-1)")
    parser.add_argument("--delay", type=int, default=0, help="a review arrives this many messages after its message")
    parser.add_argument("--limit", type=int, default=None, help="replay at most this many messages")
    parser.add_argument("--seed", type=int, default=0, help="seeds which messages are reviewed and the engine")
    parser.add_argument(
        "--config", default="{}", help="RefinerConfig fields as JSON, e.g. '{\"validation_window\": 2000}'"
    )
    parser.add_argument(
        "--model",
        default=None,
        help="a River classifier's import path instead of the engine's own model, "
        "e.g. river.naive_bayes.ComplementNB (RefinerConfig.model)",
    )
    parser.add_argument("--model-params", default="{}", help="its parameters as JSON, e.g. '{\"alpha\": 0.5}'")
    parser.add_argument("--labels", type=int, default=40, help="rows of the per-label table (worst first)")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (there is none when stderr is not a terminal)"
    )


def run(args: argparse.Namespace) -> int:
    from pipeline import Refiner, RefinerConfig

    if not 0.0 <= args.review_share <= 1.0:
        raise SystemExit(f"--review-share: expected a share between 0 and 1, got {args.review_share}")
    if args.delay < 0:
        raise SystemExit(f"--delay: expected a number of messages >= 0, got {args.delay}")
    if (args.file is None) == (args.dataset is None):
        raise SystemExit("replay: give either a FILE or --dataset (not both)")
    try:
        config = RefinerConfig.from_dict(
            {
                **RefinerConfig().to_dict(),
                **json.loads(args.config),
                **({"model": args.model, "model_params": json.loads(args.model_params)} if args.model else {}),
            }
        )
    except (ValueError, TypeError) as error:
        raise SystemExit(f"--config: {error}") from None
    pairs = _pairs(args)
    if args.limit is not None:
        pairs = _limited(pairs, args.limit)
    engine, count = None, 0
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
        raise SystemExit(f"replay: {error}") from None
    if engine is None:
        raise SystemExit("replay: the input holds no messages")
    print(report(engine, count, args.labels))
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


def report(engine, messages: int, label_rows: int = 40) -> str:
    """The rating, the factor table and the per-label table, as text."""
    snap = engine.metrics()
    rating = snap.rating
    lines = [
        "",
        f"dataset {snap.dataset}: {messages} messages observed, {snap.reviewed} reviewed, model version {snap.model_version}",
        f"rating {rating.score:.1f}/100  {rating.band}  ready: {'yes' if rating.ready else 'no'}",
        f"MAP {_fmt(snap.map)}   coverage {_fmt(snap.coverage)}   balance {_fmt(snap.balance.score, 1)} "
        f"(similarity {_fmt(snap.balance.similarity)}, shuffle share {_fmt(snap.balance.shuffle_share)})",
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
    key = {"banking77": args.split, "nlupp": args.domain}.get(args.dataset) if args.dataset else None
    size = _SIZES.get((args.dataset, key)) if args.dataset else None
    if size is None:
        return args.limit
    return min(size, args.limit) if args.limit is not None else size


def _pairs(args) -> Iterator:
    if args.dataset is not None:
        from agents.ingest import datasets

        kwargs = {"banking77": {"split": args.split}, "nlupp": {"domain": args.domain}, "enron": {}}[args.dataset]
        if args.name:
            kwargs["dataset"] = args.name
        return datasets.load(args.dataset, **kwargs)
    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"replay: no such file {path}")
    return _file_pairs(path, args)


def read_records(
    path: Path, text_column: str = "text", label_column: str = "label", label_separator: str | None = None
) -> Iterator[dict]:
    """The records of a JSONL, JSON or CSV file as dicts with ``text`` or ``body`` and ``labels``."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            missing = [c for c in (text_column, label_column) if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(
                    f"{path}: no column {missing[0]!r} (columns: {', '.join(reader.fieldnames or [])}); "
                    "use --text-column / --label-column"
                )
            for row in reader:
                cell = row[label_column] or ""
                labels = [l.strip() for l in cell.split(label_separator)] if label_separator else [cell.strip()]
                yield {"text": row[text_column], "labels": [l for l in labels if l]}
        return
    with path.open(encoding="utf-8") as file:
        first = file.read(1)
        while first and first.isspace():
            first = file.read(1)
        file.seek(0)
        if first == "[":
            yield from json.load(file)
            return
        for number, line in enumerate(file, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not JSON ({error.msg})") from None


def _file_pairs(path: Path, args) -> Iterator:
    from schemas import Annotation, Message

    dataset = args.name or path.stem
    for i, record in enumerate(read_records(path, args.text_column, args.label_column, args.label_separator)):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: record {i + 1}: expected an object, got {type(record).__name__}")
        fields = {k: v for k, v in record.items() if k not in ("labels", "text", "label")}
        if "body" not in fields:
            fields["body"] = record.get("text", "")
        fields.setdefault("id", f"{dataset}-{i}")
        fields["id"] = str(fields["id"])
        fields["dataset"] = dataset
        fields.setdefault("timestamp", float(i))
        labels = record.get("labels", [])
        if isinstance(labels, str):
            labels = [labels]
        names = [label if isinstance(label, str) else (label.get("name") or label.get("label")) for label in labels]
        message = Message.from_dict(fields, path=f"{path.name}[{i}]")
        annotation = Annotation(
            dataset=dataset,
            message_id=message.id,
            timestamp=message.timestamp,
            labels=tuple(_assignments(names, path, i)),
            mode="shuffle",
            annotator="replay",
        )
        yield message, annotation


def _assignments(names, path, i):
    from schemas import LabelAssignment

    seen = set()
    for j, name in enumerate(names):
        assignment = LabelAssignment.from_dict({"name": name}, path=f"{path.name}[{i}].labels[{j}]")
        if assignment.name not in seen:
            seen.add(assignment.name)
            yield assignment
