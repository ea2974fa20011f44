"""The cost of exact de-duplication: `AppliedOffsets.add` against the high-water mark it replaced.

Per ``events`` record the engine asks whether the record's source offset was applied already.
The old check compared it with one mark per dataset and input partition (and lost a record
resent after a later one, issue 13 defect 4); `agents.worker.applied.AppliedOffsets` keeps one
byte per offset of the 8,192 below the mark. Timed over ``--records`` offsets, best of 3:

- **mark**: the old check (compare, then move the mark);
- **in order**: `AppliedOffsets.add` on consecutive offsets (one dataset on its partition);
- **interleaved**: every 8th offset (one dataset of 8 sharing a partition: each record jumps a gap).

Also printed: the bytes of one input partition's ``applied`` entry in a snapshot manifest, and
the memory of one `AppliedOffsets`.

Run: ``.venv/bin/python bench/bench_applied.py [--records 200000]`` (a few seconds)
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.worker.applied import AppliedOffsets  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    n = parser.parse_args(argv).records

    def mark() -> None:
        marks: dict[str, int] = {}
        for offset in range(n):
            if offset < marks.get("s", 0):
                continue
            marks["s"] = offset + 1

    def in_order() -> None:
        applied = AppliedOffsets()
        for offset in range(n):
            applied.add(offset)

    def interleaved() -> None:
        applied = AppliedOffsets()
        for offset in range(0, 8 * n, 8):
            applied.add(offset)

    for name, fn in (("mark (old)", mark), ("in order", in_order), ("interleaved 1 in 8", interleaved)):
        seconds = min(timeit.repeat(fn, number=1, repeat=3))
        print(f"{name:>20}: {seconds / n * 1e9:7.0f} ns per record")
    applied = AppliedOffsets()
    for offset in range(n):
        applied.add(offset)
    print(f"manifest entry: {len(orjson.dumps(applied.to_dict()))} bytes; ring: {len(applied.ring)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
