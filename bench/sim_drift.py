"""Simulation 5: drift detection when live traffic switches topics (Banking77).

Banking77 (train + test, 13,083 messages) is split by intent into two random halves A and B.
An engine first reviews ``--warmup`` messages, then observes a live stream of
``2 * --half`` messages, reviewing every ``--review-every``-th one as it arrives:

- *new topic*: warm-up reviews from A only; the stream is ``--half`` messages of A, then
  ``--half`` of B (intents the model has never seen);
- *known topics*: warm-up reviews from A and B; the same switch from A to B.

Reported per scenario and seed: the delay (live messages after the switch) until the
predicted-label mix alarm (``live_mix``), the delay (reviews after the switch) until the
prequential error alarm (``review_error`` or ``label_error``), and the false alarms on a
*stationary* stream of the same length (A only, no switch) started from the same warm-up.
Last, false alarms on a stationary stream of all intents seen by an engine starting empty
(*cold start*: the model learns from its first review on, so its predictions move a lot).

Run: ``.venv/bin/python bench/sim_drift.py [--seeds 5]``
"""

from __future__ import annotations

import argparse

import numpy as np
from sim_common import Timer, at, load, review
from sim_common import engine as make_engine


def stream_run(warmup, stream, review_every, seed):
    """Drift events of one run, and the stream position / review count at which each was raised."""
    engine = make_engine("banking77", seed, validation_window=2000, live_window=2000)
    for t, (message, truth) in enumerate(warmup):
        engine.annotate(review(message, [a.name for a in truth.labels], "shuffle", t))
    start = len(warmup) + 1.0
    for k, (message, truth) in enumerate(stream):
        live = at(message, start + k)
        engine.observe(live)
        if k % review_every == 0:
            engine.annotate(review(live, [a.name for a in truth.labels], "shuffle", start + k))
    return [(e, int(e.when - start)) for e in engine.drift.events()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--half", type=int, default=2500)
    parser.add_argument("--review-every", type=int, default=10)
    args = parser.parse_args()
    clock = Timer()
    pairs = load("banking77", split="train") + load("banking77", split="test")
    intents = sorted({r.labels[0].name for _, r in pairs})
    print(
        f"Banking77 drift: warm-up {args.warmup} reviews, stream {args.half} + {args.half} messages, "
        f"1 in {args.review_every} reviewed"
    )
    totals = {}
    for scenario in ("new topic", "known topics"):
        mix_delays, error_delays, false_alarms = [], [], []
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            a_intents = set(rng.permutation(intents)[: len(intents) // 2].tolist())
            shuffled = [pairs[i] for i in rng.permutation(len(pairs))]
            a = [p for p in shuffled if p[1].labels[0].name in a_intents]
            b = [p for p in shuffled if p[1].labels[0].name not in a_intents]
            if scenario == "new topic":
                warmup, a = a[: args.warmup], a[args.warmup :]
            else:
                warmup = a[: args.warmup // 2] + b[: args.warmup // 2]
                warmup = [warmup[i] for i in rng.permutation(len(warmup))]
                a, b = a[args.warmup // 2 :], b[args.warmup // 2 :]
            switching = stream_run(warmup, a[: args.half] + b[: args.half], args.review_every, seed)
            after = [(e, p - args.half) for e, p in switching if p >= args.half]
            before = [e for e, p in switching if p < args.half]
            mix = [d for e, d in after if e.kind == "live_mix"]
            error = [d for e, d in after if e.kind in ("review_error", "label_error")]
            mix_delays.append(mix[0] if mix else None)
            error_delays.append(error[0] // args.review_every if error else None)
            stationary = stream_run(warmup, a[: 2 * args.half], args.review_every, seed)
            false_alarms.append(len(stationary) + len(before))
            print(
                f"  {scenario:12s} seed {seed}: live-mix alarm {mix_delays[-1]} messages after the switch, "
                f"error alarm {error_delays[-1]} reviews after; false alarms {len(before)} before the switch, "
                f"{len(stationary)} on the stationary stream [{clock}]",
                flush=True,
            )
        found = [d for d in mix_delays if d is not None]
        found_error = [d for d in error_delays if d is not None]
        totals[scenario] = (found, found_error, false_alarms)
        print(
            f"{scenario}: live-mix alarm in {len(found)}/{args.seeds} runs, mean delay "
            f"{np.mean(found) if found else float('nan'):.0f} messages (max {max(found) if found else '-'}); "
            f"error alarm in {len(found_error)}/{args.seeds}, mean delay "
            f"{np.mean(found_error) if found_error else float('nan'):.1f} reviews; "
            f"false alarms {sum(false_alarms)} over {args.seeds} stationary streams of {2 * args.half} messages"
        )
    cold = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        cold.append(
            len(
                stream_run(
                    [], [pairs[i] for i in rng.permutation(len(pairs))[: 2 * args.half]], args.review_every, seed
                )
            )
        )
    print(
        f"cold start: false alarms {sum(cold)} over {args.seeds} stationary streams of {2 * args.half} messages "
        f"from an empty engine  [{clock}]"
    )


if __name__ == "__main__":
    main()
