"""The JSON API and the pages, without Kafka: answers from a worker's real engines, and never an
engine call on the event loop (heartbeats and commits run there; a blocked loop loses the group).

The worker is a `Service` whose partition holds a real `Refiner` fed Banking77 events, as a
restore then the engine agent would leave it; the only difference is that this engine notes the
thread of every call.
"""

from __future__ import annotations

import asyncio
import itertools
import threading

import orjson
import pytest

from agents.ingest.datasets import banking77
from agents.settings import Settings
from agents.web.api import Api
from agents.web.pages import SUGGESTIONS_SHOWN, Pages
from agents.worker.engines import PartitionEngines
from agents.worker.observability import Observability
from agents.worker.options import WorkerOptions
from agents.worker.partition import Partition
from agents.worker.service import Service
from pipeline import Refiner, RefinerConfig
from schemas import SUGGESTION_KINDS, Event

CONFIG = RefinerConfig(feature_bits=12, validation_window=200, live_window=200)


class ThreadNotingRefiner(Refiner):
    """A real `Refiner` that notes ``(verb, thread name)`` of each call the shell makes."""

    calls: list[tuple[str, str]] = []  # shared by the instances: the test reads one list

    def _note(self, verb: str) -> None:
        self.calls.append((verb, threading.current_thread().name))

    def metrics(self, now=None):
        self._note("metrics")
        return super().metrics(now)

    def suggestions(self, kind, label=None, limit=50):
        self._note("suggestions")
        return super().suggestions(kind, label=label, limit=limit)

    def suggestion_pool(self):
        self._note("suggestion_pool")
        pool = super().suggestion_pool()
        rank = pool.suggest

        def suggest(*args, **kwargs):  # ranked from the pool, without the engine: still not on the loop
            self._note("pool.suggest")
            return rank(*args, **kwargs)

        pool.suggest = suggest  # type: ignore[method-assign]
        return pool

    def curve(self, label, points=200):
        self._note("curve")
        return super().curve(label, points)

    def predict(self, message):
        self._note("predict")
        return super().predict(message)

    def frozen(self):
        self._note("frozen")
        return super().frozen()

    def capture(self):
        self._note("capture")
        captured, note = super().capture(), self._note

        class Noted:  # encoded beside the engine thread: still not on the loop
            def encode(self) -> bytes:
                note("capture.encode")
                return captured.encode()

        return Noted()


async def _accept(topic, key, value, partition):
    """A producer that takes every record at once."""
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


@pytest.fixture(scope="module")
def pairs(datasets):
    return list(itertools.islice(banking77(root=datasets), 80))


def _worker(pairs) -> Service:
    """A worker owning partition 0, restored, with 80 Banking77 messages and 40 reviews applied."""
    service = Service(Settings(), WorkerOptions(), _accept, Observability())
    service.assigned = {0}
    engines = PartitionEngines(
        service.topics["events"], 0, lambda d: ThreadNotingRefiner(d, config=CONFIG, seed=0), Refiner.restore
    )
    records = []
    for i, (message, review) in enumerate(pairs):
        records.append(Event(source_topic="refinery.messages", partition=0, offset=i, message=message).encode())
        if i % 2:
            records.append(
                Event(source_topic="refinery.annotations", partition=0, offset=i, annotation=review).encode()
            )
    engines.apply(list(enumerate(records)), now=0)
    partition = service.partitions[0] = Partition(0)
    partition.engines = engines
    return service


def test_no_route_or_page_calls_the_engine_on_the_event_loop(pairs):
    service = _worker(pairs)
    api, pages = Api(service), Pages(service)
    label = service.engine("banking77").labels[0]
    message = orjson.dumps({"dataset": "banking77", "id": "new-1", "timestamp": 0, "body": "where is my card?"})
    ThreadNotingRefiner.calls.clear()

    async def run():
        loop = threading.current_thread().name
        statuses = [
            (await api.metrics("banking77"))[0],
            (await api.suggestions("banking77", {"kind": "check_label", "label": label}))[0],
            (await api.suggestions("banking77", {"kind": "shuffle"}))[0],
            (await api.curve("banking77", {"label": label}))[0],
            (await api.predict("banking77", message))[0],
            (await pages.dataset("banking77"))[0],
            api.datasets()[0],
            pages.index()[0],
            api.readyz()[0],
        ]
        return loop, statuses

    loop, statuses = asyncio.run(run())
    assert statuses == [200] * len(statuses)
    verbs = {verb for verb, _ in ThreadNotingRefiner.calls}
    assert verbs == {"frozen", "metrics", "suggestions", "curve", "predict"}
    assert [call for call in ThreadNotingRefiner.calls if call[1] == loop] == []


def test_no_timer_calls_the_engine_on_the_event_loop(pairs):
    service = _worker(pairs)
    ThreadNotingRefiner.calls.clear()

    async def run():
        await service.publish_metrics()
        await service.snapshot(0)
        return threading.current_thread().name

    loop = asyncio.run(run())
    assert {verb for verb, _ in ThreadNotingRefiner.calls} == {
        "frozen",
        "metrics",
        "suggestion_pool",
        "pool.suggest",
        "capture",
        "capture.encode",
    }
    assert [call for call in ThreadNotingRefiner.calls if call[1] == loop] == []


def test_a_suggestion_list_carries_the_engine_model_version_even_when_empty(pairs):
    service = _worker(pairs)
    status, body = asyncio.run(Api(service).suggestions("banking77", {"kind": "shuffle", "limit": "0"}))
    assert status == 200 and body["items"] == []
    assert body["model_version"] == service.engine("banking77").model_version > 0


def test_suggestions_for_a_label_the_dataset_does_not_have_are_a_404_not_a_crash(pairs):
    status, body = asyncio.run(Api(_worker(pairs)).suggestions("banking77", {"kind": "check_label", "label": "nope"}))
    assert status == 404 and "'nope' is not in dataset 'banking77'" in body["error"]


def test_a_label_on_a_kind_that_takes_none_is_a_400_naming_the_kinds_that_do(pairs):
    status, body = asyncio.run(Api(_worker(pairs)).suggestions("banking77", {"kind": "shuffle", "label": "x"}))
    assert status == 400 and body["error"].startswith("label: shuffle lists take no label (only check_label")


def test_the_api_suggestions_are_the_engine_suggestions_in_its_order(pairs):
    service = _worker(pairs)
    engine = service.engine("banking77")
    label = engine.labels[0]
    status, body = asyncio.run(
        Api(service).suggestions("banking77", {"kind": "missed_label", "label": label, "limit": "5"})
    )
    expected = [s.to_dict() for s in engine.suggestions("missed_label", label=label, limit=5)]
    assert status == 200 and body["items"] == expected and body["label"] == label


def test_the_dataset_page_shows_the_top_suggestions_of_every_kind(pairs):
    service = _worker(pairs)
    engine = service.engine("banking77")
    status, html = asyncio.run(Pages(service).dataset("banking77"))
    assert status == 200
    for kind in SUGGESTION_KINDS:
        for suggestion in engine.suggestions(kind, limit=SUGGESTIONS_SHOWN):
            assert suggestion.message_id in html


def test_a_dataset_owned_elsewhere_is_a_404_naming_the_ones_owned_here(pairs):
    service = _worker(pairs)
    status, body = asyncio.run(Api(service).metrics("elsewhere"))
    assert status == 404 and "owned here: banking77" in body["error"]
    assert asyncio.run(Pages(service).dataset("elsewhere"))[0] == 404


def test_readyz_lists_the_restored_partitions(pairs):
    service = _worker(pairs)
    service.assigned = {0, 1}
    service.partitions[1] = Partition(1)  # assigned, restore not started
    service.inputs = {("refinery.messages", 1), ("refinery.annotations", 0)}
    status, body = Api(service).readyz()
    assert (status, body) == (
        503,
        {
            "ready": False,
            "role": "all",
            "assigned": [0, 1],
            "inputs": ["refinery.annotations:0", "refinery.messages:1"],
            "restored": [0],
            "stalled": [],
        },
    )
