"""The worker, as the web pages see it: the one place that reads the worker's ``Service`` and the
engines' internals (`WorkerView`), so that changes there touch only this module. It reads both the
``agents.worker.app.Service`` of today and the ``agents.worker.service.Service`` of the worker's
split (``engine(dataset)``, ``owned()``); the first branch goes once the split is merged.

Engine calls go through `WorkerView.call`: in the worker's engine thread, under its lock, never
on the event loop.
"""

from __future__ import annotations

import asyncio

from schemas import Annotation

__all__ = ["SEND_TIMEOUT", "WorkerView", "worker_view", "pinned_labels", "label_mix"]

#: Seconds to wait for Kafka to take a review before telling the reviewer it was not sent.
SEND_TIMEOUT = 15.0


class WorkerView:
    """Everything the workbench needs from the worker's `agents.worker.app.Service`, in one place."""

    def __init__(self, service) -> None:
        self.service = service
        self.settings = service.settings

    def engine(self, dataset: str):
        """The engine of ``dataset`` when this worker owns it, else None. Call it through `call`."""
        if hasattr(self.service, "owner_of"):  # the Service of agents.worker.app (before its split)
            part = self.service.owner_of(dataset)
            return None if part is None else part.engines.get(dataset)
        return self.service.engine(dataset)  # agents.worker.service.Service

    def owned_rows(self) -> list[tuple[int, str]]:
        """``(partition, dataset)`` of every dataset this worker owns, sorted."""
        if hasattr(self.service, "owner_of"):
            return [(p, name) for p, part in sorted(self.service.partitions.items()) for name in sorted(part.engines)]
        return list(self.service.owned())

    def owned(self) -> list[str]:
        return sorted(name for _, name in self.owned_rows())

    @property
    def ready(self) -> bool:
        return self.service.ready

    def partitions(self) -> set[int]:
        return set(self.service.assigned or ())

    def latest_metrics(self) -> dict:
        return dict(self.service.latest_metrics)

    async def call(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` in the engine thread, under the engines' lock."""
        async with self.service.lock:
            return await self.service.in_thread(fn, *args, **kwargs)

    @property
    def events_topic(self) -> str:
        return self.service.topics["events"]

    async def send_annotation(self, annotation: Annotation) -> None:
        """Produce ``annotation`` to ``annotations``, keyed by its dataset, on the dataset's partition."""
        from agents.worker.sequencer import owner_partition

        partition = owner_partition(annotation.dataset, self.settings.partitions)
        delivery = await self.service.send(self.service.topics["annotations"], annotation.dataset.encode("utf-8"),
                                           annotation.encode(), partition)
        await asyncio.wait_for(asyncio.ensure_future(delivery), SEND_TIMEOUT)


def worker_view(service) -> WorkerView:
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
