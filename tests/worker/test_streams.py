"""Specification of streams for automations without a broker: declarations, their validation,
and which messages and labels a stream writes (`schemas.Stream`, `agents.worker.streams`)."""

from __future__ import annotations

import dataclasses
import itertools
import random
import re

import pytest

from agents.ingest.datasets import banking77
from agents.worker.options import WorkerOptions, configured_streams
from agents.worker.streams import DeclarationError, StreamRegistry
from pipeline import Refiner
from schemas import Message, Prediction, SchemaError, Stream, StreamFilter, StreamMessage, Thresholds
from tests.worker.test_service import records  # noqa: F401  (the fixture: real Banking77 events)

CARD = Thresholds(balanced=0.5, high_precision=0.8, high_recall=0.1)


def prediction(confidences, thresholds=None, dataset="support", message_id="m-1") -> Prediction:
    return Prediction(
        dataset=dataset,
        message_id=message_id,
        timestamp=0,
        model_version=12,
        confidences=confidences,
        labels=(),
        informative=True,
        thresholds=thresholds or {},
        thresholds_version=8,
    )


def message(**fields) -> Message:
    return Message(**{"dataset": "support", "id": "m-1", "timestamp": 0, **fields})


# -- declarations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declaration", "error"),
    [
        ({"name": "Has Spaces", "dataset": "d"}, "stream.name: expected lowercase letters"),
        ({"name": "s", "dataset": "d", "threshold": "precise"}, "stream.threshold: expected one of 'balanced'"),
        ({"name": "s", "dataset": "d", "threshold": 1.5}, "stream.threshold: expected a number from 0 to 1"),
        ({"name": "s", "dataset": "d", "labels": {"A": -0.1}}, "stream.labels.A: expected a number from 0 to 1"),
        ({"name": "s", "dataset": "d", "labels": {"A>B": 0.5}}, "label names as the engine writes them ('A > B')"),
        ({"name": "s", "dataset": "d", "filter": {"channels": ["fax"]}}, "stream.filter.channels[0]: expected one of"),
        ({"name": "s"}, "stream.dataset: expected a value (the field is required)"),
        ({"name": "s", "dataset": "d", "colour": "red"}, "stream.colour: expected a known field"),
    ],
)
def test_a_bad_declaration_is_refused_with_the_field_and_what_was_expected(declaration, error):
    with pytest.raises(SchemaError, match=re.escape(error)):
        Stream.from_dict(declaration)


def test_refinery_streams_reads_a_json_list_or_a_file_and_names_the_variable_in_errors(tmp_path):
    listed = '[{"name": "urgent", "dataset": "support", "threshold": "high_precision"}]'
    assert [s.threshold for s in WorkerOptions.from_env({"REFINERY_STREAMS": listed}).streams] == ["high_precision"]
    path = tmp_path / "streams.json"
    path.write_text(listed)
    assert [s.name for s in configured_streams(str(path))] == ["urgent"]
    with pytest.raises(ValueError, match=r"REFINERY_STREAMS\[1\]\.dataset: expected a value"):
        configured_streams('[{"name": "a", "dataset": "d"}, {"name": "b"}]')
    with pytest.raises(ValueError, match=r"REFINERY_STREAMS\[1\]\.name: stream 'a' is declared twice"):
        configured_streams('[{"name": "a", "dataset": "d"}, {"name": "a", "dataset": "e"}]')
    with pytest.raises(ValueError, match="expected a JSON list of streams or the path of a JSON file"):
        configured_streams(str(tmp_path / "missing.json"))


def test_a_declaration_replaces_and_a_tombstone_deletes_but_a_configured_stream_stays():
    registry = StreamRegistry([Stream(name="fixed", dataset="support")])
    registry.apply(b"mine", Stream(name="mine", dataset="support", threshold=0.3).encode())
    registry.apply(b"mine", Stream(name="mine", dataset="support", threshold=0.4).encode())
    assert {n: s.threshold for n, s in registry.streams().items()} == {"fixed": "balanced", "mine": 0.4}
    assert registry.source("fixed") == "configuration" and registry.source("mine") == "api"
    registry.apply(b"mine", None)
    registry.apply(b"fixed", Stream(name="fixed", dataset="other").encode())  # the configuration wins
    assert {n: s.dataset for n, s in registry.streams().items()} == {"fixed": "support"}
    with pytest.raises(DeclarationError, match="declared by the setting REFINERY_STREAMS"):
        registry.check_writable("fixed")


def test_a_declaration_under_another_name_or_not_a_stream_is_rejected():
    registry = StreamRegistry()
    with pytest.raises(DeclarationError, match="declaration keyed 'a' holds stream 'b'"):
        registry.apply(b"a", Stream(name="b", dataset="d").encode())
    with pytest.raises(DeclarationError, match="declaration of stream 'a': stream: expected an object, got a list"):
        registry.apply(b"a", b"[1]")
    assert registry.streams() == {}


# -- routing -----------------------------------------------------------------------------------


def test_each_label_passes_the_threshold_kind_chosen_for_it():
    p = prediction({"Card": 0.6, "Refund": 0.3}, {"Card": CARD, "Refund": Thresholds(0.25, None, 0.05)})
    chosen = {
        kind: Stream(name="s", dataset="support", threshold=kind).route(p, message())
        for kind in ("balanced", "high_precision", "high_recall")
    }
    assert [label.name for label in chosen["balanced"].labels] == ["Card", "Refund"]
    assert chosen["high_precision"] is None  # Card 0.6 < 0.8; Refund has no high-precision threshold
    per_label = Stream(name="s", dataset="support", labels={"Card": "balanced", "Refund": 0.35}).route(p, message())
    assert [(label.name, label.threshold, label.choice) for label in per_label.labels] == [("Card", 0.5, "balanced")]


def test_a_label_the_prediction_lists_no_thresholds_for_passes_no_kind_but_a_number():
    p = prediction({"Card": 0.2})
    assert Stream(name="s", dataset="support", threshold="high_recall").route(p, message()) is None
    assert Stream(name="s", dataset="support", threshold=0.2).route(p, message()).labels[0].name == "Card"


def test_the_filter_keeps_the_chosen_channels_and_metadata_and_other_datasets_out():
    p = prediction({"Card": 0.9}, {"Card": CARD})
    stream = Stream(name="s", dataset="support", filter=StreamFilter(channels=("email",), metadata={"tier": "gold"}))
    assert stream.route(p, message(channel="email", metadata={"tier": "gold", "x": 1})) is not None
    assert stream.route(p, message(channel="chat", metadata={"tier": "gold"})) is None
    assert stream.route(p, message(channel="email", metadata={"tier": "silver"})) is None
    assert stream.route(p, message(channel="email")) is None
    other = prediction({"Card": 0.9}, {"Card": CARD}, dataset="other")
    assert StreamRegistry([Stream(name="s", dataset="support")]).route([(other, message(dataset="other"))]) == []


def test_a_message_with_no_label_at_threshold_is_written_only_when_asked():
    p = prediction({"Card": 0.1}, {"Card": CARD})
    assert Stream(name="s", dataset="support").route(p, message()) is None
    record = Stream(name="s", dataset="support", include_unlabelled=True).route(p, message(body="hi"))
    assert record.labels == () and record.message.body == "hi" and record.model_version == 12
    assert record.thresholds_version == 8


# -- the thresholds every prediction carries ---------------------------------------------------


@pytest.fixture(scope="module")
def trained(datasets):
    pairs = list(itertools.islice(banking77(), 10_003))
    random.Random(0).shuffle(pairs)
    engine = Refiner("banking77", seed=0)
    for m, review in pairs[:600]:
        engine.annotate(dataclasses.replace(review, message=m))
    return engine, [m for m, _ in pairs[600:900]]


def test_a_prediction_lists_the_thresholds_of_exactly_the_labels_that_reach_one(trained):
    engine, messages = trained
    table = engine.threshold_table()
    assert engine.thresholds_version == 500 and set(table) == set(engine.labels)
    for p in engine.observe_many(messages):
        assert p.thresholds_version == 500
        for label, confidence in p.confidences.items():
            kinds = [getattr(table[label], k) for k in ("balanced", "high_precision", "high_recall")]
            reaches = any(t is not None and confidence >= t for t in kinds)
            assert (label in p.thresholds) == reaches, label
            if reaches:
                assert p.thresholds[label] == table[label]


def test_the_threshold_table_survives_a_snapshot(trained):
    engine, messages = trained
    restored = Refiner.restore(engine.snapshot())
    assert restored.threshold_table() == engine.threshold_table()
    assert restored.thresholds_version == engine.thresholds_version
    assert restored.predict(messages[0]) == engine.predict(messages[0])


def test_the_examples_of_docs_streams_md_run():
    import doctest

    from agents.settings import PROJECT_ROOT

    failures, tried = doctest.testfile(str(PROJECT_ROOT / "docs" / "streams.md"), module_relative=False)
    assert tried > 0 and failures == 0


def test_the_consumer_example_routes_by_the_most_confident_label_with_a_route():
    import doctest
    import importlib.util

    from agents.settings import PROJECT_ROOT

    spec = importlib.util.spec_from_file_location("stream_consumer", PROJECT_ROOT / "docs/examples/stream_consumer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert doctest.testmod(module).failed == 0
    labels = [{"name": "Urgent", "confidence": 0.9}, {"name": "Card", "confidence": 0.8}]
    assert module.team_for(labels, {"Card": "cards", "Urgent": "urgent-desk"}, "triage") == "urgent-desk"


# -- in the worker (no broker: tests/worker/test_service.py's fakes) ----------------------------


def _recording_service(streams):
    import asyncio

    from agents.settings import Settings
    from agents.worker.engines import PartitionEngines
    from agents.worker.observability import Observability
    from agents.worker.service import Service

    sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send(topic, key, value, partition):
        sent.append((topic, key, value))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    options = WorkerOptions(engine_config={"feature_bits": 12}, snapshot_every=10_000, streams=tuple(streams))
    service = Service(Settings(), options, send, Observability())

    async def load(p: int, replay: bool) -> PartitionEngines:
        return PartitionEngines(service.topics["events"], p, service.make_engine, service.restore_engine)

    service._load = load  # type: ignore[method-assign]  # no snapshots partition to read
    service.on_assigned({0})
    return service, sent


def test_the_worker_writes_each_routed_message_with_its_prediction_before_anything_is_acked(records):
    import asyncio

    from tests.worker.test_service import FaustEvent

    every = Stream(name="every", dataset="banking77", threshold=0.0, include_unlabelled=True)  # all pass

    async def run():
        service, sent = _recording_service([every])
        events = [FaustEvent(0, offset, raw) for offset, raw in enumerate(records)]
        await service.process(events)
        return service, sent, events

    service, sent, events = asyncio.run(run())
    predictions = [Prediction.decode(v) for t, _, v in sent if t == "refinery.predictions"]
    written = [StreamMessage.decode(v) for t, _, v in sent if t == "refinery.streams.every"]
    assert [r.message_id for r in written] == [p.message_id for p in predictions] and len(written) == 30
    assert all(
        [label.name for label in r.labels] == sorted(p.confidences, key=lambda n: (-p.confidences[n], n))
        for r, p in zip(written, predictions)
    )
    assert not any(e.acked for e in events)  # the records go out with the predictions, acks wait for a snapshot


def test_the_worker_applies_no_event_before_the_declarations_are_read(records):
    import asyncio

    from tests.worker.test_service import FaustEvent

    async def run():
        service, sent = _recording_service([])
        service.streams_loaded.clear()  # as `follow_streams` does at start
        task = asyncio.create_task(service.process([FaustEvent(0, 0, records[0])]))
        await asyncio.sleep(0.2)
        before = list(sent)
        service.streams_loaded.set()
        await task
        return before, sent

    before, after = asyncio.run(run())
    assert before == [] and len(after) == 1
