"""The three real data sets of ``../shared/datasets`` as (Message, Annotation) pairs.

Each loader reads one data set in file order and yields, deterministically, one
``(Message, Annotation)`` pair per item: the message as the service would receive it, and the
review that the data set's own labellers gave it. Two runs yield equal pairs.

- Ids are stable and unique per dataset: ``train-00042`` (Banking77), ``banking-f3-17``
  (NLU++: domain, fold, index in the fold), the file's own id for Enron (``enron-10425``).
- Timestamps: Enron keeps each email's own ``Date``; Banking77 and NLU++ have none, so item i
  gets ``BASE_TIMESTAMP + i`` seconds (Banking77 ``test`` starts one day after ``train``,
  NLU++ hotels one day after banking), which keeps file order and time order the same.
- Channel: ``chat`` for Banking77 and NLU++, ``email`` for Enron.
- Annotations: mode ``"label"`` (the data sets were labelled item by item, not found through a
  Refinery suggestion; pass ``mode="shuffle"`` to present them as an unbiased random sample),
  annotator ``"dataset"``, timestamp equal to the message's, no inline message.

>>> message, review = next(banking77())           # doctest: +SKIP
>>> message.id, message.body, review.labels[0].name  # doctest: +SKIP
('train-00000', 'I am still waiting on my card?', 'card_arrival')

``load(name, **kw)`` dispatches by name (one of `NAMES`); ``label_set(name, ...)`` gives a data
set's taxonomy. A missing data folder raises `DatasetMissing`, which says where it looked.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

from agents.settings import datasets_dir
from schemas import Annotation, Message

__all__ = [
    "BASE_TIMESTAMP",
    "DatasetMissing",
    "NAMES",
    "NLUPP_FOLDS",
    "banking77",
    "enron",
    "label_set",
    "load",
    "nlupp",
]

NAMES = ("banking77", "nlupp", "enron")
#: 2026-01-01T00:00:00Z: the time of the first item of the data sets that carry no time.
BASE_TIMESTAMP = 1_767_225_600.0
_DAY = 86_400.0
NLUPP_FOLDS = 20
_SPLITS = ("train", "test")
_DOMAINS = ("banking", "hotels")

Pair = tuple[Message, Annotation]


class DatasetMissing(FileNotFoundError):
    """A data set's files are not where the loader looked; the message says how to fix it."""


def _root(root: Path | str | None) -> Path:
    return Path(root) if root is not None else datasets_dir()


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetMissing(
            f"{what} not found at {path}: set REFINERY_DATASETS to the folder holding "
            "banking77/, nlupp/ and enron/ (default ../shared/datasets beside the project)"
        )
    return path


def _message(**fields) -> Message:
    # Through the contract's parser, so every pair is exactly what a consumer decodes.
    return Message.from_dict(fields)


def _review(message: Message, labels: Iterable[str], mode: str, fields: Iterable[dict] = ()) -> Annotation:
    return Annotation.from_dict(
        {
            "dataset": message.dataset,
            "message_id": message.id,
            "timestamp": message.timestamp,
            # NLU++ lists a few intents twice in one utterance; a review pins each label once.
            "labels": [{"name": name} for name in dict.fromkeys(labels)],
            "mode": mode,
            "annotator": "dataset",
            "fields": list(fields),
        }
    )


def banking77(
    split: str = "train", dataset: str = "banking77", *, mode: str = "label", root: Path | str | None = None
) -> Iterator[Pair]:
    """Banking77 customer queries, one intent each: 10,003 (``train``) or 3,080 (``test``).

    Message ``i`` of a split has id ``f"{split}-{i:05d}"``, channel ``chat``, metadata
    ``{"split": split}``; the review pins its ``category``.

    Parameters
    ----------
    split
        ``"train"`` or ``"test"``.
    dataset
        The dataset the events name.
    mode
        The reviews' mode (``"label"``; ``"shuffle"`` presents them as a random sample).
    root
        The data sets folder; by default `agents.settings.datasets_dir`.

    Yields
    ------
    (Message, Annotation)
        In file order.
    """
    if split not in _SPLITS:
        raise ValueError(f"split: expected one of {', '.join(map(repr, _SPLITS))}, got {split!r}")
    path = _require(_root(root) / "banking77" / f"{split}.csv", f"Banking77 {split} split")
    base = BASE_TIMESTAMP + _SPLITS.index(split) * _DAY
    with path.open(newline="", encoding="utf-8") as file:
        for i, row in enumerate(csv.DictReader(file)):
            message = _message(
                dataset=dataset,
                id=f"{split}-{i:05d}",
                timestamp=base + i,
                channel="chat",
                body=row["text"],
                language="en",
                metadata={"split": split},
            )
            yield message, _review(message, [row["category"]], mode)


def nlupp(
    domain: str = "banking",
    folds: Iterable[int] | None = None,
    dataset: str | None = None,
    *,
    mode: str = "label",
    root: Path | str | None = None,
) -> Iterator[Pair]:
    """NLU++ utterances, multi-label: 2,071 (``banking``) or 1,009 (``hotels``) over 20 folds.

    Folds are read in numeric order (all of them by default). Utterance ``j`` of fold ``f`` has
    id ``f"{domain}-f{f}-{j}"``, channel ``chat``, metadata ``{"fold": f}``; its review pins
    every intent (none for the utterances that have none: "reviewed, none apply") and its
    slots as extraction fields (name, character span, text as value).

    Parameters
    ----------
    domain
        ``"banking"`` or ``"hotels"``.
    folds
        Fold numbers (0-19) to read, in the order given; all by default.
    dataset
        The dataset the events name; ``nlupp-<domain>`` by default (the two domains have
        different taxonomies, so they are different datasets).
    mode, root
        As for `banking77`.

    Yields
    ------
    (Message, Annotation)
        Fold by fold, in file order.
    """
    if domain not in _DOMAINS:
        raise ValueError(f"domain: expected one of {', '.join(map(repr, _DOMAINS))}, got {domain!r}")
    dataset = dataset or f"nlupp-{domain}"
    folder = _require(_root(root) / "nlupp" / domain, f"NLU++ {domain} domain")
    chosen = range(NLUPP_FOLDS) if folds is None else list(folds)
    base = BASE_TIMESTAMP + _DOMAINS.index(domain) * _DAY
    index = 0
    for fold in chosen:
        path = _require(folder / f"fold{fold}.json", f"NLU++ {domain} fold {fold}")
        for j, item in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            message = _message(
                dataset=dataset,
                id=f"{domain}-f{fold}-{j}",
                timestamp=base + index,
                channel="chat",
                body=item["text"],
                language="en",
                metadata={"fold": fold},
            )
            fields = [
                {"name": name, "start": slot["span"][0], "end": slot["span"][1], "value": slot["text"]}
                for name, slot in item.get("slots", {}).items()
            ]
            yield message, _review(message, item.get("intents", []), mode, fields)
            index += 1


def enron(
    dataset: str = "enron", min_annotators: int = 1, *, mode: str = "label", root: Path | str | None = None
) -> Iterator[Pair]:
    """1,702 labelled Enron emails; labels are two-level (``"Parent > Child"``), 3.4 per email.

    Each email keeps its own id, ``Date`` (as epoch seconds), from, to, cc, subject and body;
    channel ``email``, metadata ``{"folder": ...}``. The review pins the labels that at least
    ``min_annotators`` people gave.

    Parameters
    ----------
    dataset
        The dataset the events name.
    min_annotators
        1 (the default) keeps every label, including the ones only one of the two annotators
        gave (a natural source of check-label and missed-label cases); 2 keeps agreed ones.
    mode, root
        As for `banking77`.

    Yields
    ------
    (Message, Annotation)
        In file order.
    """
    path = _require(_root(root) / "enron" / "emails.jsonl", "Enron emails")
    with path.open(encoding="utf-8") as file:
        for line in file:
            item = json.loads(line)
            message = _message(
                dataset=dataset,
                id=item["id"],
                timestamp=parsedate_to_datetime(item["timestamp"]).timestamp(),
                channel="email",
                subject=item["subject"],
                body=item["body"],
                **{"from": item["from"]},
                to=item["to"],
                cc=item["cc"],
                language="en",
                metadata={"folder": item["folder"]},
            )
            labels = [label["label"] for label in item["labels"] if label["annotators"] >= min_annotators]
            yield message, _review(message, labels, mode)


_LOADERS = {"banking77": banking77, "nlupp": nlupp, "enron": enron}


def load(name: str, **kwargs) -> Iterator[Pair]:
    """The pairs of data set ``name`` (one of `NAMES`); ``kwargs`` go to its loader.

    >>> load("imdb")
    Traceback (most recent call last):
    ...
    ValueError: dataset: expected one of 'banking77', 'nlupp', 'enron', got 'imdb'
    """
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise ValueError(f"dataset: expected one of {', '.join(map(repr, NAMES))}, got {name!r}") from None
    return loader(**kwargs)


def label_set(name: str, *, domain: str = "banking", root: Path | str | None = None) -> tuple[str, ...]:
    """The taxonomy of data set ``name`` as its files describe it, sorted.

    77 intents for Banking77, 48 (banking) or 40 (hotels) for NLU++, 53 ``Parent > Child``
    labels for Enron (parents not listed: a child implies its parent).
    """
    base = _root(root)
    if name == "banking77":
        names = json.loads(_require(base / "banking77" / "categories.json", "Banking77 categories").read_text())
    elif name == "nlupp":
        ontology = json.loads(_require(base / "nlupp" / "ontology.json", "NLU++ ontology").read_text())
        names = [
            intent
            for intent, info in ontology["intents"].items()
            if "general" in info["domain"] or domain in info["domain"]
        ]
    elif name == "enron":
        names = json.loads(_require(base / "enron" / "taxonomy.json", "Enron taxonomy").read_text())["labels"]
    else:
        raise ValueError(f"dataset: expected one of {', '.join(map(repr, NAMES))}, got {name!r}")
    return tuple(sorted(names))
