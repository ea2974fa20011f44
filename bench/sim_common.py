"""Helpers shared by the simulation harness (``bench/sim_*.py``): data, reviews, scoring.

Every simulation is seeded and prints its figure next to the baseline measured in the same run.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from agents.ingest import datasets
from pipeline import Refiner, RefinerConfig
from pipeline.model import SparseRows
from schemas import Annotation, LabelAssignment, Message

__all__ = ["load", "review", "at", "scores_of", "Timer"]


def load(name: str, **kwargs) -> list[tuple[Message, Annotation]]:
    """A data set's (message, review) pairs, or exit with the loader's message if it is missing."""
    try:
        return list(datasets.load(name, **kwargs))
    except datasets.DatasetMissing as error:
        raise SystemExit(str(error)) from None


def at(message: Message, t: float) -> Message:
    """The message re-timed to stream position ``t`` (simulations replay data sets in their own order)."""
    return dataclasses.replace(message, timestamp=float(t))


def review(message: Message, labels, mode: str, t: float | None = None) -> Annotation:
    """A complete review of ``message`` pinning ``labels``, carrying the message inline."""
    t = message.timestamp if t is None else float(t)
    return Annotation(
        dataset=message.dataset,
        message_id=message.id,
        timestamp=t,
        labels=tuple(LabelAssignment(name=name) for name in labels),
        mode=mode,
        annotator="simulated",
        message=message,
    )


def scores_of(engine: Refiner, features: list) -> np.ndarray:
    """The engine's current confidences for pre-computed feature vectors, without observing them
    (so held-out test messages never enter the live pool)."""
    out = [engine._score(SparseRows.stack(features[i : i + 512])) for i in range(0, len(features), 512)]
    return np.concatenate(out) if out else np.zeros((0, len(engine.labels)))


class Timer:
    """Wall-clock seconds since creation (benchmarks only; the pipeline never reads a clock)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __str__(self) -> str:
        return f"{time.perf_counter() - self.start:.1f}s"


def engine(dataset: str, seed: int, **config) -> Refiner:
    return Refiner(dataset=dataset, config=RefinerConfig(**config), seed=seed)
