"""The worker with a River model named in REFINERY_ENGINE_CONFIG: end to end on the real broker,
SIGKILL included; and a pickled model is never unpickled before its snapshot's HMAC is verified."""

from __future__ import annotations

import dataclasses
import signal
import zlib

import numpy as np
import orjson
import pytest

from agents.worker.engines import PartitionEngines
from agents.worker.options import WorkerOptions, engine_functions
from agents.worker.snapshots import collect, pack
from pipeline import Refiner, RefinerConfig
from pipeline import snapshot as snapshot_format
from tests.worker import test_worker_kafka as kafka_tests
from tests.worker.test_worker_kafka import (
    _pairs,
    _producer,
    _send,
    _settle,
    _snapshot_manifests,
    _wait_for,
    workers,  # noqa: F401 (a fixture)
)

#: The engine settings of the broker tests, with a River model instead of the default one.
RIVER_ENGINE = {**kafka_tests.ENGINE, "model": "river.naive_bayes.ComplementNB", "model_params": {"alpha": 0.5}}


@pytest.mark.kafka
def test_the_worker_runs_a_river_model_named_in_the_engine_config_and_survives_sigkill(
    topics, workers, datasets, monkeypatch
):
    # The worker reads REFINERY_ENGINE_CONFIG from ENGINE; _settle's reference engines use it too.
    monkeypatch.setattr(kafka_tests, "ENGINE", RIVER_ENGINE)
    static = {"REFINERY_INSTANCE_ID": "only", "REFINERY_SNAPSHOT_EVERY": "25", "REFINERY_SNAPSHOT_SECONDS": "0.5"}
    worker = workers(topics, **static)
    worker.wait_ready()
    producer = _producer(topics)
    pairs = _pairs(240)
    events = len(pairs[:120]) + _send(producer, topics, pairs[:120])
    _settle(topics, events, worker)
    _wait_for(lambda: _snapshot_manifests(topics).get("banking77"), 30, "a snapshot of the River engine")

    worker.kill(signal.SIGKILL)
    restarted = workers(topics, name="restarted", port=worker.port, **static)
    restarted.wait_ready()
    events += len(pairs[120:]) + _send(producer, topics, pairs[120:])
    published = _settle(topics, events, restarted)  # the figures of an engine with the same River model, fed directly

    assert published["banking77"].reviewed == (events - len(pairs))
    log = restarted.log_path.read_text()
    assert "partition_restored" in log and "snapshot_rejected" not in log


def _plugged_snapshot(datasets) -> bytes:
    config = RefinerConfig.from_dict({**RefinerConfig().to_dict(), **RIVER_ENGINE})
    engine = Refiner("banking77", config=config, seed=0)
    for message, review in _pairs(20):
        engine.annotate(dataclasses.replace(review, message=message))
    return engine.snapshot()


class _Payload:
    """Unpickling it creates a file: proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _with_payload(blob: bytes, path) -> bytes:
    import pickle

    header, arrays = snapshot_format.decode(blob)
    arrays["model.pickle"] = np.frombuffer(pickle.dumps(_Payload(path)), np.uint8)
    return snapshot_format.encode(header, arrays)


@pytest.mark.parametrize("writer_key", ["a guessed key", "the real key"])
def test_a_forged_pickled_snapshot_runs_no_code_in_the_worker(writer_key, tmp_path, datasets):
    """Without the key the forged snapshot fails its HMAC before any unpickling; with a leaked key
    it passes the HMAC, and only River's allowlist of classes stops this payload (docs/service.md)."""
    marker = tmp_path / "pwned"
    forged = zlib.compress(_with_payload(_plugged_snapshot(datasets), marker))
    chunks, manifest = pack(
        forged, dataset="banking77", partition=0, version=1, events_offset=10, sources={}, key=writer_key
    )
    make_engine, restore_engine = engine_functions(WorkerOptions(engine_config=RIVER_ENGINE))
    part = PartitionEngines("refinery.events", 0, make_engine, restore_engine)

    problems = part.restore(collect(chunks + [manifest]), key="the real key")

    assert not marker.exists()
    assert "banking77" not in part.engines and len(problems) == 1
    assert ("HMAC mismatch" in problems[0]) == (writer_key != "the real key")


def test_a_genuine_pickled_snapshot_restores_in_the_worker(datasets):
    blob = _plugged_snapshot(datasets)
    chunks, manifest = pack(
        zlib.compress(blob), dataset="banking77", partition=0, version=1, events_offset=10, sources={}, key="k"
    )
    part = PartitionEngines("refinery.events", 0, *engine_functions(WorkerOptions(engine_config=RIVER_ENGINE)))
    assert part.restore(collect(chunks + [manifest]), key="k") == []
    assert orjson.loads(orjson.dumps(part.engines["banking77"].metrics().to_dict())) == orjson.loads(
        orjson.dumps(Refiner.restore(blob, allow_pickle=True).metrics().to_dict())
    )
