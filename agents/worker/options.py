"""The worker's tuning (`WorkerOptions`, from ``REFINERY_*`` variables) and the engines it makes.

>>> WorkerOptions.from_env({"REFINERY_BATCH_SIZE": "50"}).batch_size
50
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from agents.settings import SettingError, check_range, env_value
from agents.worker.applied import MAX_BATCH_SIZE
from agents.worker.snapshots import CHUNK_BYTES
from pipeline.engine import Engine, EngineFactory, EngineLoader
from schemas import SchemaError, Stream

__all__ = ["ROLES", "WorkerOptions", "configured_streams", "engine_functions"]

#: REFINERY_WORKER_ROLE's values: both agents, the sequencer alone, the engines alone.
ROLES = ("all", "sequencer", "engine")


@dataclasses.dataclass(frozen=True)
class WorkerOptions:
    """Worker tuning, from ``REFINERY_*`` environment variables (each in docs/configuration.md)."""

    #: REFINERY_BATCH_SIZE / REFINERY_BATCH_SECONDS: ``stream.take`` bounds.
    #: A batch waits at most ``batch_seconds`` per hop (two hops: sequencer, engine) for more
    #: records after its first; a full batch goes at once. Records come in fetches of up to
    #: ``fetch_min_bytes`` at most ``fetch_wait`` apart, so a longer wait mostly waits for the
    #: next fetch: 0.002 against 0.02 took the p99 at 670 events/s from 398-493 to 271-646
    #: (median 311) ms at the same flood rate (bench/README.md, *The harness measured itself*).
    batch_size: int = 500
    batch_seconds: float = 0.002
    #: REFINERY_FETCH_WAIT_SECONDS: longest the broker holds one fetch of the worker's consumer
    #: (Faust's own is 1.5 s: a stall of both agents while the fetch in flight waits for
    #: partitions without data; `agents.worker.transport`).
    fetch_wait: float = 0.05
    #: REFINERY_FETCH_MIN_BYTES: the broker answers a fetch once this many bytes wait, or after
    #: ``fetch_wait``. aiokafka's 1 byte answered every fetch at once: under steady input the
    #: consumer made hundreds of small fetches a second, each a hand-over to the event loop, and
    #: at 750 events/s the worker fell 2 s behind (bench/README.md, *Fetches*).
    fetch_min_bytes: int = 65_536
    #: REFINERY_SNAPSHOT_EVERY / REFINERY_SNAPSHOT_SECONDS: snapshot after this many applied
    #: events, or this long after the first unsnapshotted one.
    snapshot_every: int = 1000
    snapshot_seconds: float = 30.0
    #: REFINERY_METRICS_SECONDS: how often changed datasets publish metrics and suggestions.
    metrics_seconds: float = 5.0
    #: REFINERY_SUGGESTIONS_LIMIT: items per published suggestion list.
    suggestions_limit: int = 50
    #: REFINERY_GROUP: the consumer group (Faust app id); default ``<topic prefix>worker``.
    group: str | None = None
    #: REFINERY_ENGINE_CONFIG: JSON object of ``pipeline.RefinerConfig`` fields for new engines.
    engine_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: REFINERY_DATA_DIR: Faust's data directory (default ``<REFINERY_HOME>/worker-data``).
    data_dir: Path | None = None
    #: REFINERY_SNAPSHOT_CHUNK_BYTES
    chunk_bytes: int = CHUNK_BYTES
    #: REFINERY_SESSION_TIMEOUT: seconds without heartbeat before the group gives a worker's
    #: partitions to the others (heartbeats every tenth of it).
    session_timeout: float = 30.0
    #: REFINERY_INSTANCE_ID: static group membership (KIP-345). A worker restarted with the same
    #: id takes its partitions back at once instead of after a session timeout and a rebalance.
    instance_id: str | None = None
    #: REFINERY_STALL_SECONDS: a partition with input and no progress for this long is stalled:
    #: logged once with its offset, in /readyz (503) and refinery_partition_stalled.
    stall_seconds: float = 60.0
    #: REFINERY_BACKGROUND_SHARE: most of the engine thread's time that metrics publications
    #: and count-triggered snapshots may take (`agents.worker.budget.Budget`); 1 = no brake.
    background_share: float = 0.1
    #: REFINERY_STREAMS: streams for automations declared by configuration (docs/streams.md), a
    #: JSON list of `schemas.Stream` objects, or the path of a JSON file holding one.
    streams: tuple[Stream, ...] = ()
    #: REFINERY_WORKER_ROLE: which of the two agents this worker runs (`ROLES`): ``all`` (both),
    #: ``sequencer`` (reads ``messages`` and ``annotations``, forwards to ``events``; no
    #: engines) or ``engine`` (reads ``events``: the engines). Workers of both roles in one
    #: group share the work across processes, each agent's partitions among the workers that
    #: run it (docs/service.md, *Roles*).
    role: str = "all"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerOptions:
        env = os.environ if env is None else env
        d = cls()

        def get(name, default, cast):
            return env_value(env, name, default, cast)

        config = get("REFINERY_ENGINE_CONFIG", {}, orjson.loads)
        if not isinstance(config, dict):
            raise ValueError(f"REFINERY_ENGINE_CONFIG: expected a JSON object, got {env['REFINERY_ENGINE_CONFIG']!r}")
        return cls(
            batch_size=get("REFINERY_BATCH_SIZE", d.batch_size, int),
            batch_seconds=get("REFINERY_BATCH_SECONDS", d.batch_seconds, float),
            fetch_wait=get("REFINERY_FETCH_WAIT_SECONDS", d.fetch_wait, float),
            fetch_min_bytes=get("REFINERY_FETCH_MIN_BYTES", d.fetch_min_bytes, int),
            snapshot_every=get("REFINERY_SNAPSHOT_EVERY", d.snapshot_every, int),
            snapshot_seconds=get("REFINERY_SNAPSHOT_SECONDS", d.snapshot_seconds, float),
            metrics_seconds=get("REFINERY_METRICS_SECONDS", d.metrics_seconds, float),
            suggestions_limit=get("REFINERY_SUGGESTIONS_LIMIT", d.suggestions_limit, int),
            group=get("REFINERY_GROUP", None, str),
            engine_config=config,
            data_dir=get("REFINERY_DATA_DIR", None, Path),
            chunk_bytes=get("REFINERY_SNAPSHOT_CHUNK_BYTES", d.chunk_bytes, int),
            session_timeout=get("REFINERY_SESSION_TIMEOUT", d.session_timeout, float),
            instance_id=get("REFINERY_INSTANCE_ID", None, str),
            stall_seconds=get("REFINERY_STALL_SECONDS", d.stall_seconds, float),
            background_share=get("REFINERY_BACKGROUND_SHARE", d.background_share, float),
            streams=configured_streams(env.get("REFINERY_STREAMS") or ""),
            role=get("REFINERY_WORKER_ROLE", d.role, str),
        ).validate()

    def validate(self) -> WorkerOptions:
        """This, when every option is within its allowed range; else `agents.settings.SettingError`.

        The session timeout is bounded by the broker's defaults (``group.min.session.timeout.ms``
        6 s, ``group.max.session.timeout.ms`` 30 min); the worker's request timeout follows it
        (`request_timeout`), so Faust never refuses it.

        >>> WorkerOptions(session_timeout=3.0).validate()
        Traceback (most recent call last):
        ...
        agents.settings.SettingError: REFINERY_SESSION_TIMEOUT: expected a number in [6, 1800], got 3.0
        """
        check_range("REFINERY_BATCH_SIZE", self.batch_size, 1, MAX_BATCH_SIZE)  # agents.worker.applied
        check_range("REFINERY_BATCH_SECONDS", self.batch_seconds, 0.001, 60)
        check_range("REFINERY_FETCH_WAIT_SECONDS", self.fetch_wait, 0.001, 30)
        check_range("REFINERY_FETCH_MIN_BYTES", self.fetch_min_bytes, 1, 16 * 1024 * 1024)
        check_range("REFINERY_SNAPSHOT_EVERY", self.snapshot_every, 1, 10_000_000)
        check_range("REFINERY_SNAPSHOT_SECONDS", self.snapshot_seconds, 0.1, 86_400)
        check_range("REFINERY_METRICS_SECONDS", self.metrics_seconds, 0.1, 86_400)
        check_range("REFINERY_SUGGESTIONS_LIMIT", self.suggestions_limit, 1, 1000)
        check_range("REFINERY_SNAPSHOT_CHUNK_BYTES", self.chunk_bytes, 1024, 100 * 2**20)
        check_range("REFINERY_SESSION_TIMEOUT", self.session_timeout, 6, 1800)
        check_range("REFINERY_STALL_SECONDS", self.stall_seconds, 1, 86_400)
        check_range("REFINERY_BACKGROUND_SHARE", self.background_share, 0.01, 1)
        if self.role not in ROLES:
            raise SettingError("REFINERY_WORKER_ROLE", "one of " + ", ".join(ROLES), self.role)
        for variable, value in (("REFINERY_GROUP", self.group), ("REFINERY_INSTANCE_ID", self.instance_id)):
            if value is not None and not value.strip():
                raise SettingError(variable, "a non-empty name", value)
        try:
            engine_functions(self)
        except (TypeError, ValueError) as error:
            raise SettingError("REFINERY_ENGINE_CONFIG", "pipeline.RefinerConfig fields", str(error)) from None
        return self

    @property
    def sequences(self) -> bool:
        """Whether this worker runs the sequencer (roles ``all`` and ``sequencer``).

        >>> WorkerOptions(role="engine").sequences, WorkerOptions(role="engine").applies
        (False, True)
        """
        return self.role in ("all", "sequencer")

    @property
    def applies(self) -> bool:
        """Whether this worker runs the engines (roles ``all`` and ``engine``)."""
        return self.role in ("all", "engine")

    @property
    def stream_buffer(self) -> int:
        """Records Faust may buffer per stream before it pauses the partition: two batches.

        >>> WorkerOptions(batch_size=200).stream_buffer
        400
        """
        return 2 * self.batch_size

    @property
    def request_timeout(self) -> float:
        """The worker's Kafka request timeout: Faust's 90 s, or longer than the session timeout.

        >>> WorkerOptions(session_timeout=120).request_timeout
        150.0
        """
        return max(90.0, self.session_timeout + 30.0)


def configured_streams(raw: str) -> tuple[Stream, ...]:
    """The streams of ``REFINERY_STREAMS``: a JSON list of streams, or the path of a file holding
    one. Every error names the variable, the stream and the field.

    >>> [s.name for s in configured_streams('[{"name": "urgent", "dataset": "support"}]')]
    ['urgent']
    >>> configured_streams('[{"name": "urgent", "dataset": "support", "threshold": 2}]')
    Traceback (most recent call last):
    ...
    ValueError: REFINERY_STREAMS[0].threshold: expected a number from 0 to 1 (or a threshold kind), got 2
    """
    if not raw.strip():
        return ()
    text, where = raw, "REFINERY_STREAMS"
    if not raw.lstrip().startswith("["):
        path = Path(raw).expanduser()
        if not path.is_file():
            raise ValueError(
                f"REFINERY_STREAMS: expected a JSON list of streams or the path of a JSON file, got {raw!r}"
            )
        text, where = path.read_text(encoding="utf-8"), f"REFINERY_STREAMS ({path})"
    try:
        listed = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"{where}: invalid JSON ({error})") from None
    if not isinstance(listed, list):
        raise ValueError(f"{where}: expected a JSON list of streams, got {type(listed).__name__}")
    try:
        streams = tuple(Stream.from_dict(item, path=f"REFINERY_STREAMS[{i}]") for i, item in enumerate(listed))
    except SchemaError as error:
        raise ValueError(str(error)) from None
    names = [stream.name for stream in streams]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ValueError(f"REFINERY_STREAMS[{i}].name: stream {name!r} is declared twice")
    return streams


def engine_functions(options: WorkerOptions) -> tuple[EngineFactory, EngineLoader]:
    """How the worker makes the engine of a new dataset, and loads one from its snapshot bytes.

    >>> make, load = engine_functions(WorkerOptions(engine_config={"feature_bits": 12}))
    >>> engine = make("support")
    >>> engine.dataset, engine.config.feature_bits, load(engine.snapshot()).dataset
    ('support', 12, 'support')
    """
    from pipeline import Refiner, RefinerConfig

    config = RefinerConfig.from_dict({**RefinerConfig().to_dict(), **dict(options.engine_config)})

    def make(dataset: str) -> Engine:
        return Refiner(dataset, config=config, seed=0)

    def load(blob: bytes) -> Refiner:
        # allow_pickle (a plugged River model's state): PartitionEngines.restore calls this only on
        # bytes whose HMAC `snapshots.verify` has checked, never on anything else.
        return Refiner.restore(blob, allow_pickle=True)

    return make, load
