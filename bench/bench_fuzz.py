"""Fuzz run of the streaming worker on the local broker: 10,000 mutated records and more.

Hostile records (``tests/worker/fuzz.py``: valid Banking77 messages and reviews after one
mutation, a value of another type anywhere, a field dropped or unknown, a key duplicated, bytes
truncated, flipped or made invalid UTF-8; random bytes; nesting hundreds to thousands deep;
numbers far beyond 64 bits and ``1e999``; invalid UTF-8 inside a string; empty values,
tombstones, valid records under a wrong key) mixed with valid messages (one after every 4th
hostile record) and their reviews, all produced as raw bytes to ``messages`` and
``annotations`` of a fresh topic prefix, with one ``refinery worker`` subprocess consuming.

Reported: records by kind, how each ended (dead-lettered by category, forwarded to ``events``),
lost records (must be 0), valid messages without a prediction (must be 0), forwarded messages
with neither a prediction nor a processing dead letter (must be 0), whether the published
metrics equal an engine fed the ``events`` log in a plain loop, the worker's liveness and
readiness at the end, its CPU-seconds and peak RSS, and the time from the first send until
everything was accounted for. Exit status 1 on any FAIL.

The worker is stopped with SIGTERM (by pid) and the prefix's topics are deleted.

Run: ``.venv/bin/python bench/bench_fuzz.py [--records 10000] [--seed 13]`` (with the broker on
``REFINERY_KAFKA_BOOTSTRAP``, default 127.0.0.1:9092)
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from agents.ingest.datasets import banking77  # noqa: E402
from agents.kafka import admin  # noqa: E402
from agents.settings import Settings  # noqa: E402
from tests.conftest import TEST_PARTITIONS  # noqa: E402
from tests.worker.fuzz import account, fuzz_records, valid_message_ids  # noqa: E402
from tests.worker.test_fuzz import produce  # noqa: E402
from tests.worker.test_worker_kafka import Worker, _read_all, _settle  # noqa: E402


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks (100 Hz)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _read_in(worker: Worker, topics: tuple[str, ...]) -> int:
    """Input records the worker has read (``refinery_events_in_total`` of ``topics``)."""
    text = worker.get("/metrics")[1].decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("refinery_events_in_total{") and any(f'topic="{t}"' in line for t in topics):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000, help="hostile records (valid ones come on top)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    settings = dataclasses.replace(
        Settings.from_env(), topic_prefix=f"fuzz{uuid.uuid4().hex[:8]}.", partitions=TEST_PARTITIONS
    )
    pairs = list(itertools.islice(banking77(), args.records // 4 + 50))
    records = fuzz_records(pairs, args.records, seed=args.seed)
    valid_ids = valid_message_ids(records)
    kinds = collections.Counter(r.kind for r in records)
    print(f"records: {len(records)} ({args.records} hostile, {kinds['valid']} valid)")
    print("  by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))

    admin.create_topics(settings)
    workdir = Path(tempfile.mkdtemp(prefix="bench-fuzz-"))
    worker = Worker(settings, workdir / "worker.log").start()
    failures = []
    try:
        worker.wait_ready(timeout=120)
        started = time.monotonic()
        sent = produce(settings, records)
        produced = time.monotonic() - started
        inputs = (settings.topic("messages"), settings.topic("annotations"))
        while time.monotonic() - started < args.timeout and worker.alive():  # cheap: the worker's counter
            if _read_in(worker, inputs) >= len(records):
                break
            time.sleep(0.5)
        consumed = time.monotonic() - started
        tally = None
        while time.monotonic() - started < args.timeout:
            if not worker.alive():
                failures.append("the worker died")
                break
            tally = account(
                sent,
                valid_ids,
                [(p, o, v) for p, o, _, v in _read_all(settings, "events")],
                [v for *_, v in _read_all(settings, "deadletter")],
                [v for *_, v in _read_all(settings, "predictions")],
                settings.topic("events"),
            )
            if not tally.lost and not tally.unpredicted and not tally.unprocessed_events:
                break
            time.sleep(2)
        accounted = time.monotonic() - started
        assert tally is not None
        print(
            f"produced in {produced:.1f} s; the worker had read every input record after {consumed:.1f} s; "
            f"every record accounted for (this script re-reading the topics) after {accounted:.1f} s"
        )
        print(
            f"dead-lettered: {tally.dead_lettered} ("
            + ", ".join(f"{k} {n}" for k, n in sorted(tally.by_error.items()))
            + ")"
        )
        for error, reason in sorted(tally.examples.items()):
            print(f"  e.g. {error}: {reason[:160]}")
        print(f"forwarded to events: {tally.forwarded}")
        print(
            f"lost: {len(tally.lost)}; valid messages unpredicted: {len(tally.unpredicted)}; "
            f"forwarded messages unprocessed: {tally.unprocessed_events}"
        )
        if tally.lost or tally.unpredicted or tally.unprocessed_events:
            failures.append(f"records not accounted for: {tally.lost[:5]} {tally.unpredicted[:5]}")
        try:
            _settle(settings, tally.forwarded, worker, timeout=180)
            print("published metrics equal an engine fed the events log: PASS")
        except AssertionError as error:
            failures.append(f"metrics: {error}")
        alive = worker.alive()
        health = worker.get("/healthz")[0] if alive else None
        ready_status, ready_body = worker.get("/readyz") if alive else (None, b"{}")
        ready = ready_status == 200 and orjson.loads(ready_body)["ready"]
        print(f"worker alive: {alive}, /healthz {health}, /readyz {ready_status} (ready={ready})")
        if not (alive and health == 200 and ready):
            failures.append("worker not live and ready")
        if alive:
            print(
                f"worker CPU: {_cpu_seconds(worker.process.pid):.1f} s; peak RSS {_peak_rss_mb(worker.process.pid):.0f} MB"
            )
    finally:
        worker.kill(signal.SIGTERM)
        try:
            admin.delete_topics(settings)
        except Exception:
            pass
    for failure in failures:
        print("FAIL:", failure)
    print("PASS" if not failures else f"FAIL ({len(failures)}); worker log: {worker.log_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
