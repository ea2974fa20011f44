"""The worker, as the web pages see it: the one place that reads the worker's
`agents.worker.service.Service` and the engines' internals (`WorkerView`), so that changes there
touch only this module.

Engine calls go through `WorkerView.call`: in the worker's engine thread, under its lock, never
on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from schemas import Annotation, Message, MetricsSnapshot

if TYPE_CHECKING:
    from agents.worker.service import Service
    from pipeline.engine import Engine

T = TypeVar("T")

__all__ = ["SEND_TIMEOUT", "WorkerView", "worker_view", "pinned_labels", "label_mix"]

#: Seconds to wait for Kafka to take a review before telling the reviewer it was not sent.
SEND_TIMEOUT = 15.0


class WorkerView:
    """Everything the web pages need from the worker's `agents.worker.service.Service`, in one place."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.settings = service.settings

    def engine(self, dataset: str) -> Engine | None:
        """The engine of ``dataset`` when this worker owns it, else None. Call it through `call`."""
        return self.service.engine(dataset)

    def owned_rows(self) -> list[tuple[int, str]]:
        """``(partition, dataset)`` of every dataset this worker owns, sorted."""
        return list(self.service.owned())

    def owned(self) -> list[str]:
        return sorted(name for _, name in self.owned_rows())

    @property
    def ready(self) -> bool:
        return self.service.ready

    def partitions(self) -> set[int]:
        return set(self.service.assigned or ())

    def on_seen(self, listener: Callable[[list[Message | tuple[str, str]]], None]) -> None:
        """Call ``listener`` on the loop with what each batch the engine applies holds: each
        message (a review's inline copy too) and ``(dataset, id)`` of a review without one."""
        self.service.seen_listeners.append(listener)

    def latest_metrics(self) -> dict[str, MetricsSnapshot]:
        return dict(self.service.latest_metrics)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the engine thread, under the engines' lock."""
        async with self.service.lock:
            return await self.service.in_thread(fn, *args, **kwargs)

    async def read_frozen(self, engine: Any, fn: Callable[[Any], T]) -> T:
        """``fn(copy)`` on a frozen copy of ``engine``, beside the engine thread (`Service.read_frozen`)."""
        return await self.service.read_frozen(engine, fn)

    @property
    def events_topic(self) -> str:
        return self.service.topics["events"]

    async def send_annotation(self, annotation: Annotation) -> None:
        """Produce ``annotation`` to ``annotations``, keyed by its dataset, on the dataset's partition."""
        from agents.worker.sequencer import owner_partition

        partition = owner_partition(annotation.dataset, self.settings.partitions)
        delivery = await self.service.send(
            self.service.topics["annotations"], annotation.dataset.encode("utf-8"), annotation.encode(), partition
        )
        await asyncio.wait_for(asyncio.ensure_future(delivery), SEND_TIMEOUT)


def worker_view(service: Service) -> WorkerView:
    """The workbench's one way into the worker."""
    return WorkerView(service)


def pinned_labels(engine, message_id: str) -> tuple[bool, tuple[str, ...]]:
    """Whether the engine holds a current review of the message, and its pinned labels."""
    review = getattr(engine, "reviewed", {}).get(message_id)
    if review is None:
        return False, ()
    return True, tuple(sorted(engine.labels[c] for c in review[0]))


def label_mix(engine, top: int = 12) -> list[tuple[str, float]]:
    """Shares of the live window by top predicted label at threshold (as predicted when each
    message arrived), the largest ``top``, plus the share with no label at threshold."""
    import numpy as np

    live, labels = getattr(engine, "live", None), list(getattr(engine, "labels", ()))
    if live is None:
        return []
    slots = live.occupied()
    if not len(slots):
        return []
    n = len(labels)
    if n == 0:
        return [("(no label at threshold)", 1.0)]
    scores = live.scores[slots, :n]
    best = scores.argmax(axis=1)
    at = scores[np.arange(len(slots)), best] >= engine.thresholds[:n][best]
    counts = np.bincount(best[at], minlength=n)
    shares = sorted(((labels[i], counts[i] / len(slots)) for i in range(n) if counts[i]), key=lambda x: (-x[1], x[0]))
    return shares[:top] + [("(no label at threshold)", float(1 - at.mean()))]
