"""Does validation describe the model in force? Banking77, every message observed, half reviewed.

The training file is streamed once, in file order (labels arrive one after another, as when a
team adds labels) and shuffled (seed 0): every message is observed, and every other one is
reviewed right after it (mode ``shuffle``, no inline message). Then:

1. **MAP**: the MAP the engine reports (``metrics().map``) against the current model's MAP on
   the 3,080 test messages (target: within 0.05).
2. **Thresholds**: the engine's own thresholds in force applied to the test messages:
   micro-precision (target >= 0.75) and labels per message (target <= 1.3; each has one).
3. **A new label's first 25 reviews**: when a label's 25th review is applied, its reported AP
   against the current model's AP for it on held-out data (target: within 0.1). The held-out
   data of record is "unreviewed": the messages observed so far and not reviewed (the other
   half of the stream, never learned, with the dataset's labels), which have the same label
   mix as the reviews so far. The test split is also given ("test, seen": test messages of the
   labels reviewed so far; "test, all": every test message), but in file order a label with 25
   reviews is rarer among the reviews than among those test messages, and AP falls with a
   label's prevalence, so the test split sets a higher bar than the engine's data can show.

The metrics come from the public API (``metrics()``); the test scores are what ``predict()``
gives, computed in batches (``_features`` and ``_score``) to keep the run short.

Run: ``.venv/bin/python bench/bench_validation.py [--orders file,shuffled] [--config '{"holdout_share": 0.1}']``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402

from agents.ingest.datasets import banking77  # noqa: E402
from pipeline import Refiner, RefinerConfig  # noqa: E402
from pipeline.model import SparseRows  # noqa: E402

NEW_LABEL_REVIEWS = 25


def shuffled(items, seed=0):
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order]


class TestSplit:
    """The test messages, featurised once, scored by an engine's current model."""

    def __init__(self, engine: Refiner, pairs) -> None:
        self.features = [engine._features(m) for m, _ in pairs]
        self.truth = [a.labels[0].name for _, a in pairs]

    def scores(self, engine: Refiner) -> np.ndarray:
        blocks = [self.features[i : i + 512] for i in range(0, len(self.features), 512)]
        return np.concatenate([engine._score(SparseRows.stack(b)) for b in blocks])[:, : len(engine.labels)]

    def label_ap(self, engine: Refiner, scores: np.ndarray, label: str, seen: set[str] | None = None) -> float:
        keep = [i for i, t in enumerate(self.truth) if seen is None or t in seen]
        positives = np.array([self.truth[i] == label for i in keep])
        return float(average_precision_score(positives, scores[keep, engine.label_index[label]]))


def run(order: str, config: RefinerConfig) -> dict:
    train = list(banking77("train", mode="shuffle"))
    if order == "shuffled":
        train = shuffled(train)
    engine = Refiner("banking77", config)
    test = TestSplit(engine, list(banking77("test")))
    reviewed_per_label: dict[str, int] = {}
    new_label: list[tuple[str, float | None, float, float, float]] = []
    unreviewed_features, unreviewed_truth = [], []
    started = time.perf_counter()
    for i, (message, annotation) in enumerate(train):
        engine.observe(message)
        if i % 2:
            unreviewed_features.append(engine._features(message))
            unreviewed_truth.append(annotation.labels[0].name)
            continue
        engine.annotate(annotation)
        label = annotation.labels[0].name
        reviewed_per_label[label] = reviewed_per_label.get(label, 0) + 1
        if reviewed_per_label[label] == NEW_LABEL_REVIEWS:
            reported = engine.metrics().labels[label].average_precision
            scores = test.scores(engine)
            unreviewed = engine._score(SparseRows.stack(unreviewed_features))[:, engine.label_index[label]]
            new_label.append(
                (
                    label,
                    reported,
                    test.label_ap(engine, scores, label),
                    test.label_ap(engine, scores, label, seen=set(reviewed_per_label)),
                    float(average_precision_score([t == label for t in unreviewed_truth], unreviewed)),
                )
            )
    seconds = time.perf_counter() - started
    snap = engine.metrics()
    scores = test.scores(engine)
    labels = engine.labels
    test_aps = [
        average_precision_score([t == name for t in test.truth], scores[:, j])
        for j, name in enumerate(labels)
        if any(t == name for t in test.truth)
    ]
    predicted = scores >= engine.thresholds[: len(labels)]
    hits = sum(bool(predicted[i, engine.label_index[t]]) for i, t in enumerate(test.truth) if t in engine.label_index)
    n_predicted = int(predicted.sum())
    precision = hits / n_predicted if n_predicted else float("nan")
    top1 = float(np.mean([labels[int(np.argmax(row))] == t for row, t in zip(scores, test.truth)]))
    errors_all = [abs(r - a) for _, r, a, _, _ in new_label if r is not None]
    errors_seen = [abs(r - s) for _, r, _, s, _ in new_label if r is not None]
    errors = [abs(r - u) for _, r, _, _, u in new_label if r is not None]
    result = {
        "order": order,
        "reported_map": snap.map,
        "test_map": float(np.mean(test_aps)),
        "micro_precision": precision,
        "micro_recall": hits / len(test.truth),
        "labels_per_message": n_predicted / len(test.truth),
        "top1_accuracy": top1,
        "rating": snap.rating.score,
        "new_labels": len(new_label),
        "new_label_unreported": sum(r is None for _, r, _, _, _ in new_label),
        "new_label_within_01": sum(e <= 0.1 for e in errors),
        "new_label_mean_error": float(np.mean(errors)) if errors else float("nan"),
        "new_label_median_error": float(np.median(errors)) if errors else float("nan"),
        "new_label_mean_unreviewed": float(np.mean([u for _, _, _, _, u in new_label])),
        "new_label_within_01_all": sum(e <= 0.1 for e in errors_all),
        "new_label_within_01_seen": sum(e <= 0.1 for e in errors_seen),
        "new_label_mean_error_all": float(np.mean(errors_all)) if errors_all else float("nan"),
        "new_label_mean_error_seen": float(np.mean(errors_seen)) if errors_seen else float("nan"),
        "new_label_mean_reported": float(np.mean([r for _, r, _, _, _ in new_label if r is not None])),
        "new_label_mean_test_all": float(np.mean([a for _, _, a, _, _ in new_label])),
        "new_label_mean_test_seen": float(np.mean([s for _, _, _, s, _ in new_label])),
        "seconds": seconds,
    }
    print(
        f"\n{order} order: {len(train)} messages observed, {(len(train) + 1) // 2} reviewed ({seconds:.0f}s)\n"
        f"  MAP reported {_f(snap.map)}   current model on test {result['test_map']:.4f}   "
        f"gap {_f(abs((snap.map or 0) - result['test_map']))} (target <= 0.05)\n"
        f"  at the engine's thresholds on test: micro-precision {precision:.4f} (target >= 0.75), "
        f"recall {result['micro_recall']:.4f}, labels per message {result['labels_per_message']:.3f} "
        f"(target <= 1.3); top-1 accuracy {top1:.4f}\n"
        f"  rating {snap.rating.score:.1f} ({snap.rating.band}), ready {snap.rating.ready}\n"
        f"  new labels at their {NEW_LABEL_REVIEWS}th review: {len(new_label)} labels, "
        f"{result['new_label_unreported']} without a reported AP\n"
        f"    |reported - held-out AP| <= 0.1 for {result['new_label_within_01']} (unreviewed), "
        f"{result['new_label_within_01_seen']} (test, seen), {result['new_label_within_01_all']} (test, all); "
        f"mean error {result['new_label_mean_error']:.3f} (median {result['new_label_median_error']:.3f}) / "
        f"{result['new_label_mean_error_seen']:.3f} / {result['new_label_mean_error_all']:.3f}\n"
        f"    mean AP reported {result['new_label_mean_reported']:.3f}, unreviewed {result['new_label_mean_unreviewed']:.3f}, "
        f"test seen {result['new_label_mean_test_seen']:.3f}, test all {result['new_label_mean_test_all']:.3f}"
    )
    return result


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", default="file,shuffled")
    parser.add_argument("--config", default="{}", help="RefinerConfig overrides as JSON")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    config = RefinerConfig.from_dict({**RefinerConfig().to_dict(), **json.loads(args.config)})
    print(f"engine config overrides: {args.config}")
    results = [run(order, config) for order in args.orders.split(",")]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
