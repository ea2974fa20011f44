"""`refinery demo`: the whole service on this machine with one command.

It starts the local Kafka broker if none runs (fetching it first if needed), creates the topics,
starts a worker, then streams a bundled data set (``--bundled``, Banking77 by default, from
``../shared/datasets``) as live traffic, its events carrying ``--dataset`` (default: the data
set's own name): each message is sent with the current time, and a simulated reviewer answers
a share of them (30% by default) a few messages later, from the data set's true labels, in
``shuffle`` mode. It prints where to look (the dashboard pages, API, ``/metrics``, ``refinery
status``) and runs until the data set is exhausted or Ctrl-C; then it stops what it started
(the worker always, the broker only if it started it). ``--bootstrap`` names another broker
(none is started then) and ``--prefix`` the topics.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import signal
import subprocess
import sys
import time
from urllib.parse import quote

from agents.cli import options

__all__ = ["add_arguments", "run", "live_stream"]


def live_stream(pairs, *, review_share: float, review_delay: int, seed: int, clock=time.time):
    """``("messages" | "annotations", record)`` in sending order: every message stamped with the
    current time; a seeded ``review_share`` of them reviewed ``review_delay`` messages later, with
    the message inline (the reviewer looked at it).

    >>> from schemas import Annotation, Message
    >>> pairs = [(Message(dataset="d", id=str(i), timestamp=0), Annotation(dataset="d", message_id=str(i), timestamp=0))
    ...          for i in range(4)]
    >>> [(topic, r.id if topic == "messages" else r.message_id) for topic, r in
    ...  live_stream(pairs, review_share=1.0, review_delay=1, seed=0, clock=lambda: 5.0)]
    [('messages', '0'), ('messages', '1'), ('annotations', '0'), ('messages', '2'), ('annotations', '1'), ('messages', '3'), ('annotations', '2'), ('annotations', '3')]
    """
    rng = random.Random(seed)
    waiting = []  # (send after this many messages, review)
    sent = 0
    for message, review in pairs:
        message = dataclasses.replace(message, timestamp=clock())
        yield "messages", message
        sent += 1
        if rng.random() < review_share:
            waiting.append((sent + review_delay, dataclasses.replace(review, message=message, mode="shuffle")))
        while waiting and waiting[0][0] <= sent:
            yield "annotations", dataclasses.replace(waiting.pop(0)[1], timestamp=clock())
    for _, review in waiting:
        yield "annotations", dataclasses.replace(review, timestamp=clock())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_bundled_options(parser, default="banking77")
    options.add_dataset_option(parser, "the dataset the events carry (default: the bundled data set's own name)")
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second (default 20)")
    parser.add_argument(
        "--review-share", type=float, default=0.3, help="share of messages the simulated reviewer answers (default 0.3)"
    )
    parser.add_argument(
        "--review-delay", type=int, default=20, help="messages between a message and its review (default 20)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="stop after this many messages (default: the whole data set)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the reviewer's choices and the shuffle (default 0)"
    )
    options.add_kafka_options(parser)
    options.add_web_options(parser)


def _pairs(args: argparse.Namespace) -> list:
    from agents.ingest import datasets

    pairs = list(datasets.load(args.bundled, **options.bundled_kwargs(args)))
    random.Random(args.seed).shuffle(pairs)  # the files are sorted by label; live traffic is not
    return pairs


def _stop_on_signals() -> None:
    """Ctrl-C, ``kill -INT`` and ``kill -TERM`` all stop the demo through its clean-up (which stops
    the worker). A shell script that starts the demo in the background starts it with SIGINT
    ignored, and SIGTERM would otherwise end it at once, leaving the worker running."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def run(args: argparse.Namespace) -> int:
    import os

    from kafka import KafkaProducer

    from agents.ingest.datasets import DatasetMissing
    from agents.kafka import broker
    from agents.kafka.security import kafka_python_kwargs
    from agents.settings import PROJECT_ROOT

    _stop_on_signals()
    mistake = options.bundled_mistake(args)
    if mistake:
        print(f"refinery demo: error: {mistake}", file=sys.stderr)
        return 2
    settings = options.settings_from(args)
    try:
        pairs = _pairs(args)[: args.limit]
    except DatasetMissing as error:
        print(f"refinery demo: error: {error}", file=sys.stderr)
        return 1
    dataset = pairs[0][0].dataset if pairs else args.dataset or args.bundled
    started_broker = settings.uses_local_broker and not broker.is_running(settings)
    print(f"broker: {'starting' if started_broker else 'using'} {settings.bootstrap}", flush=True)
    try:
        bootstrap = broker.ensure_broker(settings)
    except broker.BrokerError as error:
        print(f"refinery demo: {error}", file=sys.stderr)
        return 1
    worker = None
    try:
        env = {
            **os.environ,
            "REFINERY_KAFKA_BOOTSTRAP": bootstrap,
            "REFINERY_WEB_PORT": str(settings.web_port),
            "REFINERY_WEB_HOST": settings.web_host,
            "REFINERY_TOPIC_PREFIX": settings.topic_prefix,
        }
        log_file = settings.home / "logs" / "demo-worker.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        worker = subprocess.Popen(
            [sys.executable, "-m", "agents.cli", "worker", "--loglevel", "info", "--logfile", str(log_file)],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        api = f"http://{settings.web_host}:{settings.web_port}"
        print(
            f"worker: pid {worker.pid}, log {log_file}\n"
            f"  dashboard  {api}/  (open it in a browser)\n"
            f"  workbench  {api}/datasets/{quote(dataset, safe='')}/review?kind=shuffle  (sign in with your name, review)\n"
            f"  API        {api}/datasets\n"
            f"  metrics    {api}/metrics\n"
            f"  status     refinery status {dataset} --url {api}\n"
            f"  Ctrl-C stops the demo",
            flush=True,
        )
        producer = KafkaProducer(**kafka_python_kwargs(settings), linger_ms=20)
        interval = 1.0 / args.rate if args.rate > 0 else 0.0
        counts = {"messages": 0, "annotations": 0}
        next_at = time.monotonic()
        for topic, record in live_stream(
            pairs, review_share=args.review_share, review_delay=args.review_delay, seed=args.seed
        ):
            if worker.poll() is not None:
                print(f"the worker exited ({worker.returncode}); stopping", file=sys.stderr)
                return 1
            producer.send(settings.topic(topic), key=record.dataset.encode("utf-8"), value=record.encode())
            counts[topic] += 1
            if topic == "messages":
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
                if counts["messages"] % 200 == 0:
                    print(f"sent {counts['messages']} messages, {counts['annotations']} reviews", flush=True)
        producer.flush()
        print(
            f"done: {counts['messages']} messages, {counts['annotations']} reviews; the worker keeps running "
            f"until Ctrl-C",
            flush=True,
        )
        code = worker.wait()
        print(f"the worker exited ({code}); see {log_file}", file=sys.stderr)
        return 0 if code == 0 else 1
    except KeyboardInterrupt:
        return 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if started_broker:
            broker.stop(settings)
        print("demo stopped", flush=True)
