"""The contract's records in the worker's heap: a full collection's pause, and the decode speed.

The worker freezes its startup objects (`agents.worker.heap.freeze_startup`), so a full (generation
2) collection walks what it built since: mostly the workbench's recent messages
(`agents.web.messages.MessageStore`). This builds that state in-process and times it:

- **gc**: ``--records`` messages (Banking77 by default; ``--corpus``) decoded from their bytes
  and held in a `MessageStore`, everything else frozen first: the tracked objects and bytes
  (``sys.getsizeof`` of a record and of its ``__dict__``, if any) per message, and the median of
  ``--collections`` timed ``gc.collect()`` calls (and the fastest);
- **decode**: ``Message.decode``, and ``Event.decode`` of the same messages and of their reviews
  (message inline), in microseconds per record, best of 5 passes;
- **build**: the fast decoder's last step alone (`schemas._fast`: a decoded msgspec Struct into
  the frozen dataclass), per ``Message`` and per ``Event`` (the two kinds above), best of 5.

Times are CPU time of the thread (``time.thread_time``; the collection's wall time too): on the
loaded shared machine, wall time mostly measures the wait for a core.

Run: ``nice -n 19 .venv/bin/python bench/bench_records.py`` (~15 s), or alternated with another
tree's code: ``... bench/bench_records.py --compare /work/wt-base . --runs 3`` (one subprocess per
run and tree, ``PYTHONPATH`` set to the tree; medians over the runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for _entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
    if _entry:  # another tree's code (--compare) comes first
        sys.path.insert(0, _entry)

from agents.ingest.datasets import banking77, enron  # noqa: E402
from agents.web.messages import MessageStore  # noqa: E402
from schemas import Event, Message  # noqa: E402
from schemas._fast import _compile  # noqa: E402

#: What one run reports, in order: (key, unit).
FIGURES = (
    ("tracked objects per message", ""),
    ("bytes per message record", ""),
    ("full collection, CPU", "ms"),
    ("full collection, CPU, fastest", "ms"),
    ("full collection, wall", "ms"),
    ("Message.decode", "us"),
    ("Event.decode (message)", "us"),
    ("Event.decode (review, message inline)", "us"),
    ("build a Message", "us"),
    ("build an Event (either kind)", "us"),
)


def _inputs(corpus: str, n: int) -> tuple[list[bytes], list[bytes]]:
    """(the bytes of ``n`` messages, the bytes of their events: the message, then its review with it)."""
    if corpus == "mix":  # every Enron email, Banking77 for the rest
        pairs = list(enron())
        pairs += list(itertools.islice(banking77(), max(0, n - len(pairs))))
    else:
        pairs = list(itertools.islice(banking77() if corpus == "banking77" else enron(), n))
    if len(pairs) < n:
        raise SystemExit(f"--records: {corpus} has only {len(pairs)} messages")
    messages: list[bytes] = []
    events: list[bytes] = []
    for i, (message, review) in enumerate(pairs[:n]):
        messages.append(message.encode())
        events.append(Event(source_topic="refinery.messages", partition=0, offset=2 * i, message=message).encode())
        inline = dataclasses.replace(review, message=message)
        events.append(
            Event(source_topic="refinery.annotations", partition=0, offset=2 * i + 1, annotation=inline).encode()
        )
    return messages, events


def _per_record(fn, items: list, repeat: int = 5) -> float:
    """Best of ``repeat`` passes of ``fn`` over ``items``, in CPU microseconds per item."""
    passes = timeit.repeat(lambda: [fn(item) for item in items], number=1, repeat=repeat, timer=time.thread_time)
    return min(passes) / len(items) * 1e6


def _size(record: object) -> int:
    return sys.getsizeof(record) + (sys.getsizeof(vars(record)) if hasattr(record, "__dict__") else 0)


def measure(corpus: str, n: int, collections: int) -> dict[str, float]:
    """One run's figures (`FIGURES`)."""
    messages, events = _inputs(corpus, n)
    figures: dict[str, float] = {}
    gc.collect()
    gc.freeze()  # as the worker freezes its startup: modules, classes, the inputs above
    before = len(gc.get_objects())
    store = MessageStore(max_messages=len(messages) + 1, max_bytes=1 << 40)
    for raw in messages:
        store.put(Message.decode(raw))
    gc.collect()
    figures["tracked objects per message"] = (len(gc.get_objects()) - before) / len(store)
    figures["bytes per message record"] = statistics.mean(_size(m) for m in store.messages.values())
    cpu, wall = [], []
    for _ in range(collections):
        started, started_wall = time.thread_time(), time.perf_counter()
        gc.collect()
        cpu.append(time.thread_time() - started)
        wall.append(time.perf_counter() - started_wall)
    figures["full collection, CPU"] = statistics.median(cpu) * 1e3
    figures["full collection, CPU, fastest"] = min(cpu) * 1e3
    figures["full collection, wall"] = statistics.median(wall) * 1e3
    del store
    gc.unfreeze()

    figures["Message.decode"] = _per_record(Message.decode, messages)
    figures["Event.decode (message)"] = _per_record(Event.decode, events[0::2])
    figures["Event.decode (review, message inline)"] = _per_record(Event.decode, events[1::2])
    for key, kind, raws in (("build a Message", Message, messages), ("build an Event (either kind)", Event, events)):
        compiled = _compile(kind)
        wires = [msgspec.json.decode(raw, type=compiled.struct) for raw in raws]
        figures[key] = _per_record(compiled.build, wires)
    return figures


def _show(rows: dict[str, list[str]], header: list[str]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for (key, unit), cells in zip(FIGURES, rows.values()):
        print(f"| {key}{f' ({unit})' if unit else ''} | " + " | ".join(cells) + " |")


def compare(trees: list[str], runs: int, argv: list[str]) -> None:
    """Alternate runs of each tree's code; print the median of each figure over the runs."""
    results: dict[str, list[dict[str, float]]] = {tree: [] for tree in trees}
    for _ in range(runs):
        for tree in trees:
            env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
            command = [sys.executable, __file__, "--json", *argv]
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
            results[tree].append(json.loads(out))
    rows: dict[str, list[str]] = {}
    for key, _ in FIGURES:
        for tree in trees:
            values = [run[key] for run in results[tree]]
            cell = f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"
            rows.setdefault(key, []).append(cell)
    _show(rows, [f"median (min-max) of {runs} runs", *trees])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=8_500)
    parser.add_argument("--corpus", choices=("banking77", "enron", "mix"), default="banking77")
    parser.add_argument("--collections", type=int, default=15)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one run's figures as JSON (for --compare)")
    parser.add_argument("--compare", nargs="+", metavar="TREE", help="alternate runs of these trees' code")
    args = parser.parse_args(argv)
    passed = ["--records", str(args.records), "--corpus", args.corpus, "--collections", str(args.collections)]
    if args.compare:
        compare(args.compare, args.runs, passed)
        return 0
    figures = measure(args.corpus, args.records, args.collections)
    if args.json:
        print(json.dumps(figures))
    else:
        _show(
            {key: [f"{value:.2f}"] for key, value in figures.items()},
            [f"{args.records} {args.corpus} messages", "this tree"],
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
