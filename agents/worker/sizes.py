"""Size and memory budgets derived from the settings, and the start-up checks that they add up.

Every record the worker publishes must fit the producer's ``max_request_size``
(``REFINERY_MAX_RECORD_BYTES``), which must fit the broker's ``max.message.bytes``. `SizeBudget`
derives each hop's limit from the one after it (docs/service.md, *Size budgets*), so that an
input record within the contract (`schemas.limits.Limits`) always fits every hop after it:

>>> from agents.settings import Settings
>>> budget = SizeBudget.of(Settings())
>>> budget.input_bytes + budget.growth <= budget.events_value
True
>>> budget.prediction <= budget.record and budget.dead_letter <= budget.record
True

`MemoryBudget` is the most memory one worker can hold, from the caps, the feature bits and the
windows (docs/service.md, *Memory budget*); bench/bench_adversarial.py measures a worker
against it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from agents.settings import DEV_SNAPSHOT_KEY, SettingError, Settings, is_loopback
from agents.worker.deadletter import MAX_RAW_BYTES, MAX_REASON_CHARS
from agents.worker.handoff import HANDOFF_BATCHES, HANDOFF_BYTES
from agents.worker.options import WorkerOptions
from schemas.limits import Limits
from schemas.topics import TOPICS

__all__ = [
    "MemoryBudget",
    "RECORD_OVERHEAD",
    "SizeBudget",
    "check_broker",
    "check_snapshot_key",
    "check_start",
    "broker_max_message_bytes",
    "limits_of",
]

#: Bytes a record adds to its key and value in a produce request: aiokafka's
#: ``DefaultRecordBatchBuilder.estimate_size_in_bytes`` counts a 61-byte batch header and at most
#: 27 bytes of record varints (88 in all); the rest is margin.
RECORD_OVERHEAD = 128
#: Entries of a featurizer's word cache (`pipeline.features`).
_WORD_CACHE = 200_000
#: UTF-8 bytes per character at most, and JSON bytes per character of a label name at most
#: (a control character is written ``\\u001f``).
_UTF8 = 4
_JSON = 6


def limits_of(settings: Settings) -> Limits:
    """The input contract's limits (`schemas.limits.Limits`) in force under ``settings``."""
    return Limits(
        input_bytes=settings.max_input_bytes,
        body_bytes=settings.max_body_bytes,
        id_chars=settings.max_id_chars,
        label_chars=settings.max_label_chars,
        labels_per_review=settings.max_labels_per_review,
        metadata_keys=settings.max_metadata_keys,
        metadata_bytes=settings.max_metadata_bytes,
    )


@dataclasses.dataclass(frozen=True)
class SizeBudget:
    """The byte limit of each hop, derived from the settings (docs/service.md, *Size budgets*).

    Attributes
    ----------
    record
        ``REFINERY_MAX_RECORD_BYTES``: the producer's ``max_request_size``; the broker's
        ``max.message.bytes`` must be at least this (`check_broker`).
    events_value
        Largest ``events`` value: ``record`` less the record overhead and the largest key (the
        dataset name, ``REFINERY_MAX_ID_CHARS`` characters of at most 4 UTF-8 bytes).
    input_bytes, body_bytes
        ``REFINERY_MAX_INPUT_BYTES``, ``REFINERY_MAX_BODY_BYTES``: the input contract.
    growth
        Most bytes the sequencer's envelope and re-encoding add to an input record within the
        contract (`schemas.limits.Limits.growth`, plus the envelope).
    prediction
        Largest ``predictions`` value: two ids and two entries per label of the dataset's taxonomy.
    dead_letter
        Largest ``deadletter`` value: the raw bytes cut to ``MAX_RAW_BYTES`` in base64, the key,
        the reason cut to ``MAX_REASON_CHARS``.
    chunk
        ``REFINERY_SNAPSHOT_CHUNK_BYTES`` plus its key and header.
    """

    record: int
    events_value: int
    input_bytes: int
    body_bytes: int
    growth: int
    prediction: int
    dead_letter: int
    chunk: int
    labels: int = 0
    id_chars: int = 0

    @classmethod
    def of(cls, settings: Settings, options: WorkerOptions | None = None) -> SizeBudget:
        options = options or WorkerOptions()
        limits = limits_of(settings)
        key = settings.max_id_chars * _UTF8
        topic = len(settings.topic_prefix) + len("annotations")
        envelope = 96 + topic  # {"source_topic":..,"partition":..,"offset":..,"message":..,"annotation":null}
        label = settings.max_label_chars * _JSON + 16  # "name": 1.0 (a confidence), quoted
        return cls(
            record=settings.max_record_bytes,
            events_value=settings.max_record_bytes - RECORD_OVERHEAD - key,
            input_bytes=settings.max_input_bytes,
            body_bytes=settings.max_body_bytes,
            growth=envelope + limits.growth(),
            prediction=512 + 2 * settings.max_id_chars * _JSON + 2 * settings.max_labels_per_dataset * label,
            dead_letter=1024
            + 4 * math.ceil(MAX_RAW_BYTES / 3)
            + 4 * math.ceil(key / 3)
            + MAX_REASON_CHARS * _JSON
            + topic
            + settings.max_id_chars * _JSON,
            chunk=options.chunk_bytes + 512,
            labels=settings.max_labels_per_dataset,
            id_chars=settings.max_id_chars,
        )

    def problems(self) -> list[str]:
        """One line per hop that does not fit the next; empty when the budget adds up."""
        out = []
        if self.input_bytes + self.growth > self.events_value:
            out.append(
                f"REFINERY_MAX_INPUT_BYTES: expected at most {self.events_value - self.growth} (an input record of "
                f"{self.input_bytes} bytes may grow by {self.growth} in the events envelope, over the "
                f"{self.events_value} bytes REFINERY_MAX_RECORD_BYTES={self.record} leaves), got {self.input_bytes}"
            )
        for variable, size, what, value in (
            ("REFINERY_MAX_LABELS_PER_DATASET", self.prediction, "a prediction", self.labels),
            ("REFINERY_MAX_ID_CHARS", self.dead_letter, "a dead letter", self.id_chars),
            ("REFINERY_SNAPSHOT_CHUNK_BYTES", self.chunk, "a snapshot chunk", self.chunk - 512),
        ):
            if size + RECORD_OVERHEAD > self.record:
                out.append(
                    f"{variable}: expected a smaller value ({what} may take {size} bytes, over "
                    f"REFINERY_MAX_RECORD_BYTES={self.record}), got {value}"
                )
        return out

    def table(self) -> list[tuple[str, int]]:
        """``(hop, bytes)`` rows, as docs/service.md shows them."""
        return [
            ("message body (REFINERY_MAX_BODY_BYTES)", self.body_bytes),
            ("input record (REFINERY_MAX_INPUT_BYTES)", self.input_bytes),
            ("events record, at most", self.input_bytes + self.growth),
            ("events record limit", self.events_value),
            ("prediction, at most", self.prediction),
            ("dead letter, at most", self.dead_letter),
            ("snapshot chunk, at most", self.chunk),
            ("producer max_request_size (REFINERY_MAX_RECORD_BYTES)", self.record),
        ]


@dataclasses.dataclass(frozen=True)
class MemoryBudget:
    """The most memory a worker's engines hold, from the caps (docs/service.md, *Memory budget*).

    Per dataset (the engine's own model, ``pipeline.model.OnlineLinear``):

    - the label model: a float32 matrix of ``2**feature_bits + 1`` rows and a column per label,
      grown by half when full, so while growing the old and the new matrix both live
      (``2.5 x labels`` columns at most), plus its per-feature AdaGrad accumulator;
    - the validation twin (``holdout_share`` > 0): a second label model and accumulator (it
      grows right after the first, so at most ``1.5 x labels`` columns more);
    - the balance model: one column and its accumulator;
    - each window (``validation_window``, ``holdout_window``, ``live_window``): a message's sparse features (at most
      ``max_chars`` tokens, doubled by bigrams; 8 bytes each) and a float32 score and a bool per
      label;
    - the reviewed-message registry: ``max_reviewed`` ids of at most ``REFINERY_MAX_ID_CHARS``;
    - the featurizer's word cache (200,000 words);
    - the latest observed messages whose vectors reviews reuse (``RECENT_CACHE_MAX_BYTES``);
    - the suggestion pools: two float64 copies of the live window's scores.

    A worker holds at most ``REFINERY_MAX_DATASETS_PER_PARTITION`` datasets on each partition it
    owns, at most ``REFINERY_PARTITIONS``; ``base`` is the process without datasets: 160 MiB,
    the workbench's message store, Faust's stream buffers (`WorkerOptions.stream_buffer`
    records of each of the two agents' streams, each up to ``REFINERY_MAX_RECORD_BYTES``) and
    the sequencer's events kept for the engine (`agents.worker.handoff`), a publication's
    frozen copy of one engine (at most its models), and ``snapshot``.

    ``snapshot`` is the snapshot in progress: one dataset's at a time in the whole worker
    (`agents.worker.service.Service._write`), from its capture until its records are delivered.
    Its capture (copies of the state's arrays and registry) and its encoding (the state's bytes
    built in about three copies, the windows' features flattened twice, then compressed) peak at
    about 4.1 times the dataset's snapshot bytes (measured: docs/service.md), counted as 5 times
    the most those bytes can be, plus the encoder's lists of the registry. It may coexist with
    a publication's frozen copy (both wait for the snapshot thread), so both count.
    """

    per_dataset: int
    datasets: int
    base: int = 160 * 2**20
    #: Bytes of the snapshot in progress (included in ``base``).
    snapshot: int = 0

    @classmethod
    def of(
        cls,
        settings: Settings,
        engine_config: Mapping | None = None,
        partitions: int | None = None,
        options: WorkerOptions | None = None,
    ):
        from pipeline import RefinerConfig
        from pipeline.refiner import RECENT_CACHE_MAX_BYTES

        config = RefinerConfig.from_dict({**RefinerConfig().to_dict(), **dict(engine_config or {})})
        rows = 2**config.feature_bits + 1
        labels = settings.max_labels_per_dataset
        columns = math.ceil(2.5 * labels) + 16
        model = rows * 4 * (columns + 1) + rows * 4 * 2  # label model + accumulator; balance model
        if config.holdout_share:  # the validation twin: a second label model (grown in turn, not together)
            model += rows * 4 * (math.ceil(1.5 * labels) + 16 + 1)
        tokens = 2 * config.max_chars + 2 * len(config.char_ngrams) * config.max_chars  # words, pairs, subject tags
        tokens += 2 * len(config.metadata_fields) + 1
        per_message = 8 * tokens + 2 * settings.max_id_chars * _UTF8 + 400 + (4 + 1) * columns
        windows = (config.validation_window + config.holdout_window + config.live_window) * per_message
        registry = config.max_reviewed * (settings.max_id_chars * _UTF8 + 200)
        words = _WORD_CACHE * 320  # the featurizer's word cache (pipeline.features._CACHE_SIZE entries)
        # The suggestion pools' float64 copy of the live window's scores, the engine's and a
        # publication's frozen copy's (pipeline.suggestions.SuggestionPool).
        pools = 2 * config.live_window * columns * 8
        per_dataset = model + windows + registry + words + RECENT_CACHE_MAX_BYTES + pools + 4 * 2**20  # drift, counters
        owned = partitions if partitions is not None else settings.partitions
        # The shell: the workbench's message store (REFINERY_WORKBENCH_BYTES characters, up to 4 bytes
        # each, and REFINERY_WORKBENCH_MESSAGES entries), and Faust's stream buffers (up to
        # stream_buffer_maxsize records of each agent's stream, each at most max_record_bytes).
        from agents.web.workbench import WorkbenchOptions

        bench = WorkbenchOptions.from_env()
        buffered = 2 * (options or WorkerOptions()).stream_buffer * settings.max_record_bytes
        # The sequencer's events kept for the engine (agents.worker.handoff): their records, the
        # parsed text (up to 4 bytes a character) and ~1 KiB of objects per event.
        kept = HANDOFF_BATCHES * (options or WorkerOptions()).batch_size
        handoff = 5 * HANDOFF_BYTES + 1024 * kept
        # A publication computes from a frozen copy of one engine at a time (pipeline.Refiner.frozen):
        # the rows of its models that the live window uses, at most the whole models.
        frozen = model
        # The snapshot in progress, one dataset at a time: 5 x its bytes at most (the models' rows
        # at one column per label, the windows, the registry's ids escaped in JSON and its label
        # lists), plus the encoder's lists of the registry (`pipeline.refiner.StateCapture.encode`).
        twins = 2 if config.holdout_share else 1
        state = rows * 4 * ((labels + 2) * twins + 3) + windows + 4 * 2**20  # models, windows, drift
        state += config.max_reviewed * (settings.max_id_chars * _JSON + 4 * labels + 32)
        snapshot = 5 * state + config.max_reviewed * (8 * labels + 200)
        shell = 4 * bench.message_bytes + 1024 * bench.messages + buffered + handoff + frozen + snapshot
        return cls(
            per_dataset=per_dataset,
            datasets=owned * settings.max_datasets_per_partition,
            base=160 * 2**20 + shell,
            snapshot=snapshot,
        )

    @property
    def total(self) -> int:
        """Bytes: the process, and every dataset it may hold at its largest."""
        return self.base + self.datasets * self.per_dataset


def check_snapshot_key(settings: Settings) -> str | None:
    """Why the built-in snapshot key must not be used here, or None.

    Anyone who knows the key (it is in the source) can forge a snapshot that the worker loads;
    that is harmless only when nobody else can reach the worker or its broker.

    >>> check_snapshot_key(Settings()) is None
    True
    >>> print(check_snapshot_key(Settings(web_host="0.0.0.0")))
    REFINERY_SNAPSHOT_KEY: expected a key of your own (the built-in development key is public) when the web server binds 0.0.0.0; set one, or REFINERY_ALLOW_DEV_SNAPSHOT_KEY=1 to accept the risk, got the built-in key
    """
    if settings.snapshot_key != DEV_SNAPSHOT_KEY or settings.allow_dev_snapshot_key:
        return None
    exposed = []
    if not is_loopback(settings.web_host):
        exposed.append(f"the web server binds {settings.web_host}")
    remote = [h for h in settings.bootstrap.split(",") if not is_loopback(h)]
    if remote:
        exposed.append(f"the broker is remote ({','.join(remote)})")
    if not exposed:
        return None
    return (
        f"REFINERY_SNAPSHOT_KEY: expected a key of your own (the built-in development key is public) "
        f"when {' and '.join(exposed)}; set one, or REFINERY_ALLOW_DEV_SNAPSHOT_KEY=1 to accept the risk, "
        "got the built-in key"
    )


def check_start(settings: Settings, options: WorkerOptions) -> None:
    """Everything a worker checks before it starts, without the broker: `SettingError` (one line)."""
    settings.validate()
    options.validate()
    problems = SizeBudget.of(settings, options).problems()
    if problems:
        raise SettingError.line(problems[0])
    refused = check_snapshot_key(settings)
    if refused:
        raise SettingError.line(refused)


def check_broker(settings: Settings, max_message_bytes: Mapping[str, int]) -> list[str]:
    """One line per output topic whose ``max.message.bytes`` (as the broker reports it) is below
    ``REFINERY_MAX_RECORD_BYTES``.

    >>> check_broker(Settings(), {"refinery.events": 1_048_588})
    []
    >>> check_broker(Settings(), {"refinery.events": 500_000})
    ['REFINERY_MAX_RECORD_BYTES: expected at most 500000 (max.message.bytes of refinery.events on the broker; or raise that), got 1048576']
    """
    return [
        f"REFINERY_MAX_RECORD_BYTES: expected at most {size} (max.message.bytes of {topic} on the broker; "
        f"or raise that), got {settings.max_record_bytes}"
        for topic, size in sorted(max_message_bytes.items())
        if size < settings.max_record_bytes
    ]


#: The topics the worker produces to: every one but the inputs.
OUTPUTS = tuple(name for name, entry in TOPICS.items() if entry.direction != "in")


def broker_max_message_bytes(settings: Settings, timeout: float = 10.0) -> dict[str, int]:
    """``{topic: max.message.bytes}`` of the worker's output topics that exist, as the broker
    reports them (the topic's own value, else the broker's ``message.max.bytes``)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    from agents.kafka.admin import admin_client

    wanted = [settings.topic(name) for name in OUTPUTS]
    with admin_client(settings, client_id="refinery-budget", timeout=timeout) as admin:
        existing = [t for t in wanted if t in set(admin.list_topics())]
        if not existing:
            return {}
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, {"max.message.bytes": None}) for t in existing],
            config_filter="all",
        )["topic"]
    found: dict[str, int] = {}
    for topic in existing:
        value = configs.get(topic, {}).get("max.message.bytes", {}).get("value")
        if value is not None:
            found[topic] = int(value)
    return found
