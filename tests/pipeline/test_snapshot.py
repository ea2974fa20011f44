"""Specification of snapshot/restore and determinism of the engine."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest

from agents.ingest.datasets import banking77, nlupp
from pipeline import Refiner, RefinerConfig
from pipeline.snapshot import FORMAT_VERSION, MAGIC
from schemas import Annotation

CONFIG = RefinerConfig(validation_window=400, live_window=300, threshold_refresh=20, feature_bits=16)


@pytest.fixture(scope="module")
def events(datasets):
    """A stream of live messages with delayed reviews of every third, one re-review and one removal."""
    pairs = list(itertools.islice(banking77("train", root=datasets, mode="shuffle"), 900))
    stream = []
    for i, (message, _annotation) in enumerate(pairs):
        stream.append(("observe", message))
        if i >= 5 and (i - 5) % 3 == 0:
            stream.append(("annotate", pairs[i - 5][1]))
    stream.append(("annotate", Annotation.from_dict({**pairs[6][1].to_dict(), "labels": [{"name": "card_arrival"}]})))
    stream.append(
        (
            "annotate",
            Annotation(
                dataset="banking77", message_id=pairs[9][0].id, timestamp=pairs[9][0].timestamp, action="remove"
            ),
        )
    )
    return stream


def feed(engine: Refiner, events) -> Refiner:
    for kind, event in events:
        engine.observe(event) if kind == "observe" else engine.annotate(event)
    return engine


def test_a_restored_engine_fed_the_rest_of_the_stream_ends_in_exactly_the_same_state(events):
    middle = len(events) // 2
    uninterrupted = feed(Refiner("banking77", CONFIG, seed=5), events)
    restarted = Refiner.restore(feed(Refiner("banking77", CONFIG, seed=5), events[:middle]).snapshot())
    feed(restarted, events[middle:])
    assert restarted.snapshot() == uninterrupted.snapshot()
    assert restarted.metrics(now=1.0) == uninterrupted.metrics(now=1.0)


def test_restore_reproduces_the_snapshot_byte_for_byte(events):
    engine = feed(Refiner("banking77", CONFIG, seed=1), events[:400])
    blob = engine.snapshot()
    restored = Refiner.restore(blob)
    assert restored.snapshot() == blob
    assert restored.config == CONFIG and restored.seed == 1 and restored.labels == engine.labels


def _reviewed_stream(pairs: list, lag: int = 5) -> list:
    """Every message observed, every third reviewed ``lag`` messages later; one re-review with
    other labels and one removal at the end (labels keep appearing as the reviews bring them)."""
    stream = []
    for i, (message, _review) in enumerate(pairs):
        stream.append(("observe", message))
        if i >= lag and (i - lag) % 3 == 0:
            stream.append(("annotate", pairs[i - lag][1]))
    first, other = pairs[0][1], pairs[-1][1]
    stream.append(("annotate", Annotation.from_dict({**first.to_dict(), "labels": other.to_dict()["labels"]})))
    stream.append(
        ("annotate", Annotation(dataset=first.dataset, message_id=pairs[3][0].id, timestamp=1e9, action="remove"))
    )
    return stream


@pytest.mark.parametrize("name", ["banking77", "nlupp"])
def test_a_capture_encodes_to_the_snapshot_of_its_moment_whatever_the_engine_does_next(datasets, name):
    """A capture (the cheap copy the worker takes under its lock) gives the bytes the snapshot gave
    when it was taken, after the engine went on: new labels, overwritten window slots, removals."""
    if name == "banking77":
        pairs = list(itertools.islice(banking77("train", root=datasets, mode="shuffle"), 900))
    else:
        pairs = list(itertools.islice(nlupp(dataset="nlupp", root=datasets), 900))
    stream = _reviewed_stream(pairs)
    engine = feed(Refiner(pairs[0][0].dataset, CONFIG, seed=3), stream[: len(stream) // 3])
    labels_before = len(engine.labels)
    captured, at_capture = engine.capture(), engine.snapshot()
    assert captured.encode() == at_capture
    feed(engine, stream[len(stream) // 3 :])
    assert len(engine.labels) > labels_before  # the engine grew its arrays and lists meanwhile
    assert captured.encode() == at_capture != engine.snapshot()
    assert engine.capture().encode() == engine.snapshot()


def test_a_capture_of_an_engine_with_a_plugged_river_model_holds_the_model_as_it_was(datasets):
    from river import linear_model

    pairs = list(itertools.islice(banking77("train", root=datasets, mode="shuffle"), 200))
    stream = _reviewed_stream(pairs)
    engine = feed(Refiner("banking77", CONFIG, model=linear_model.LogisticRegression()), stream[:150])
    captured, at_capture = engine.capture(), engine.snapshot()
    feed(engine, stream[150:])
    assert captured.encode() == at_capture != engine.snapshot()
    restored = Refiner.restore(captured.encode(), allow_pickle=True)
    assert restored.snapshot() == at_capture


def test_the_same_input_in_the_same_order_gives_byte_identical_state(events):
    assert (
        feed(Refiner("banking77", CONFIG), events).snapshot() == feed(Refiner("banking77", CONFIG), events).snapshot()
    )


def _state_without_seed(engine: Refiner) -> tuple[dict, dict]:
    """The snapshot's header (less the seed itself, which every snapshot carries) and arrays."""
    from pipeline import snapshot as snapshot_format

    header, arrays = snapshot_format.decode(engine.snapshot())
    return {k: v for k, v in header.items() if k != "seed"}, arrays


def test_the_seed_changes_what_is_replayed(events):
    """The seed drives replay: two seeds give different learned weights, not only another header field."""
    header_0, arrays_0 = _state_without_seed(feed(Refiner("banking77", CONFIG, seed=0), events))
    header_1, arrays_1 = _state_without_seed(feed(Refiner("banking77", CONFIG, seed=1), events))
    assert set(arrays_0) == set(arrays_1)
    changed = [name for name in arrays_0 if not np.array_equal(arrays_0[name], arrays_1[name])]
    assert any(name.startswith("model") for name in changed), changed


def test_a_snapshot_of_another_format_version_is_refused_with_a_clear_message():
    blob = bytearray(Refiner("support").snapshot())
    struct.pack_into("<I", blob, len(MAGIC), FORMAT_VERSION + 1)
    with pytest.raises(
        ValueError, match=f"format version {FORMAT_VERSION + 1}, this engine reads version {FORMAT_VERSION}"
    ):
        Refiner.restore(bytes(blob))


def test_a_snapshot_of_an_unknown_engine_state_version_is_refused_with_a_clear_message():
    from pipeline import snapshot as snapshot_format
    from pipeline.refiner import STATE_VERSION

    header, arrays = snapshot_format.decode(Refiner("support").snapshot())
    older = snapshot_format.encode({**header, "state_version": 1}, arrays)
    with pytest.raises(ValueError, match=f"engine state version 1, this engine reads version {STATE_VERSION}"):
        Refiner.restore(older)


def test_a_snapshot_from_before_the_held_out_set_restores_with_an_empty_one(events):
    from pipeline import snapshot as snapshot_format

    engine = feed(Refiner("banking77", CONFIG), events[:400])
    header, arrays = snapshot_format.decode(engine.snapshot())
    del header["holdout"], header["search_reviews"]
    version_2 = snapshot_format.encode(
        {**header, "state_version": 2}, {k: v for k, v in arrays.items() if not k.startswith("holdout.")}
    )
    restored = Refiner.restore(version_2)
    assert restored.holdout_records()[0] == [] and restored.metrics().reviewed == engine.metrics().reviewed
    message = next(event for kind, event in events[400:] if kind == "observe")
    assert restored.observe(message) == engine.observe(message)  # the model is the same


def test_a_snapshot_from_before_the_validation_twin_makes_its_model_the_twin(events):
    """In state version 3 the model had not learned the held-out reviews: it becomes the twin,
    and the model in force learns them on restore."""
    from pipeline import snapshot as snapshot_format

    engine = feed(Refiner("banking77", CONFIG), events[:400])
    header, arrays = snapshot_format.decode(engine.snapshot())
    del header["twin"]
    version_3 = snapshot_format.encode(
        {**header, "state_version": 3}, {k: v for k, v in arrays.items() if not k.startswith("twin.")}
    )
    restored = Refiner.restore(version_3)
    ids, scores, _ = restored.holdout_records()
    assert len(ids) > 10 and restored.config.holdout_share == 0.2
    bodies = {event.id: event for kind, event in events[:400] if kind == "observe"}
    as_saved = np.array([list(engine.predict(bodies[i]).confidences.values()) for i in ids])
    np.testing.assert_allclose(scores, as_saved, atol=1e-6)  # the twin is the model as it was saved
    learned = np.array([list(restored.predict(bodies[i]).confidences.values()) for i in ids])
    assert not np.allclose(learned, as_saved, atol=1e-4)  # the model in force has learned them


def test_a_corrupted_or_truncated_snapshot_is_refused():
    blob = Refiner("support").snapshot()
    with pytest.raises(ValueError, match="checksum mismatch"):
        Refiner.restore(blob[:-40] + bytes(40))
    with pytest.raises(ValueError, match="not a Refinery snapshot"):
        Refiner.restore(b'{"dataset": "support"}')


def test_two_processes_with_different_hash_seeds_reach_byte_identical_state(datasets):
    import os
    import subprocess
    import sys

    code = (
        "import hashlib, itertools\n"
        "from agents.ingest.datasets import enron\n"
        "from pipeline import Refiner, RefinerConfig\n"
        "engine = Refiner('enron', RefinerConfig(feature_bits=14, validation_window=200, live_window=100))\n"
        "for message, annotation in itertools.islice(enron(), 120):\n"
        "    engine.observe(message)\n"
        "    engine.annotate(annotation)\n"
        "print(hashlib.sha256(engine.snapshot()).hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed, "REFINERY_DATASETS": str(datasets)},
        ).stdout
        for seed in ("0", "12345")
    }
    assert len(digests) == 1 and len(next(iter(digests)).strip()) == 64
