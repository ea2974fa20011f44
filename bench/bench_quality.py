"""Quality of the engine after one streaming pass, against batch scikit-learn baselines, same run.

1. Banking77 (77 intents, one per message): the 10,003 training messages are streamed as
   reviews (message inline) in a fixed shuffled order (seed 0), once; then the 3,080 test
   messages are observed and the most confident label is the answer. Baseline: TF-IDF (1-2
   grams) + LogisticRegression trained in batch on the same training set. Target (issue 3):
   test accuracy and macro-F1 >= 0.97 x baseline. Also: prequential accuracy (each review's
   out-of-sample prediction, before the model learned from it).
2. NLU++ banking and hotels (multi-label): folds 0-14 streamed as reviews (shuffled), folds
   15-19 observed. Engine answer: the labels at the thresholds in force. Micro/macro F1 and MAP
   (labels with >= 5 positives in the test folds). Baseline: TF-IDF + one-vs-rest
   LogisticRegression, threshold 0.5.
3. Enron (53 two-level labels, parents implied): 70% of the emails (shuffled) streamed as
   reviews, 30% observed; MAP over labels (parents included) with >= 5 test positives, against
   the same one-vs-rest baseline on subject + body.

Run: ``.venv/bin/python bench/bench_quality.py [--only banking77|nlupp|enron] [--engine-only]``
(``--engine-only`` skips the batch baselines, the slow half, and prints the engine's figures.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, average_precision_score, f1_score  # noqa: E402
from sklearn.multiclass import OneVsRestClassifier  # noqa: E402
from sklearn.preprocessing import MultiLabelBinarizer  # noqa: E402

from agents.ingest.datasets import banking77, enron, nlupp  # noqa: E402
from pipeline import Refiner, RefinerConfig  # noqa: E402
from schemas import Annotation  # noqa: E402

warnings.filterwarnings("ignore", message="Label .* is present in all training examples")


def shuffled(items, seed=0):
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order]


def inline(message, annotation) -> Annotation:
    return Annotation.from_dict({**annotation.to_dict(), "message": message.to_dict(), "mode": "shuffle"})


def stream(engine: Refiner, pairs) -> list:
    """Review every pair once, in order; the out-of-sample predictions."""
    return [engine.annotate(inline(m, a)).prediction for m, a in pairs]


ENGINE_ONLY = False


def ratio_line(name, engine_value, baseline_value, target=None):
    if ENGINE_ONLY:
        print(f"  {name:28} engine {engine_value:.4f}")
        return
    ratio = engine_value / baseline_value if baseline_value else float("nan")
    verdict = "" if target is None else ("  PASS" if ratio >= target else "  FAIL") + f" (target >= {target}x)"
    print(f"  {name:28} engine {engine_value:.4f}   baseline {baseline_value:.4f}   ratio {ratio:.3f}{verdict}")


def text_of(message) -> str:
    return f"{message.subject}\n{message.body}" if message.subject else message.body


def bench_banking77(config: RefinerConfig) -> dict:
    print("\nBanking77: one streaming pass over the training set, then the test set")
    train = shuffled(list(banking77("train")))
    test = list(banking77("test"))
    started = time.perf_counter()
    engine = Refiner("banking77", config)
    out_of_sample = stream(engine, train)
    stream_seconds = time.perf_counter() - started
    predictions = engine.observe_many([m for m, _ in test])
    answers = [max(p.confidences, key=p.confidences.get) for p in predictions]
    truth = [a.labels[0].name for _, a in test]
    prequential = np.mean(
        [
            bool(p.confidences) and max(p.confidences, key=p.confidences.get) == a.labels[0].name
            for p, (_, a) in zip(out_of_sample, train)
        ]
    )

    started = time.perf_counter()
    if ENGINE_ONLY:
        baseline_answers = answers
    else:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        x_train = vectorizer.fit_transform([m.body for m, _ in train])
        baseline = LogisticRegression(max_iter=2000, C=10.0).fit(x_train, [a.labels[0].name for _, a in train])
        baseline_answers = baseline.predict(vectorizer.transform([m.body for m, _ in test]))
    baseline_seconds = time.perf_counter() - started

    accuracy, macro = accuracy_score(truth, answers), f1_score(truth, answers, average="macro")
    b_accuracy, b_macro = accuracy_score(truth, baseline_answers), f1_score(truth, baseline_answers, average="macro")
    ratio_line("test accuracy", accuracy, b_accuracy, 0.97)
    ratio_line("test macro-F1", macro, b_macro, 0.97)
    print(f"  prequential accuracy (one pass, out-of-sample): {prequential:.4f}")
    snap = engine.metrics()
    print(f"  engine window MAP {snap.map:.4f}, rating {snap.rating.score:.1f} ({snap.rating.band})")
    print(
        f"  time: engine stream {stream_seconds:.1f}s ({len(train) / stream_seconds:.0f} reviews/s), "
        f"baseline fit+predict {baseline_seconds:.1f}s"
    )
    return {
        "accuracy": accuracy,
        "macro_f1": macro,
        "baseline_accuracy": b_accuracy,
        "baseline_macro_f1": b_macro,
        "prequential_accuracy": float(prequential),
    }


def multilabel_scores(truth: list[set], predicted: list[set], scores: np.ndarray, labels: list[str], min_support=5):
    binarizer = MultiLabelBinarizer(classes=labels)
    y_true = binarizer.fit_transform(truth)
    y_pred = binarizer.transform(predicted)
    micro = f1_score(y_true, y_pred, average="micro", zero_division=0)
    macro = f1_score(y_true, y_pred, average="macro", zero_division=0)
    rated = [j for j in range(len(labels)) if y_true[:, j].sum() >= min_support]
    mean_ap = float(np.mean([average_precision_score(y_true[:, j], scores[:, j]) for j in rated]))
    return micro, macro, mean_ap, len(rated)


def baseline_multilabel(train_texts, train_labels, test_texts, labels):
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    binarizer = MultiLabelBinarizer(classes=labels)
    y = binarizer.fit_transform(train_labels)
    keep = y.sum(axis=0) > 0
    model = OneVsRestClassifier(LogisticRegression(max_iter=2000, C=10.0))
    model.fit(vectorizer.fit_transform(train_texts), y[:, keep])
    probabilities = np.zeros((len(test_texts), len(labels)))
    probabilities[:, keep] = model.predict_proba(vectorizer.transform(test_texts))
    predicted = [{labels[j] for j in np.flatnonzero(row >= 0.5)} for row in probabilities]
    return predicted, probabilities


def bench_multilabel(name: str, train, test, config: RefinerConfig, dataset: str) -> dict:
    engine = Refiner(dataset, config)
    stream(engine, train)
    predictions = engine.observe_many([m for m, _ in test])
    truth = [set(a.pinned_labels()) for _, a in test]
    labels = sorted(set(engine.labels) | {name for t in truth for name in t})
    index = {name: j for j, name in enumerate(labels)}
    scores = np.zeros((len(test), len(labels)))
    for i, p in enumerate(predictions):
        for label, confidence in p.confidences.items():
            scores[i, index[label]] = confidence
    micro, macro, mean_ap, rated = multilabel_scores(truth, [set(p.labels) for p in predictions], scores, labels)

    if ENGINE_ONLY:
        b_micro, b_macro, b_map = micro, macro, mean_ap
    else:
        train_labels = [set(a.pinned_labels()) for _, a in train]
        predicted, probabilities = baseline_multilabel(
            [text_of(m) for m, _ in train], train_labels, [text_of(m) for m, _ in test], labels
        )
        b_micro, b_macro, b_map, _ = multilabel_scores(truth, predicted, probabilities, labels)
    print(f"\n{name}: {len(train)} streamed reviews, {len(test)} test messages, MAP over {rated} labels")
    ratio_line("micro-F1", micro, b_micro)
    ratio_line("macro-F1", macro, b_macro)
    ratio_line("MAP", mean_ap, b_map)
    snap = engine.metrics()
    print(
        f"  engine window MAP {snap.map if snap.map is not None else float('nan'):.4f}, "
        f"rating {snap.rating.score:.1f} ({snap.rating.band})"
    )
    return {
        "micro_f1": micro,
        "macro_f1": macro,
        "map": mean_ap,
        "baseline_micro_f1": b_micro,
        "baseline_macro_f1": b_macro,
        "baseline_map": b_map,
    }


def bench_nlupp(config: RefinerConfig) -> dict:
    results = {}
    for domain in ("banking", "hotels"):
        train = shuffled(list(nlupp(domain, folds=range(15))))
        test = list(nlupp(domain, folds=range(15, 20)))
        results[domain] = bench_multilabel(f"NLU++ {domain}", train, test, config, f"nlupp-{domain}")
    return results


def bench_enron(config: RefinerConfig) -> dict:
    pairs = shuffled(list(enron()))
    cut = int(0.7 * len(pairs))
    return bench_multilabel("Enron (hierarchy)", pairs[:cut], pairs[cut:], config, "enron")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("banking77", "nlupp", "enron"))
    parser.add_argument("--engine-only", action="store_true", help="skip the batch baselines")
    parser.add_argument("--config", default="{}", help="RefinerConfig overrides as JSON, e.g. '{\"char_ngrams\": [4]}'")
    args = parser.parse_args(argv)
    global ENGINE_ONLY
    ENGINE_ONLY = args.engine_only
    config = RefinerConfig.from_dict({**RefinerConfig().to_dict(), **json.loads(args.config)})
    print(
        f"engine config: feature_bits={config.feature_bits} char_ngrams={config.char_ngrams} "
        f"replay={config.replay}/{config.replay_every} learning_rate={config.learning_rate}"
    )
    if args.only in (None, "banking77"):
        bench_banking77(config)
    if args.only in (None, "nlupp"):
        bench_nlupp(config)
    if args.only in (None, "enron"):
        bench_enron(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
