"""How long snapshots and publications hold the worker's engine thread (issue 11), in-process.

The worker applies batches of events in its engine thread, under its engines' lock; a snapshot
and a publication's metrics also take that thread, and no event is applied meanwhile. This
bench replays what that thread does on the Banking77 engine of ``bench_publication.py`` (3,000
messages, a third reviewed, then ``--batches`` batches of 40 more events), and after every batch
makes the engine-thread call of a snapshot or, in turn, of a publication's metrics, timing each:

- **snapshot**: ``engine.capture()`` (the copy; encoding and compression run in the snapshot
  thread), or ``engine.snapshot()`` in a tree without ``capture``;
- **metrics**: ``engine.frozen()`` (the copy; the metrics and the suggestion pools are computed
  from it in another thread), or ``engine.metrics()`` and ``engine.suggestion_pool()`` in a tree
  without ``frozen``.

The work moved out of the engine thread (``StateCapture.encode`` and ``metrics`` of the copy) is
timed too. Printed: median and max (ms) of each, per tree.

Run: ``.venv/bin/python bench/bench_lock.py [--batches 60]``, or
``.venv/bin/python bench/bench_lock.py --compare /work/wt-base . --runs 3`` (alternated run by
run, one subprocess per run and tree, ``PYTHONPATH`` set to the tree; about 40 s per run)
"""

from __future__ import annotations

import argparse
import json
import os
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

import bench_service  # noqa: E402

from pipeline import Refiner, RefinerConfig  # noqa: E402

NOW = 1e9
BATCH = 40  # events between two engine-thread calls (10 of them reviews, on average)


def run(batches: int) -> dict[str, list[float]]:
    """Milliseconds of every call, by kind: ``snapshot``/``metrics`` (engine thread) and, in a
    tree that moves work out of it, ``encode``/``off_thread_metrics``."""
    events = bench_service.stream(3000 + batches * BATCH * 3 // 4, 1 / 3, 20, seed=0)
    engine = Refiner(bench_service.DATASET, config=RefinerConfig(), seed=0)
    bench_service.apply(engine, events[: -batches * BATCH])
    rest = events[-batches * BATCH :]
    times: dict[str, list[float]] = {}

    def timed(kind: str, fn):
        start = time.perf_counter()
        result = fn()
        times.setdefault(kind, []).append((time.perf_counter() - start) * 1e3)
        return result

    for i in range(batches):
        bench_service.apply(engine, rest[i * BATCH : (i + 1) * BATCH])
        if i % 2 == 0:
            if hasattr(engine, "capture"):
                captured = timed("snapshot", engine.capture)
                timed("encode", captured.encode)
            else:
                timed("snapshot", engine.snapshot)
        elif hasattr(engine, "frozen"):
            frozen = timed("metrics", engine.frozen)
            timed("off_thread_metrics", lambda f=frozen: (f.metrics(now=NOW), f.suggestion_pool()))
        else:
            timed("metrics", lambda: (engine.metrics(now=NOW), engine.suggestion_pool()))
    return times


def summary(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {k: {"median": round(statistics.median(v), 2), "max": round(max(v), 2)} for k, v in times.items()}


def compare(trees: list[str], runs: int, batches: int) -> None:
    results: dict[str, dict[str, list[float]]] = {tree: {} for tree in trees}
    for _ in range(runs):
        for tree in trees:
            env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
            out = subprocess.run(
                [sys.executable, __file__, "--raw", "--batches", str(batches)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            for kind, values in json.loads(out).items():
                results[tree].setdefault(kind, []).extend(values)
    print(f"ms over {runs} runs x {batches} batches (median / max) | " + " | ".join(trees))
    for kind in ("snapshot", "metrics", "encode", "off_thread_metrics"):
        cells = []
        for tree in trees:
            values = results[tree].get(kind)
            cells.append(f"{statistics.median(values):7.2f} / {max(values):7.2f}" if values else f"{'-':>17}")
        print(f"{kind:>18} | " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--raw", action="store_true", help="one run, every call's time as JSON (for --compare)")
    parser.add_argument("--compare", nargs="+", metavar="TREE", help="alternate runs of these trees' code")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, args.runs, args.batches)
        return
    times = run(args.batches)
    print(json.dumps(times if args.raw else summary(times)))


if __name__ == "__main__":
    main()
