"""`refinery status DATASET`: the dataset's rating, its four factors and a per-label table.

Read from the worker's API (``--url``, default ``http://REFINERY_WEB_HOST:REFINERY_WEB_PORT``);
when no worker there owns the dataset, from the latest record of the ``metrics`` topic.

>>> from schemas import Balance, Factor, LabelMetrics, MetricsSnapshot, Rating
>>> snapshot = MetricsSnapshot(dataset="support", timestamp=0, model_version=12, reviewed=12,
...     labels={"Card": LabelMetrics(precision=0.9, recall=0.75, f1=0.818, average_precision=0.88,
...                                  threshold=0.41, support=8, pinned=12)},
...     map=0.88, coverage=0.6, balance=Balance(score=70.0, similarity=0.9, shuffle_share=0.2),
...     rating=Rating(score=72.5, band="Good", ready=False,
...                   factors={"coverage": Factor(score=60.0, band="Average")}))
>>> print(render(snapshot))
support: rating 72.5 (Good), not ready; 12 reviewed, model version 12
  coverage 60.0%  MAP 0.880  balance 70.0
factor    score  band
coverage   60.0  Average
label  precision  recall     AP  threshold  support  pinned  warnings
Card       0.900   0.750  0.880      0.410        8      12
"""

from __future__ import annotations

import argparse
import sys

from agents.cli import options
from schemas import MetricsSnapshot

__all__ = ["add_arguments", "fetch", "render", "run"]


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]], left: tuple[int, ...] = (0,)) -> list[str]:
    """Text columns (indexes in ``left``) left-aligned, numbers right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) if i in left else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return lines


def render(snapshot: MetricsSnapshot) -> str:
    """The terminal view of one metrics snapshot."""
    r = snapshot.rating
    coverage = "-" if snapshot.coverage is None else f"{100 * snapshot.coverage:.1f}%"
    lines = [
        f"{snapshot.dataset}: rating {r.score:.1f} ({r.band}), {'ready' if r.ready else 'not ready'}; "
        f"{snapshot.reviewed} reviewed, model version {snapshot.model_version}",
        f"  coverage {coverage}  MAP {_num(snapshot.map)}  balance {_num(snapshot.balance.score, 1)}",
    ]
    lines += _table(
        ["factor", "score", "band"], [[name, f"{f.score:.1f}", f.band] for name, f in r.factors.items()], left=(0, 2)
    )
    rows = []
    for name, m in sorted(snapshot.labels.items()):
        warnings = ", ".join(f"{w.severity}:{w.code}" for w in m.warnings)
        rows.append(
            [
                name,
                _num(m.precision),
                _num(m.recall),
                _num(m.average_precision),
                _num(m.threshold),
                str(m.support),
                str(m.pinned),
                warnings,
            ]
        )
    table = _table(
        ["label", "precision", "recall", "AP", "threshold", "support", "pinned", "warnings"], rows, left=(0, 7)
    )
    lines += [line.rstrip() for line in table]
    for action in snapshot.actions:
        lines.append(f"next: {action.kind}{f' ({action.label})' if action.label else ''}: {action.why}")
    return "\n".join(lines)


def fetch(dataset: str, url: str, token: str | None, timeout: float = 10.0) -> MetricsSnapshot | None:
    """The dataset's metrics from a worker's API; None if that worker is unreachable or does not own it."""
    import urllib.error
    import urllib.parse
    import urllib.request

    import orjson

    request = urllib.request.Request(
        f"{url.rstrip('/')}/datasets/{urllib.parse.quote(dataset, safe='')}/metrics",
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return MetricsSnapshot.from_dict(orjson.loads(response.read()))
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise
    except urllib.error.URLError:
        return None


def _from_topic(settings, dataset: str, scan: int = 2000) -> MetricsSnapshot | None:
    from kafka import KafkaConsumer, TopicPartition

    from agents.worker.sequencer import owner_partition

    topic = settings.topic("metrics")
    from agents.kafka.security import kafka_python_kwargs

    consumer = KafkaConsumer(**kafka_python_kwargs(settings), group_id=None, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return None
        tp = TopicPartition(topic, owner_partition(dataset, len(partitions)))
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        consumer.seek(tp, max(0, end - scan))
        latest = None
        while consumer.position(tp) < end:
            for record in consumer.poll(timeout_ms=1000).get(tp, []):
                if record.key == dataset.encode("utf-8"):
                    latest = record.value
        return None if latest is None else MetricsSnapshot.decode(latest)
    finally:
        consumer.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="the dataset's name")
    parser.add_argument(
        "--url", default=None, help="a worker's API (default http://REFINERY_WEB_HOST:REFINERY_WEB_PORT)"
    )
    parser.add_argument("--json", action="store_true", help="print the MetricsSnapshot as JSON instead of tables")
    options.add_kafka_options(parser)  # for the metrics-topic fallback


def run(args: argparse.Namespace) -> int:
    import orjson

    settings = options.settings_from(args)
    url = args.url or f"http://{settings.web_host}:{settings.web_port}"
    snapshot = fetch(args.dataset, url, settings.api_token)
    if snapshot is None:
        refusal = options.kafka_refusal(settings)
        if refusal:
            print(f"refinery status: error: no metrics at {url}, and {refusal}", file=sys.stderr)
            return 1
        snapshot = _from_topic(settings, args.dataset)
    if snapshot is None:
        print(
            f"refinery status: no metrics for dataset {args.dataset!r} at {url} nor on {settings.topic('metrics')} "
            f"(is a worker running, and has it seen a review? --url names its API, --prefix its topics)",
            file=sys.stderr,
        )
        return 1
    print(orjson.dumps(snapshot.to_dict(), option=orjson.OPT_INDENT_2).decode() if args.json else render(snapshot))
    return 0
