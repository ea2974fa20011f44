"""The per-dataset engine: learns from every review, predicts every live message, rates itself.

A :class:`Refiner` owns one dataset's whole state (DESIGN.md sections 2 and 4). It is pure and
deterministic: no clock (times come from the events or ``metrics(now=...)``), no I/O, and the
only randomness (experience replay, the balance model's live samples) is drawn from a
generator seeded by ``seed`` and the number of reviews seen, so the same input order always
gives the same state, byte for byte (:meth:`Refiner.snapshot`).

The parts, each in its own module:

- :mod:`pipeline.features` hashes subject, body (cleaned of quotes and signatures), channel and
  chosen metadata into a fixed sparse space;
- :mod:`pipeline.model` is per-label online logistic regression (AdaGrad) over that space: a
  River estimator (``river.base.MultiLabelClassifier``, exposed as :attr:`Refiner.model`)
  that the engine drives through a vectorised numpy fast path. River's
  ``OneVsRestClassifier(LogisticRegression)`` is the same model but walks a dict per label per
  message: on the Banking77 stream it does ~1,700 predict+learn per second where this engine
  applies ~6,000 reviews, observes ~22,000 messages one call each or ~27,000 in batches of 100
  per second (bench/README.md). Any other River classifier plugs in instead (``model=`` or
  ``RefinerConfig.model``): :mod:`pipeline.river_models` drives it row by row with
  ``learn_one`` and ``predict_proba_one``, on the same hashed features as dicts;
- :mod:`pipeline.windows` keeps the window of recent reviews learned from (with their
  prequential scores), the held-out reviews (the validation set) and recent live messages;
- :mod:`pipeline.metrics` and :mod:`pipeline.rating` turn them into DESIGN.md's metrics.

Validation of the model in force (Communications Mining's test set)
    A fixed share of reviews (``config.holdout_share``), chosen by a keyed hash of the message
    id (:func:`pipeline.windows.held_out`), validates: the review is kept in the held-out set
    (at most ``config.holdout_window``, the newest). The model in force learns every review at
    once, held-out ones included, so validation costs it no training data. Beside it the
    engine keeps its *validation twin*: the same model, taking the same steps in the same order
    (reviews, rehearsals), except that it has not learned the held-out reviews. Whenever metrics
    or thresholds are computed, the twin scores the whole held-out set at once, so precision,
    recall, AP, the curve, the thresholds, MAP and the rating always describe the current
    model, as trained without the reviews they are measured on (the twin lacks a fifth of the
    reviews while the set fills, then ``holdout_window`` of them: its figures are, if anything,
    a little pessimistic for the model in force). When the set is full, its oldest review
    graduates: the twin learns it as it leaves. The prequential score of every review
    (recorded before the model in force learned it) is kept where a history is wanted: the
    review's outcome (the learning curve), drift detection, and the check and missed label
    suggestions. The twin costs a second copy of the model and a second step per review.

How a review is learned
    The message is scored first (out-of-sample) and the score stored in the window of learned
    reviews with the pinned labels (every label of the taxonomy not pinned is a negative). Then
    the model takes one gradient step on the review. Every ``config.replay_every`` reviews it takes
    one more step on ``replay * replay_every`` reviews drawn from the window (experience
    replay: each review is rehearsed about ``replay`` times while it is in the window, with
    its current labels; one batched step keeps the cost low). On Banking77 one streaming pass
    reaches 0.996x the accuracy of a batch TF-IDF + logistic regression (bench/README.md).

Re-reviews and removals
    An online model cannot unlearn a gradient step exactly. The engine keeps, per reviewed
    message, only its latest review: a re-review replaces the labels in the validation window
    (so replay and metrics only ever see the current truth) and the model takes a step towards
    the new labels; the old truth is never rehearsed again, so its influence fades with every
    later step. ``remove`` takes the message out of the window, the counts and the registry;
    the steps already taken stay (same fading).

Hierarchy
    Pinning ``A > B`` pins ``A`` too, and every level has its own model column. A parent's
    confidence is raised to its most confident child's, so a child never exceeds its parent,
    and a prediction with a child at threshold also lists the parent.

>>> from schemas import Message
>>> r = Refiner(dataset="support", seed=0)
>>> _ = r.annotate({"dataset": "support", "message_id": "m-1", "timestamp": 1,
...                 "labels": [{"name": "Card > Delivery"}], "mode": "shuffle",
...                 "message": {"dataset": "support", "id": "m-1", "timestamp": 1, "body": "Where is my card?"}})
>>> p = r.observe(Message(dataset="support", id="m-2", timestamp=2, body="my card has not arrived"))
>>> sorted(p.confidences), p.confidences["Card > Delivery"] <= p.confidences["Card"]
(['Card', 'Card > Delivery'], True)
>>> r2 = Refiner.restore(r.snapshot())
>>> r2.observe(Message(dataset="support", id="m-3", timestamp=3, body="hi")) == r.observe(Message(dataset="support", id="m-3", timestamp=3, body="hi"))
True
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

import numpy as np

from pipeline import snapshot as snapshot_format
from pipeline.actions import recommend
from pipeline.config import RefinerConfig
from pipeline.drift import DriftMonitor, ErrorDrift, MixDrift
from pipeline.features import Featurizer
from pipeline.metrics import Curve, auc, label_curve, precision_recall_f1, threshold_counts, thresholds_from_counts
from pipeline.model import OnlineLinear, SparseRows
from pipeline.rating import balance_score, label_warnings, rate
from pipeline.river_models import PluggedModel, as_multilabel, build_model, features_dict
from pipeline.suggestions import Suggester, SuggestionPool
from pipeline.windows import LiveWindow, ReviewWindow, held_out
from schemas import (
    Annotation,
    Balance,
    LabelMetrics,
    Message,
    MetricsSnapshot,
    Prediction,
    Suggestion,
    Thresholds,
    label_ancestors,
)

__all__ = ["Refiner", "ReviewOutcome", "STATE_VERSION", "StateCapture"]

#: Layout of the engine state inside a snapshot (pipeline.snapshot is the container); bump it
#: whenever what :meth:`Refiner.snapshot` writes changes meaning, so old snapshots fail clearly.
STATE_VERSION = 4
#: Older state versions :meth:`Refiner.restore` still reads (2: before the held-out set, which
#: then starts empty and fills with the next held-out reviews; 3: before the validation twin,
#: when the model in force had not learned the held-out reviews: it becomes the twin, and the
#: model in force learns them on restore).
_READABLE_VERSIONS = (2, 3, 4)
_UNBIASED_MODES = ("shuffle", "rebalance")
#: Positives a label needs before its thresholds are chosen from a curve.
_MIN_SUPPORT_FOR_THRESHOLD = 3
#: Held-out positives a label needs before its thresholds come from the validation set alone
#: rather than from it pooled with the prequential scores of the window (a rare or new label).
_MIN_HELD_OUT_FOR_THRESHOLD = 20
#: Live messages needed before "never predicted on live traffic" is judged.
_MIN_LIVE_FOR_WARNING = 100
#: Messages scored together by observe_many and metrics.
_BLOCK = 128
#: Reviews the balance model learns together (with as many live samples).
_BALANCE_BATCH = 16
#: Observed messages whose vectors a review carrying the same text inline reuses, at most; their
#: subjects' and bodies' characters at most; and their vectors' entries at most (8 bytes each).
_RECENT_MESSAGES = 1000
_RECENT_CHARACTERS = 2_000_000
_RECENT_ENTRIES = 1_000_000
#: The most memory that cache holds, per engine: characters of up to 4 bytes, vector entries of
#: 8 bytes, ~1 KiB of objects per message (`agents.worker.sizes.MemoryBudget` counts it).
RECENT_CACHE_MAX_BYTES = 4 * _RECENT_CHARACTERS + 8 * _RECENT_ENTRIES + 1024 * _RECENT_MESSAGES
#: A metadata field a message does not have (:meth:`Refiner._same_text`).
_ABSENT = object()

_Event = TypeVar("_Event", Message, Annotation)


class ReviewOutcome:
    """What :meth:`Refiner.annotate` did with a review.

    ``prediction`` is the out-of-sample prediction recorded before learning (None for a
    removal), built when first read (``build`` returns it in a list of one); ``replaced`` says
    whether an earlier review of the message was replaced or removed.
    """

    __slots__ = ("message_id", "action", "pinned", "replaced", "_build", "_prediction")

    def __init__(
        self,
        message_id: str,
        action: Literal["review", "remove"],
        pinned: tuple[str, ...],
        replaced: bool,
        build: Callable[[], list[Prediction]] | None = None,
    ) -> None:
        self.message_id, self.action, self.pinned, self.replaced = message_id, action, pinned, replaced
        self._build = build
        self._prediction: Prediction | None = None

    @property
    def prediction(self) -> Prediction | None:
        if self._prediction is None and self._build is not None:
            self._prediction, self._build = self._build()[0], None
        return self._prediction

    def __repr__(self) -> str:
        return (
            f"ReviewOutcome(message_id={self.message_id!r}, action={self.action!r}, pinned={self.pinned!r}, "
            f"replaced={self.replaced!r})"
        )


class Refiner:
    """One dataset's online model, prequential validation, metrics and rating.

    Parameters
    ----------
    dataset
        The dataset this engine owns; events of any other dataset are refused.
    config
        Windows, targets and learning settings (:class:`pipeline.RefinerConfig`).
    seed
        Seeds experience replay and the balance model's live samples (and a River model that
        takes a seed and is given none).
    model
        The label model, if not the one ``config.model`` names (by default the engine's own
        :class:`pipeline.model.OnlineLinear`): a River multi-label classifier, or a binary one
        (e.g. ``river.linear_model.LogisticRegression()``) copied once per label as labels appear.
        The engine owns it from then on (pass ``model.clone()`` to keep yours apart).

    Attributes
    ----------
    model
        The label model, a River multi-label classifier (``river.base.MultiLabelClassifier``).
    """

    def __init__(self, dataset: str, config: RefinerConfig | None = None, seed: int = 0, model: Any = None) -> None:
        if not isinstance(dataset, str) or not dataset.strip():
            raise ValueError(f"Refiner.dataset: expected a non-empty string, got {dataset!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"Refiner.seed: expected a non-negative integer, got {seed!r}")
        self.dataset = dataset
        self.config = config or RefinerConfig()
        self.seed = seed
        cfg = self.config
        self.featurizer = Featurizer(
            bits=cfg.feature_bits,
            char_ngrams=cfg.char_ngrams,
            bigrams=cfg.bigrams,
            quoted_weight=cfg.quoted_weight,
            max_chars=cfg.max_chars,
            metadata_fields=cfg.metadata_fields,
        )
        self.n_features = (1 << cfg.feature_bits) + 1  # the hashed space and the constant bias feature
        self.model = self._label_model(model)
        #: The engine's vectorised interface to the model: the model itself when it is the
        #: default (the fast path), else River's learn_one/predict_proba_one row by row.
        self._learner = (
            self.model
            if isinstance(self.model, OnlineLinear)
            else PluggedModel(self.model, feature_norm=cfg.model_feature_norm)
        )
        #: The validation twin (see the module's docstring): the model in force less the
        #: held-out reviews; None when nothing is held out (``holdout_share=0``).
        self._twin: Any = self._make_twin() if cfg.holdout_share else None
        #: Learns to tell reviewed messages from live ones (the balance factor).
        self.balance_model = OnlineLinear(self.n_features, cfg.learning_rate, min_capacity=1)
        self.balance_model.add_label(0.5)
        self.reviews = ReviewWindow(cfg.validation_window, 0)  # learned from: prequential scores, replay
        self.holdout = ReviewWindow(cfg.holdout_window, 0, prefix="holdout")  # held out: the validation set
        self.live = LiveWindow(cfg.live_window, 0)
        self.labels: list[str] = []
        self.label_index: dict[str, int] = {}
        #: message id -> (pinned label columns, mode) of its current review, least recently reviewed
        #: first, for at most ``config.max_reviewed`` messages.
        self.reviewed: dict[str, tuple[tuple[int, ...], str]] = {}
        self.pinned = np.zeros(0, dtype=np.int64)  # current reviews pinning each label
        self.alone = np.zeros(0, dtype=np.int64)  # ... of which pin no other label but its ancestors
        self.searched = np.zeros(0, dtype=np.int64)  # ... of which were found by search
        self.unbiased_reviews = 0  # current reviews made in shuffle or rebalance mode
        self.search_reviews = 0  # current reviews made in search mode
        self.reviewed_count = 0  # messages with a current review (including those the registry forgot)
        self.thresholds = np.zeros(0, dtype=np.float32)  # in force, per label
        #: (balanced, high precision, high recall) per label as of the last refresh (NaN: undefined
        #: or too few positives), published with every prediction (:meth:`threshold_table`).
        self.threshold_kinds = np.full((3, 0), np.nan, dtype=np.float32)
        self.thresholds_version = 0  # the model version at which the thresholds were last chosen
        self.model_version = 0  # reviews applied (held-out ones too: they may add labels)
        self.steps = 0  # annotations applied (positions the random stream)
        self.last_time = 0.0
        size = 2 * cfg.validation_window
        self.balance_scores = np.zeros(size, dtype=np.float32)  # out-of-sample, reviewed and live samples
        self.balance_is_reviewed = np.zeros(size, dtype=bool)
        self.balance_head = 0
        self.balance_count = 0
        self.balance_pending: list[int] = []  # review slots the balance model has not learned yet
        self._informative = np.zeros(0, dtype=bool)
        #: (key, lowest, entries) of the threshold table predictions last carried (_threshold_entries)
        self._entries_cache: tuple | None = None
        self.drift = DriftMonitor(  # pipeline.drift: prequential error and live label mix
            error=ErrorDrift(bucket_size=cfg.drift_error_bucket, delta=cfg.drift_error_delta),
            mix=MixDrift(block=cfg.drift_mix_block, alpha=cfg.drift_mix_alpha),
        )
        self.suggester = Suggester()  # pipeline.suggestions: ranks the windows, caches nothing durable
        #: The suggester of the last frozen copy (:meth:`frozen`), whose pools the next copy's
        #: build starts from (each message keeps its shuffle key from pool to pool). Not state.
        self._frozen_suggester: Suggester | None = None
        #: (state token, live slots, their confidences, their balance-model scores) of the last
        #: scoring of the live window (:meth:`_live_scores`): not state, never in a snapshot.
        self._live_cache: tuple[tuple[int, int, int, int], np.ndarray, np.ndarray, np.ndarray] | None = None
        #: The latest observed messages with their feature vectors, at most `_RECENT_MESSAGES` and
        #: `_RECENT_CHARACTERS` of subject and body: a review carrying inline the text of a message
        #: observed shortly before reuses its vector (:meth:`_review_features`). Not state, never in
        #: a snapshot (a restored engine featurises such a review again: the same vector).
        self._recent: dict[str, tuple[Message, tuple[np.ndarray, np.ndarray]]] = {}
        self._recent_characters = self._recent_entries = 0
        self._rebuild_hierarchy()

    def _make_twin(self) -> Any:
        """A copy of the learner as it stands (new, or as restored)."""
        if isinstance(self._learner, OnlineLinear):
            return OnlineLinear.from_state(
                self._learner.state(), self.n_features, self.config.learning_rate, labels=self._learner.labels
            )
        return copy.deepcopy(self._learner)

    def _label_model(self, model: Any) -> Any:
        """The label model from the ``model`` argument, else ``config.model``, else the default."""
        cfg = self.config
        if model is None:
            if cfg.model is None:
                return OnlineLinear(self.n_features, cfg.learning_rate)
            return build_model(cfg.model, cfg.model_params, seed=self.seed)
        if cfg.model is not None:
            raise ValueError(
                f"Refiner.model: the config names the model {cfg.model!r}; give the model either in "
                "the config or as model=, not both"
            )
        if isinstance(model, OnlineLinear) and (model.n_features != self.n_features or model.n_labels):
            raise ValueError(
                f"Refiner.model: an OnlineLinear must be new and span the engine's feature space "
                f"(n_features={self.n_features}), got n_features={model.n_features} with "
                f"{model.n_labels} labels"
            )
        return as_multilabel(model)

    def features(self, message: Message | dict) -> dict[int, float]:
        """The message's features as River takes them: ``{index: value}`` in the engine's hashed
        space (the bias feature left out), the same features the engine's model learns from:
        unit-norm rows for the default model, rows of norm ``config.model_feature_norm`` for a
        plugged River model."""
        norm = self._learner.feature_norm if isinstance(self._learner, PluggedModel) else 1.0
        return features_dict(*self._features(self._message(message, 0)), norm)

    # ------------------------------------------------------------------ live messages

    def observe(self, message: Message | dict) -> Prediction:
        """Predict a live message and remember it in the live window.

        The same as ``observe_many([message])[0]``, down to the bit, on a path without the
        batch's bookkeeping (one message per call is the common case for a slow stream).
        """
        if type(message) is not Message or message.dataset != self.dataset:
            message = self._message(message, 0)
        features = self._features(message)
        row = self._learner.proba_one(*features)
        if self._child_parent:
            self._hierarchical_row(row)
        timestamp = message.timestamp
        self.live.put(message.id, features, row, timestamp, message.id in self.reviewed)
        self._remember(message, features)
        if timestamp > self.last_time:
            self.last_time = timestamp
        # the live mix counts the top label if it is at threshold, else "none" (column len(row))
        top = int(row.argmax()) if len(row) else 0
        self.drift.observe_one(
            timestamp, top if len(row) and row[top] >= self.thresholds[top] else len(row), self.labels
        )
        return self._predictions([message.id], [timestamp], row[None, :])[0]

    def observe_many(self, messages: Iterable[Message | dict]) -> list[Prediction]:
        """Predict a batch of live messages at once; the same as calling :meth:`observe` on each in turn.

        Every message is checked before any is applied, so a bad one changes nothing.
        """
        parsed = [
            m if type(m) is Message and m.dataset == self.dataset else self._message(m, i)
            for i, m in enumerate(messages)
        ]
        if not parsed:
            return []
        features = [self._features(m) for m in parsed]
        scores = self._score_rows(SparseRows.stack(features))
        for message, vector, row in zip(parsed, features, scores):
            self.live.put(message.id, vector, row, message.timestamp, message.id in self.reviewed)
            self._remember(message, vector)
            self.last_time = max(self.last_time, message.timestamp)
        self.drift.observe(np.array([m.timestamp for m in parsed]), scores, self.thresholds, self.labels)
        return self._predictions([m.id for m in parsed], [m.timestamp for m in parsed], scores)

    def predict(self, message: Message | dict) -> Prediction:
        """What :meth:`observe` would return, without remembering the message: the state is
        untouched (for ad-hoc queries, e.g. the web API)."""
        message = self._message(message, 0)
        scores = self._score(SparseRows.stack([self._features(message)]))
        return self._predictions([message.id], [message.timestamp], scores)[0]

    # ------------------------------------------------------------------ reviews

    def annotate(self, annotation: Annotation | dict) -> ReviewOutcome:
        """Apply a review: score the message out-of-sample, record it, then learn from it.

        ``action="remove"`` un-reviews the message. A review needs the message's text: inline
        in the annotation, or seen recently (observed, or reviewed within the window);
        otherwise ValueError and nothing changes.
        """
        annotation = self._accept(annotation, Annotation, "annotation")
        message_id = annotation.message_id
        if annotation.action == "remove":
            self.steps += 1
            self.last_time = max(self.last_time, annotation.timestamp)
            previous = self.reviewed.pop(message_id, None)
            if previous is not None:
                self._count(previous, -1)
                self.reviewed_count -= 1
                self.live.mark(message_id, False)
            self.reviews.discard(message_id)
            self.holdout.discard(message_id)
            return ReviewOutcome(message_id, "remove", (), previous is not None)

        features = self._review_features(annotation)
        self.steps += 1
        self.last_time = max(self.last_time, annotation.timestamp)
        pinned_names = annotation.pinned_labels()
        for name in pinned_names:
            self._ensure_label(name)
        columns = tuple(sorted(self.label_index[name] for name in pinned_names))

        previous = self.reviewed.pop(message_id, None)  # re-inserted last: the registry is in review order
        if previous is not None:
            self._count(previous, -1)
        else:
            self.reviewed_count += 1
        self.reviewed[message_id] = (columns, annotation.mode)
        self._count(self.reviewed[message_id], +1)
        self.live.mark(message_id, True)
        if len(self.reviewed) > self.config.max_reviewed:  # bounded: forget the least recently reviewed
            forgotten = next(iter(self.reviewed))
            del self.reviewed[forgotten]
            self.live.mark(forgotten, False)
        draws = _Draws(self.seed, self.steps)
        in_window = message_id in self.reviews.index
        # A held-out message validates while it is in the held-out set; once graduated (the twin
        # learned it; it is still in the window) it validates no more.
        validates = (
            self._twin is not None
            and held_out(message_id, self.config.holdout_share)
            and (message_id in self.holdout.index or not in_window)
        )
        slot = self.reviews.put(message_id, features, None, list(columns), annotation.mode, annotation.timestamp)
        if validates:
            self._hold_out(annotation, features, columns)
        out_of_sample = self._learn(slot, draws, twin=not validates)
        if not in_window:  # a re-review keeps the score recorded when the message was first reviewed
            self.reviews.scores[slot, : len(out_of_sample)] = out_of_sample
        self.balance_pending.append(slot)
        if previous is None:  # a re-review's score is no longer out-of-sample
            self.drift.review(annotation.timestamp, out_of_sample, columns, self.thresholds, self.labels)
        if len(self.balance_pending) >= _BALANCE_BATCH:
            self._learn_balance(draws)
        self.model_version += 1
        version, every = self.model_version, self.config.threshold_refresh
        if version % every == 0 or (version < every and version >= 8 and version & (version - 1) == 0):
            self._refresh_thresholds()
        build = functools.partial(
            self._predictions,
            [message_id],
            [annotation.timestamp],
            out_of_sample[None, :],
            self.model_version - 1,
            self.thresholds.copy(),
            self._informative.copy(),
            (self.threshold_kinds.copy(), self.thresholds_version),
        )
        return ReviewOutcome(message_id, "review", pinned_names, previous is not None, build)

    def _review_features(self, annotation: Annotation) -> tuple[np.ndarray, np.ndarray]:
        inline = annotation.message
        if inline is not None:
            seen = self._recent.get(annotation.message_id)
            if seen is not None and self._same_text(seen[0], inline):
                return seen[1]  # the vector of the same text, computed when it was observed
            return self._features(inline)
        for window in (self.live, self.reviews, self.holdout):
            slot = window.index.get(annotation.message_id)
            if slot is not None:
                return window.features[slot]
        raise ValueError(
            f"annotation.message_id: {annotation.message_id!r} was not observed recently and the "
            "annotation carries no inline message; send the annotation with its message"
        )

    def _hold_out(
        self, annotation: Annotation, features: tuple[np.ndarray, np.ndarray], columns: tuple[int, ...]
    ) -> None:
        """Put a held-out review in the validation set (the twin will not learn it while it is
        there). A full set makes room by *graduating* its oldest review: the twin learns it."""
        message_id = annotation.message_id
        if message_id not in self.holdout.index:
            oldest = self.holdout.oldest_if_full()
            if oldest is not None:
                self._graduate(oldest)
        self.holdout.put(message_id, features, None, list(columns), annotation.mode, annotation.timestamp)

    def _graduate(self, slot: int) -> None:
        """Take the held-out review in ``slot`` out of the validation set; the twin learns it."""
        holdout = self.holdout
        message_id = holdout.slot_ids[slot]
        assert message_id is not None
        x, y = SparseRows.stack([holdout.features[slot]]), holdout.pinned[slot : slot + 1].copy()
        holdout.discard(message_id)
        self._twin.rehearse(x, y)

    def _learn(self, slot: int, draws: _Draws, twin: bool) -> np.ndarray:
        """Learn the review in ``slot``; its confidences before learning.

        Every ``replay_every`` reviews, one more step rehearses ``replay * replay_every`` reviews
        drawn from the window (experience replay, batched so that it costs one step). The twin
        takes the same steps, without the reviews in the held-out set (``twin=False``: this one
        is).
        """
        x = SparseRows.stack([self.reviews.features[slot]])
        y = self.reviews.pinned[slot : slot + 1]  # bool targets: no copy
        before = self._learner.learn(x, y)
        if self._twin is not None and twin:
            self._twin.rehearse(x, y)
        every = self.config.replay_every
        if self.config.replay and (self.model_version + 1) % every == 0:
            occupied = self.reviews.occupied()
            slots = [int(occupied[draws.below(len(occupied))]) for _ in range(self.config.replay * every)]
            x, y = SparseRows.stack([self.reviews.features[s] for s in slots]), self.reviews.pinned[slots]
            self._learner.rehearse(x, y)
            if self._twin is not None:
                learned = [i for i, s in enumerate(slots) if self.reviews.slot_ids[s] not in self.holdout.index]
                if len(learned) == len(slots):
                    self._twin.rehearse(x, y)
                elif learned:
                    self._twin.rehearse(
                        SparseRows.stack([self.reviews.features[slots[i]] for i in learned]), y[learned]
                    )
        return self._hierarchical(before)[0]

    def _learn_balance(self, draws: _Draws) -> None:
        """One step of the reviewed-vs-live model on the pending reviews and as many random
        live messages; their scores before the step feed the balance AUC."""
        pending = [slot for slot in self.balance_pending if self.reviews.used[slot]]
        self.balance_pending = []
        # reviewed against *unreviewed* messages (CM's rule): live messages under review are left out
        occupied = self.live.occupied_unreviewed()
        if not len(occupied) or not pending:
            return
        live = [int(occupied[draws.below(len(occupied))]) for _ in pending]
        x = SparseRows.stack([self.reviews.features[s] for s in pending] + [self.live.features[s] for s in live])
        targets = np.repeat(np.array([[1.0], [0.0]], dtype=np.float32), len(pending), axis=0)
        scores = self.balance_model.learn(x, targets)[:, 0]  # scored before the step, as learn returns them
        for score, is_reviewed in zip(scores, targets[:, 0] > 0):
            self.balance_scores[self.balance_head] = score
            self.balance_is_reviewed[self.balance_head] = is_reviewed
            self.balance_head = (self.balance_head + 1) % len(self.balance_scores)
        self.balance_count = min(self.balance_count + len(scores), len(self.balance_scores))

    def _count(self, review: tuple[tuple[int, ...], str], sign: int) -> None:
        """Add (``sign=1``) or take back (``-1``) a review's share of the per-label counts."""
        columns, mode = review
        searched = mode == "search"
        if columns:  # distinct columns: one fancy-indexed update each (numpy scalars cost as much apiece)
            pinned, alone, ancestors = self.pinned, self.alone, self._ancestors
            chosen = list(columns)
            pinned[chosen] += sign
            lone = [c for c in chosen if all(other == c or other in ancestors[c] for other in chosen)]
            if lone:
                alone[lone] += sign
            if searched:
                self.searched[chosen] += sign
            self._informative[chosen] = (alone[chosen] + 1.0) / (pinned[chosen] + 1.0) >= 0.5
        if mode in _UNBIASED_MODES:
            self.unbiased_reviews += sign
        elif searched:
            self.search_reviews += sign

    # ------------------------------------------------------------------ labels and scoring

    def _ensure_label(self, name: str) -> None:
        if name in self.label_index:
            return
        for level in label_ancestors(name):
            if level in self.label_index:
                continue
            prior = 1.0 / (len(self.reviewed) + 2)
            column = self._learner.add_label(prior, name=level)
            if self._twin is not None:
                self._twin.add_label(prior, name=level)
            self.labels.append(level)
            self.label_index[level] = column
            self.reviews.grow(self._learner.capacity)
            self.holdout.grow(self._learner.capacity)
            self.live.grow(self._learner.capacity)
            self.pinned = np.append(self.pinned, 0)
            self.alone = np.append(self.alone, 0)
            self.searched = np.append(self.searched, 0)
            self.thresholds = np.append(self.thresholds, np.float32(self.config.default_threshold))
            self._informative = self._informative_weights() >= 0.5
        self._rebuild_hierarchy()

    def _rebuild_hierarchy(self) -> None:
        ancestors = [label_ancestors(name)[:-1] for name in self.labels]
        self._ancestors = [frozenset(self.label_index[a] for a in chain) for chain in ancestors]
        pairs = [
            (len(chain), self.label_index[name], self.label_index[chain[-1]])
            for name, chain in zip(self.labels, ancestors)
            if chain
        ]
        # deepest first, so a grandchild's confidence reaches its grandparent through the parent
        self._child_parent = [(child, parent) for _, child, parent in sorted(pairs, key=lambda p: (-p[0], p[1]))]

    def _score(self, x: SparseRows) -> np.ndarray:
        """Confidences of every label, ``n_rows x n_labels``, a child never above its parent."""
        return self._hierarchical(self._learner.predict_proba(x))

    def _score_rows(self, x: SparseRows, learner: Any = None) -> np.ndarray:
        """:meth:`_score` of many vectors (by ``learner``, the model in force unless given), in
        blocks of `_BLOCK` rows: the gathered weight rows stay in cache (scoring 3,000 live
        messages in one batch took twice as long), and rows are scored independently anyway."""
        learner = self._learner if learner is None else learner
        if len(x) <= _BLOCK:
            return self._hierarchical(learner.predict_proba(x))
        return np.concatenate(
            [self._hierarchical(learner.predict_proba(_block(x, i, i + _BLOCK))) for i in range(0, len(x), _BLOCK)]
        )

    def _live_scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The live window's occupied slots, the model in force's confidences of them and the
        balance model's scores (how reviewed-like each looks), now.

        Kept until :meth:`unreviewed_pool` takes them (the suggestion pools score the same
        messages) or the state changes: a publication (``metrics``, then the suggestion lists)
        scores the live window once.
        """
        token = self._state_token()
        if self._live_cache is not None and self._live_cache[0] == token:
            return self._live_cache[1:]
        slots = self.live.occupied()
        if len(slots):
            x = SparseRows.stack([self.live.features[s] for s in slots])
            scores, balance = self._score_rows(x), self.balance_model.predict_proba(x)[:, 0]
        else:
            scores, balance = np.zeros((0, len(self.labels)), np.float32), np.zeros(0, np.float32)
        self._live_cache = (token, slots, scores, balance)
        return slots, scores, balance

    def _state_token(self) -> tuple[int, int, int, int]:
        """Changes whenever the model, the live window or the reviewed set may have changed."""
        return (self.steps, self.drift.observed, self.model_version, len(self.labels))

    def _hierarchical(self, scores: np.ndarray) -> np.ndarray:
        """Raise each parent's confidence to its most confident child's, in place."""
        if len(scores) == 1:  # one message (a review): scalar steps beat a column operation per pair
            self._hierarchical_row(scores[0])
            return scores
        for child, parent in self._child_parent:
            np.maximum(scores[:, parent], scores[:, child], out=scores[:, parent])
        return scores

    def _hierarchical_row(self, row: np.ndarray) -> np.ndarray:
        """:meth:`_hierarchical` of one message's confidences (a vector), in place."""
        if self._child_parent:  # compared as Python floats (the same values, the same order), written back once
            values = row.tolist()
            for child, parent in self._child_parent:
                if values[child] > values[parent]:
                    values[parent] = values[child]
            row[:] = values
        return row

    def _features(self, message: Message) -> tuple[np.ndarray, np.ndarray]:
        return self.featurizer.transform(message.subject, message.body, message.channel, message.metadata)

    def _remember(self, message: Message, features: tuple[np.ndarray, np.ndarray]) -> None:
        """Keep an observed message's vector among the latest (:attr:`_recent`)."""
        recent = self._recent
        previous = recent.pop(message.id, None)
        if previous is not None:
            self._recent_characters -= len(previous[0].subject) + len(previous[0].body)
            self._recent_entries -= len(previous[1][0])
        recent[message.id] = (message, features)
        self._recent_characters += len(message.subject) + len(message.body)
        self._recent_entries += len(features[0])
        while (
            len(recent) > _RECENT_MESSAGES
            or self._recent_characters > _RECENT_CHARACTERS
            or self._recent_entries > _RECENT_ENTRIES
        ):
            oldest, (indices, _) = recent.pop(next(iter(recent)))
            self._recent_characters -= len(oldest.subject) + len(oldest.body)
            self._recent_entries -= len(indices)

    def _same_text(self, seen: Message, message: Message) -> bool:
        """Whether the featurizer reads the same input in both messages (so gives the same vector):
        subject, body, channel and the metadata fields it uses, each value of the same type
        (``True == 1``, but they are different features)."""
        if seen.body != message.body or seen.subject != message.subject or seen.channel != message.channel:
            return False
        fields = self.featurizer.metadata_fields
        if not fields:
            return True
        before, after = seen.metadata or {}, message.metadata or {}
        for field in fields:
            a, b = before.get(field, _ABSENT), after.get(field, _ABSENT)
            if type(a) is not type(b) or a != b:  # a NaN is never equal: featurised again
                return False
        return True

    def _message(self, message: Message | dict, index: int) -> Message:
        return self._accept(message, Message, f"messages[{index}]")

    def _accept(self, record: _Event | dict, kind: type[_Event], path: str) -> _Event:
        """``record`` as a ``kind`` (a dict is parsed strictly) of this engine's dataset."""
        if isinstance(record, dict):
            record = kind.from_dict(record)
        elif not isinstance(record, kind):
            raise TypeError(f"{path}: expected schemas.{kind.__name__} or a dict, got {type(record).__name__}")
        if record.dataset != self.dataset:
            raise ValueError(
                f"{path}.dataset: expected {self.dataset!r} (this engine's dataset), got {record.dataset!r}"
            )
        return record

    def _informative_weights(self) -> np.ndarray:
        """How often each label is pinned standing alone (no other label but its ancestors)."""
        return (self.alone + 1.0) / (self.pinned + 1.0)

    def _predictions(
        self,
        ids: Sequence[str],
        timestamps: Sequence[float],
        scores: np.ndarray,
        model_version: int | None = None,
        thresholds: np.ndarray | None = None,
        informative: np.ndarray | None = None,
        kinds: tuple[np.ndarray, int] | None = None,
    ) -> list[Prediction]:
        """The predictions of messages ``ids`` (at ``timestamps``): the one place a Prediction is built.

        ``scores`` holds their confidences, ``len(ids) x k``, a child never above its parent, for
        the first ``k`` label columns (all of them, unless labels were added since the scores were
        taken). The model version, thresholds and informative flags are the engine's current ones
        unless given (a review's prediction uses those it was scored under), as are ``kinds``:
        the ``(threshold_kinds, thresholds_version)`` whose table travels with the prediction.
        """
        k = scores.shape[1]
        names = self.labels if k == len(self.labels) else self.labels[:k]
        thresholds = (self.thresholds if thresholds is None else thresholds)[:k]
        informative = (self._informative if informative is None else informative)[:k]
        version = self.model_version if model_version is None else model_version
        table, table_version = kinds if kinds is not None else (self.threshold_kinds, self.thresholds_version)
        lowest, entries = self._threshold_entries(table, k)
        # per message: its rounded confidences, its label columns at threshold, and the columns
        # reaching one of their three thresholds (whose table the prediction carries)
        if len(scores) == 1:  # one message (observe): vector operations are cheaper than the matrix's
            row_rounded = _rounded(scores[0])
            rounded = [row_rounded.tolist()]
            hits = [(scores[0] >= thresholds).nonzero()[0].tolist()]
            reach = [(row_rounded >= lowest).nonzero()[0].tolist()]
        else:
            matrix = _rounded(scores)
            rounded = matrix.tolist()
            hits = _row_columns(scores >= thresholds)
            reach = _row_columns(matrix >= lowest)
        out = []
        for message_id, timestamp, row, columns, reached in zip(ids, timestamps, rounded, hits, reach):
            confidences = dict(zip(names, row))
            if not columns:
                labels: tuple[str, ...] = ()
            elif len(columns) == 1 and not self._ancestors[columns[0]]:
                labels = (names[columns[0]],)
            else:  # a child at threshold lists its parents too
                chosen = set(columns)
                for column in columns:
                    chosen.update(self._ancestors[column])
                labels = tuple(sorted((names[c] for c in chosen), key=lambda name: (-confidences[name], name)))
            out.append(
                Prediction(
                    dataset=self.dataset,
                    message_id=message_id,
                    timestamp=timestamp,
                    model_version=version,
                    confidences=confidences,
                    labels=labels,
                    informative=any(informative[c] for c in columns),
                    thresholds={names[c]: entries[c] for c in reached},
                    thresholds_version=table_version,
                )
            )
        return out

    def _threshold_entries(self, table: np.ndarray, k: int) -> tuple[np.ndarray, list[Thresholds]]:
        """For the first ``k`` labels of a threshold table (``3 x labels``): the lowest of each
        label's rounded thresholds (a confidence below it reaches none) and its `Thresholds`
        entry. Worked out once per table: every prediction until the next refresh reuses them."""
        key = (k, table.shape, table.tobytes())
        cached = self._entries_cache
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        rounded = np.round(table[:, :k].astype(np.float64), 6)
        if rounded.shape[1] < k:  # labels added since the last refresh have no thresholds yet
            rounded = np.hstack([rounded, np.full((3, k - rounded.shape[1]), np.nan)])
        lowest = np.where(np.isnan(rounded), np.inf, rounded).min(axis=0)
        entries = [_table_entry(row) for row in rounded.T.tolist()]
        self._entries_cache = (key, lowest, entries)
        return lowest, entries

    # ------------------------------------------------------------------ validation

    def _window(self) -> tuple[np.ndarray, np.ndarray]:
        """Prequential scores and pinned flags of the reviews learned from, slot order."""
        slots = self.reviews.occupied()
        n = len(self.labels)
        return self.reviews.scores[slots, :n], self.reviews.pinned[slots, :n]

    def _validation(self) -> tuple[np.ndarray, np.ndarray]:
        """The validation set: the twin's scores of the held-out reviews (the current model
        trained without them, scored now, vectorised) and their pinned flags, slot order. With
        ``holdout_share=0`` nothing is held out, and the prequential scores of the reviews
        learned from stand in (the figures before issue 9: metrics that lag the model)."""
        if self._twin is None:
            return self._window()
        slots = self.holdout.occupied()
        n = len(self.labels)
        pinned = self.holdout.pinned[slots, :n]
        if not len(slots):
            return np.zeros((0, n), np.float32), pinned
        scores = self._score_rows(SparseRows.stack([self.holdout.features[s] for s in slots]), self._twin)
        return scores[:, :n], pinned

    def _window_thresholds(self, counts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(balanced, high precision, high recall) of every label from a window's
        `pipeline.metrics.threshold_counts`; NaN where undefined."""
        precision_targets = np.full(len(self.labels), self.config.precision_target)
        recall_targets = np.full(len(self.labels), self.config.recall_target)
        for label, (kind, value) in self.config.label_targets.items():
            column = self.label_index.get(label)
            if column is not None and kind == "high_precision":
                precision_targets[column] = value
            elif column is not None and kind == "high_recall":
                recall_targets[column] = value
        return thresholds_from_counts(*counts, precision_targets, recall_targets)

    def _threshold_choices(
        self, scores: np.ndarray, pinned: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(balanced, high precision, high recall, positives they were chosen from) per label.

        From the validation set (``scores``, ``pinned``: the twin's scores of the held-out
        reviews) for every label with at least ``_MIN_HELD_OUT_FOR_THRESHOLD`` (20) held-out
        positives. A rarer label's are chosen on the validation set pooled with the prequential
        scores of the window, each held-out review counted ``1 / holdout_share - 1`` times (4),
        so that the set weighs about as much as the reviews the twin learned: a few held-out positives alone put the best F1 at the lowest of them (noisy),
        and prequential scores alone come from models that knew the label less, which puts
        thresholds too low when labels arrive one after another (2.5 labels per message on
        Banking77 in file order). Chosen on bench_quality.py and bench_validation.py
        (bench/README.md).
        """
        held = threshold_counts(scores, pinned)
        balanced, high_precision, high_recall = self._window_thresholds(held)
        support = pinned.sum(axis=0)
        few = support < _MIN_HELD_OUT_FOR_THRESHOLD
        if few.any() and self._twin is not None:  # (without a twin ``scores`` are the window's already)
            learned_scores, learned_pinned = self._window()
            learned = threshold_counts(learned_scores, learned_pinned)
            weight = max(1, round(1 / self.config.holdout_share - 1))
            # whole numbers: the same counts as of the held-out reviews repeated ``weight`` times
            pooled = self._window_thresholds((weight * held[0] + learned[0], weight * held[1] + learned[1]))
            balanced, high_precision, high_recall = (
                np.where(few, pool, held) for held, pool in zip((balanced, high_precision, high_recall), pooled)
            )
            support = np.where(few, np.maximum(support, learned_pinned.sum(axis=0)), support)
        return balanced, high_precision, high_recall, support

    def _refresh_thresholds(self) -> None:
        """Re-choose the thresholds in force (:meth:`_threshold_choices`): each label's
        configured kind, else balanced."""
        scores, pinned = self._validation()
        balanced, high_precision, high_recall, support = self._threshold_choices(scores, pinned)
        by_kind = {"balanced": balanced, "high_precision": high_precision, "high_recall": high_recall}
        chosen = balanced.copy()
        for label, column in self.label_index.items():
            kind, _ = self.config.target_for(label)
            if kind != "balanced" and not np.isnan(by_kind[kind][column]):
                chosen[column] = by_kind[kind][column]
        enough = support >= _MIN_SUPPORT_FOR_THRESHOLD
        chosen = np.where(enough & ~np.isnan(chosen), chosen, self.config.default_threshold)
        self.thresholds = chosen.astype(np.float32)
        self.threshold_kinds = np.where(enough, np.stack([balanced, high_precision, high_recall]), np.nan).astype(
            np.float32
        )
        self.thresholds_version = self.model_version

    def metrics(self, now: float | None = None) -> MetricsSnapshot:
        """Validation metrics, coverage, balance and rating at time ``now`` (epoch seconds).

        Reads the state, never changes it. ``now`` defaults to the latest event time seen.
        Per-label figures, thresholds, MAP and the rating describe the model in force: they come
        from its scores, computed now, on the held-out reviews (:meth:`holdout_records`).
        """
        scores, pinned = self._validation()
        live_slots, live_scores, _ = self._live_scores()
        at_threshold = live_scores >= self.thresholds
        weights = self._informative_weights()

        balanced, high_precision, high_recall, _ = self._threshold_choices(scores, pinned)
        per_label: dict[str, LabelMetrics] = {}
        aps: dict[str, float] = {}
        f1s: list[float] = []
        warned: dict[str, tuple] = {}  # the warnings of every label that matters (one with a current pinned review)
        for column, label in enumerate(self.labels):
            positives = pinned[:, column]
            curve = label_curve(scores[:, column], positives)
            ap = curve.average_precision()
            threshold = float(self.thresholds[column])
            precision, recall, f1 = precision_recall_f1(scores[:, column], positives, threshold)
            pinned_count = int(self.pinned[column])
            warnings = label_warnings(
                label,
                pinned=pinned_count,
                support=curve.support,
                average_precision=ap,
                search_share=self.searched[column] / pinned_count if pinned_count else 0.0,
                predicted_live=int(np.count_nonzero(at_threshold[:, column]))
                if len(live_slots) >= _MIN_LIVE_FOR_WARNING
                else None,
                few_red=self.config.few_pinned_red,
                few_amber=self.config.few_pinned_amber,
            )
            if pinned_count > 0:
                warned[label] = warnings
            per_label[label] = LabelMetrics(
                precision=_round(precision),
                recall=_round(recall),
                f1=_round(f1),
                average_precision=_round(ap),
                threshold=round(threshold, 6),
                support=curve.support,
                pinned=pinned_count,
                thresholds=Thresholds(
                    balanced=_unit(balanced[column]),
                    high_precision=_unit(high_precision[column]),
                    high_recall=_unit(high_recall[column]),
                ),
                warnings=warnings,
            )
            if ap is not None:
                aps[label] = ap
                if f1 is not None:
                    f1s.append(f1)

        map_aps = {name: ap for name, ap in aps.items() if per_label[name].support >= self.config.map_min_support}
        coverage = None
        if len(live_slots):
            best = np.where(at_threshold, weights, 0.0).max(axis=1) if len(self.labels) else np.zeros(len(live_slots))
            coverage = _round(float(best.mean()))
        discrimination = auc(self.balance_scores[: self.balance_count], self.balance_is_reviewed[: self.balance_count])
        similarity = None if discrimination is None else _round(min(1.0, max(0.0, 2.0 * (1.0 - discrimination))))
        # shares of every current review (reviewed_count), not of the bounded registry's
        shuffle_share = _round(self.unbiased_reviews / self.reviewed_count) if self.reviewed_count else None
        search_share = _round(self.search_reviews / self.reviewed_count) if self.reviewed_count else None
        balance = balance_score(similarity, shuffle_share, self.config.healthy_shuffle_share, search_share)
        rating = rate(
            map_aps,
            warned,
            aps,
            coverage,
            balance,
            sum(f1s) / len(f1s) if f1s else None,
            len(live_slots),
            similarity,
            shuffle_share,
            search_share,
        )
        summary = Balance(score=balance, similarity=similarity, shuffle_share=shuffle_share, search_share=search_share)
        return MetricsSnapshot(
            dataset=self.dataset,
            timestamp=self.last_time if now is None else float(now),
            model_version=self.model_version,
            reviewed=self.reviewed_count,
            labels=per_label,
            map=rating.factors["all_labels"].metrics["mean_average_precision"],
            coverage=coverage,
            balance=summary,
            rating=rating,
            drift=self.drift.events(),
            actions=recommend(
                per_label,
                rating,
                summary,
                self.config.healthy_shuffle_share,
                map_min_support=self.config.map_min_support,
            ),
        )

    def threshold_table(self) -> dict[str, Thresholds]:
        """Every label's (balanced, high precision, high recall) thresholds as chosen at the last
        refresh (model version :attr:`thresholds_version`): the table each prediction carries the
        rows of. None where undefined (a target out of reach, or fewer than 3 positives).

        >>> Refiner("support").threshold_table()
        {}
        """
        rows = np.round(self.threshold_kinds.astype(np.float64), 6).T.tolist()
        return {name: _table_entry(rows[c]) if c < len(rows) else Thresholds() for c, name in enumerate(self.labels)}

    def suggestions(self, kind: str, label: str | None = None, limit: int = 50) -> list[Suggestion]:
        """What to review next: the ``limit`` best messages of ``kind`` (for ``label``), best first.

        ``kind`` is one of ``schemas.SUGGESTION_KINDS``; how each ranks: :mod:`pipeline.suggestions`.
        """
        return self.suggester.suggest(self, kind, label, limit)

    def suggestion_pool(self) -> SuggestionPool:
        """The suggestion pools as they are now: every list ranked from them later is the one
        :meth:`suggestions` gives now, whatever the engine learns meanwhile (`pipeline.suggestions.SuggestionPool`)."""
        return self.suggester.pool(self)

    # ------------------------------------------------------------------ pools for suggestions and drift

    @property
    def informative(self) -> np.ndarray:
        """Which labels are informative, one flag per label column (aligned with ``labels``), read-only.

        A label is informative when at least half of the reviews pinning it pin no other label
        but its ancestors (counting one such review as a prior): a parent always pinned with a
        child, or a tag always pinned with another label, is not. Coverage and the
        ``low_confidence`` suggestions count only informative labels at threshold.

        >>> r = Refiner(dataset="support")
        >>> for i in range(2):
        ...     _ = r.annotate({"dataset": "support", "message_id": f"m-{i}", "timestamp": i,
        ...                     "labels": [{"name": "Card > Delivery"}],
        ...                     "message": {"dataset": "support", "id": f"m-{i}", "timestamp": i, "body": "my card?"}})
        >>> dict(zip(r.labels, r.informative.tolist()))
        {'Card': False, 'Card > Delivery': True}
        """
        view = self._informative.view()
        view.flags.writeable = False  # the engine keeps it current; readers must not change it
        return view

    def unreviewed_pool(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Recent live messages not reviewed: ids, current confidences (``n x labels``) and
        balance-model scores (how reviewed-like each looks), in live-window slot order."""
        occupied, scores, balance = self._live_scores()  # as metrics left them, if the state is the same
        self._live_cache = None  # taken: the pools keep what they need until the state changes
        rows = np.flatnonzero(~self.live.under_review[occupied])
        return [self.live.slot_ids[s] for s in occupied[rows]], scores[rows], balance[rows]

    def validation_records(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The reviews learned from (the reviewed pool of check and missed label suggestions):
        message ids, prequential confidences (recorded before the model learned each review) and
        pinned flags (``n x labels``), in window slot order."""
        slots = self.reviews.occupied()
        scores, pinned = self._window()
        return [self.reviews.slot_ids[s] for s in slots], scores, pinned

    def holdout_records(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The validation set the metrics come from: the held-out reviews' message ids, the
        current model's confidences (computed now) and pinned flags (``n x labels``), slot order
        (with ``holdout_share=0``, :meth:`validation_records`)."""
        window = self.holdout if self.config.holdout_share else self.reviews
        scores, pinned = self._validation()
        return [window.slot_ids[s] for s in window.occupied()], scores, pinned

    def curve(self, label: str, points: int = 200) -> dict:
        """The label's precision-recall curve over the validation set (the current model's scores of the held-out reviews):
        ``{"support", "average_precision", "points": [{"threshold", "precision", "recall"}]}``,
        at most ``points`` points spread evenly along the curve, highest threshold first.

        Raises KeyError for a label the dataset does not have.
        """
        if label not in self.label_index:
            raise KeyError(f"label {label!r} is not in dataset {self.dataset!r}")
        scores, pinned = self._validation()
        column = self.label_index[label]
        curve = Curve(scores[:, column], pinned[:, column])
        last = len(curve.thresholds) - 1
        keep = sorted({round(i * last / (max(points, 2) - 1)) for i in range(max(points, 2))}) if last >= 0 else []
        return {
            "support": curve.support,
            "average_precision": curve.average_precision(),
            "points": [
                {
                    "threshold": float(curve.thresholds[i]),
                    "precision": float(curve.precision[i]),
                    "recall": float(curve.recall[i]),
                }
                for i in keep
            ],
        }

    # ------------------------------------------------------------------ a frozen copy to read elsewhere

    def frozen(self) -> Refiner:
        """A copy of the state as it is now, to read in another thread while the engine goes on:
        its ``metrics``, ``suggestion_pool``, ``suggestions``, ``curve`` and ``holdout_records``
        are the engine's at this moment, bit for bit, whatever the engine does next.

        It is cheap (a few milliseconds for 77 labels and a full live window, against tens for
        ``metrics``, most of which scores the live window): windows, counts and registry are
        copied, their feature vectors shared (the engine replaces a slot's vector, never changes
        one in place), and of each model only the weight rows of the features it scores there
        (the live window's; the held-out reviews' for the validation twin). A plugged River model
        is deep-copied. The copy only reads: it cannot learn, and cannot score a message it does
        not hold (IndexError); its registry of reviews (``reviewed``) holds the live window's.

        >>> r = Refiner("support")
        >>> _ = r.observe({"dataset": "support", "id": "m-1", "timestamp": 1, "body": "my card"})
        >>> before, copied = r.metrics(now=5.0), r.frozen()
        >>> _ = r.annotate({"dataset": "support", "message_id": "m-1", "timestamp": 2, "labels": [{"name": "Card"}]})
        >>> copied.metrics(now=5.0) == before != r.metrics(now=5.0)
        True
        """
        frozen = _detached(self, but=("reviewed",))
        # the registry is read for the live window's messages only (up to max_reviewed entries: no copy of it all)
        reviewed = self.reviewed
        frozen.reviewed = {i: reviewed[i] for i in self.live.index if i in reviewed}
        frozen.reviews, frozen.holdout, frozen.live = (
            _detached(self.reviews),
            _detached(self.holdout),
            _detached(self.live),
        )
        frozen.drift = _detached(self.drift)
        suggester = _detached(self._frozen_suggester or self.suggester)  # pools built in another thread
        suggester._token = None  # they are another state's: only their messages' shuffle keys are reused
        frozen.suggester = self._frozen_suggester = suggester
        live = _feature_rows(self.live, self.n_features)  # the balance model and the model in force score them
        frozen._learner = _frozen_learner(self._learner, live)
        frozen.model = frozen._learner.model if isinstance(frozen._learner, PluggedModel) else frozen._learner
        frozen.balance_model = _FrozenRows(self.balance_model, live)  # type: ignore[assignment]  # scores only
        if self._twin is not None:
            frozen._twin = _frozen_learner(self._twin, _feature_rows(self.holdout, self.n_features))
        return frozen

    # ------------------------------------------------------------------ snapshot / restore

    def snapshot(self) -> bytes:
        """The complete state as bytes (:mod:`pipeline.snapshot`). With the default model no
        pickle is involved; a plugged River model is pickled inside (see :meth:`restore`).

        The same as ``capture().encode()``.
        """
        return self.capture().encode()

    def capture(self) -> StateCapture:
        """The complete state as it is now, encoded later: ``capture().encode()`` is
        :meth:`snapshot`, byte for byte, whatever the engine did in between.

        The capture is the cheap part: copies of the arrays and of the header's values (a plugged
        River model pickled), and of the windows' slots (`_detached`); flattening the windows
        and assembling and digesting the bytes are left to `StateCapture.encode`, which reads
        nothing of the engine, so a caller may run it in another thread while the engine goes on
        (the worker does: its engine is held for the capture only).

        >>> r = Refiner("support")
        >>> captured = r.capture()
        >>> _ = r.observe({"dataset": "support", "id": "m-1", "timestamp": 1, "body": "hi"})
        >>> Refiner.restore(captured.encode()).live.ids(), Refiner.restore(r.snapshot()).live.ids()
        ([], ['m-1'])
        """
        drift_header, drift_arrays = self.drift.state()
        model_header: dict[str, Any]
        model_arrays: dict[str, np.ndarray]
        # the models' arrays are copies already (their touched rows, or a pickle)
        model_header, model_arrays = _learner_state(self._learner)
        twin_header, twin_arrays = _learner_state(self._twin) if self._twin is not None else (None, {})
        balance_model = self.balance_model.state()
        header = {
            "kind": "refiner",
            "state_version": STATE_VERSION,
            "dataset": self.dataset,
            "seed": self.seed,
            "config": self.config.to_dict(),
            "labels": self.labels,
            "unbiased_reviews": self.unbiased_reviews,
            "search_reviews": self.search_reviews,
            "reviewed_count": self.reviewed_count,
            "model_version": self.model_version,
            "thresholds_version": self.thresholds_version,
            "steps": self.steps,
            "last_time": self.last_time,
            "balance_head": self.balance_head,
            "balance_count": self.balance_count,
            "balance_pending": self.balance_pending,
            "drift": drift_header,
            "model": model_header,
            "twin": twin_header,
        }
        arrays = {
            **{f"model.{k}": v for k, v in model_arrays.items()},
            **{f"twin.{k}": v for k, v in twin_arrays.items()},
            **{f"balance_model.{k}": v for k, v in balance_model.items()},
            "pinned": self.pinned.copy(),
            "alone": self.alone.copy(),
            "searched": self.searched.copy(),
            "thresholds": self.thresholds.copy(),
            "threshold_kinds": self.threshold_kinds.copy(),
            "balance_scores": self.balance_scores.copy(),
            "balance_is_reviewed": self.balance_is_reviewed.copy(),
        }
        return StateCapture(
            snapshot_format.plain_copy(header),
            dict(self.reviewed),  # its entries are tuples: the copy is the registry as it is now
            arrays,
            {"reviews": _detached(self.reviews), "holdout": _detached(self.holdout), "live": _detached(self.live)},
            {name: array.copy() for name, array in drift_arrays.items()},
        )

    @classmethod
    def restore(cls, blob: bytes, allow_pickle: bool = False) -> Refiner:
        """An engine in exactly the state :meth:`snapshot` captured.

        A snapshot of an engine with a plugged River model holds that model pickled, and
        unpickling runs code: it is restored only with ``allow_pickle=True``, which a caller
        may pass only for bytes it has authenticated (the worker verifies the snapshot's HMAC
        first). The default model's snapshot holds plain arrays and needs no such trust.

        Raises ValueError for bytes that are not a snapshot of this format version, or that
        hold a pickled model without ``allow_pickle``.
        """
        header, arrays = snapshot_format.decode(blob)
        if header.get("kind") != "refiner":
            raise ValueError(f"snapshot: expected a Refiner snapshot, got kind {header.get('kind')!r}")
        if header.get("state_version") not in _READABLE_VERSIONS:
            raise ValueError(
                f"snapshot: engine state version {header.get('state_version')}, this engine reads version "
                f"{STATE_VERSION}; rebuild the dataset's state by replaying its log"
            )
        model_header = header.get("model", {"format": "arrays"})
        model_arrays = {k[6:]: v for k, v in arrays.items() if k.startswith("model.")}
        pickled = model_header["format"] == "pickle" or (header.get("twin") or {}).get("format") == "pickle"
        if pickled and not allow_pickle:
            raise ValueError(
                "snapshot: it holds a pickled River model, and unpickling runs code; restore it with "
                "allow_pickle=True only if its origin is authenticated (the worker checks its HMAC)"
            )
        plugged = PluggedModel.from_state(model_header, model_arrays) if model_header["format"] == "pickle" else None
        # A snapshot from before model_feature_norm fed its River model unit-norm rows.
        config = RefinerConfig.from_dict({"model_feature_norm": 1.0, **header["config"]})
        engine = cls(
            header["dataset"],
            config,
            header["seed"],
            model=None if plugged is None or config.model is not None else plugged.model,
        )
        cfg = engine.config
        if plugged is None:
            engine.model = OnlineLinear.from_state(
                model_arrays, engine.n_features, cfg.learning_rate, labels=header["labels"]
            )
            engine._learner = engine.model
        else:
            plugged.feature_norm = cfg.model_feature_norm
            engine.model, engine._learner = plugged.model, plugged
        engine.balance_model = OnlineLinear.from_state(
            {k[14:]: v for k, v in arrays.items() if k.startswith("balance_model.")},
            engine.n_features,
            cfg.learning_rate,
            min_capacity=1,
        )
        engine.labels = list(header["labels"])
        engine.label_index = {name: i for i, name in enumerate(engine.labels)}
        engine.reviewed = {
            i: (tuple(labels), mode)
            for i, labels, mode in zip(header["reviewed_ids"], header["reviewed_labels"], header["reviewed_modes"])
        }
        engine.pinned, engine.alone, engine.searched = arrays["pinned"], arrays["alone"], arrays["searched"]
        engine.thresholds = arrays["thresholds"]
        if "threshold_kinds" in arrays:  # a snapshot from before the table was kept has none until a refresh
            engine.threshold_kinds = arrays["threshold_kinds"]
            engine.thresholds_version = header["thresholds_version"]
        engine.unbiased_reviews = header["unbiased_reviews"]
        engine.search_reviews = header.get(  # version 2 did not count them: its registry's are the best guess
            "search_reviews", sum(mode == "search" for _, mode in engine.reviewed.values())
        )
        engine.reviewed_count = header.get("reviewed_count", len(engine.reviewed))
        engine.model_version, engine.steps = header["model_version"], header["steps"]
        engine.last_time = header["last_time"]
        engine.balance_scores, engine.balance_is_reviewed = arrays["balance_scores"], arrays["balance_is_reviewed"]
        engine.balance_head, engine.balance_count = header["balance_head"], header["balance_count"]
        engine.balance_pending = list(header["balance_pending"])
        engine.reviews = ReviewWindow.from_state(header["reviews"], arrays)
        if "holdout" in header:  # version 2 had no held-out set: it starts empty (reviews already learned stay learned)
            engine.holdout = ReviewWindow.from_state(header["holdout"], arrays, "holdout")
        else:
            engine.holdout.grow(engine.reviews.scores.shape[1])
        engine.live = LiveWindow.from_state(header["live"], arrays)
        engine.live.under_review = engine.live.holding(engine.reviewed)
        twin_header = header.get("twin")
        if twin_header is not None:
            twin_arrays = {k[5:]: v for k, v in arrays.items() if k.startswith("twin.")}
            if twin_header["format"] == "pickle":
                engine._twin = PluggedModel.from_state(twin_header, twin_arrays)
                engine._twin.feature_norm = cfg.model_feature_norm
            else:
                engine._twin = OnlineLinear.from_state(
                    twin_arrays, engine.n_features, cfg.learning_rate, labels=header["labels"]
                )
        elif engine._twin is not None:  # before version 4: the model had not learned the held-out reviews
            engine._twin = engine._make_twin()
            slots = engine.holdout.occupied()
            if len(slots):
                engine._learner.rehearse(
                    SparseRows.stack([engine.holdout.features[s] for s in slots]), engine.holdout.pinned[slots]
                )
        engine._rebuild_hierarchy()
        engine._informative = engine._informative_weights() >= 0.5
        if "drift" in header:  # a snapshot from before drift detection starts it afresh
            engine.drift = DriftMonitor.from_state(header["drift"], arrays)
        return engine


class StateCapture:
    """A :meth:`Refiner.capture`: an engine's state copied, to encode into snapshot bytes later, in any thread.

    It shares nothing the engine changes afterwards: arrays, header values and the registry of
    reviews are copies, the windows detached copies (`_detached`).
    """

    __slots__ = ("_header", "_reviewed", "_arrays", "_windows", "_drift_arrays")

    def __init__(
        self,
        header: dict,
        reviewed: dict[str, tuple[tuple[int, ...], str]],
        arrays: dict[str, np.ndarray],
        windows: dict[str, ReviewWindow | LiveWindow],
        drift_arrays: dict[str, np.ndarray],
    ) -> None:
        self._header, self._reviewed = header, reviewed
        self._arrays, self._windows, self._drift_arrays = arrays, windows, drift_arrays

    def encode(self) -> bytes:
        """The snapshot bytes: :meth:`Refiner.snapshot` as it was at the capture."""
        reviewed = self._reviewed
        header, arrays = dict(self._header), dict(self._arrays)
        header["reviewed_ids"] = ids = list(reviewed)
        header["reviewed_labels"] = [list(reviewed[i][0]) for i in ids]
        header["reviewed_modes"] = [reviewed[i][1] for i in ids]
        for key, window in self._windows.items():  # reviews, holdout, live: the arrays' order in the bytes
            header[key], window_arrays = window.state()
            arrays.update(window_arrays)
        arrays.update(self._drift_arrays)
        return snapshot_format.encode(header, arrays)


_Copied = TypeVar("_Copied")


def _detached(obj: _Copied, but: tuple[str, ...] = ()) -> _Copied:
    """A copy of ``obj`` (a window, the engine...) whose own arrays, lists and dicts are copied
    (but those named in ``but``, left to the caller), so that nothing the engine does to them
    later shows in it. What they hold is shared: a window's feature vectors, for one (the engine
    replaces a slot's vector, never changes one in place: the suggestion pools rely on it too)."""
    copied = copy.copy(obj)
    for name, value in vars(obj).items():
        if isinstance(value, (list, dict, np.ndarray)) and name not in but:
            setattr(copied, name, value.copy())
    return copied


def _feature_rows(window: ReviewWindow | LiveWindow, n_features: int) -> np.ndarray:
    """The features (weight rows) the messages of ``window`` use, sorted."""
    used = np.zeros(n_features, bool)
    vectors = [window.features[s][0] for s in window.occupied().tolist()]
    if vectors:
        used[np.concatenate(vectors)] = True
    return np.flatnonzero(used)


class _FrozenRows:
    """A linear model's (`OnlineLinear`) scores of vectors using only features ``rows`` (sorted),
    as they are now: a copy of those weight rows, scoring bit for bit as the model does (the
    same rows gathered in the same order, the same sums: the model's own code on the rows)."""

    __slots__ = ("_rows", "_model")

    def __init__(self, model: OnlineLinear, rows: np.ndarray) -> None:
        self._rows = rows
        self._model = OnlineLinear(max(len(rows), 2), model.learning_rate, model.min_capacity)
        self._model.weights, self._model.n_labels = model.weights[rows], model.n_labels

    def predict_proba(self, x: SparseRows) -> np.ndarray:
        """The model's ``predict_proba(x)`` at the time of the copy; IndexError for a feature not copied."""
        where = np.searchsorted(self._rows, x.indices)
        if len(where) and (not len(self._rows) or not np.array_equal(self._rows.take(where, mode="clip"), x.indices)):
            raise IndexError("a frozen engine scores only the messages it holds")
        return self._model.predict_proba(SparseRows(x.indptr, where, x.values))


def _frozen_learner(learner: Any, rows: np.ndarray) -> Any:
    """``learner`` as it is now, for scoring vectors of features ``rows``: `_FrozenRows` of the
    default model, a deep copy of a plugged River model."""
    if isinstance(learner, PluggedModel):
        return copy.deepcopy(learner)
    return _FrozenRows(learner, rows)


def _learner_state(learner: Any) -> tuple[dict, dict[str, np.ndarray]]:
    """A learner's header and arrays for a snapshot: plain arrays for the default model, a
    pickle for a plugged River model."""
    if isinstance(learner, PluggedModel):
        return learner.state()
    return {"format": "arrays"}, learner.state()


class _Draws:
    """Random integers from (seed, step) alone (SplitMix64): the state of the random stream is
    just the step counter, so a snapshot needs nothing more and no generator is built per review.

    >>> [_Draws(0, 1).below(10) for _ in range(2)] == [_Draws(0, 1).below(10)] * 2
    True
    """

    __slots__ = ("state",)
    _MASK = (1 << 64) - 1

    def __init__(self, seed: int, step: int) -> None:
        self.state = (seed * 0xD1B54A32D192ED03 + step * 0x9E3779B97F4A7C15) & self._MASK

    def below(self, high: int) -> int:
        """A uniform integer in ``[0, high)``."""
        self.state = (self.state + 0x9E3779B97F4A7C15) & self._MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self._MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self._MASK
        return (z ^ (z >> 31)) % high


def _block(x: SparseRows, start: int, stop: int) -> SparseRows:
    """Rows ``start:stop`` of ``x`` (views of its arrays).

    >>> x = SparseRows.stack([(np.array([1]), np.array([1.0])), (np.array([2, 3]), np.array([2.0, 3.0]))])
    >>> _block(x, 1, 2).indptr.tolist(), _block(x, 1, 2).indices.tolist()
    ([0, 2], [2, 3])
    """
    indptr = x.indptr[start : stop + 1]
    first, last = int(indptr[0]), int(indptr[-1])
    return SparseRows(indptr - first, x.indices[first:last], x.values[first:last])


def _rounded(scores: np.ndarray) -> np.ndarray:
    """``np.round(scores.astype(np.float64), 6)`` with fewer array calls: the same three steps
    numpy's round takes (scale by 10**6, round half to even, divide), so the same bits.

    >>> x = np.array([0.1234565, 0.99999949, 0.5], np.float32)
    >>> bool((_rounded(x) == np.round(x.astype(np.float64), 6)).all())
    True
    """
    out = np.multiply(scores, 1e6, dtype=np.float64)
    np.rint(out, out=out)
    out /= 1e6
    return out


def _row_columns(mask: np.ndarray) -> list[list[int]]:
    """The columns set in each row of a boolean matrix, row by row."""
    rows, columns = mask.nonzero()  # row-major
    bounds = np.searchsorted(rows, np.arange(len(mask) + 1)).tolist()
    flat = columns.tolist()
    return [flat[bounds[i] : bounds[i + 1]] for i in range(len(mask))]


def _table_entry(row: list[float]) -> Thresholds:
    """One label's (balanced, high precision, high recall), already rounded; NaN becomes None."""
    balanced, high_precision, high_recall = (None if value != value else value for value in row)
    return Thresholds(balanced=balanced, high_precision=high_precision, high_recall=high_recall)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _unit(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 6)
