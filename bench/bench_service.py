"""End to end: the streaming worker on the local broker against the engine in-process, same run.

The stream is ``--messages`` Banking77 training messages in a shuffled order (``--seed``); a
share of them (``--review-share``, default 1/3, drawn with the same seed) is reviewed, each
review carrying its message inline and sent ``--review-lag`` messages after it (the last ones
after the final message). Both sides get exactly these events, sent in this order:

* **Service**: one ``refinery worker`` subprocess (``python -m agents.cli worker``, default
  engine configuration) on topics of a fresh prefix, fed by an aiokafka producer as fast as
  it sends (`LoadClient`). Timed from the first send until every prediction is on ``predictions`` and the
  worker's ``/datasets/banking77/metrics`` shows ``model_version`` equal to the number of
  reviews (the API is only asked once every prediction is out, so polling costs the worker
  nothing while it works).
* **In-process baseline**: a `pipeline.Refiner` (same configuration and seed as the worker's)
  fed the same events: consecutive messages through ``observe_many`` in batches of 200, each
  review through ``annotate``; timed ``--repeats`` times (fresh engine each), median.

Reported: events/s of both, their ratio (the service's overhead: broker round trips, JSON,
sequencer, batching, producer), the worker's own engine time (``refinery_processing_seconds``),
the time to the first prediction, the worker's peak RSS
(``VmHWM`` of its ``/proc/<pid>/status``, read before stopping it), and whether the worker's
final metrics (rating score, MAP, reviewed) equal the in-process engine's. Kafka does not order
the ``messages`` topic against the ``annotations`` topic, so the worker may apply a review
before or after nearby messages in another order than they were sent; the check is therefore
made against an engine replaying the worker's own ``events`` log (must be equal: PASS/FAIL),
and the comparison with the send-order baseline is printed beside it.

The local broker is started if it is not running (and left running). The worker is stopped
with SIGTERM (by pid) and the prefix's topics are deleted, unless ``--keep-topics``.

With ``--py-spy FILE``, ``py-spy record`` (the ``dev`` extra) samples the worker while it works
and writes raw collapsed stacks (one line per stack and its count; bench/README.md,
*Service throughput*, reads them by thread).

Run: ``.venv/bin/python bench/bench_service.py [--messages 5000] [--review-share 0.3333]
[--seed 0] [--review-lag 20] [--repeats 3] [--keep-topics] [--py-spy FILE]`` (about 20 s for
5,000 messages on a quiet machine)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from agents.ingest.datasets import banking77, enron  # noqa: E402
from agents.kafka import admin, broker  # noqa: E402
from agents.settings import PROJECT_ROOT, Settings  # noqa: E402
from pipeline import Refiner, RefinerConfig  # noqa: E402
from schemas import Annotation, Event, Message, MetricsSnapshot  # noqa: E402

DATASET = "banking77"
BATCH = 200  # consecutive messages per observe_many call in the baseline


# -- the stream --------------------------------------------------------------------------------


def stream(
    messages: int, review_share: float, review_lag: int, seed: int, *, corpus: str = "banking77", labels: int = 0
) -> list[Message | Annotation]:
    """The events both sides get, in send order: messages, and reviews ``review_lag`` messages
    after theirs (message inline).

    ``corpus`` is ``banking77`` (chat lines, 77 intents) or ``enron`` (long emails, 1,702 of
    them, two-level labels); every event names the dataset `DATASET` whatever the corpus. With
    ``labels`` > 0 the reviews' labels are mapped onto that many (``L0``, ``L1``...): a label
    and the message's position pick one, as ``bench_speed.py``'s cost against labels does.

    >>> events = stream(30, 1 / 3, 5, seed=0)
    >>> sum(isinstance(e, Message) for e in events), sum(isinstance(e, Annotation) for e in events)
    (30, 10)
    >>> reviews = [e for e in stream(600, 1 / 3, 5, seed=0, labels=200) if isinstance(e, Annotation)]
    >>> len({a.name for e in reviews for a in e.labels}) > 77
    True
    """
    pairs = list((enron if corpus == "enron" else banking77)(dataset=DATASET))
    if labels:
        pairs = _relabelled(pairs, labels)
    rng = random.Random(seed)
    rng.shuffle(pairs)
    pairs = pairs[:messages]
    reviewed = sorted(rng.sample(range(len(pairs)), round(len(pairs) * review_share)))
    due: dict[int, list[Annotation]] = {}
    for i in reviewed:
        message, review = pairs[i]
        due.setdefault(min(i + review_lag, len(pairs) - 1), []).append(dataclasses.replace(review, message=message))
    events: list[Message | Annotation] = []
    for i, (message, _) in enumerate(pairs):
        events.append(message)
        events += due.get(i, [])
    return events


def _relabelled(pairs: list, n_labels: int) -> list:
    """The pairs with their reviews' labels mapped onto ``n_labels`` labels ``L<k>``."""
    names = sorted({a.name for _, review in pairs for a in review.labels})
    index = {name: i for i, name in enumerate(names)}
    copies = math.ceil(n_labels / len(names))
    out = []
    for i, (message, review) in enumerate(pairs):
        mapped = {f"L{(index[a.name] + len(names) * (i % copies)) % n_labels}": a for a in review.labels}
        labels = tuple(dataclasses.replace(a, name=name) for name, a in mapped.items())
        out.append((message, dataclasses.replace(review, labels=labels)))
    return out


def apply(engine: Refiner, events: list[Message | Annotation]) -> None:
    """Feed ``events`` to ``engine`` in order: runs of messages through ``observe_many`` in
    batches of `BATCH`, reviews through ``annotate``."""
    run: list[Message] = []
    for event in events:
        if isinstance(event, Message):
            run.append(event)
            if len(run) == BATCH:
                engine.observe_many(run)
                run = []
        else:
            if run:
                engine.observe_many(run)
                run = []
            engine.annotate(event)
    if run:
        engine.observe_many(run)


def in_process(events: list[Message | Annotation], repeats: int = 3) -> tuple[Refiner, list[float]]:
    """Fresh engines (the worker's configuration and seed) fed ``events``, ``repeats`` times
    (the machine is shared; the median is reported); (the last engine, seconds of each run)."""
    seconds = []
    for _ in range(repeats):
        engine = Refiner(DATASET, config=RefinerConfig(), seed=0)
        start = time.perf_counter()
        apply(engine, events)
        seconds.append(time.perf_counter() - start)
    return engine, seconds


# -- the worker --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM (the worker snapshots and leaves its group), then SIGKILL after 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class Worker:
    """One ``refinery worker`` subprocess on ``settings``' topics, its web server on a free port."""

    def __init__(self, settings: Settings, workdir: Path, role: str | None = None) -> None:
        self.port = _free_port()
        self.role = role
        self.log_path = workdir / "worker.log"
        env = {
            **os.environ,
            "PYTHONPATH": str(PROJECT_ROOT),
            "REFINERY_KAFKA_BOOTSTRAP": settings.bootstrap,
            "REFINERY_TOPIC_PREFIX": settings.topic_prefix,
            "REFINERY_PARTITIONS": str(settings.partitions),
            "REFINERY_WEB_PORT": str(self.port),
            "REFINERY_DATA_DIR": str(workdir / "data"),
        }
        env.pop("REFINERY_API_TOKEN", None)
        env.pop("REFINERY_ENGINE_CONFIG", None)  # the default engine, as the baseline
        if role is not None:
            env["REFINERY_WORKER_ROLE"] = role  # docs/service.md, Roles
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agents.cli", "worker", "--loglevel", "warning"],
                env=env,
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def get_text(self, path: str, timeout: float = 10.0) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
            return response.read().decode()

    def get(self, path: str, timeout: float = 10.0):
        return orjson.loads(self.get_text(path, timeout))

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker exited ({self.process.returncode}); its log ends:\n{tail}")

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                ready = self.get("/readyz", timeout=1.0)
                if ready["assigned"] or (self.role == "sequencer" and ready["inputs"]):
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"worker not ready after {timeout} s")

    def peak_rss_mb(self) -> float | None:
        """``VmHWM`` (peak resident set) of the worker process, in MB."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def stop(self) -> None:
        stop_process(self.process)


class LoadClient(threading.Thread):
    """The load generator's side of Kafka, on an event loop of its own thread: an aiokafka
    producer of the input topics and a reader of every ``predictions`` partition.

    kafka-python (pure Python) was the harness's client before: its consumer read about 1,100
    predictions/s on this machine and its producer sent about 4,000 records/s, while sharing the
    2 cores with the system under test, so the harness, not the system, set the pace of the
    fastest systems (a worker whose last prediction was written at 3.5 s was read at 5.1 s,
    bench/README.md, *Harness*). aiokafka decodes record batches in C and batches its sends.

    ``on_records(records, now)`` is called on this thread for each batch of ``predictions``
    records read (``now``: ``time.perf_counter()`` when read). The reader's positions are at
    the partitions' beginning, resolved before the constructor returns (before anything is sent).
    """

    def __init__(self, settings: Settings, on_records) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.on_records = on_records
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._failed: BaseException | None = None
        self.start()
        self._ready.wait(60)
        if self._failed is not None:
            raise self._failed
        if not self._ready.is_set():
            raise RuntimeError("the load client did not connect to Kafka within 60 s")

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to the constructor, or when the next call fails
            self._failed = exc
            self._ready.set()
        finally:
            self.loop.close()

    async def _main(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

        self._stopping = asyncio.Event()
        self.producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap, linger_ms=2, max_batch_size=262_144)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap, enable_auto_commit=False, group_id=None)
        await self.producer.start()
        await consumer.start()
        try:
            partitions = [
                TopicPartition(self.settings.topic("predictions"), p) for p in range(self.settings.partitions)
            ]
            consumer.assign(partitions)
            # the topics are new: aiokafka retries (and logs a warning) until their leaders are known
            fetcher_log = logging.getLogger("aiokafka.consumer.fetcher")
            level = fetcher_log.level
            fetcher_log.setLevel(logging.ERROR)
            try:
                await consumer.seek_to_beginning(*partitions)
                for tp in partitions:
                    await consumer.position(tp)
            finally:
                fetcher_log.setLevel(level)
            self._ready.set()
            while not self._stopping.is_set():
                for records in (await consumer.getmany(timeout_ms=50)).values():
                    self.on_records(records, time.perf_counter())
        finally:
            await consumer.stop()
            await self.producer.stop()

    def call(self, coroutine):
        """Run ``coroutine`` on the client's loop; its result."""
        if self._failed is not None:
            raise RuntimeError("the load client stopped") from self._failed
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def send(self, payloads: list[tuple[str, str | None, bytes, bytes | None]], rate: float | None = None) -> dict:
        """Send ``(topic, message id or None, value, key)`` records in order, at ``rate`` records/s
        or at once, then wait until all are acknowledged; the send time of each message id."""
        return self.call(self._send(payloads, rate))

    async def _send(self, payloads, rate):
        sent: dict[str, float] = {}
        start = time.perf_counter()
        for i, (topic, mid, value, key) in enumerate(payloads):
            if rate is not None:
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            if mid is not None:
                sent[mid] = time.perf_counter()
            await self.producer.send(topic, value, key=key)  # queued in the producer's batch
        await self.producer.flush()
        return sent

    def stop(self) -> None:
        if self._stopping is not None and self.is_alive():
            self.loop.call_soon_threadsafe(self._stopping.set)
        self.join(30)


class PredictionCounter:
    """Counts the records of ``predictions`` as they arrive; notes the first and last arrival
    (read by a `LoadClient`, which also sends)."""

    def __init__(self, settings: Settings) -> None:
        self.count, self.first, self.last = 0, None, None
        self.client = LoadClient(settings, self._read)

    def _read(self, records: list, now: float) -> None:
        self.first = self.first or now
        self.last = now
        self.count += len(records)

    def stop(self) -> None:
        self.client.stop()


def _sample(exposition: str, name: str) -> float | None:
    """The value of an unlabelled sample in a Prometheus exposition.

    >>> _sample("# HELP x\\nx_sum 2.5\\nx_count 3.0\\n", "x_count")
    3.0
    """
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def read_values(settings: Settings, topic: str) -> list[bytes]:
    """Every value of ``topic`` (full name) now."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        out = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=500).values():
                out += [r.value for r in batch]
        return out
    finally:
        consumer.close()


def _read_events(settings: Settings) -> list[Message | Annotation]:
    """The worker's ``events`` log (one partition: one dataset), each input record once."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = [TopicPartition(settings.topic("events"), p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records += [(tp.partition, r.offset, r.value) for r in batch]
    finally:
        consumer.close()
    seen, out = set(), []
    for _, _, value in sorted(records, key=lambda r: r[:2]):
        event = Event.decode(value)
        position = (event.source_topic, event.partition, event.offset)
        if position not in seen:
            seen.add(position)
            out.append(event.message or event.annotation)
    return out


def service(
    settings: Settings, events: list[Message | Annotation], workdir: Path, timeout: float, py_spy: str | None = None
) -> dict:
    """Run the worker on ``events``; the timings, its final metrics and its events log.

    With ``py_spy`` (a file name), ``py-spy record`` samples the worker while it works and
    writes its raw collapsed stacks there (``--format raw``: one line per stack and count)."""
    messages = sum(isinstance(e, Message) for e in events)
    reviews = len(events) - messages
    payloads = [(settings.topic("messages" if isinstance(e, Message) else "annotations"), e.encode()) for e in events]
    worker = Worker(settings, workdir)
    counter = None
    try:
        worker.wait_ready()
        counter = PredictionCounter(settings)
        profiler = None
        if py_spy:
            profiler = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(worker.process.pid),
                    "--rate",
                    "200",
                    "--threads",
                    "--format",
                    "raw",
                    "--output",
                    py_spy,
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # py-spy attaches before the first send
        key = DATASET.encode()
        start = time.perf_counter()
        counter.client.send([(topic, None, value, key) for topic, value in payloads])
        sent = time.perf_counter() - start

        deadline = time.monotonic() + timeout
        while counter.count < messages:
            worker.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{counter.count} of {messages} predictions after {timeout} s")
            time.sleep(0.05)
        # reviews are interleaved with the messages, so by the last prediction nearly all are
        # applied: if the first poll already shows them all, the run ended with the last
        # prediction; otherwise it ends at the poll that sees the last review applied
        finished, polls = counter.last, 0
        while (metrics := worker.get(f"/datasets/{DATASET}/metrics"))["model_version"] < reviews:
            worker.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"model_version {metrics['model_version']} of {reviews} after {timeout} s")
            time.sleep(0.1)
            polls += 1
        if polls:
            finished = time.perf_counter()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=30)
        peak = worker.peak_rss_mb()
        exposition = worker.get_text("/metrics")
        return {
            "sent": sent,
            "seconds": finished - start,
            "first": counter.first - start,
            "predictions": counter.count,
            "metrics": MetricsSnapshot.from_dict(metrics),
            "peak_rss_mb": peak,
            "engine_seconds": _sample(exposition, "refinery_processing_seconds_sum"),
            "batches": _sample(exposition, "refinery_processing_seconds_count"),
            "log": _read_events(settings),
        }
    finally:
        if counter is not None:
            counter.stop()
        worker.stop()


# -- the comparison ----------------------------------------------------------------------------


def _figures(metrics: MetricsSnapshot) -> tuple:
    return metrics.rating.score, metrics.map, metrics.reviewed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="Banking77 messages to send (default 5000)")
    parser.add_argument("--review-share", type=float, default=1 / 3, help="share of them reviewed (default 1/3)")
    parser.add_argument("--review-lag", type=int, default=20, help="messages between a message and its review")
    parser.add_argument("--seed", type=int, default=0, help="shuffle and review draw")
    parser.add_argument("--keep-topics", action="store_true", help="leave the run's topics on the broker")
    parser.add_argument("--repeats", type=int, default=3, help="in-process runs; the median counts (default 3)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the worker")
    parser.add_argument("--py-spy", help="profile the worker with py-spy; collapsed stacks to this file")
    args = parser.parse_args(argv)

    events = stream(args.messages, args.review_share, args.review_lag, args.seed)
    messages = sum(isinstance(e, Message) for e in events)
    reviews = len(events) - messages
    print(
        f"stream: {messages:,} Banking77 messages, {reviews:,} reviews (message inline, "
        f"{args.review_lag} messages later), seed {args.seed}"
    )

    engine, runs = in_process(events, args.repeats)
    baseline_seconds = statistics.median(runs)
    print(
        f"in-process: {len(events):,} events in {' / '.join(f'{t:.2f}' for t in runs)} s "
        f"(median {baseline_seconds:.2f} s)"
    )

    base = Settings.from_env()
    settings = dataclasses.replace(base, topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
    bootstrap = broker.start(settings, quiet=True)
    settings = dataclasses.replace(settings, external_bootstrap=bootstrap)
    admin.create_topics(settings)
    print(f"broker {bootstrap}, topics {settings.topic('*')} ({settings.partitions} partitions each)")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-service-") as workdir:
            run = service(settings, events, Path(workdir), args.timeout, args.py_spy)
    finally:
        if args.keep_topics:
            print(f"kept topics {settings.topic('*')}")
        else:
            admin.delete_topics(settings)

    replayed = Refiner(DATASET, config=RefinerConfig(), seed=0)
    replay_start = time.perf_counter()
    apply(replayed, run["log"])
    replay_seconds = time.perf_counter() - replay_start
    now = run["metrics"].timestamp
    worker_figures = _figures(run["metrics"])
    log_figures = _figures(replayed.metrics(now=now))
    send_figures = _figures(engine.metrics(now=now))
    same_order = [e.id if isinstance(e, Message) else ("review", e.message_id) for e in run["log"]] == [
        e.id if isinstance(e, Message) else ("review", e.message_id) for e in events
    ]

    service_rate = len(events) / run["seconds"]
    baseline_rate = len(events) / baseline_seconds
    print()
    print(f"sent {len(events):,} events in {run['sent']:.2f} s ({len(events) / run['sent']:,.0f}/s, kafka-python)")
    print(f"first prediction      {run['first']:.2f} s after the first send")
    print(
        f"all done              {run['seconds']:.2f} s after the first send "
        f"({run['predictions']:,} predictions, model_version {run['metrics'].model_version:,})"
    )
    print(f"service               {service_rate:,.0f} events/s")
    print(f"in-process            {baseline_rate:,.0f} events/s")
    print(f"overhead              {baseline_rate / service_rate:.2f}x (in-process / service)")
    if run["engine_seconds"] is not None:
        print(
            f"worker's engine time  {run['engine_seconds']:.2f} s over {run['batches']:.0f} batches "
            f"(refinery_processing_seconds; in-process: {baseline_seconds:.2f} s, "
            f"{replay_seconds:.2f} s in the worker's order)"
        )
    rss = run["peak_rss_mb"]
    print(f"worker peak RSS       {rss:.0f} MB" if rss is not None else "worker peak RSS       unknown")
    print(f"worker events log in send order: {'yes' if same_order else 'no (Kafka interleaved the two input topics)'}")
    print("(rating score, MAP, reviewed)")
    print(f"  worker                  {worker_figures}")
    print(f"  engine on its log       {log_figures}")
    print(
        f"  engine in send order    {send_figures}"
        f"{'  (equal)' if send_figures == worker_figures else '  (differs: other order)'}"
    )
    ok = worker_figures == log_figures and run["predictions"] == messages
    print(f"final metrics equal the in-process engine's: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
