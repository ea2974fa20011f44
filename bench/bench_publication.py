"""A publication's cost in-process (issue 11): ``metrics`` and every suggestion list, and a
digest proving two versions of the code publish the same bytes.

A *publication* is what the worker does for a changed dataset, in its engine thread and under
its engines' lock (agents/worker/service.py ``Service._publish``): ``engine.metrics(now=...)``,
then one ``suggestion_list`` per kind and, for the label kinds, per label. Nothing is applied
while a call runs, so the longest single call bounds how long a batch of events may wait.
Since ``Refiner.frozen`` the worker holds its lock only to take a frozen copy of the engine
("frozen" below), computes the metrics from it in another thread, and ranks the lists from the
copy's pools; this bench does the same with a tree that has it, and times each call.

``--time`` (the default) builds the Banking77 engine of the issue (3,000 messages, a third
reviewed, ``bench_service.stream``), then ``--runs`` times: restores its snapshot (an engine
with nothing cached), publishes once (as a worker did before), applies the next 40 events
(10 reviews: the model changes, as it does between two publications in a worker) and times a
publication, call by call (wall-clock and this thread's CPU time). Printed: the medians of
the frozen copy, of metrics, of the metrics step's time in the engine thread (``metrics_held``:
the copy, or metrics itself in an older tree), of each kind's lists, of the first list (it
builds the pools), of the whole publication, and of its longest single call in the engine
thread (the worker holds its lock for one call).

``--digest`` prints one SHA-256 over the encoded bytes of ``metrics`` and every list, at
several limits, at checkpoints of three engines (Banking77, NLU++ banking, Enron: one label per
message, several, two-level labels), with reviews in every mode (so confirmed reviews, search,
shuffle...), a few removals, and publications after messages only (same model) as well as
after reviews. Two trees must print the same digest.

``--compare A B`` runs both in subprocesses, one tree's code each (``PYTHONPATH``), alternated
run by run so they share the machine's load, and prints both digests and the medians side by side.

Run: ``.venv/bin/python bench/bench_publication.py [--time] [--digest] [--runs 5]``, or
``.venv/bin/python bench/bench_publication.py --compare /work/wt-pubbase . --runs 5``
(about 1 min per run pair and 1 min per digest on the loaded shared machine)
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # PYTHONPATH (another tree's code, for --compare) comes first
sys.path.insert(0, str(HERE))
for _entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
    if _entry:  # that tree's bench_service too: it puts its own tree first on the path
        sys.path[:0] = [_entry, str(Path(_entry) / "bench")]

from bench_service import apply  # noqa: E402  # runs of 200 messages through observe_many, reviews through annotate

from agents.ingest.datasets import banking77, enron, nlupp  # noqa: E402
from pipeline import Refiner, RefinerConfig  # noqa: E402
from pipeline.engine import LABEL_KINDS, suggestion_list  # noqa: E402
from schemas import SUGGESTION_KINDS, Annotation, Message  # noqa: E402

#: Review modes given in turn to the digest's reviews (check and missed ones are "confirmed").
MODES = ("label", "shuffle", "check", "search", "teach", "missed", "rebalance", "low_confidence")
NOW = 1e9


def events_of(pairs: list, share: float, lag: int, seed: int, modes: bool) -> list[Message | Annotation]:
    """``pairs`` shuffled, a ``share`` of them reviewed ``lag`` messages later (message inline),
    in turn in every mode of `MODES` if ``modes``; every 97th review is followed by a removal of
    an earlier one."""
    rng = random.Random(seed)
    pairs = list(pairs)
    rng.shuffle(pairs)
    reviewed = sorted(rng.sample(range(len(pairs)), round(len(pairs) * share)))
    due: dict[int, list[Annotation]] = {}
    for n, i in enumerate(reviewed):
        message, review = pairs[i]
        mode = MODES[n % len(MODES)] if modes else review.mode
        review = dataclasses.replace(review, message=message, mode=mode)
        at = min(i + lag, len(pairs) - 1)
        due.setdefault(at, []).append(review)
        if modes and n % 97 == 96:
            gone = pairs[reviewed[n - 50]][0]
            due[at].append(
                Annotation(dataset=gone.dataset, message_id=gone.id, timestamp=message.timestamp, action="remove")
            )
    events: list[Message | Annotation] = []
    for i, (message, _) in enumerate(pairs):
        events.append(message)
        events += due.get(i, [])
    return events


def publication(engine: Refiner, limit: int = 50) -> list[tuple[str, str | None, float, float, bytes]]:
    """The worker's publication, timed call by call: (kind or "metrics", label, seconds, CPU
    seconds of this thread, bytes). A tree whose engine has ``frozen`` publishes, as its worker
    does, from a frozen copy taken first (the call its worker makes under the lock: "frozen", no
    bytes); an older tree from the engine itself."""
    source, out = engine, []
    if hasattr(engine, "frozen"):
        start, cpu = time.perf_counter(), time.thread_time()
        source = engine.frozen()
        out.append(("frozen", None, time.perf_counter() - start, time.thread_time() - cpu, b""))
    start, cpu = time.perf_counter(), time.thread_time()
    metrics = source.metrics(now=NOW)
    out.append(("metrics", None, time.perf_counter() - start, time.thread_time() - cpu, metrics.encode()))
    for kind in SUGGESTION_KINDS:
        for label in sorted(metrics.labels) if kind in LABEL_KINDS else [None]:
            start, cpu = time.perf_counter(), time.thread_time()
            listed = suggestion_list(source, kind, now=NOW, label=label, limit=limit)
            out.append((kind, label, time.perf_counter() - start, time.thread_time() - cpu, listed.encode()))
    return out


def timing() -> dict:
    """One timed publication of the issue's Banking77 engine after 40 more events."""
    import bench_service

    events = bench_service.stream(3000 + 30, 1 / 3, 20, seed=0)
    split = len(events) - 40
    engine = Refiner(bench_service.DATASET, config=RefinerConfig(), seed=0)
    apply(engine, events[:split])
    engine = Refiner.restore(engine.snapshot())  # nothing left from building it
    publication(engine)  # the previous publication, as in a worker
    apply(engine, events[split:])
    calls = publication(engine)
    by_kind: dict[str, float] = {"frozen": 0.0}
    for kind, _, seconds, _, _ in calls:
        by_kind[kind] = by_kind.get(kind, 0.0) + seconds
    lists = [c for c in calls if c[0] not in ("frozen", "metrics")]
    # the calls that hold the worker's engine thread: with a frozen copy, metrics runs elsewhere
    held = [c for c in calls if not (c[0] == "metrics" and by_kind["frozen"])]
    longest = max(held, key=lambda c: c[2])
    return {
        **{k: round(v * 1e3, 2) for k, v in by_kind.items()},
        "metrics_held": round((by_kind["frozen"] or by_kind["metrics"]) * 1e3, 2),
        "lists": round(sum(c[2] for c in lists) * 1e3, 2),
        "total": round(sum(c[2] for c in calls) * 1e3, 2),
        "total_cpu": round(sum(c[3] for c in calls) * 1e3, 2),
        "longest": round(longest[2] * 1e3, 2),
        "longest_cpu": round(max(c[3] for c in held) * 1e3, 2),
        "longest_call": f"{longest[0]}({longest[1]})",
        "longest_list": round(max(c[2] for c in lists) * 1e3, 2),
        "first_list": round(lists[0][2] * 1e3, 2),
        "calls": len(calls),
    }


def _engines() -> list[tuple[str, list]]:
    return [
        ("banking77", events_of(list(banking77(dataset="b77"))[:2400], 0.4, 20, 1, True)),
        ("nlupp", events_of(list(nlupp(dataset="nlupp")), 0.4, 10, 2, True)),
        ("enron", events_of(list(enron(dataset="enron")), 0.5, 10, 3, True)),
    ]


def digest(verbose: bool = False) -> str:
    """SHA-256 of every publication's bytes at the checkpoints of the three engines."""
    total = hashlib.sha256()
    for name, events in _engines():
        engine = Refiner(events[0].dataset, config=RefinerConfig(live_window=1500), seed=7)
        half = len(events) // 2
        first_messages = next(i for i in range(half, len(events)) if isinstance(events[i], Message))
        more_messages = first_messages
        while more_messages < len(events) and isinstance(events[more_messages], Message):
            more_messages += 1
        checkpoints = [half, more_messages, len(events)]  # after reviews; after messages only; the end
        done = 0
        for point in checkpoints:
            apply(engine, events[done:point])
            done = point
            part = hashlib.sha256()
            for kind in ("teach_label", "rebalance"):  # some lists before metrics: order must not matter
                part.update(suggestion_list(engine, kind, now=NOW, limit=20).encode())
            for limit in (50, 3):
                for *_, data in publication(engine, limit):
                    part.update(data)
            for kind in SUGGESTION_KINDS:
                part.update(suggestion_list(engine, kind, now=NOW, limit=600).encode())
                part.update(suggestion_list(engine, kind, now=NOW, limit=0).encode())
            part.update(engine.snapshot())
            if verbose:
                print(f"{name} at {point}: {part.hexdigest()[:16]}", file=sys.stderr)
            total.update(part.digest())
    return total.hexdigest()


def compare(trees: list[str], runs: int, with_digest: bool) -> None:
    results: dict[str, list[dict]] = {tree: [] for tree in trees}
    digests = {}
    for _ in range(runs):
        for tree in trees:
            env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
            out = subprocess.run(
                [sys.executable, __file__, "--time", "--json"], env=env, check=True, capture_output=True, text=True
            ).stdout
            results[tree].append(json.loads(out)["time"])
    if with_digest:
        for tree in trees:
            env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
            out = subprocess.run(
                [sys.executable, __file__, "--digest", "--json"], env=env, check=True, capture_output=True, text=True
            ).stdout
            digests[tree] = json.loads(out)["digest"]
    keys = [
        "frozen",
        "metrics",
        "metrics_held",
        *SUGGESTION_KINDS,
        "first_list",
        "lists",
        "total",
        "total_cpu",
        "longest",
        "longest_cpu",
        "longest_list",
    ]
    print(f"median of {runs} runs, ms | " + " | ".join(trees))
    for key in keys:
        print(f"{key:>15} | " + " | ".join(f"{statistics.median(r[key] for r in results[t]):8.1f}" for t in trees))
    for tree in trees:
        print(f"{tree}: longest calls {[r['longest_call'] for r in results[tree]]}")
    for tree, value in digests.items():
        print(f"digest {tree}: {value}")
    if digests:
        print("digests equal:", "PASS" if len(set(digests.values())) == 1 else "FAIL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time", action="store_true", help="time publications (the default)")
    parser.add_argument("--digest", action="store_true", help="print the digest of every publication's bytes")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one run, as JSON (used by --compare)")
    parser.add_argument("--compare", nargs="+", metavar="TREE", help="alternate runs of these trees' code")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, args.runs, args.digest)
        return
    out: dict = {}
    if args.digest:
        out["digest"] = digest(verbose=not args.json)
    if args.time or not args.digest:
        if args.json:
            out["time"] = timing()
        else:
            runs = [timing() for _ in range(args.runs)]
            out["time"] = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "longest_call"}
            out["longest_calls"] = [r["longest_call"] for r in runs]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
