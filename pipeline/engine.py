"""What the shell asks of a dataset's engine: the `Engine` protocol, and the suggestion lists built from one.

`pipeline.Refiner` is the engine; the worker, its API and its pages type their engines as
`Engine`, so they name every verb they use and nothing private. A River-style estimator has
``learn_one``/``predict_one``; an engine has the Refinery verbs (DESIGN.md section 1):

- ``observe_many`` (``observe``): predict live messages and remember them;
- ``annotate``: apply a review;
- ``predict``: what ``observe`` would return, without changing the state;
- ``metrics``, ``suggestions``, ``curve``: read the state;
- ``suggestion_pool``: the suggestion pools as they are, to rank lists from later;
- ``frozen``: a copy of the state as it is, whose reading verbs (``metrics``, ``suggestion_pool``...)
  may run in another thread while the engine goes on;
- ``snapshot``: the state as bytes (``Refiner.restore`` reads them back); ``capture``: the same,
  copied now and encoded later (``capture().encode()``, in any thread);
- ``threshold_table``: the three thresholds of every label, as chosen at ``thresholds_version``;
- ``dataset``, ``labels``, ``model_version``, ``thresholds_version``: cheap attributes, safe to read between two calls.

`suggestion_list` is the one place that turns an engine's suggestions into the
`schemas.SuggestionList` record the ``suggestions`` topic, the JSON API and the pages show;
`suggestion_lists` builds every kind at once; `pooled_suggestion_list` builds one from a pool. It lives here, beside the protocol it reads,
because it needs nothing but an `Engine` and the contract: the ranking itself stays in
`pipeline.suggestions`.

>>> from pipeline import Refiner
>>> engine = Refiner("support", seed=0)
>>> isinstance(engine, Engine)
True
>>> [s.kind for s in suggestion_lists(engine, now=0.0, limit=5)]
['check_label', 'missed_label', 'teach_label', 'low_confidence', 'rebalance', 'shuffle']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from schemas import (
    SUGGESTION_KINDS,
    Annotation,
    Message,
    MetricsSnapshot,
    Prediction,
    Suggestion,
    SuggestionList,
    Thresholds,
)
from schemas.events import SuggestionKind

if TYPE_CHECKING:
    from pipeline.suggestions import SuggestionPool

__all__ = [
    "Engine",
    "EngineFactory",
    "EngineLoader",
    "LABEL_KINDS",
    "StateCapture",
    "pooled_suggestion_list",
    "suggestion_list",
    "suggestion_lists",
]

#: The suggestion kinds ranked for one label at a time (the others rank the whole dataset).
LABEL_KINDS = ("check_label", "missed_label", "teach_label")


@runtime_checkable
class Engine(Protocol):
    """One dataset's engine, as the shell uses it (`pipeline.Refiner` is one).

    Calls may be slow (``metrics`` scores the whole validation window): the worker makes them in
    its engine thread, never on the event loop. The attributes are plain values, cheap to read.
    """

    #: The dataset this engine owns.
    dataset: str
    #: The dataset's labels (taxonomy), in the order they first appeared.
    labels: list[str]
    #: Reviews learned so far; every prediction and metrics snapshot carries it.
    model_version: int
    #: The model version at which the thresholds were last chosen; every prediction carries it.
    thresholds_version: int

    def observe(self, message: Message) -> Prediction:
        """Predict a live message and remember it."""
        ...

    def observe_many(self, messages: Iterable[Message]) -> list[Prediction]:
        """``observe`` each message in turn, scored as one batch (the same results)."""
        ...

    def predict(self, message: Message) -> Prediction:
        """What ``observe`` would return, without remembering the message."""
        ...

    def annotate(self, annotation: Annotation) -> object:
        """Apply a review (the shell does not use what it returns)."""
        ...

    def metrics(self, now: float | None = None) -> MetricsSnapshot:
        """Validation metrics, coverage, balance and rating at ``now``."""
        ...

    def suggestions(self, kind: str, label: str | None = None, limit: int = 50) -> list[Suggestion]:
        """The ``limit`` best messages to review of ``kind`` (for ``label``), best first."""
        ...

    def suggestion_pool(self) -> SuggestionPool:
        """The suggestion pools as they are now, to rank lists from later (`pooled_suggestion_list`)."""
        ...

    def curve(self, label: str, points: int = 200) -> dict:
        """The label's precision-recall curve over the validation window."""
        ...

    def snapshot(self) -> bytes:
        """The complete state as bytes."""
        ...

    def frozen(self) -> Engine:
        """A copy of the state as it is now: its ``metrics``, ``suggestion_pool``, ``suggestions``
        and ``curve`` may be called in any thread, and give the engine's as of this call."""
        ...

    def capture(self) -> StateCapture:
        """The state copied now, to encode later: ``capture().encode()`` is ``snapshot()``."""
        ...

    def threshold_table(self) -> dict[str, Thresholds]:
        """Every label's three thresholds as of ``thresholds_version``."""
        ...


class StateCapture(Protocol):
    """An engine's state as ``capture`` copied it: encoded into snapshot bytes in any thread."""

    def encode(self) -> bytes:
        """The bytes ``snapshot()`` gave at the capture."""
        ...


#: Makes the engine of a new dataset: ``factory(dataset)``.
EngineFactory = Callable[[str], Engine]
#: Rebuilds an engine from its ``snapshot()`` bytes.
EngineLoader = Callable[[bytes], Engine]


def suggestion_list(
    engine: Engine, kind: SuggestionKind, *, now: float, label: str | None = None, limit: int = 50
) -> SuggestionList:
    """The ``kind`` (and ``label``) suggestions of ``engine`` as one `schemas.SuggestionList` record.

    ``now`` is the record's timestamp (epoch seconds); its model version is the engine's.

    >>> from pipeline import Refiner
    >>> listed = suggestion_list(Refiner("support", seed=0), "shuffle", now=5.0, limit=10)
    >>> listed.dataset, listed.kind, listed.label, listed.model_version, listed.items
    ('support', 'shuffle', None, 0, ())
    """
    items = tuple(engine.suggestions(kind, label=label, limit=limit))
    return SuggestionList(
        dataset=engine.dataset, timestamp=now, model_version=engine.model_version, kind=kind, label=label, items=items
    )


def pooled_suggestion_list(
    pool: SuggestionPool, kind: SuggestionKind, *, now: float, label: str | None = None, limit: int = 50
) -> SuggestionList:
    """`suggestion_list` from a pool (``engine.suggestion_pool()``): the list as it was when the
    pool was taken, with that model version, however the engine changed since.

    >>> from pipeline import Refiner
    >>> engine = Refiner("support", seed=0)
    >>> pooled_suggestion_list(engine.suggestion_pool(), "shuffle", now=5.0) == suggestion_list(engine, "shuffle", now=5.0)
    True
    """
    items = tuple(pool.suggest(kind, label=label, limit=limit))
    return SuggestionList(
        dataset=pool.dataset, timestamp=now, model_version=pool.model_version, kind=kind, label=label, items=items
    )


def suggestion_lists(
    engine: Engine, *, now: float, limit: int, labels: Sequence[str] | None = None
) -> list[SuggestionList]:
    """Every kind's `suggestion_list`, in ``schemas.SUGGESTION_KINDS`` order.

    With ``labels``, each kind of `LABEL_KINDS` gets one list per label (in the order given);
    without, one list over all labels (``label=None``), like every other kind.
    """
    out = []
    for kind in SUGGESTION_KINDS:
        for label in labels if labels is not None and kind in LABEL_KINDS else [None]:
            out.append(suggestion_list(engine, kind, now=now, label=label, limit=limit))
    return out
