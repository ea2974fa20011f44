"""The worker's memory caps: datasets per ``events`` partition, labels per dataset.

Each label costs a weight column of ``2**feature_bits`` floats (512 KiB at the default 17 bits)
and each dataset an engine, so one review pinning a thousand new labels, or a thousand new
datasets, could swamp a worker. `Caps.refuse` says why an event must be dead-lettered instead;
`agents.worker.engines.PartitionEngines` asks it before keeping any state for the event. The
decision depends only on the partition's log (which datasets came first, which labels a
dataset has), so a replay after a crash refuses exactly the same events.

>>> from schemas import Annotation
>>> caps = Caps(max_datasets=1, max_labels=2)
>>> print(caps.refuse({"support": object()}, "sales", None))
this events partition already holds 1 datasets, the cap (REFINERY_MAX_DATASETS_PER_PARTITION=1); raise it, or spread datasets over more partitions
>>> review = Annotation.from_dict({"dataset": "support", "message_id": "m", "timestamp": 0,
...                                "labels": [{"name": "Card > Delivery"}, {"name": "Urgent"}]})
>>> print(caps.refuse({}, "support", review))
the review would give the dataset 3 labels (with implied parents), over the cap (REFINERY_MAX_LABELS_PER_DATASET=2); it has 0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from schemas import Annotation

__all__ = ["Caps"]


@dataclasses.dataclass(frozen=True)
class Caps:
    """The memory caps of one partition's engines (None: no cap)."""

    max_datasets: int | None = None
    max_labels: int | None = None

    def refuse(self, engines: Mapping[str, object], dataset: str, annotation: Annotation | None) -> str | None:
        """Why the event of ``dataset`` (a review when ``annotation``) must be refused, or None."""
        engine = engines.get(dataset)
        if engine is None and self.max_datasets is not None and len(engines) >= self.max_datasets:
            return (
                f"this events partition already holds {len(engines)} datasets, the cap "
                f"(REFINERY_MAX_DATASETS_PER_PARTITION={self.max_datasets}); raise it, or spread datasets "
                "over more partitions"
            )
        if annotation is None or self.max_labels is None or annotation.action == "remove":
            return None
        known = set(getattr(engine, "labels", ()))
        new = [name for name in annotation.pinned_labels() if name not in known]
        if new and len(known) + len(new) > self.max_labels:
            return (
                f"the review would give the dataset {len(known) + len(new)} labels (with implied parents), over "
                f"the cap (REFINERY_MAX_LABELS_PER_DATASET={self.max_labels}); it has {len(known)}"
            )
        return None
