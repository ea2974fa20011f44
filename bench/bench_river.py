"""River classifiers plugged into the engine against its default model: quality and speed, same run.

Models (``Refiner(..., model=M)``; a binary classifier is copied once per label):

- ``default``: the engine's own ``OnlineLinear`` (vectorised AdaGrad logistic regression);
- ``MultinomialNB``: ``river.naive_bayes.MultinomialNB()`` (River's ``ComplementNB`` computes a sum over
  its whole vocabulary for every feature of every prediction: hours at 77 labels);
- ``LogReg``: ``river.linear_model.LogisticRegression()`` (River's defaults: SGD at 0.01), on
  rows of norm ``RefinerConfig.model_feature_norm`` (30), as every plugged model here;
- ``LogReg, unit rows``: the same on the engine's unit-norm rows (``model_feature_norm=1``),
  to show what the scale does;
- ``HoeffdingTree``: ``river.tree.HoeffdingTreeClassifier()``.

Data, subsampled so that a run takes minutes (the plugged models learn row by row, one River
model per label): Banking77, the first ``--train`` messages of the training set in a fixed
shuffled order (seed 0) streamed as reviews, then every 10th test message (308) observed;
Enron, 70% of the emails (shuffled, seed 0) of which the first ``--train`` streamed, the other
30% observed (511). Quality: macro-F1 of the engine's answer, the labels at the thresholds in
force (chosen from its validation window); for Banking77 also of the most confident label.
Speed: reviews per second while streaming (``annotate``, message inline) and messages per
second for ``observe_many`` of the test set.

Run: ``.venv/bin/python bench/bench_river.py [--train 500] [--only banking77|enron]``
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_quality import inline, shuffled  # noqa: E402
from river import linear_model, naive_bayes, tree  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402
from sklearn.preprocessing import MultiLabelBinarizer  # noqa: E402

from agents.ingest.datasets import banking77, enron  # noqa: E402
from pipeline import Refiner, RefinerConfig  # noqa: E402

warnings.filterwarnings("ignore")

#: name -> (the model, its RefinerConfig fields)
MODELS = {
    "default": (lambda: None, {}),
    "MultinomialNB": (lambda: naive_bayes.MultinomialNB(), {}),
    "LogReg": (lambda: linear_model.LogisticRegression(), {}),
    "LogReg, unit rows": (lambda: linear_model.LogisticRegression(), {"model_feature_norm": 1.0}),
    "HoeffdingTree": (lambda: tree.HoeffdingTreeClassifier(), {}),
}


def run(dataset: str, train, test, single_label: bool) -> None:
    print(f"\n{dataset}: {len(train)} reviews streamed, {len(test)} held-out messages observed")
    head = f"  {'model':18} {'macro-F1':>9} {'x default':>9}"
    head += f" {'top-1 macro-F1':>15} {'x default':>9}" if single_label else ""
    print(head + f" {'annotate/s':>11} {'observe_many/s':>15}")
    truth = [set(a.pinned_labels()) for _, a in test]
    baseline = {}
    for name, (make, fields) in MODELS.items():
        engine = Refiner(dataset, RefinerConfig(**fields), seed=0, model=make())
        started = time.perf_counter()
        for message, review in train:
            engine.annotate(inline(message, review))
        annotate = len(train) / (time.perf_counter() - started)
        started = time.perf_counter()
        predictions = engine.observe_many([m for m, _ in test])
        observe = len(test) / (time.perf_counter() - started)
        labels = sorted(set(engine.labels) | {name for t in truth for name in t})
        binarizer = MultiLabelBinarizer(classes=labels)
        macro = f1_score(
            binarizer.fit_transform(truth),
            binarizer.transform([set(p.labels) for p in predictions]),
            average="macro",
            zero_division=0,
        )
        baseline.setdefault("macro", macro)
        line = f"  {name:18} {macro:9.4f} {macro / baseline['macro']:9.2f}"
        if single_label:
            top = [max(p.confidences, key=p.confidences.get) if p.confidences else "" for p in predictions]
            top_macro = f1_score([next(iter(t)) for t in truth], top, average="macro", zero_division=0)
            baseline.setdefault("top", top_macro)
            line += f" {top_macro:15.4f} {top_macro / baseline['top']:9.2f}"
        print(line + f" {annotate:11.0f} {observe:15.0f}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=500, help="reviews streamed per data set")
    parser.add_argument("--only", choices=("banking77", "enron"))
    args = parser.parse_args(argv)
    if args.only in (None, "banking77"):
        train = shuffled(list(banking77("train")))[: args.train]
        run("banking77", train, list(banking77("test"))[::10], single_label=True)
    if args.only in (None, "enron"):
        pairs = shuffled(list(enron()))
        cut = int(0.7 * len(pairs))
        run("enron", pairs[:cut][: args.train], pairs[cut:], single_label=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
