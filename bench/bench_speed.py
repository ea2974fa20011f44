"""Speed of the engine against a plain River loop, on the same Banking77 stream, in the same run.

Baseline (issue 3): ``BagOfWords | OneVsRestClassifier(LogisticRegression)``, ``predict_one``
then ``learn_one`` per message. The stream is Banking77's 10,003 training messages in a fixed
shuffled order (seed 0). The machine is shared, so the baseline and the engine are timed
chunk by chunk, interleaved (River on chunk k, then the engine on chunk k), and the ratio is
reported both over the whole stream and as the median of the chunk ratios.

Sections:

1. 77 labels: ``annotate`` (each message reviewed, message inline) and ``observe`` (one call
   per message, and ``observe_many`` in batches of 100, as the streaming worker calls it).
2. Cost against the number of labels: 50 / 200 / 500 (labels derived from the intents so that
   all of them occur), engine and River loop.
3. Cost against message length: bodies of about 60, 600 and 6,000 characters.
4. Memory: peak RSS while observing ``--messages`` live messages (1% of them reviewed); the
   resident size must plateau (bounded windows, hashed features).
5. Long emails (issue 11, ``--sections enron``): the 1,702 labelled Enron emails (median body
   1,350 characters, mean 6,800), shuffled (seed 0), interleaved in chunks of 200. The engine
   reviews each (``annotate``, message inline, every label pinned: 53 labels and their parents)
   and observes each; the River loop learns the email's first label (the same loop as section
   1: its one-vs-rest learns one model per class it has seen) from the same text budget as the
   engine, the first ``max_chars`` (5,000) characters of subject and body (``--river-text
   full``: all of it, which River reads 2-3x slower on this set). ``--river-labels all``: River
   learns every label the engine learns instead (:class:`EveryLabelLoop`, context for the
   target, whose baseline is the first-label loop).

Run: ``.venv/bin/python bench/bench_speed.py [--sections speed,labels,length,memory,enron] [--messages 1000000]``
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from agents.ingest.datasets import banking77, enron  # noqa: E402
from pipeline import Refiner, RefinerConfig  # noqa: E402
from schemas import Annotation, LabelAssignment, Message  # noqa: E402

CHUNK = 1000


def river_loop():
    from river import compose, feature_extraction, linear_model, multiclass

    return compose.Pipeline(
        feature_extraction.BagOfWords(), multiclass.OneVsRestClassifier(linear_model.LogisticRegression())
    )


def stream(limit: int | None = None) -> list[tuple[str, str]]:
    pairs = [(m.body, a.labels[0].name) for m, a in banking77("train")]
    order = np.random.default_rng(0).permutation(len(pairs))
    chosen = [pairs[i] for i in order]
    return chosen[:limit] if limit else chosen


def reviews_of(texts_labels, dataset="bench", prefix="t"):
    out = []
    for i, (text, label) in enumerate(texts_labels):
        message = Message(dataset=dataset, id=f"{prefix}{i}", timestamp=float(i), body=text, channel="chat")
        out.append(
            Annotation(
                dataset=dataset,
                message_id=message.id,
                timestamp=float(i),
                labels=(LabelAssignment(label),),
                mode="shuffle",
                message=message,
            )
        )
    return out


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(
    data, config: RefinerConfig, label_of=lambda i, label: label, events=None, chunk_size=CHUNK, river_factory=None
):
    """River loop, engine annotate, engine observe and observe_many, chunk by chunk.

    ``events`` gives the engine's (annotations, live messages) for the River loop's ``data``
    (``(text, label)``); by default they are chat lines made from ``data`` itself."""
    river = (river_factory or river_loop)()
    engine = Refiner("bench", config)
    labelled = [(text, label_of(i, label)) for i, (text, label) in enumerate(data)]
    if events is None:
        annotations = reviews_of(labelled)
        live = [
            Message(dataset="bench", id=f"x{i}", timestamp=float(i), body=t, channel="chat")
            for i, (t, _) in enumerate(labelled)
        ]
    else:
        annotations, live = events
    times = {"river": [], "annotate": [], "observe": [], "observe_many": []}
    gc.collect()
    gc.freeze()  # the prepared events are long-lived: keep the collector from rescanning them (both sides alike)
    for start in range(0, len(labelled), chunk_size):
        chunk = labelled[start : start + chunk_size]

        def run_river(chunk=chunk):
            for text, label in chunk:
                river.predict_one(text)
                river.learn_one(text, label)

        def run_annotate(start=start):
            for annotation in annotations[start : start + chunk_size]:
                engine.annotate(annotation)

        def run_observe(start=start):
            for message in live[start : start + chunk_size]:
                engine.observe(message)

        def run_observe_many(start=start):
            batch = live[start : start + chunk_size]
            for i in range(0, len(batch), 100):
                engine.observe_many(batch[i : i + 100])

        times["river"].append(timed(run_river))
        times["annotate"].append(timed(run_annotate))
        times["observe"].append(timed(run_observe))
        times["observe_many"].append(timed(run_observe_many))
    return times, len(labelled)


def report(title: str, times: dict, n: int, targets: dict | None = None) -> None:
    river = sum(times["river"])
    print(f"\n{title}: {n} messages")
    print(f"  {'':14} {'msgs/s':>10} {'x River':>8} {'median chunk x':>15}")
    print(f"  {'River loop':14} {n / river:10.0f} {1.0:8.2f}")
    for name in ("annotate", "observe", "observe_many"):
        total = sum(times[name])
        ratios = [r / t for r, t in zip(times["river"], times[name])]
        target = f"   (target >= {targets[name]}x)" if targets and name in targets else ""
        print(f"  {name:14} {n / total:10.0f} {river / total:8.2f} {statistics.median(ratios):15.2f}{target}")


def by_labels(data, config: RefinerConfig) -> None:
    print("\nCost against the number of labels (3,000 messages each):")
    print(
        f"  {'labels':>6} {'River msgs/s':>13} {'annotate/s':>11} {'observe_many/s':>15} {'annotate x':>11} {'observe x':>10}"
    )
    intents = sorted({label for _, label in data})
    index = {name: i for i, name in enumerate(intents)}
    for n_labels in (50, 200, 500):
        copies = math.ceil(n_labels / len(intents))

        def label_of(i, label, n_labels=n_labels, copies=copies):
            return f"L{(index[label] + len(intents) * (i % copies)) % n_labels}"

        times, n = interleaved(data[:3000], config, label_of)
        river = sum(times["river"])
        print(
            f"  {n_labels:6d} {n / river:13.0f} {n / sum(times['annotate']):11.0f} {n / sum(times['observe_many']):15.0f} "
            f"{river / sum(times['annotate']):11.2f} {river / sum(times['observe_many']):10.2f}"
        )


def by_length(data, config: RefinerConfig) -> None:
    print("\nCost against message length (engine trained on 3,000 reviews; 500 messages each):")
    engine = Refiner("bench", config)
    for annotation in reviews_of(data[:3000]):
        engine.annotate(annotation)
    river = river_loop()
    for text, label in data[:3000]:
        river.learn_one(text, label)
    texts = [t for t, _ in data[3000:]]
    print(f"  {'chars':>6} {'River predict+learn/s':>22} {'observe_many/s':>15} {'observe/s':>10}")
    for repeat in (1, 10, 100):
        bodies = [" ".join(texts[(i + k) % len(texts)] for k in range(repeat)) for i in range(500)]
        chars = int(np.mean([len(b) for b in bodies]))
        messages = [
            Message(dataset="bench", id=f"len{repeat}-{i}", timestamp=float(i), body=b, channel="email")
            for i, b in enumerate(bodies)
        ]
        river_time = timed(
            lambda bodies=bodies: [(river.predict_one(b), river.learn_one(b, data[i][1])) for i, b in enumerate(bodies)]
        )
        many = timed(
            lambda messages=messages: [engine.observe_many(messages[i : i + 100]) for i in range(0, len(messages), 100)]
        )
        single = timed(lambda messages=messages: [engine.observe(m) for m in messages])
        print(f"  {chars:6d} {len(bodies) / river_time:22.0f} {len(bodies) / many:15.0f} {len(bodies) / single:10.0f}")


class EveryLabelLoop:
    """River's one-vs-rest written for several labels per message (``OneVsRestClassifier`` takes
    one class per message): a ``LogisticRegression`` per label on the same ``BagOfWords``,
    ``predict_one`` then ``learn_one`` (every label, absent ones as negatives), as River's
    one-vs-rest does for the class it is given."""

    def __init__(self) -> None:
        from river import feature_extraction

        self.words = feature_extraction.BagOfWords()
        self.models: dict = {}

    def predict_one(self, text: str) -> dict:
        x = self.words.transform_one(text)
        return {label: model.predict_proba_one(x) for label, model in self.models.items()}

    def learn_one(self, text: str, labels: tuple[str, ...]) -> None:
        from river import linear_model

        x = self.words.transform_one(text)
        for label in labels:
            if label not in self.models:
                self.models[label] = linear_model.LogisticRegression()
        for label, model in self.models.items():
            model.learn_one(x, label in labels)


def enron_events(
    dataset: str = "bench", max_chars: int | None = None
) -> tuple[list[tuple[str, str]], list[Annotation], list[Message]]:
    """The labelled Enron emails, shuffled (seed 0): the River loop's ``(subject and body, first
    label)`` (the text cut at ``max_chars``), the engine's reviews (message inline, mode
    shuffle) and live copies (other ids)."""
    pairs = list(enron(dataset))
    order = np.random.default_rng(0).permutation(len(pairs))
    data, annotations, live, every = [], [], [], []
    for i in order:
        message, review = pairs[i]
        data.append((f"{message.subject}\n{message.body}"[:max_chars], review.labels[0].name))
        every.append(review.pinned_labels())
        annotations.append(Annotation.from_dict({**review.to_dict(), "message": message.to_dict(), "mode": "shuffle"}))
        live.append(Message.from_dict({**message.to_dict(), "id": f"live-{message.id}"}))
    return data, annotations, live, every


def long_emails(config: RefinerConfig, river_text: str = "budget", river_labels: str = "first") -> None:
    data, annotations, live, every = enron_events(max_chars=config.max_chars if river_text == "budget" else None)
    factory = None
    if river_labels == "all":  # every pinned label (and parent), as the engine learns them
        data, factory = [(text, labels) for (text, _), labels in zip(data, every)], EveryLabelLoop
    times, n = interleaved(data, config, events=(annotations, live), chunk_size=200, river_factory=factory)
    classes = len({label for _, label in data}) if river_labels == "first" else len({x for e in every for x in e})
    labels = len({name for a in annotations for name in a.pinned_labels()})
    river = "classes in River's loop" if river_labels == "first" else "labels in River's per-label loop"
    text = "the first max_chars characters" if river_text == "budget" else "the full text"
    report(
        f"Enron, long emails ({labels} label columns in the engine, {classes} {river}, River reads {text})",
        times,
        n,
        targets={"annotate": 2, "observe": 5},
    )


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory(data, config: RefinerConfig, total: int) -> None:
    print(f"\nMemory while observing {total:,} live messages (1% reviewed), batches of 100:")
    engine = Refiner("bench", config)
    texts = [t for t, _ in data]
    labels = [label for _, label in data]
    step = max(total // 10, 100)
    print(f"  {'messages':>10} {'RSS MB':>8} {'peak RSS MB':>12} {'msgs/s':>8}")
    started, seen = time.perf_counter(), 0
    readings = []
    for first in range(0, total, 100):
        batch = [
            Message(
                dataset="bench",
                id=f"live-{first + k}",
                timestamp=float(first + k),
                body=f"{texts[(first + k) % len(texts)]} ref {first + k}",
                channel="chat",
            )
            for k in range(min(100, total - first))
        ]
        engine.observe_many(batch)
        reviewed = batch[0]
        engine.annotate(
            Annotation(
                dataset="bench",
                message_id=reviewed.id,
                timestamp=reviewed.timestamp,
                labels=(LabelAssignment(labels[first % len(labels)]),),
                mode="shuffle",
            )
        )
        seen += len(batch)
        if seen % step == 0 or seen == total:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            readings.append(rss_mb())
            print(f"  {seen:10,d} {readings[-1]:8.0f} {peak:12.0f} {seen / (time.perf_counter() - started):8.0f}")
    if len(readings) >= 4:
        late = readings[len(readings) // 2 :]
        growth = (late[-1] - late[0]) / late[0]
        print(f"  RSS growth over the second half: {growth:+.1%} ({'plateau' if growth < 0.05 else 'STILL GROWING'})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="live messages for the memory section")
    parser.add_argument(
        "--sections",
        default="speed,labels,length,memory",
        help="comma-separated sections to run (speed, labels, length, memory, enron); run memory alone for a clean peak RSS",
    )
    parser.add_argument(
        "--river-text",
        choices=("budget", "full"),
        default="budget",
        help="enron: the River loop reads the engine's text budget (max_chars) or the full emails",
    )
    parser.add_argument(
        "--river-labels",
        choices=("first", "all"),
        default="first",
        help="enron: River's one-vs-rest learns each email's first label (the target's baseline), or "
        "every label the engine learns (a LogisticRegression per label, EveryLabelLoop)",
    )
    parser.add_argument("--config", default="{}", help="RefinerConfig overrides as JSON, e.g. '{\"replay\": 0}'")
    args = parser.parse_args(argv)
    config = RefinerConfig.from_dict({**RefinerConfig().to_dict(), **json.loads(args.config)})
    print(f"engine config: feature_bits={config.feature_bits} char_ngrams={config.char_ngrams} replay={config.replay}")
    sections = set(args.sections.split(","))
    data = stream()
    if "speed" in sections:
        times, n = interleaved(data, config)
        report("Banking77, 77 labels", times, n, targets={"annotate": 3, "observe": 10, "observe_many": 10})
    if "labels" in sections:
        by_labels(data, config)
    if "length" in sections:
        by_length(data, config)
    if "enron" in sections:
        long_emails(config, args.river_text, args.river_labels)
    if "memory" in sections:
        memory(data, config, args.messages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
