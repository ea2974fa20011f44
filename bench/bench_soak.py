"""A long run of the worker: its memory must plateau, whatever the traffic (issue 11).

One ``refinery worker`` subprocess (default settings, `bench_service.Worker`) on topics of a fresh
prefix gets ``--events`` events at a steady ``--rate``: Banking77 training messages, cycled with a
fresh id per cycle (``train-00042~3``) and increasing timestamps, a ``--review-share`` of them
reviewed ``--review-lag`` messages later with the message inline (as `bench_service.stream`).
A kafka-python producer thread sends them; the worker's progress is read from its ``/metrics``
(``refinery_events_out_total`` of ``predictions``), so the harness consumes nothing.

Every ``--every`` seconds: the worker's resident set (``VmRSS`` of ``/proc/<pid>/status``), its
peak (``VmHWM``), the events sent and the predictions out. At the end: the RSS at the middle and
at the end of the run, its growth over the second half (a plateau: within ``--tolerance``,
default 5%), and whether every message got its prediction. The worker is stopped with SIGTERM
(by pid) and the prefix's topics are deleted, unless ``--keep-topics``. Writes ``--json``.

Run: ``.venv/bin/python bench/bench_soak.py [--events 1000000] [--rate 800] [--every 10]``
(``--events 1000000`` at 800/s: about 21 minutes). Broker at ``REFINERY_KAFKA_BOOTSTRAP``
(the local one is started if it is not running).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson  # noqa: E402
from bench_service import DATASET, Worker  # noqa: E402

from agents.ingest.datasets import banking77  # noqa: E402
from agents.kafka import admin, broker  # noqa: E402
from agents.settings import Settings  # noqa: E402
from schemas import Annotation, Message  # noqa: E402

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the first event's timestamp


def events(total: int, review_share: float, review_lag: int, seed: int) -> Iterator[Message | Annotation]:
    """``total`` events in send order, made as they are sent (the harness holds ``review_lag``
    reviews at most).

    >>> sample = list(events(40, 1 / 3, 5, seed=0))
    >>> len(sample), sum(isinstance(e, Annotation) for e in sample) > 0
    (40, True)
    >>> len({e.id for e in sample if isinstance(e, Message)}) == sum(isinstance(e, Message) for e in sample)
    True
    """
    pairs = list(banking77(dataset=DATASET))
    rng = random.Random(seed)
    due: collections.deque[tuple[int, Annotation]] = collections.deque()
    sent = step = 0
    cycle = 0
    while sent < total:
        rng.shuffle(pairs)
        for message, review in pairs:
            while due and due[0][0] <= step and sent < total:
                yield due.popleft()[1]
                sent += 1
            if sent >= total:
                return
            now = T0 + step * 0.01
            message = dataclasses.replace(message, id=f"{message.id}~{cycle}", timestamp=now)
            yield message
            sent += 1
            if rng.random() < review_share:
                due.append(
                    (
                        step + review_lag,
                        dataclasses.replace(review, message_id=message.id, message=message, timestamp=now),
                    )
                )
            step += 1
        cycle += 1


def _value(line: str) -> float:
    return float(line.rsplit(" ", 1)[1])


def predictions_out(worker: Worker) -> float:
    """``refinery_events_out_total`` of the ``predictions`` topic, from the worker's /metrics."""
    text = worker.get_text("/metrics")
    return sum(
        _value(line)
        for line in text.splitlines()
        if line.startswith("refinery_events_out_total{") and 'predictions"' in line
    )


def status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class Sender(threading.Thread):
    """Sends the events at a steady rate; counts the messages and events sent."""

    def __init__(self, settings: Settings, source: Iterator[Message | Annotation], rate: float) -> None:
        super().__init__(daemon=True)
        from kafka import KafkaProducer

        self.producer = KafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5, batch_size=262_144)
        self.topics = {Message: settings.topic("messages"), Annotation: settings.topic("annotations")}
        self.source, self.rate = source, rate
        self.sent = self.messages = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            start = time.perf_counter()
            key = DATASET.encode()
            for event in self.source:
                self.producer.send(self.topics[type(event)], key=key, value=event.encode())
                self.sent += 1
                self.messages += isinstance(event, Message)
                ahead = self.sent / self.rate - (time.perf_counter() - start)
                if ahead > 0.005:
                    time.sleep(ahead)
            self.producer.flush()
        except BaseException as error:  # reported by the main thread
            self.error = error
        finally:
            self.producer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to send (default 1,000,000)")
    parser.add_argument("--rate", type=float, default=800.0, help="events per second (default 800)")
    parser.add_argument("--review-share", type=float, default=1 / 3, help="share of messages reviewed")
    parser.add_argument("--review-lag", type=int, default=20, help="messages between a message and its review")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="RSS growth over the second half deemed flat")
    parser.add_argument("--drain", type=float, default=300.0, help="seconds to wait for the last predictions")
    parser.add_argument("--json", default=None, help="write the samples and the verdict here")
    parser.add_argument("--keep-topics", action="store_true")
    args = parser.parse_args(argv)

    settings = dataclasses.replace(Settings.from_env(), topic_prefix=f"soak{uuid.uuid4().hex[:8]}.")
    settings = dataclasses.replace(settings, external_bootstrap=broker.start(settings, quiet=True))
    admin.create_topics(settings)
    samples: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="refinery-soak-") as workdir:
        worker = Worker(settings, Path(workdir))
        try:
            worker.wait_ready()
            sender = Sender(settings, events(args.events, args.review_share, args.review_lag, args.seed), args.rate)
            start = time.perf_counter()
            sender.start()
            print(f"worker pid {worker.process.pid}; {args.events:,} events at {args.rate:,.0f}/s")
            print("| s | events sent | predictions | lag (messages) | RSS MB | peak RSS MB |")
            print("|---|---|---|---|---|---|")
            drain_until = None
            while True:
                time.sleep(args.every)
                worker.check_alive()
                if sender.error is not None:
                    raise sender.error
                out = predictions_out(worker)
                sample = {
                    "seconds": round(time.perf_counter() - start, 1),
                    "sent": sender.sent,
                    "messages": sender.messages,
                    "predictions": int(out),
                    "rss_mb": round((status_kb(worker.process.pid, "VmRSS") or 0) / 1024, 1),
                    "peak_rss_mb": round((status_kb(worker.process.pid, "VmHWM") or 0) / 1024, 1),
                }
                samples.append(sample)
                print(
                    f"| {sample['seconds']:,.0f} | {sample['sent']:,} | {sample['predictions']:,} | "
                    f"{sample['messages'] - sample['predictions']:,} | {sample['rss_mb']:,.0f} | "
                    f"{sample['peak_rss_mb']:,.0f} |",
                    flush=True,
                )
                if not sender.is_alive():
                    drain_until = drain_until or time.perf_counter() + args.drain
                    if out >= sender.messages or time.perf_counter() > drain_until:
                        break
        finally:
            worker.stop()
            if not args.keep_topics:
                admin.delete_topics(settings)

    sending = [s for s in samples if s["sent"] < args.events] or samples
    middle, last = sending[len(sending) // 2], sending[-1]
    growth = (last["rss_mb"] - middle["rss_mb"]) / middle["rss_mb"]
    answered = samples[-1]["predictions"] >= samples[-1]["messages"]
    verdict = {
        "events": args.events,
        "rate": args.rate,
        "rss_mb_middle": middle["rss_mb"],
        "rss_mb_end": last["rss_mb"],
        "growth_second_half": round(growth, 4),
        "plateau": abs(growth) <= args.tolerance,
        "peak_rss_mb": samples[-1]["peak_rss_mb"],
        "every_message_predicted": answered,
    }
    print(
        f"RSS {middle['rss_mb']:,.0f} MB at {middle['seconds']:,.0f} s, {last['rss_mb']:,.0f} MB at "
        f"{last['seconds']:,.0f} s: {growth:+.1%} over the second half "
        f"({'plateau' if verdict['plateau'] else 'GROWING'}); peak {verdict['peak_rss_mb']:,.0f} MB; "
        f"every message predicted: {'yes' if answered else 'NO'}"
    )
    if args.json:
        Path(args.json).write_bytes(orjson.dumps({"verdict": verdict, "samples": samples}, option=orjson.OPT_INDENT_2))
    return 0 if verdict["plateau"] and answered else 1


if __name__ == "__main__":
    sys.exit(main())
