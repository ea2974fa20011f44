"""Configuration of a :class:`pipeline.Refiner`: every window, pool and target in one place.

>>> RefinerConfig(validation_window=1000).validation_window
1000
>>> RefinerConfig.from_dict(RefinerConfig().to_dict()) == RefinerConfig()
True
>>> RefinerConfig(label_targets={"Urgent": ("recall", 0.9)}).target_for("Urgent")
('high_recall', 0.9)
>>> RefinerConfig(model="river.linear_model.LogisticRegression", model_params={"l2": 0.001}).model_params
{'l2': 0.001}
>>> RefinerConfig(validation_window="5000")
Traceback (most recent call last):
...
ValueError: RefinerConfig.validation_window: expected int, got '5000'
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

__all__ = ["RefinerConfig"]

_TARGET_KINDS = {"precision": "high_precision", "recall": "high_recall", "balanced": "balanced"}
#: The Python types a setting of each annotated type accepts (annotations are strings here).
_SETTING_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "bool": bool}


@dataclasses.dataclass(frozen=True)
class RefinerConfig:
    """How a dataset's engine learns, validates and rates.

    Parameters
    ----------
    feature_bits
        The hashed feature space has ``2**feature_bits`` dimensions. The model holds a float32
        matrix of that many rows and one column per label (``2**17`` rows x 81 columns for 77 labels: 42 MB).
    char_ngrams, bigrams, quoted_weight, max_chars, metadata_fields
        Featurizer settings, see :class:`pipeline.features.Featurizer`.
    learning_rate
        AdaGrad base step of the label models.
    replay, replay_every
        Experience replay: every ``replay_every`` reviews the model takes one extra step on
        ``replay * replay_every`` reviews drawn from the validation window (so each review is
        rehearsed about ``replay`` times per window length, at the cost of one step).
    validation_window
        Most recent reviews the model learned from, kept with their prequential (out-of-sample)
        scores: experience replay draws from them, check and missed label suggestions rank them.
    holdout_share, holdout_window
        The validation set (CM's test set): the share of reviews that validate, chosen by
        hashing the message id (the same messages in every process and after every restart),
        and how many of the most recent of them are kept. The model in force learns every
        review at once; its *validation twin* (:mod:`pipeline.refiner`) takes the same steps
        without the reviews in the set, and the metrics, thresholds and rating come from the
        twin's scores on them, re-scored whenever they are computed. When the set is full, its
        oldest review graduates (the twin learns it). The trade-off (a second model's memory
        and steps, against how fast a taught label's metrics reflect its reviews) is measured
        in docs/refine.md. ``holdout_share=0`` keeps no twin and computes the metrics from the
        reviews' prequential scores instead (scores of past models: the metrics lag the model).
    live_window
        Most recent live messages kept (features, observe-time scores) for coverage, the
        balance model and suggestions.
    max_reviewed
        Reviewed messages whose current review the engine remembers (to replace it on a
        re-review, or take it back on ``remove``). Past this many the least recently reviewed
        are forgotten: their counts stay, and a later re-review of one counts as a new review.
        Bounds memory however many reviews arrive.
    threshold_refresh
        Thresholds in force are re-chosen from the window every this many reviews (and, before
        that many, at 8, 16, 32... reviews, so a young model gets thresholds early).
    precision_target, recall_target
        Targets of the ``high_precision`` and ``high_recall`` thresholds.
    label_targets
        Per-label choice of the threshold in force: ``{label: ("precision" | "recall" |
        "balanced", target)}``; other labels use ``balanced`` (maximum F1).
    default_threshold
        Threshold in force before a label has positives in the window.
    map_min_support
        Labels need this many positives in the held-out set to count in MAP (and in the
        rating's "all labels" factor, which is the same MAP).
    few_pinned_red, few_pinned_amber
        Warnings when a label has fewer pinned examples than these.
    healthy_shuffle_share
        Share of reviews in shuffle/rebalance mode above which balance takes no penalty.
    drift_error_bucket, drift_error_delta
        Prequential-error drift (:class:`pipeline.drift.ErrorDrift`): outcomes per bucket, and
        ADWIN's confidence (smaller: fewer false alarms, slower detection).
    drift_mix_block, drift_mix_alpha
        Live label-mix drift (:class:`pipeline.drift.MixDrift`): messages per block (a change
        is reported within three blocks), and the G-test's significance level.
    model, model_params
        The label model: None for the engine's own (:class:`pipeline.model.OnlineLinear`, fast,
        vectorised), or the import path of a River classifier and its parameters as JSON
        values, e.g. ``"river.naive_bayes.ComplementNB"``, ``{"alpha": 0.5}`` (a binary
        classifier is copied once per label: :mod:`pipeline.river_models`). The engine's
        ``learning_rate`` applies to its own model only. A River model's snapshot is pickled
        (docs/service.md says what that means for the snapshot key).
    model_feature_norm
        The L2 norm of the feature rows a River model learns from. The engine's own model takes
        unit-norm rows; River's linear models' default step (``SGD(0.01)``) is sized for
        standardised features, on which a message's row is far longer. At 30 (chosen on held-back
        Banking77 *training* messages among 1..45, bench/README.md) River's
        ``LogisticRegression()`` learns with its defaults; a scale-free model (naive Bayes, trees)
        hardly notices.
    """

    feature_bits: int = 17
    char_ngrams: tuple[int, ...] = ()
    bigrams: bool = True
    quoted_weight: float = 0.5
    max_chars: int = 5000
    metadata_fields: tuple[str, ...] = ()
    learning_rate: float = 0.4
    replay: int = 1
    replay_every: int = 16
    validation_window: int = 5000
    holdout_share: float = 0.2
    holdout_window: int = 1000
    live_window: int = 5000
    max_reviewed: int = 200_000
    threshold_refresh: int = 250
    precision_target: float = 0.95
    recall_target: float = 0.95
    label_targets: dict[str, tuple[str, float]] = dataclasses.field(default_factory=dict)
    default_threshold: float = 0.5
    map_min_support: int = 5
    few_pinned_red: int = 10
    few_pinned_amber: int = 25
    healthy_shuffle_share: float = 0.2
    drift_error_bucket: int = 10
    drift_error_delta: float = 0.002
    drift_mix_block: int = 100
    drift_mix_alpha: float = 1e-6
    model: str | None = None
    model_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    model_feature_norm: float = 30.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            expected = _SETTING_TYPES.get(str(field.type))
            if expected is not None and (
                not isinstance(value, expected) or (expected is not bool and isinstance(value, bool))
            ):
                raise ValueError(f"RefinerConfig.{field.name}: expected {field.type}, got {value!r}")
        for name in (
            "validation_window",
            "holdout_window",
            "live_window",
            "max_reviewed",
            "threshold_refresh",
            "replay_every",
            "drift_error_bucket",
            "drift_mix_block",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"RefinerConfig.{name}: expected at least 1, got {getattr(self, name)}")
        if not 8 <= self.feature_bits <= 24:
            raise ValueError(f"RefinerConfig.feature_bits: expected 8..24, got {self.feature_bits}")
        if self.max_reviewed < self.validation_window:  # a review in the window must stay in the registry
            raise ValueError(
                f"RefinerConfig.max_reviewed: expected at least validation_window ({self.validation_window}), "
                f"got {self.max_reviewed}"
            )
        for name in ("drift_error_delta", "drift_mix_alpha"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"RefinerConfig.{name}: expected a probability in (0, 1), got {getattr(self, name)}")
        if not 0 < self.model_feature_norm < 1e6:
            raise ValueError(
                f"RefinerConfig.model_feature_norm: expected a norm in (0, 1e6), got {self.model_feature_norm}"
            )
        if not 0 <= self.holdout_share <= 0.5:
            raise ValueError(f"RefinerConfig.holdout_share: expected a share in [0, 0.5], got {self.holdout_share}")
        if self.replay < 0:
            raise ValueError(f"RefinerConfig.replay: expected at least 0, got {self.replay}")
        for label, target in self.label_targets.items():
            kind, value = target
            if kind not in _TARGET_KINDS or not 0 < value <= 1:
                raise ValueError(
                    f'RefinerConfig.label_targets[{label!r}]: expected ("precision" | "recall" | '
                    f'"balanced", a target in (0, 1]), got {target!r}'
                )
        self._check_model()

    def _check_model(self) -> None:
        if self.model is None:
            if self.model_params:
                raise ValueError(
                    f"RefinerConfig.model_params: given {self.model_params!r} but no model; name the "
                    'River model they are for, e.g. "model": "river.naive_bayes.ComplementNB"'
                )
            return
        if not isinstance(self.model, str):
            raise ValueError(
                f"RefinerConfig.model: expected an import path such as "
                f"'river.linear_model.LogisticRegression', got {self.model!r}"
            )
        if not isinstance(self.model_params, dict) or not all(isinstance(k, str) for k in self.model_params):
            raise ValueError(
                f"RefinerConfig.model_params: expected a JSON object of parameters, got {self.model_params!r}"
            )
        try:
            orjson.dumps(self.model_params)
        except TypeError as error:
            raise ValueError(f"RefinerConfig.model_params: expected JSON values ({error})") from None
        from pipeline.river_models import build_model

        build_model(self.model, self.model_params)  # a clear error now rather than at the first engine

    def target_for(self, label: str) -> tuple[str, float]:
        """The threshold kind in force for ``label`` and its target."""
        kind, value = self.label_targets.get(label, ("balanced", 1.0))
        return _TARGET_KINDS[kind], float(value)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["char_ngrams"] = list(self.char_ngrams)
        data["metadata_fields"] = list(self.metadata_fields)
        data["label_targets"] = {k: list(v) for k, v in self.label_targets.items()}
        data["model_params"] = dict(self.model_params)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RefinerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"RefinerConfig: unknown settings {unknown} (known: {sorted(known)})")
        data = dict(data)
        for name in ("char_ngrams", "metadata_fields"):
            if name in data:
                data[name] = tuple(data[name])
        if "label_targets" in data:
            data["label_targets"] = {k: (v[0], float(v[1])) for k, v in data["label_targets"].items()}
        return cls(**data)
