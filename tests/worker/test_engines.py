"""`PartitionEngines`: applying an ``events`` partition to real engines, exactly once, in log order.

No Kafka here: the records are what the engine agent receives, built from a Banking77 slice.
"""

from __future__ import annotations

import dataclasses
import itertools
import zlib

import pytest

from agents.ingest.datasets import banking77
from agents.worker.engines import PartitionEngines, pack_captured
from agents.worker.snapshots import collect, pack
from pipeline import Refiner, RefinerConfig
from schemas import Annotation, Event

CONFIG = RefinerConfig(feature_bits=12, validation_window=200, live_window=200)
KEY = "test-key"
TOPIC = "refinery.events"


def _engine(dataset: str) -> Refiner:
    return Refiner(dataset, config=CONFIG, seed=0)


def _engines() -> PartitionEngines:
    return PartitionEngines(TOPIC, 0, _engine, Refiner.restore)


@pytest.fixture(scope="module")
def log(datasets):
    """An ``events`` log: 120 messages, and a review of every other one a few records later."""
    pairs = list(itertools.islice(banking77(), 120))
    events, reviews = [], 0
    for i, (message, _review) in enumerate(pairs):
        events.append(Event(source_topic="refinery.messages", partition=0, offset=i, message=message))
        if i >= 3 and i % 2 == 1:
            events.append(
                Event(source_topic="refinery.annotations", partition=0, offset=reviews, annotation=pairs[i - 3][1])
            )
            reviews += 1
    return [(offset, event.encode()) for offset, event in enumerate(events)]


def _direct(log, dataset: str = "banking77") -> Refiner:
    """The reference: one engine fed the same events of ``dataset`` one by one, in log order."""
    engine = _engine(dataset)
    for _, raw in log:
        event = Event.decode(raw)
        if (event.message or event.annotation).dataset != dataset:
            continue
        if event.message is not None:
            engine.observe(event.message)
        else:
            engine.annotate(event.annotation)
    return engine


def _apply_in_batches(engines: PartitionEngines, log, size: int):
    predictions = []
    for start in range(0, len(log), size):
        predictions += engines.apply(log[start : start + size], now=0).predictions
    return predictions


def test_the_state_equals_feeding_the_engine_directly_in_log_order(log):
    engines = _engines()
    outcome = engines.apply(log, now=0)
    assert outcome.messages == 120 and outcome.reviews == 59 and not outcome.dead_letters
    assert engines.engines["banking77"].snapshot() == _direct(log).snapshot()


def test_where_batches_are_cut_never_changes_the_state_or_the_predictions(log):
    whole, cut = _engines(), _engines()
    assert _apply_in_batches(whole, log, len(log)) == _apply_in_batches(cut, log, 7)
    assert whole.engines["banking77"].snapshot() == cut.engines["banking77"].snapshot()


def test_one_prediction_per_message(log):
    outcome = _engines().apply(log, now=0)
    assert len({p.message_id for p in outcome.predictions}) == len(outcome.predictions) == 120


def test_a_record_repeated_by_the_sequencer_is_applied_once(log):
    engines = _engines()
    engines.apply(log[:50], now=0)
    # After a sequencer crash the same input records reappear further down the log.
    repeated = [(50 + i, raw) for i, (_, raw) in enumerate(log[40:50])]
    outcome = engines.apply(repeated + [(60 + o, raw) for o, raw in log[50:]], now=0)
    assert outcome.skipped == 10
    assert engines.engines["banking77"].snapshot() == _direct(log).snapshot()


def _reordered(log, start: int, stop: int):
    """The events a retried delivery writes for ``log[start:stop]``: the last record was accepted
    before the others failed, then everything from the first failure on was sent again."""
    values = [raw for _, raw in log]
    batch = values[start:stop]
    return values[:start] + [batch[-1]] + batch + values[stop:]


def test_a_record_resent_after_a_later_one_was_accepted_is_applied_not_skipped(log):
    # Defect 4 of issue 13: events held source offsets 1, 3, 2, 3 and a high-water mark lost 2.
    engines = _engines()
    values = _reordered(log, 40, 50)
    outcome = engines.apply(list(enumerate(values)), now=0)
    assert outcome.skipped == 1  # only the second copy of the record accepted early
    # every record applied once (a review moved before its message is dead-lettered, as it would be)
    assert outcome.messages + outcome.reviews + len(outcome.dead_letters) == len(log)
    reference = _engine("banking77")  # each record once, in the order of its first appearance
    original = [raw for _, raw in log]
    for raw in original[:40] + original[49:50] + original[40:49] + original[50:]:
        event = Event.decode(raw)
        try:
            reference.observe(event.message) if event.message is not None else reference.annotate(event.annotation)
        except ValueError:
            pass  # the worker dead-letters these; the engine is unchanged
    assert engines.engines["banking77"].snapshot() == reference.snapshot()


def test_a_snapshot_taken_between_a_record_and_its_resent_predecessor_keeps_both_exact(log):
    values = list(enumerate(_reordered(log, 40, 50)))
    before = _engines()
    before.apply(values[:41], now=0)  # the early record is applied, its predecessors are not yet
    records = [r for _, chunks, manifest in before.snapshot_records(key=KEY) for r in chunks + [manifest]]
    after = _engines()
    assert after.restore(collect(records), key=KEY) == []
    outcome = after.apply(values[41:], now=0)
    assert outcome.skipped == 1
    uninterrupted = _engines()
    uninterrupted.apply(values, now=0)
    assert after.engines["banking77"].snapshot() == uninterrupted.engines["banking77"].snapshot()


def test_a_snapshot_without_applied_runs_still_drops_everything_below_its_marks(log):
    # Manifests written before the runs were kept carry only the marks: below them is applied.
    before = _engines()
    before.apply(log[:90], now=0)
    manifest, _, _ = before.snapshot_records(key=KEY)[0]
    blob = zlib.compress(before.engines["banking77"].snapshot(), 1)
    chunks, old = pack(
        blob,
        dataset="banking77",
        partition=0,
        version=manifest.version,
        events_offset=manifest.events_offset,
        sources=manifest.sources,
        key=KEY,
    )
    after = _engines()
    assert after.restore(collect(chunks + [old]), key=KEY) == []
    repeated = [(90 + i, raw) for i, (_, raw) in enumerate(log[60:])]  # a sequencer repeat of 60..
    outcome = after.apply(repeated, now=0)
    assert outcome.skipped == 30
    assert after.engines["banking77"].snapshot() == _direct(log).snapshot()


def test_records_delivered_again_after_a_rebalance_are_skipped(log):
    engines = _engines()
    engines.apply(log[:100], now=0)
    outcome = engines.apply(log[80:], now=0)
    assert outcome.skipped == 20
    assert engines.engines["banking77"].snapshot() == _direct(log).snapshot()


def test_restoring_a_snapshot_and_replaying_after_it_reaches_the_uninterrupted_state(log):
    before = _engines()
    before.apply(log[:90], now=0)
    records = [
        r for _, chunks, manifest in before.snapshot_records(key=KEY, chunk_bytes=4096) for r in chunks + [manifest]
    ]
    after = _engines()
    assert after.restore(collect(records), key=KEY) == []
    # The new owner's consumer starts at an older committed offset: what the snapshot covers is skipped.
    outcome = after.apply(log[60:], now=0)
    assert outcome.skipped == 30
    assert after.engines["banking77"].snapshot() == _direct(log).snapshot()


def test_a_forged_snapshot_is_rejected_and_the_dataset_is_rebuilt_from_the_start_of_the_log(log, caplog):
    before = _engines()
    before.apply(log[:90], now=0)
    manifest, _, _ = before.snapshot_records(key=KEY)[0]
    # An attacker without the key writes a snapshot of a blank engine, claiming the same coverage.
    forged_chunks, forged_manifest = pack(
        zlib.compress(_engine("banking77").snapshot(), 1),
        dataset="banking77",
        partition=0,
        version=manifest.version,
        events_offset=manifest.events_offset,
        sources=manifest.sources,
        key="not the service's key",
    )
    after = _engines()
    problems = after.restore(collect(forged_chunks + [forged_manifest]), key=KEY)
    assert len(problems) == 1 and "HMAC mismatch" in problems[0]
    assert any(r.levelname == "ERROR" and r.getMessage().startswith("snapshot_rejected") for r in caplog.records)
    assert "banking77" not in after.engines
    assert after.gap(90) == (0, 90)
    after.apply(log, now=0)
    assert after.engines["banking77"].snapshot() == _direct(log).snapshot()


def test_a_review_the_engine_cannot_apply_is_dead_lettered_and_the_rest_goes_on(log):
    unknown = Annotation(dataset="banking77", message_id="never-seen", timestamp=5, labels=())
    # From another input partition, so that its source offset does not mark later reviews as repeats.
    bad = Event(source_topic="refinery.annotations", partition=1, offset=0, annotation=unknown).encode()
    engines = _engines()
    outcome = engines.apply(log[:10] + [(10, bad)] + [(o + 1, raw) for o, raw in log[10:]], now=0)
    assert [d.error for d in outcome.dead_letters] == ["processing"]
    assert "never-seen" in outcome.dead_letters[0].reason and outcome.dead_letters[0].offset == 10
    assert engines.engines["banking77"].snapshot() == _direct(log).snapshot()


def test_an_undecodable_event_is_dead_lettered_with_its_events_position(log):
    outcome = _engines().apply([(0, b"garbage")] + [(o + 1, raw) for o, raw in log[:5]], now=0)
    assert [(d.error, d.source_topic, d.offset) for d in outcome.dead_letters] == [("schema", TOPIC, 0)]
    assert outcome.messages == 4 and outcome.reviews == 1


def test_only_changed_datasets_are_snapshotted(log):
    engines = _engines()
    engines.apply(log[:20], now=0)
    first = engines.snapshot_records(key=KEY)
    engines.snapshotted([m for m, _, _ in first])
    assert engines.snapshot_records(key=KEY) == []
    engines.apply(log[20:30], now=0)
    second = engines.snapshot_records(key=KEY)
    assert [(m.version, m.events_offset) for m, _, _ in second] == [(2, 30)]


def test_after_a_failed_batch_the_partition_is_replayed_from_its_oldest_snapshot(log):
    before = _engines()
    before.apply(log[:90], now=0)
    records = [r for _, chunks, manifest in before.snapshot_records(key=KEY) for r in chunks + [manifest]]
    after = _engines()
    after.restore(collect(records), key=KEY, replay=True)
    # The consumer has moved past the failed batch: what it skipped is read again first.
    assert after.gap(120) == (90, 120)
    after.apply(log[90:], now=0)
    assert after.engines["banking77"].snapshot() == _direct(log).snapshot()


def test_snapshots_are_written_with_zstd_and_zlib_snapshots_of_earlier_versions_still_restore():
    from agents.worker.engines import compress_state, decompress_state

    state = _engine("banking77").snapshot()
    blob = compress_state(state)
    assert blob[:4] == b"\x28\xb5\x2f\xfd" and len(blob) < len(zlib.compress(state, 1))  # a zstd frame, smaller
    assert decompress_state(blob) == state and decompress_state(zlib.compress(state, 1)) == state


def _for_datasets(log, names: str) -> list[tuple[int, bytes]]:
    """``log``'s events for each dataset of ``names`` in turn (``a`` then ``b``...), renumbered."""
    out = []
    for _, raw in log:
        event = Event.decode(raw)
        for name in names:
            if event.message is not None:
                copy = dataclasses.replace(event, message=dataclasses.replace(event.message, dataset=name))
            else:
                copy = dataclasses.replace(event, annotation=dataclasses.replace(event.annotation, dataset=name))
            out.append((len(out), copy.encode()))
    return out


def test_datasets_captured_one_at_a_time_at_different_positions_each_restore_exactly(log):
    two = _for_datasets(log, "ab")
    engines = _engines()
    engines.apply(two[:100], now=0)
    assert engines.begin_snapshot() == ["a", "b"]
    first = engines.capture("a")
    engines.apply(two[100:160], now=0)  # both change between the two captures
    second = engines.capture("b")
    assert first is not None and second is not None
    assert (first.events_offset, second.events_offset) == (100, 160)
    assert engines.dirty == {"a", "b"}  # changed after the snapshot began: the next one covers them
    records = []
    for captured in (first, second):
        _, chunks, manifest = pack_captured(captured, partition=0, writer="w", key=KEY, chunk_bytes=4096)
        records += chunks + [manifest]

    after = _engines()
    assert after.restore(collect(records), key=KEY) == []
    # The new owner's consumer starts where the snapshot began (the events before it were acked):
    # b's events its later capture holds are skipped, a's are applied.
    outcome = after.apply(two[100:], now=0)
    assert outcome.skipped == 30
    for dataset in "ab":
        assert after.engines[dataset].snapshot() == _direct(two, dataset).snapshot()


def test_engines_whose_batch_failed_part_way_are_never_captured(log):
    class Failing(dict):
        """Parsed events that fail at offset 15, a bug after 10..14 were taken in."""

        def __bool__(self) -> bool:
            return True

        def get(self, offset, default=None):
            if offset == 15:
                raise RuntimeError("a bug")
            return default

    engines = _engines()
    engines.apply(log[:10], now=0)
    assert engines.capture("banking77") is not None
    with pytest.raises(RuntimeError):
        engines.apply(log[10:20], now=0, parsed=Failing())
    # Records 10..14 are marked applied, and the messages among them not yet observed: saving
    # that state would lose them for ever.
    assert engines.failed and engines.capture("banking77") is None
    assert engines.snapshot_records(key=KEY) == []
