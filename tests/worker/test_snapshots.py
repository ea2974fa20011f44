"""Snapshots on the compacted topic: chunked under Kafka's record limit, authenticated before use."""

from __future__ import annotations

import os

import pytest

from agents.worker.snapshots import (
    CHUNK_BYTES,
    CHUNK_MAGIC,
    Manifest,
    SnapshotRejected,
    collect,
    pack,
    stale_chunk_keys,
    verify,
)

KEY = "test-key"


def _snapshot(blob: bytes, version: int = 1, events_offset: int = 100, chunk_bytes: int = CHUNK_BYTES):
    return pack(
        blob,
        dataset="support",
        partition=2,
        version=version,
        events_offset=events_offset,
        sources={"refinery.messages:2": 60, "refinery.annotations:2": 41},
        key=KEY,
        chunk_bytes=chunk_bytes,
    )


def test_a_large_snapshot_is_cut_into_chunks_under_the_kafka_record_limit():
    blob = os.urandom(3 * CHUNK_BYTES + 5)
    chunks, _ = _snapshot(blob)
    assert len(chunks) == 4
    assert all(len(key) + len(value) < 1_000_000 for key, value in chunks)


def test_chunks_and_manifest_read_back_give_the_same_bytes_and_positions():
    blob = os.urandom(10_000)
    chunks, manifest = _snapshot(blob, chunk_bytes=999)
    found = collect(chunks + [manifest])
    m = found.manifests["support"]
    assert verify(m, found.chunks, key=KEY) == blob
    assert (m.partition, m.version, m.events_offset) == (2, 1, 100)
    assert m.sources == {"refinery.messages:2": 60, "refinery.annotations:2": 41}


def test_a_snapshot_written_with_another_key_is_rejected():
    chunks, manifest = _snapshot(b"state")
    found = collect(chunks + [manifest])
    with pytest.raises(SnapshotRejected, match="HMAC mismatch"):
        verify(found.manifests["support"], found.chunks, key="another key")


def test_a_flipped_byte_in_a_chunk_is_rejected():
    chunks, manifest = _snapshot(b"x" * 5000, chunk_bytes=1000)
    key, value = chunks[3]
    chunks[3] = (key, value[:-1] + bytes([value[-1] ^ 1]))
    found = collect(chunks + [manifest])
    with pytest.raises(SnapshotRejected, match="HMAC mismatch"):
        verify(found.manifests["support"], found.chunks, key=KEY)


def test_a_forged_offset_in_the_manifest_is_rejected():
    chunks, (key, value) = _snapshot(b"state")
    forged = value.replace(b'"events_offset":100', b'"events_offset":900')
    assert forged != value
    found = collect(chunks + [(key, forged)])
    with pytest.raises(SnapshotRejected, match="HMAC mismatch"):
        verify(found.manifests["support"], found.chunks, key=KEY)


def test_a_manifest_whose_chunks_are_gone_is_rejected():
    chunks, manifest = _snapshot(b"y" * 3000, chunk_bytes=1000)
    tombstone = (chunks[1][0], None)
    found = collect(chunks + [manifest, tombstone])
    with pytest.raises(SnapshotRejected, match="1 of 3 chunks missing"):
        verify(found.manifests["support"], found.chunks, key=KEY)


def test_an_unreadable_manifest_is_listed_as_rejected_not_raised():
    found = collect([(b"support", b"{not json")])
    assert "support" not in found.manifests
    assert "unreadable" in found.rejected["support"]


def test_the_latest_manifest_wins_and_older_chunks_become_stale():
    old_chunks, old_manifest = _snapshot(b"old" * 100, version=1, chunk_bytes=100)
    new_chunks, new_manifest = _snapshot(b"new" * 50, version=2, events_offset=180, chunk_bytes=100)
    found = collect(old_chunks + [old_manifest] + new_chunks + [new_manifest])
    latest = found.manifests["support"]
    assert latest.version == 2 and verify(latest, found.chunks, key=KEY) == b"new" * 50
    stale = stale_chunk_keys(found.chunk_keys_of("support"), latest)
    assert sorted(stale) == sorted(k.decode() for k, _ in old_chunks)


def test_chunks_are_never_mistaken_for_manifests():
    chunks, _ = _snapshot(b'{"dataset": "support"}')
    assert all(value.startswith(CHUNK_MAGIC) for _, value in chunks)
    found = collect(chunks)
    assert found.manifests == {} and found.rejected == {}


def test_a_manifest_round_trips_through_its_encoding():
    _, (_, value) = _snapshot(b"state")
    manifest = Manifest.decode(value)
    assert Manifest.decode(manifest.encode()) == manifest
