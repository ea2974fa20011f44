"""Specification of drift detection (pipeline.drift): prequential error and the live label mix."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agents.ingest.datasets import banking77
from pipeline import Refiner, RefinerConfig
from pipeline.drift import AdwinErrorDrift, DriftMonitor, ErrorDrift, MixDrift
from schemas import Annotation, DriftEvent, LabelAssignment

CONFIG = RefinerConfig(validation_window=2000, live_window=2000)


def test_a_jump_in_error_is_reported_within_two_buckets():
    detector = ErrorDrift(bucket_size=10, max_buckets=32)
    rng = np.random.default_rng(0)
    errors = np.concatenate([rng.random(300) < 0.1, rng.random(100) < 0.8]).astype(float)
    reports = [i for i, e in enumerate(errors) if detector.update(0, e)]
    assert reports and 300 <= reports[0] < 320


def test_a_stationary_error_rate_raises_no_alarm():
    detector = ErrorDrift()
    rng = np.random.default_rng(1)
    assert not any(detector.update(0, float(e)) for e in rng.random(20_000) < 0.3)


def test_a_falling_error_is_learning_not_drift():
    detector = ErrorDrift()
    assert not any(detector.update(0, 1.0 if i < 200 else 0.0) for i in range(600))
    assert detector.sums[0, : detector.filled[0]].sum() == 0  # but the window adapted: only the new rate is left


def test_each_row_is_its_own_stream():
    detector = ErrorDrift(bucket_size=10)
    for _ in range(200):
        detector.update(3, 0.0)
    assert not any(detector.update(5, 1.0) for _ in range(200))  # row 5 was always bad: no change
    assert any(detector.update(3, 1.0) for _ in range(40))


def _mix(detector, rng, probabilities, n):
    buckets = rng.choice(len(probabilities), size=n, p=probabilities)
    return detector.update(buckets, len(probabilities) - 1)


def test_a_stationary_label_mix_raises_no_alarm():
    detector, rng = MixDrift(), np.random.default_rng(2)
    probabilities = np.r_[np.full(40, 0.9 / 40), 0.1]
    assert _mix(detector, rng, probabilities, 50_000) == []


def test_a_new_topic_in_the_mix_is_reported_within_the_bounded_delay():
    detector, rng = MixDrift(block=100, reference_blocks=10, recent_blocks=2), np.random.default_rng(3)
    before = np.r_[np.full(20, 1 / 20), np.zeros(20), 0.0]
    after = np.r_[np.zeros(20), np.full(20, 1 / 20), 0.0]
    assert _mix(detector, rng, before, 2000) == []
    found = _mix(detector, rng, after, 1000)
    assert found and found[0] < (2 + 1) * 100


def test_batches_never_change_what_the_mix_detector_finds():
    rng = np.random.default_rng(4)
    buckets = np.concatenate([rng.integers(0, 10, 1500), rng.integers(10, 20, 800)])
    whole, pieces = MixDrift(), MixDrift()
    found_whole = whole.update(buckets, 20)
    found_pieces, start = [], 0
    for size in rng.integers(1, 250, 100):
        chunk = buckets[start : start + size]
        found_pieces += [start + p for p in pieces.update(chunk, 20)]
        start += len(chunk)
        if start >= len(buckets):
            break
    assert found_whole == found_pieces and len(found_whole) >= 1
    assert np.array_equal(whole.counts, pieces.counts)


def _at(message, t):
    return dataclasses.replace(message, timestamp=t)


def _reviewed(message, label, t):
    return Annotation(
        dataset=message.dataset,
        message_id=message.id,
        timestamp=t,
        mode="shuffle",
        labels=(LabelAssignment(name=label),),
        message=message,
    )


@pytest.fixture(scope="module")
def halves(datasets):
    """Banking77 training messages of the first and the last 20 intents, each in a fixed random order."""
    pairs = list(banking77("train", root=datasets))
    intents = sorted({r.labels[0].name for _, r in pairs})
    rng = np.random.default_rng(0)
    first = [pairs[i] for i in rng.permutation(len(pairs)) if pairs[i][1].labels[0].name in intents[:20]]
    second = [pairs[i] for i in rng.permutation(len(pairs)) if pairs[i][1].labels[0].name in intents[-20:]]
    return first, second


@pytest.fixture(scope="module")
def trained(halves):
    """An engine that has reviewed 600 messages of the first half of the intents."""
    first, _ = halves
    engine = Refiner("banking77", CONFIG, seed=0)
    for t, (message, truth) in enumerate(first[:600]):
        engine.annotate(_reviewed(message, truth.labels[0].name, t))
    return engine


def test_a_switch_of_topics_in_live_traffic_is_reported_with_its_time(trained, halves):
    first, second = halves
    engine = Refiner.restore(trained.snapshot())
    stream = [m for m, _ in first[600:1800]] + [m for m, _ in second[:600]]
    switch_time = 10_000.0 + 1200
    for t, message in enumerate(stream):
        engine.observe(_at(message, 10_000.0 + t))
    drift = engine.metrics().to_dict()["drift"]
    mix = [d for d in drift if d["kind"] == "live_mix"]
    assert mix, drift
    assert switch_time <= mix[0]["when"] < switch_time + 300
    assert mix[0]["label"] is None and "predicted-label mix" in mix[0]["detail"]


def test_reviews_of_a_new_topic_raise_the_prequential_error_alarm(trained, halves):
    first, second = halves
    engine = Refiner.restore(trained.snapshot())
    stream = [(m, r, 20_000.0 + t) for t, (m, r) in enumerate(first[600:900] + second[:200])]
    for message, truth, t in stream:
        engine.annotate(_reviewed(message, truth.labels[0].name, t))
    errors = [d for d in engine.metrics().to_dict()["drift"] if d["kind"] == "review_error"]
    assert errors and 20_300.0 <= errors[0]["when"] < 20_300.0 + 60
    assert "rose from" in errors[0]["detail"]


def test_a_stationary_stream_raises_no_alarm(trained, halves):
    first, _ = halves
    engine = Refiner.restore(trained.snapshot())
    for t, (message, truth) in enumerate(first[600:2400]):
        engine.observe(_at(message, 30_000.0 + t))
        if t % 5 == 0:
            engine.annotate(_reviewed(message, truth.labels[0].name, 30_000.0 + t))
    assert engine.metrics().drift == ()


def test_drift_state_and_events_survive_snapshot_and_restore(trained, halves):
    first, second = halves
    engine = Refiner.restore(trained.snapshot())
    stream = [_at(m, 40_000.0 + t) for t, (m, _) in enumerate(first[600:1500] + second[:500])]
    engine.observe_many(stream[:1250])
    restored = Refiner.restore(engine.snapshot())
    assert restored.drift.events() == engine.drift.events()
    engine.observe_many(stream[1250:])
    for message in stream[1250:]:  # one by one: batch boundaries change nothing
        restored.observe(message)
    assert restored.drift.events() == engine.drift.events() and engine.drift.events()
    assert all(isinstance(e, DriftEvent) for e in engine.metrics().drift)


def test_events_are_bounded():
    monitor = DriftMonitor(max_events=3)
    for i in range(10):
        monitor._report(None, "live_mix", float(i), "x")
    assert [e.when for e in monitor.events()] == [7.0, 8.0, 9.0]


def test_a_young_model_learning_on_a_stationary_stream_raises_no_alarm(datasets):
    pairs = list(banking77("train", root=datasets))
    stream = [pairs[i] for i in np.random.default_rng(5).permutation(len(pairs))[:4000]]
    engine = Refiner("banking77", CONFIG, seed=0)
    for t, (message, truth) in enumerate(stream):
        engine.observe(_at(message, float(t)))
        if t % 5 == 0:
            engine.annotate(_reviewed(message, truth.labels[0].name, float(t)))
    # the predicted mix moves a lot while the model learns its first reviews: that is not drift
    assert engine.metrics().drift == ()


def test_a_label_whose_meaning_changes_raises_its_own_error_alarm(trained, halves):
    first, _ = halves
    engine = Refiner.restore(trained.snapshot())
    intents = sorted({r.labels[0].name for _, r in first})
    moved, target = intents[0], intents[1]
    # from now on reviewers file the messages of `moved` under `target`
    stream = [(m, target if r.labels[0].name == moved else r.labels[0].name) for m, r in first[600:2400]]
    for t, (message, label) in enumerate(stream):
        engine.annotate(_reviewed(message, label, 50_000.0 + t))
    alarms = {d.label for d in engine.metrics().drift if d.kind == "label_error"}
    assert target in alarms or moved in alarms
    assert alarms <= {moved, target}


def test_drift_detectors_take_their_settings_from_the_engine_config():
    from pipeline import Refiner, RefinerConfig

    engine = Refiner(
        "d", RefinerConfig(drift_error_bucket=5, drift_error_delta=0.01, drift_mix_block=50, drift_mix_alpha=1e-3)
    )
    assert (engine.drift.error.bucket_size, engine.drift.error.delta) == (5, 0.01)
    assert (engine.drift.mix.block, engine.drift.mix.alpha) == (50, 1e-3)
    restored = Refiner.restore(engine.snapshot())
    assert (restored.drift.mix.block, restored.drift.error.delta) == (50, 0.01)


def test_a_drift_confidence_outside_zero_and_one_is_refused():
    from pipeline import RefinerConfig

    with pytest.raises(ValueError, match=r"^RefinerConfig.drift_mix_alpha: expected a probability in \(0, 1\), got 2"):
        RefinerConfig(drift_mix_alpha=2)


def test_the_adwin_detector_is_rivers_and_restores_bit_for_bit_without_pickle():
    from river import drift

    from pipeline import snapshot

    rng = np.random.default_rng(3)
    errors = np.concatenate([rng.random(3000) < 0.1, rng.random(3000) < 0.3]).astype(float)
    detector, river_adwin = AdwinErrorDrift(clock=32), drift.ADWIN(delta=0.002)
    for i, e in enumerate(errors[:3100]):
        detector.update(i % 2, float(e))
        if i % 2 == 0:
            river_adwin.update(float(e))
    assert detector.rows[0]._helper.__getstate__() == river_adwin._helper.__getstate__()  # River's own detector
    header, arrays = snapshot.decode(snapshot.encode(*detector.state("p")))  # plain bytes, no pickle
    assert arrays["p.adwin"].dtype == np.uint8
    restored = AdwinErrorDrift.from_state(header, arrays, "p")
    rest = list(enumerate(errors[3100:], 3100))
    reports = [detector.update(i % 2, float(e)) for i, e in rest]
    assert any(reports)  # the rise from 0.10 to 0.30 is reported
    assert reports == [restored.update(i % 2, float(e)) for i, e in rest]
    assert restored.last_change == detector.last_change
    assert restored.state("p")[1]["p.adwin"].tobytes() == detector.state("p")[1]["p.adwin"].tobytes()


def test_the_adwin_detector_reports_only_a_rising_error():
    detector = AdwinErrorDrift(clock=10)
    assert not any(detector.update(0, 1.0 if i < 300 else 0.0) for i in range(900))
    assert detector.rows[0].total == 0  # ADWIN did cut the window: only the new rate is left
    assert any(detector.update(0, 1.0) for _ in range(200))
    before, after, n = detector.last_change
    assert before < 0.1 and after > 0.25 and n > 0


def test_a_monitor_with_the_adwin_detector_survives_its_snapshot():
    from pipeline import snapshot

    monitor = DriftMonitor(error=AdwinErrorDrift(clock=10))
    for i in range(400):
        monitor.review(float(i), np.array([0.9, 0.1]), (0 if i < 300 else 1,), np.array([0.5, 0.5]), ["a", "b"])
    header, arrays = snapshot.decode(snapshot.encode(*monitor.state()))
    restored = DriftMonitor.from_state(header, arrays)
    assert isinstance(restored.error, AdwinErrorDrift) and restored.events() == monitor.events()
    for m in (monitor, restored):
        for i in range(400, 500):
            m.review(float(i), np.array([0.9, 0.1]), (1,), np.array([0.5, 0.5]), ["a", "b"])
    assert restored.events() == monitor.events() and monitor.events()
