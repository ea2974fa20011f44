"""Any River classifier as the engine's model: built by name, driven row by row, snapshotted.

The engine's default model, :class:`pipeline.model.OnlineLinear`, is a River multi-label
classifier with a vectorised fast path. Any other River classifier plugs in
(``Refiner(..., model=M)`` or ``RefinerConfig(model="river....", model_params={...})``):

- a multi-label classifier (``river.base.MultiLabelClassifier``) is used as it is;
- a binary classifier (``river.linear_model.LogisticRegression()``, a pipeline ending in one...)
  is wrapped in ``river.multioutput.PerOutputClassifier``, which copies it once per label as
  labels appear.

:class:`PluggedModel` gives such a model the engine's vectorised interface (``add_label``,
``proba_one``, ``predict_proba``, ``learn``, ``rehearse``) by calling River's ``learn_one`` and
``predict_proba_one`` once per row: features reach it as a dict ``{index: value}`` of the
engine's hashed feature space (the bias feature left out: River models have their own), each
row scaled to the norm ``RefinerConfig.model_feature_norm`` (30: River's default learning rates
are sized for standardised features, not unit-norm rows), targets as ``{label: bool}`` over
every label of the dataset.

A third-party model's state cannot be written as plain arrays, so it is pickled into the
snapshot (:func:`dumps`). Unpickling runs code: :func:`loads` is reached only through
``Refiner.restore(blob, allow_pickle=True)``, which the worker passes only for snapshots whose
HMAC it has verified (docs/service.md). :func:`loads` also refuses any class outside River,
numpy and a few standard containers, which narrows what a forged snapshot could do but is not a
sandbox: the HMAC is the security boundary.

>>> model = build_model("river.naive_bayes.ComplementNB", {"alpha": 0.5})
>>> type(model).__name__, type(model.classifier).__name__, model.classifier.alpha
('PerOutputClassifier', 'ComplementNB', 0.5)
>>> build_model("river.linear_model.LogisticRegression", {"optimizer": {"river.optim.AdaGrad": {"lr": 0.4}}}).classifier
LogisticRegression (
  optimizer=AdaGrad (
    lr=Constant (
      learning_rate=0.4
    )
    eps=1e-08
  )
  ...
)
>>> build_model("river.naive_bayes.ComplementNB", {"alfa": 0.5})
Traceback (most recent call last):
...
ValueError: RefinerConfig.model_params: river.naive_bayes.ComplementNB does not accept {'alfa': 0.5} (its parameters: alpha)
>>> build_model("os.system")
Traceback (most recent call last):
...
ValueError: RefinerConfig.model: expected the import path of a River classifier ('river.module.Class'), got 'os.system'
"""

from __future__ import annotations

import importlib
import inspect
import io
import pickle
from typing import Any, cast

import numpy as np
from river import base, multioutput

from pipeline.model import SparseRows, _next_capacity

__all__ = ["PluggedModel", "as_multilabel", "build_model", "dumps", "features_dict", "loads"]


def build_model(path: str, params: dict[str, Any] | None = None, seed: int | None = None) -> base.MultiLabelClassifier:
    """The River classifier named by ``path`` (``"river.module.Class"``) built with ``params``,
    as a multi-label classifier (:func:`as_multilabel`).

    A parameter that is itself a River object is written ``{"river.module.Class": {params}}``,
    e.g. ``{"optimizer": {"river.optim.AdaGrad": {"lr": 0.4}}}``. A model that takes a ``seed``
    and is given none gets ``seed``, so the engine stays deterministic. Raises ValueError saying
    what is wrong with the name or the parameters.
    """
    model = _build(path, params, "RefinerConfig.model", seed)
    if not isinstance(model, (base.Classifier, base.MultiLabelClassifier)):
        raise ValueError(f"RefinerConfig.model: {path} is not a River classifier (binary or multi-label)")
    return as_multilabel(model)


def _build(path: str, params: dict[str, Any] | None, where: str, seed: int | None = None) -> base.Base:
    """The River object ``path(**params)``, nested River objects built first."""
    params = dict(params or {})
    parts = path.split(".") if isinstance(path, str) else []
    if len(parts) < 3 or parts[0] != "river" or not all(p.isidentifier() for p in parts):
        raise ValueError(
            f"{where}: expected the import path of a River classifier ('river.module.Class'), got {path!r}"
        )
    module_name, class_name = ".".join(parts[:-1]), parts[-1]
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise ValueError(
            f"{where}: no {class_name!r} in {module_name!r} (River {_river_version()}); "
            "check the spelling, e.g. 'river.linear_model.LogisticRegression'"
        ) from None
    if not (inspect.isclass(cls) and issubclass(cls, base.Base)):
        raise ValueError(f"{where}: {path} is not a River estimator class")
    accepted = [
        n for n, p in inspect.signature(cls).parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    unknown = {k: v for k, v in params.items() if k not in accepted}
    if unknown:
        raise ValueError(
            f"RefinerConfig.model_params: {path} does not accept {unknown} (its parameters: {', '.join(accepted)})"
        )
    for name, value in params.items():
        if isinstance(value, dict) and len(value) == 1 and str(next(iter(value))).startswith("river."):
            ((inner, inner_params),) = value.items()
            if not isinstance(inner_params, dict):
                raise ValueError(
                    f"RefinerConfig.model_params.{name}: expected {{{inner!r}: {{parameters}}}}, got {value!r}"
                )
            params[name] = _build(inner, inner_params, f"RefinerConfig.model_params.{name}")
    if seed is not None and "seed" in accepted and params.get("seed") is None:
        params["seed"] = seed
    try:
        return cls(**params)
    except Exception as error:  # the model's own check of its parameters
        raise ValueError(
            f"RefinerConfig.model_params: {path}({params}) failed: {type(error).__name__}: {error}"
        ) from None


def as_multilabel(model: Any) -> base.MultiLabelClassifier:
    """``model`` if it is a River multi-label classifier; a binary River classifier wrapped in
    ``multioutput.PerOutputClassifier`` (one copy per label, made as labels appear)."""
    if isinstance(model, base.MultiLabelClassifier):
        return model
    if isinstance(model, base.Classifier):
        return multioutput.PerOutputClassifier(model)
    raise ValueError(
        f"Refiner.model: expected a River classifier (binary, e.g. linear_model.LogisticRegression(), "
        f"or multi-label), got {type(model).__name__}"
    )


class PluggedModel:
    """A River multi-label classifier behind the engine's vectorised interface, one row at a time.

    Parameters
    ----------
    model
        The River multi-label classifier (the engine's ``Refiner.model``).
    min_capacity
        Label columns reserved at the first label, as :class:`pipeline.model.OnlineLinear` does
        (the engine's windows grow with ``capacity``).
    feature_norm
        The L2 norm of the feature rows the model learns from (the engine's rows are unit-norm).

    >>> from river import linear_model
    >>> plugged = PluggedModel(as_multilabel(linear_model.LogisticRegression()))
    >>> plugged.add_label(name="Card")
    0
    >>> x = SparseRows.stack([(np.array([3, 9], np.int32), np.array([1.0, 1.0], np.float32))])
    >>> plugged.learn(x, np.array([[True]])).tolist()  # scores before learning: nothing learned yet
    [[0.0]]
    >>> float(plugged.proba_one(np.array([3, 9], np.int32), np.array([1.0, 1.0], np.float32))[0]) > 0.5
    True
    """

    def __init__(self, model: base.MultiLabelClassifier, min_capacity: int = 16, feature_norm: float = 1.0) -> None:
        self.model = model
        self.min_capacity = min_capacity
        self.feature_norm = feature_norm
        self.labels: list[str] = []
        self.capacity = 0

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    def add_label(self, prior: float = 0.5, name: str | None = None) -> int:
        """Register a new label's column. ``prior`` is unused: a River model starts a label from
        its own defaults."""
        if self.n_labels == self.capacity:
            self.capacity = _next_capacity(self.capacity, self.min_capacity)
        self.labels.append(str(self.n_labels) if name is None else name)
        return self.n_labels - 1

    def proba_one(self, indices: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Every label's probability for one sparse vector (0 for a label the model does not know yet)."""
        x: dict = features_dict(indices, values, self.feature_norm)
        try:
            probas = self.model.predict_proba_one(x)
        except NotImplementedError:  # a model that only decides: its decisions as 0 or 1
            probas = {label: {True: float(bool(decided))} for label, decided in self.model.predict_one(x).items()}
        row = np.zeros(self.n_labels, dtype=np.float32)
        for column, label in enumerate(self.labels):
            p = probas.get(label)
            if p is not None:
                row[column] = p.get(True, 0.0) if isinstance(p, dict) else p
        return row

    def predict_proba(self, x: SparseRows) -> np.ndarray:
        """Probabilities, ``n_rows x n_labels``."""
        scores = np.zeros((len(x), self.n_labels), dtype=np.float32)
        for i in range(len(x)):
            start, end = x.indptr[i], x.indptr[i + 1]
            scores[i] = self.proba_one(x.indices[start:end], x.values[start:end])
        return scores

    def learn(self, x: SparseRows, y: np.ndarray) -> np.ndarray:
        """Learn each row in turn (``learn_one``); the probabilities of ``x`` before learning."""
        before = self.predict_proba(x)
        self.rehearse(x, y)
        return before

    def rehearse(self, x: SparseRows, y: np.ndarray) -> None:
        """:meth:`learn` without the scores (experience replay)."""
        for i in range(len(x)):
            start, end = x.indptr[i], x.indptr[i + 1]
            targets: dict = {label: bool(y[i, column]) for column, label in enumerate(self.labels)}
            features: dict = features_dict(x.indices[start:end], x.values[start:end], self.feature_norm)
            self.model.learn_one(features, targets)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """A header (the label columns) and the pickled model as a byte array."""
        return {"format": "pickle", "labels": self.labels}, {"pickle": np.frombuffer(dumps(self.model), np.uint8)}

    @classmethod
    def from_state(cls, header: dict, arrays: dict[str, np.ndarray]) -> PluggedModel:
        """The model :meth:`state` wrote. Unpickles: call it only on authenticated bytes."""
        plugged = cls(cast(Any, loads(arrays["pickle"].tobytes())))
        for name in header["labels"]:
            plugged.add_label(name=name)
        return plugged


def features_dict(indices: np.ndarray, values: np.ndarray, norm: float = 1.0) -> dict[int, float]:
    """A sparse vector of the engine (its last entry the bias feature) as River features, the
    engine's unit-norm row scaled by ``norm``.

    >>> features_dict(np.array([3, 9, 4096], np.int32), np.array([0.6, 0.8, 1.0], np.float32), norm=30.0)
    {3: 18.0, 9: 24.0}
    """
    if norm == 1.0:
        return dict(zip(indices[:-1].tolist(), values[:-1].tolist()))
    return dict(zip(indices[:-1].tolist(), (values[:-1] * np.float32(norm)).tolist()))


def dumps(model: base.Estimator) -> bytes:
    """A River model's state as pickle bytes (for the engine's snapshot)."""
    return pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> base.Estimator:
    """The River model :func:`dumps` wrote, refusing classes outside River, numpy and standard
    containers. Unpickling runs code: only for authenticated bytes (see the module docstring)."""
    return _RiverUnpickler(io.BytesIO(data)).load()


#: What a River model's pickle may name, outside River itself (collections for naive Bayes'
#: counters, random for trees' and forests' generators, functools.partial for their factories).
_ALLOWED = {
    "builtins": {
        "int",
        "float",
        "complex",
        "bool",
        "str",
        "bytes",
        "bytearray",
        "list",
        "tuple",
        "dict",
        "set",
        "frozenset",
        "slice",
        "range",
    },
    "collections": {"Counter", "defaultdict", "OrderedDict", "deque"},
    "functools": {"partial"},
    "random": {"Random"},
    "copyreg": {"_reconstructor"},
    "pipeline.model": {"OnlineLinear"},  # the default model inside a River pipeline
}
_ALLOWED_ROOTS = ("river", "numpy")


class _RiverUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in _ALLOWED_ROOTS or name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"snapshot: the pickled model names {module}.{name}, which a River model does not need; refusing it"
        )


def _river_version() -> str:
    import river

    return river.__version__
