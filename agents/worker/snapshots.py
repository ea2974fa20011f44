"""Authenticated, chunked snapshots of the engines, for the compacted ``snapshots`` topic.

A snapshot of one dataset is the engine's ``snapshot()`` bytes plus the log position it covers:
the next offset of its ``events`` partition and, per input partition, the next source offset
(to drop the sequencer's duplicates). Kafka's default record limit is 1 MB, so the bytes are
cut into chunks written first, then a *manifest* keyed by the dataset names them. The manifest
carries an HMAC-SHA256 of everything else (header and bytes) under ``Settings.snapshot_key``;
`verify` checks it before a single byte reaches ``Refiner.restore``. After a manifest is
durable, the chunks of older versions are tombstoned (`stale_chunk_keys`).

>>> chunks, manifest = pack(b"x" * 10, dataset="d", partition=1, version=3, events_offset=42,
...                         sources={"refinery.messages:1": 7}, key="k", chunk_bytes=4)
>>> len(chunks), manifest[0]
(3, b'd')
>>> found = collect(chunks + [manifest])
>>> verify(found.manifests["d"], found.chunks, key="k")
b'xxxxxxxxxx'
>>> verify(found.manifests["d"], found.chunks, key="not the key")
Traceback (most recent call last):
...
agents.worker.snapshots.SnapshotRejected: snapshot of dataset 'd' version 3: HMAC mismatch (forged, corrupt or written with another REFINERY_SNAPSHOT_KEY)
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Iterable

import orjson

__all__ = [
    "CHUNK_BYTES",
    "CHUNK_MAGIC",
    "Collected",
    "Manifest",
    "SnapshotRejected",
    "chunk_key",
    "collect",
    "pack",
    "stale_chunk_keys",
    "verify",
]

#: Chunk size: well under Kafka's default 1 MB record limit, with room for key and headers.
CHUNK_BYTES = 512 * 1024
#: Every chunk value starts with this, so a chunk is never mistaken for a manifest.
CHUNK_MAGIC = b"refinery-snapshot-chunk\n"
_SEPARATOR = "\x1f"  # unit separator: cannot be confused with a dataset name's own characters


class SnapshotRejected(ValueError):
    """A snapshot failed authentication or is incomplete; it must not be restored."""


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What one snapshot covers and where its bytes are."""

    dataset: str
    partition: int
    version: int
    events_offset: int
    sources: dict[str, int]
    chunks: tuple[str, ...]
    size: int
    mac: str = ""
    #: Per input partition, the applied source offsets exactly
    #: (`agents.worker.applied.AppliedOffsets.to_dict`); absent from older manifests.
    applied: dict[str, dict] = dataclasses.field(default_factory=dict)

    def header(self) -> bytes:
        """The authenticated fields, canonical JSON (everything but the MAC)."""
        fields = dataclasses.asdict(self)
        fields.pop("mac")
        if not fields["applied"]:
            fields.pop("applied")  # so the MAC of an older manifest still matches
        fields["chunks"] = list(self.chunks)
        return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)

    def encode(self) -> bytes:
        return orjson.dumps({**orjson.loads(self.header()), "mac": self.mac}, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def decode(cls, raw: bytes) -> Manifest:
        """Parse a manifest value; any problem is a `SnapshotRejected`."""
        try:
            data = orjson.loads(raw)
            manifest = cls(
                dataset=str(data["dataset"]),
                partition=int(data["partition"]),
                version=int(data["version"]),
                events_offset=int(data["events_offset"]),
                sources={str(k): int(v) for k, v in dict(data["sources"]).items()},
                chunks=tuple(str(c) for c in data["chunks"]),
                size=int(data["size"]),
                mac=str(data["mac"]),
                applied={
                    str(k): {"mark": int(v["mark"]), "window": int(v["window"]), "ring": str(v["ring"])}
                    for k, v in dict(data.get("applied", {})).items()
                },
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise SnapshotRejected(f"snapshot manifest: unreadable ({type(error).__name__}: {error})") from None
        return manifest


def _mac(key: str, header: bytes, blob: bytes) -> str:
    digest = hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)
    digest.update(len(header).to_bytes(8, "big"))
    digest.update(header)
    digest.update(blob)
    return digest.hexdigest()


def chunk_key(dataset: str, version: int, index: int, writer: str = "") -> str:
    """The record key of chunk ``index`` of snapshot ``version`` of ``dataset``, by ``writer``.

    The writer (one token per worker process) keeps two workers that briefly both believe they
    own a dataset (around a rebalance) from overwriting each other's chunks.
    """
    return _SEPARATOR.join((dataset, "chunk", str(version), writer, str(index)))


def _chunk_dataset(key: str) -> str | None:
    parts = key.split(_SEPARATOR)
    return _SEPARATOR.join(parts[:-4]) if len(parts) >= 5 and parts[-4] == "chunk" else None


def pack(
    blob: bytes,
    *,
    dataset: str,
    partition: int,
    version: int,
    events_offset: int,
    sources: dict[str, int],
    key: str,
    chunk_bytes: int = CHUNK_BYTES,
    writer: str = "",
    applied: dict[str, dict] | None = None,
) -> tuple[list[tuple[bytes, bytes]], tuple[bytes, bytes]]:
    """The records of one snapshot: ``(chunks, manifest)``, each ``(key bytes, value bytes)``.

    Write every chunk, then the manifest; a reader trusts only a manifest whose chunks all
    arrived and whose MAC matches.
    """
    pieces = [blob[i : i + chunk_bytes] for i in range(0, len(blob), chunk_bytes)] or [b""]
    keys = tuple(chunk_key(dataset, version, i, writer) for i in range(len(pieces)))
    manifest = Manifest(
        dataset=dataset,
        partition=partition,
        version=version,
        events_offset=events_offset,
        sources=dict(sources),
        chunks=keys,
        size=len(blob),
        applied=dict(applied or {}),
    )
    manifest = dataclasses.replace(manifest, mac=_mac(key, manifest.header(), blob))
    chunks = [(k.encode("utf-8"), CHUNK_MAGIC + piece) for k, piece in zip(keys, pieces)]
    return chunks, (dataset.encode("utf-8"), manifest.encode())


@dataclasses.dataclass
class Collected:
    """The latest state of a snapshots partition, as compaction would leave it."""

    manifests: dict[str, Manifest]
    chunks: dict[str, bytes]
    rejected: dict[str, str]

    def chunk_keys_of(self, dataset: str) -> set[str]:
        return {k for k in self.chunks if _chunk_dataset(k) == dataset}


def collect(records: Iterable[tuple[bytes | None, bytes | None]]) -> Collected:
    """Fold the records of a snapshots partition, in log order: the last value per key wins,
    a tombstone (``None``) deletes. Unreadable manifests are listed in ``rejected``."""
    latest: dict[str, bytes] = {}
    for raw_key, value in records:
        if raw_key is None:
            continue
        key = raw_key.decode("utf-8", errors="replace")
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    manifests, chunks, rejected = {}, {}, {}
    for key, value in latest.items():
        if value.startswith(CHUNK_MAGIC):
            chunks[key] = value[len(CHUNK_MAGIC) :]
            continue
        try:
            manifest = Manifest.decode(value)
        except SnapshotRejected as error:
            rejected[key] = str(error)
            continue
        if manifest.dataset != key:
            rejected[key] = f"snapshot manifest under key {key!r} names dataset {manifest.dataset!r}"
            continue
        manifests[key] = manifest
    return Collected(manifests, chunks, rejected)


def verify(manifest: Manifest, chunks: dict[str, bytes], *, key: str) -> bytes:
    """The snapshot bytes, once complete and authentic; else raise `SnapshotRejected`."""
    where = f"snapshot of dataset {manifest.dataset!r} version {manifest.version}"
    missing = [k for k in manifest.chunks if k not in chunks]
    if missing:
        raise SnapshotRejected(f"{where}: {len(missing)} of {len(manifest.chunks)} chunks missing")
    blob = b"".join(chunks[k] for k in manifest.chunks)
    if len(blob) != manifest.size:
        raise SnapshotRejected(f"{where}: {len(blob)} bytes, the manifest says {manifest.size}")
    if not hmac.compare_digest(_mac(key, manifest.header(), blob), manifest.mac):
        raise SnapshotRejected(
            f"{where}: HMAC mismatch (forged, corrupt or written with another REFINERY_SNAPSHOT_KEY)"
        )
    return blob


def stale_chunk_keys(known: Iterable[str], manifest: Manifest) -> list[str]:
    """Chunk keys of ``manifest.dataset`` that its current ``manifest`` does not use: tombstone them."""
    current = set(manifest.chunks)
    return sorted(k for k in known if k not in current and _chunk_dataset(k) == manifest.dataset)
