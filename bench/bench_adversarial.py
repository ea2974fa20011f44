"""An adversary tries to grow a worker; its memory stays within the budget computed from the caps.

One ``refinery worker`` subprocess on topics of a fresh prefix (``--partitions``, default 2),
with memory caps small enough for this machine (``--labels`` per dataset, ``--datasets`` per
partition) and the default feature bits (17: a label costs a 512 KiB weight column). The
budget is `agents.worker.sizes.MemoryBudget` for exactly these settings (docs/service.md,
*Memory budget*). The adversary then sends, phase by phase, through the ordinary input topics:

1. **labels**: to every dataset it can open, reviews pinning 45 new labels each (within the
   per-review cap) until far past the dataset's label cap, and one review pinning 1,000 labels;
2. **datasets**: ``--new-datasets`` messages, each of a dataset never seen;
3. **metadata**: messages with the most metadata the contract allows, and some with more, and
   messages with a subject and body at the size limits, of distinct words;
4. **ids**: ``--reviews`` reviews of distinct messages with the longest ids allowed, each with
   its message inline (5,000 characters of distinct words: the most features a message keeps),
   and as many live messages, filling every window and the reviewed-message registry.

After each phase (once the worker has consumed everything sent): the worker's RSS (``VmRSS``)
and peak (``VmHWM``) from ``/proc/<pid>/status``, and the dead letters by error. PASS when the
peak stays within the budget and the worker is alive and ready at the end.

Run: ``.venv/bin/python bench/bench_adversarial.py [--labels 100] [--datasets 3] [--partitions 2]
[--new-datasets 5000] [--reviews 1000] [--window 300] [--big 6]`` (about 15 min on the loaded
shared machine).
The local broker must be running; the prefix's topics are deleted at the end.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson  # noqa: E402
from bench_service import _free_port, stop_process  # noqa: E402

from agents.kafka import admin  # noqa: E402
from agents.settings import PROJECT_ROOT, Settings  # noqa: E402
from agents.worker.sequencer import owner_partition  # noqa: E402
from agents.worker.sizes import MemoryBudget  # noqa: E402
from schemas import DeadLetter  # noqa: E402

MB = 2**20


class Worker:
    """One ``refinery worker`` subprocess with the given environment."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = _free_port()
        self.log_path = workdir / "worker.log"
        full = {k: v for k, v in os.environ.items() if not k.startswith("REFINERY_")}
        full.update(env, PYTHONPATH=str(PROJECT_ROOT), REFINERY_WEB_PORT=str(self.port))
        full["REFINERY_DATA_DIR"] = str(workdir / "data")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agents.cli", "worker", "--loglevel", "warning"],
                env=full,
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str, timeout: float = 10.0):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
            return orjson.loads(response.read())

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited; see {self.log_path}")
            try:
                if self.get("/readyz", timeout=1.0)["assigned"]:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"worker not ready after {timeout} s")

    def memory(self) -> tuple[float, float]:
        """``(VmRSS, VmHWM)`` in MB."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def stop(self) -> None:
        stop_process(self.process)


def _end_offsets(settings: Settings, name: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None)
    try:
        tps = [TopicPartition(settings.topic(name), p) for p in range(settings.partitions)]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def _committed(settings: Settings, group: str, name: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(settings.topic(name), p) for p in range(settings.partitions)]
        return sum(consumer.committed(tp) or 0 for tp in tps)
    finally:
        consumer.close()


def _wait_consumed(settings: Settings, worker: Worker, timeout: float = 900.0) -> None:
    """Until the worker's group has committed every input record and every ``events`` record."""
    group = f"{settings.topic_prefix}worker"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker exited; see {worker.log_path}")
        done = all(
            _committed(settings, group, name) >= _end_offsets(settings, name)
            for name in ("messages", "annotations", "events")
        )
        if done:
            return
        time.sleep(2)
    raise RuntimeError("the worker did not consume everything in time")


def _dead_letters(settings: Settings) -> collections.Counter:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False)
    counts: collections.Counter = collections.Counter()
    try:
        tps = [TopicPartition(settings.topic("deadletter"), p) for p in range(settings.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    dead = DeadLetter.decode(record.value)
                    cap = next(
                        (
                            w
                            for w in dead.reason.replace("=", " ").replace("(", " ").split()
                            if w.startswith("REFINERY_")
                        ),
                        "",
                    )
                    counts[f"{dead.error} {cap}".strip()] += 1
    finally:
        consumer.close()
    return counts


_VOCABULARY: list[str] = []


def _words(rng: random.Random, chars: int) -> str:
    """Distinct random words (a stretch of a shuffled vocabulary): the most features a text of
    this length can give."""
    if not _VOCABULARY:
        maker = random.Random(1)
        seen = set()
        while len(seen) < 250_000:
            seen.add("".join(maker.choices("abcdefghijklmnopqrstuvwxyz", k=maker.randint(4, 9))))
        _VOCABULARY.extend(sorted(seen))
        maker.shuffle(_VOCABULARY)
    count = chars // 5 + 1
    start = rng.randrange(len(_VOCABULARY))
    words = _VOCABULARY[start : start + count]
    while len(words) < count:  # wrap around
        words += _VOCABULARY[: count - len(words)]
    return " ".join(words)[:chars]


def _datasets_per_partition(partitions: int, per_partition: int, prefix: str) -> list[str]:
    """Dataset names filling every partition's slots exactly."""
    slots = collections.Counter()
    names = []
    for i in itertools.count():
        name = f"{prefix}{i}"
        p = owner_partition(name, partitions)
        if slots[p] < per_partition:
            slots[p] += 1
            names.append(name)
        if len(names) == partitions * per_partition:
            return names
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, default=100, help="REFINERY_MAX_LABELS_PER_DATASET")
    parser.add_argument("--datasets", type=int, default=3, help="REFINERY_MAX_DATASETS_PER_PARTITION")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--new-datasets", type=int, default=5000)
    parser.add_argument("--reviews", type=int, default=1000, help="distinct reviewed ids per dataset (max_reviewed)")
    parser.add_argument("--window", type=int, default=300, help="validation_window and live_window")
    parser.add_argument("--big", type=int, default=6, help="bodies and subjects at the size limits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    engine = {"validation_window": args.window, "live_window": args.window, "max_reviewed": args.reviews}
    settings = Settings.from_env(
        {
            "REFINERY_KAFKA_BOOTSTRAP": os.environ.get("REFINERY_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            "REFINERY_TOPIC_PREFIX": f"adv{uuid.uuid4().hex[:8]}.",
            "REFINERY_PARTITIONS": str(args.partitions),
            "REFINERY_MAX_LABELS_PER_DATASET": str(args.labels),
            "REFINERY_MAX_DATASETS_PER_PARTITION": str(args.datasets),
        }
    )
    budget = MemoryBudget.of(settings, engine, partitions=args.partitions)
    print(
        f"caps: {args.labels} labels per dataset, {args.datasets} datasets x {args.partitions} partitions, "
        f"feature_bits 17, windows {args.window}, max_reviewed {args.reviews}; ids up to {settings.max_id_chars} chars"
    )
    print(
        f"budget: {budget.per_dataset / MB:.0f} MB per dataset x {budget.datasets} + {budget.base / MB:.0f} MB "
        f"= {budget.total / MB:.0f} MB"
    )
    admin.create_topics(settings)
    env = {
        "REFINERY_KAFKA_BOOTSTRAP": settings.bootstrap,
        "REFINERY_TOPIC_PREFIX": settings.topic_prefix,
        "REFINERY_PARTITIONS": str(args.partitions),
        "REFINERY_MAX_LABELS_PER_DATASET": str(args.labels),
        "REFINERY_MAX_DATASETS_PER_PARTITION": str(args.datasets),
        "REFINERY_ENGINE_CONFIG": orjson.dumps(engine).decode(),
        "REFINERY_SNAPSHOT_EVERY": "5000",
    }
    rng = random.Random(args.seed)
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=20, max_request_size=2 * MB)
    messages, annotations = settings.topic("messages"), settings.topic("annotations")
    datasets = _datasets_per_partition(args.partitions, args.datasets, "victim-")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-adversarial-") as tmp:
        worker = Worker(env, Path(tmp))
        try:
            worker.wait_ready()
            rss, peak = worker.memory()
            rows.append(("ready", 0, rss, peak))

            def send(topic: str, dataset: str, record: dict) -> None:
                producer.send(topic, key=dataset.encode(), value=orjson.dumps(record))

            def review(dataset: str, message_id: str, labels: list[str], body: str, t: float) -> dict:
                message = {"dataset": dataset, "id": message_id, "timestamp": t, "body": body}
                return {
                    "dataset": dataset,
                    "message_id": message_id,
                    "timestamp": t,
                    "labels": [{"name": n} for n in labels],
                    "message": message,
                }

            def phase(name: str, sent: int) -> None:
                producer.flush()
                _wait_consumed(settings, worker)
                rss, peak = worker.memory()
                rows.append((name, sent, rss, peak))
                print(f"  {name}: {sent} records, RSS {rss:.0f} MB, peak {peak:.0f} MB", flush=True)

            # 1. labels
            sent = 0
            for d in datasets:
                for r in range(2 * args.labels // 45 + 2):
                    labels = [f"L{r}-{i} > x{i % 3}" for i in range(22)] + [f"M{r}-{i}" for i in range(1)]
                    send(annotations, d, review(d, f"lab-{r}", labels, "label flood", float(r)))
                    sent += 1
                send(annotations, d, review(d, "thousand", [f"K{i}" for i in range(1000)], "flood", 0.0))
                sent += 1
            phase("labels", sent)

            # 2. datasets
            for i in range(args.new_datasets):
                name = f"intruder-{i}"
                send(messages, name, {"dataset": name, "id": "m", "timestamp": 0, "body": "hello"})
            phase("datasets", args.new_datasets)

            # 3. metadata and sizes
            sent = 0
            limit = settings.max_metadata_bytes
            for i in range(300):
                d = datasets[i % len(datasets)]
                value = "v" * (limit // settings.max_metadata_keys - 16)
                metadata = {f"k{j:02d}": value for j in range(settings.max_metadata_keys)}
                send(messages, d, {"dataset": d, "id": f"meta-{i}", "timestamp": i, "metadata": metadata, "body": "x"})
                over = {f"k{j}": "v" * 300 for j in range(settings.max_metadata_keys + 5)}
                send(messages, d, {"dataset": d, "id": f"over-{i}", "timestamp": i, "metadata": over})
                sent += 2
            for i in range(args.big):
                d = datasets[i % len(datasets)]
                body = _words(rng, settings.max_body_bytes - 10)
                send(messages, d, {"dataset": d, "id": f"big-{i}", "timestamp": i, "body": body})
                subject = _words(rng, settings.max_input_bytes - 200)
                send(messages, d, {"dataset": d, "id": f"subj-{i}", "timestamp": i, "subject": subject})
                sent += 2
            phase("metadata", sent)

            # 4. distinct ids, full windows, full registry
            sent = 0
            long_id = "i" * (settings.max_id_chars - 12)
            for d in datasets:
                for i in range(args.reviews + args.window):
                    body = _words(rng, 5000)
                    mid = f"{long_id}{i:012d}"
                    labels = [f"L0-{i % 22} > x{i % 22 % 3}"]  # labels the dataset has: the review is learnt
                    if i % 2:
                        send(messages, d, {"dataset": d, "id": "live" + mid[4:], "timestamp": i, "body": body})
                    send(annotations, d, review(d, mid, labels, body, float(i)))
                    sent += 2 if i % 2 else 1
                producer.flush()
                print(f"    {d}: sent", flush=True)
            phase("ids", sent)
            ready = worker.get("/readyz")
            alive = worker.process.poll() is None
            letters = _dead_letters(settings)
        finally:
            worker.stop()
            producer.close()
            try:
                admin.delete_topics(settings)
            except Exception:
                pass
    peak = max(row[3] for row in rows)
    print()
    print("| phase | records sent | RSS MB | peak MB | budget MB |")
    print("|---|---|---|---|---|")
    for name, sent, rss, hwm in rows:
        print(f"| {name} | {sent} | {rss:.0f} | {hwm:.0f} | {budget.total / MB:.0f} |")
    print()
    print("dead letters:", dict(letters))
    ok = peak * MB <= budget.total and alive and bool(ready.get("ready", True))
    print(
        f"{'PASS' if ok else 'FAIL'}: peak {peak:.0f} MB within the budget of {budget.total / MB:.0f} MB; worker alive"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
