"""The engine's error-drift detector against River's ``drift.ADWIN``, on the same error streams.

``pipeline.drift.ErrorDrift`` (ADWIN on fixed buckets of 10 outcomes, at most 32 buckets, the
engine's defaults, ``delta=0.002``) and ``river.drift.ADWIN(delta=0.002)`` (River's defaults
otherwise) read the same 0/1 error streams, outcome by outcome:

- *changes*: 2,000 outcomes at error rate ``p0``, then 2,000 at ``p1``; the delay is the
  number of outcomes after the change until the first detection (a detection before it is a
  false alarm; no detection in the 2,000 after it is a miss). The engine reports only rises of
  the error (a falling error is the model learning), so for River the first detection after the
  change counts whichever way ADWIN saw it;
- *stationary*: 20,000 outcomes at a constant rate: every detection is a false alarm;
- *short*: a label's own error stream is short (a label gets tens of reviews, not thousands):
  ``SHORT_BEFORE`` outcomes at ``p0`` then ``SHORT_AFTER`` at ``p1``, the engine's detector against
  ``pipeline.drift.AdwinErrorDrift`` (River's ADWIN with the engine's ``clock=10``, rises only).

Each case runs over ``--seeds`` seeded streams (numpy ``default_rng(seed)``).

Run: ``.venv/bin/python bench/bench_drift.py [--seeds 30]`` (~1 min)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from river import drift  # noqa: E402

from pipeline.drift import AdwinErrorDrift, ErrorDrift  # noqa: E402

CHANGES = [(0.1, 0.2), (0.1, 0.3), (0.2, 0.5), (0.3, 0.8), (0.05, 0.15)]
STATIONARY = [0.05, 0.2, 0.5]
BEFORE, AFTER, LONG = 2000, 2000, 20_000
SHORT = [(0.1, 0.9), (0.3, 1.0), (0.1, 0.6), (0.2, 0.6)]
SHORT_BEFORE, SHORT_AFTER = 50, 30


def detections(stream: np.ndarray) -> tuple[list[int], list[int], float, float]:
    """Positions where each detector fired, and the seconds each took."""
    ours, theirs = ErrorDrift(), drift.ADWIN(delta=0.002)
    mine, rivers = [], []
    started = time.perf_counter()
    for i, error in enumerate(stream.tolist()):
        if ours.update(0, error):
            mine.append(i)
    ours_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for i, error in enumerate(stream.tolist()):
        theirs.update(error)
        if theirs.drift_detected:
            rivers.append(i)
    return mine, rivers, ours_seconds, time.perf_counter() - started


def summary(delays: list[int | None], false_alarms: list[int]) -> str:
    found = [d for d in delays if d is not None]
    delay = f"{statistics.median(found):6.0f} ({min(found)}-{max(found)})" if found else "     -"
    return f"{delay:>16} {len(delays) - len(found):6d} {sum(false_alarms) / len(false_alarms):8.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=30)
    args = parser.parse_args(argv)
    seconds = {"engine": 0.0, "river": 0.0}
    print(
        f"Changes: {BEFORE} outcomes at p0, then {AFTER} at p1; {args.seeds} seeds. "
        "Delay: median (min-max) outcomes; misses; false alarms per stream (before the change)"
    )
    print(
        f"  {'p0 -> p1':12} {'engine delay':>16} {'misses':>6} {'false':>8}   {'ADWIN delay':>16} {'misses':>6} {'false':>8}"
    )
    for p0, p1 in CHANGES:
        rows = {"engine": ([], []), "river": ([], [])}
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            stream = np.concatenate([rng.random(BEFORE) < p0, rng.random(AFTER) < p1]).astype(float)
            mine, rivers, a, b = detections(stream)
            seconds["engine"] += a
            seconds["river"] += b
            for name, fired in (("engine", mine), ("river", rivers)):
                after = [i - BEFORE for i in fired if i >= BEFORE]
                rows[name][0].append(after[0] if after else None)
                rows[name][1].append(sum(i < BEFORE for i in fired))
        print(f"  {p0:.2f} -> {p1:.2f} {summary(*rows['engine'])}   {summary(*rows['river'])}")
    print(f"\nStationary: {LONG} outcomes at a constant rate; {args.seeds} seeds. False alarms per 10,000 outcomes")
    print(f"  {'p':6} {'engine':>8} {'ADWIN':>8}")
    for p in STATIONARY:
        counts = {"engine": 0, "river": 0}
        for seed in range(args.seeds):
            stream = (np.random.default_rng(1000 + seed).random(LONG) < p).astype(float)
            mine, rivers, a, b = detections(stream)
            seconds["engine"] += a
            seconds["river"] += b
            counts["engine"] += len(mine)
            counts["river"] += len(rivers)
        scale = 10_000 / (LONG * args.seeds)
        print(f"  {p:6.2f} {counts['engine'] * scale:8.2f} {counts['river'] * scale:8.2f}")
    print(
        f"\nShort streams (one label's reviews): {SHORT_BEFORE} outcomes at p0, then {SHORT_AFTER} at p1; "
        f"{args.seeds} seeds. Same columns"
    )
    print(
        f"  {'p0 -> p1':12} {'engine delay':>16} {'misses':>6} {'false':>8}   {'ADWIN delay':>16} {'misses':>6} {'false':>8}"
    )
    for p0, p1 in SHORT:
        rows = {"engine": ([], []), "river": ([], [])}
        for seed in range(args.seeds):
            rng = np.random.default_rng(2000 + seed)
            stream = np.concatenate([rng.random(SHORT_BEFORE) < p0, rng.random(SHORT_AFTER) < p1]).astype(float)
            for name, detector in (("engine", ErrorDrift()), ("river", AdwinErrorDrift(clock=10))):
                fired = [i for i, error in enumerate(stream.tolist()) if detector.update(0, error)]
                after = [i - SHORT_BEFORE for i in fired if i >= SHORT_BEFORE]
                rows[name][0].append(after[0] if after else None)
                rows[name][1].append(sum(i < SHORT_BEFORE for i in fired))
        print(f"  {p0:.2f} -> {p1:.2f} {summary(*rows['engine'])}   {summary(*rows['river'])}")
    print(f"\nTime over all streams: engine {seconds['engine']:.2f}s, ADWIN {seconds['river']:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
