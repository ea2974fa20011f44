"""Issue 13's guards without a broker: settings in range at start-up, size budgets that add up,
memory caps that dead-letter naming the cap, and the development snapshot key kept local."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from agents.settings import DEV_SNAPSHOT_KEY, PROJECT_ROOT, SettingError, Settings
from agents.worker.engines import PartitionEngines
from agents.worker.options import WorkerOptions
from agents.worker.sequencer import owner_partition, sequence
from agents.worker.sizes import MemoryBudget, SizeBudget, check_snapshot_key, check_start, limits_of
from pipeline import Refiner, RefinerConfig
from schemas import Annotation, DeadLetter, Event, Message

CONFIG = RefinerConfig(feature_bits=10, validation_window=50, live_window=50)

# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REFINERY_SESSION_TIMEOUT", "3"),
        ("REFINERY_SESSION_TIMEOUT", "5000"),
        ("REFINERY_BATCH_SIZE", "0"),
        ("REFINERY_BATCH_SECONDS", "-1"),
        ("REFINERY_SNAPSHOT_CHUNK_BYTES", "10"),
        ("REFINERY_SUGGESTIONS_LIMIT", "100000"),
        ("REFINERY_METRICS_SECONDS", "nan"),
        ("REFINERY_ENGINE_CONFIG", '{"feature_bits": "many"}'),
        ("REFINERY_PARTITIONS", "0"),
        ("REFINERY_WEB_PORT", "70000"),
        ("REFINERY_KAFKA_PORT", "-1"),
        ("REFINERY_TOPIC_PREFIX", "a b"),
        ("REFINERY_KAFKA_BOOTSTRAP", "no-port"),
        ("REFINERY_MAX_LABEL_CHARS", "1000"),
        ("REFINERY_MAX_BODY_BYTES", "2000000"),
        ("REFINERY_MAX_LABELS_PER_DATASET", "0"),
        ("REFINERY_ALLOW_DEV_SNAPSHOT_KEY", "maybe"),
    ],
)
def test_a_setting_out_of_range_is_one_line_naming_the_variable(variable, value):
    env = {variable: value}
    with pytest.raises(SettingError) as raised:
        Settings.from_env(env)
        WorkerOptions.from_env(env)

    message = str(raised.value)
    assert message.startswith(f"{variable}: expected ") and "\n" not in message, message


def test_a_session_timeout_above_faust_s_request_timeout_raises_the_request_timeout():
    from agents.worker.app import create_app

    options = WorkerOptions.from_env({"REFINERY_SESSION_TIMEOUT": "120"})
    app = create_app(Settings(), options)

    # faust.transport.drivers.aiokafka refuses broker_session_timeout > broker_request_timeout.
    assert app.conf.broker_session_timeout == 120
    assert app.conf.broker_request_timeout > app.conf.broker_session_timeout


def _run_worker(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REFINERY_")}
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", "worker"],
        env={**clean, "PYTHONPATH": str(PROJECT_ROOT), **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_refinery_worker_stops_at_start_with_one_line_for_a_bad_setting():
    done = _run_worker(REFINERY_SESSION_TIMEOUT="120000")

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "refinery worker: REFINERY_SESSION_TIMEOUT: expected a number in [6, 1800], got 120000.0"
    ]


# -- safe defaults -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [{"web_host": "0.0.0.0"}, {"web_host": "10.1.2.3"}, {"external_bootstrap": "kafka.example.com:9092"}],
)
def test_the_development_snapshot_key_is_refused_where_others_can_reach_the_worker(changes):
    settings = Settings(**changes)

    with pytest.raises(SettingError, match="^REFINERY_SNAPSHOT_KEY: expected a key of your own"):
        check_start(settings, WorkerOptions())


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"external_bootstrap": "127.0.0.1:9092,localhost:9093", "web_host": "::1"},
        {"web_host": "0.0.0.0", "snapshot_key": "a-key-of-our-own"},
        {"web_host": "0.0.0.0", "allow_dev_snapshot_key": True},
    ],
)
def test_the_development_snapshot_key_is_accepted_locally_or_when_told_explicitly(changes):
    assert check_snapshot_key(Settings(**changes)) is None
    check_start(Settings(**changes), WorkerOptions())


def test_refinery_worker_refuses_the_development_key_on_every_interface():
    done = _run_worker(REFINERY_WEB_HOST="0.0.0.0")

    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("refinery worker: REFINERY_SNAPSHOT_KEY: ") and "REFINERY_ALLOW_DEV_SNAPSHOT_KEY" in line
    assert Settings().snapshot_key == DEV_SNAPSHOT_KEY


# -- size budgets ------------------------------------------------------------------------------


def test_the_default_size_budget_adds_up():
    budget = SizeBudget.of(Settings())

    assert budget.problems() == []
    assert budget.input_bytes + budget.growth <= budget.events_value < budget.record


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"max_input_bytes": 1_048_000}, "REFINERY_MAX_INPUT_BYTES"),
        ({"max_labels_per_dataset": 5000}, "REFINERY_MAX_LABELS_PER_DATASET"),
        (
            {"max_record_bytes": 600_000, "max_input_bytes": 500_000, "max_body_bytes": 400_000},
            "REFINERY_MAX_LABELS_PER_DATASET",
        ),
        (
            {
                "max_record_bytes": 600_000,
                "max_input_bytes": 500_000,
                "max_body_bytes": 400_000,
                "max_labels_per_dataset": 100,
            },
            None,
        ),
    ],
)
def test_a_size_budget_that_does_not_add_up_stops_the_worker_naming_the_variable(changes, variable):
    settings = Settings(**changes)
    if variable is None:  # smaller limits that still add up
        check_start(settings, WorkerOptions(chunk_bytes=300_000))
        return
    with pytest.raises(SettingError, match=f"^{variable}: "):
        check_start(settings, WorkerOptions())


def _message_under_the_body_limit(settings: Settings, under: int = 10) -> bytes:
    body = "x" * (settings.max_body_bytes - under)
    return Message(
        dataset="banking77",
        id="m-big",
        timestamp=1796030100.0,
        channel="email",
        subject="Card not arrived",
        body=body,
        sender="ann@example.com",
        to="help@bank.example",
        metadata={"country": "UK", "amount": 120.5},
    ).encode()


def test_a_message_ten_bytes_under_the_body_limit_fits_every_hop_with_the_real_size_estimate():
    settings = Settings()
    raw = _message_under_the_body_limit(settings)
    p = owner_partition("banking77", settings.partitions)

    event = sequence(
        raw,
        role="messages",
        topic="refinery.messages",
        partition=p,
        offset=9,
        partitions=settings.partitions,
        now=0,
        limits=limits_of(settings),
    )

    assert isinstance(event, Event), event
    value = event.encode()
    # What aiokafka's producer compares with max_request_size before sending.
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(b"banking77", value, [])
    assert len(value) <= SizeBudget.of(settings).events_value
    assert size <= settings.max_record_bytes


def test_a_body_over_the_limit_is_dead_lettered_naming_the_variable():
    settings = Settings()
    raw = _message_under_the_body_limit(settings, under=-1)

    dead = sequence(
        raw, role="messages", topic="t", partition=0, offset=0, partitions=1, now=0, limits=limits_of(settings)
    )

    assert isinstance(dead, DeadLetter)
    assert dead.error == "limit" and "REFINERY_MAX_BODY_BYTES" in dead.reason


def test_the_memory_budget_grows_with_the_caps_and_the_feature_bits():
    small = MemoryBudget.of(Settings(max_labels_per_dataset=10), {"feature_bits": 12}, partitions=1)
    more_labels = MemoryBudget.of(Settings(max_labels_per_dataset=20), {"feature_bits": 12}, partitions=1)
    more_bits = MemoryBudget.of(Settings(max_labels_per_dataset=10), {"feature_bits": 14}, partitions=1)
    more_datasets = MemoryBudget.of(
        Settings(max_labels_per_dataset=10, max_datasets_per_partition=32), {"feature_bits": 12}, partitions=1
    )

    assert small.total < more_labels.total and small.total < more_bits.total and small.total < more_datasets.total
    # 2**17 rows of float32 per label column: 512 KiB, times the 2.5 columns per label a growing matrix holds.
    per_label = (
        MemoryBudget.of(Settings(max_labels_per_dataset=11)).per_dataset
        - MemoryBudget.of(Settings(max_labels_per_dataset=10)).per_dataset
    )
    assert per_label >= 2.5 * 2**17 * 4


def test_the_memory_budget_counts_a_snapshot_in_progress_at_its_measured_peak():
    """A dataset filled to small caps: the capture, encoding, compression and chunks of its
    snapshot peak within 5 times its snapshot bytes (plus the registry's lists), and within the
    budget's ``snapshot`` term, which the worker's shell counts."""
    import tracemalloc

    from agents.worker.engines import Captured, pack_captured

    settings = Settings(max_labels_per_dataset=12, max_id_chars=64)
    config = {"feature_bits": 10, "validation_window": 40, "holdout_window": 20, "live_window": 40}
    config |= {"max_reviewed": 80, "max_chars": 400}
    engine = Refiner("d", config=RefinerConfig(**config), seed=0)
    for i in range(200):
        mid = f"{i:06d}-" + "m" * 57  # ids at REFINERY_MAX_ID_CHARS
        body = " ".join(f"w{i}x{j}" for j in range(60))[:400]  # distinct words up to max_chars
        engine.observe(Message(dataset="d", id=mid, timestamp=float(i), body=body))
        if i % 2:
            labels = [{"name": f"L{(i + k) % 12}"} for k in range(3)]
            engine.annotate(Annotation.from_dict({"dataset": "d", "message_id": mid, "timestamp": i, "labels": labels}))
    assert len(engine.labels) == 12 and len(engine.reviewed) == 80
    size = len(engine.snapshot())

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        pack_captured(Captured("d", engine.capture(), 1, 0, {}, {}), partition=0, writer="w", key="k")
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()

    budget = MemoryBudget.of(settings, config, partitions=1)
    assert peak <= 5 * size + len(engine.reviewed) * (8 * 3 + 200)
    assert peak <= budget.snapshot and budget.base >= 160 * 2**20 + budget.snapshot


def _documented_memory_budgets() -> list[list[str]]:
    """The rows of docs/service.md's table of example budgets, cells stripped."""
    text = (PROJECT_ROOT / "docs" / "service.md").read_text(encoding="utf-8")
    section = text.split("## Memory budget", 1)[1].split("\n## ", 1)[0]
    table = section.split("| configuration |", 1)[1].split("\n\n", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_the_documented_memory_budgets_are_what_memory_budget_computes(monkeypatch):
    for variable in ("REFINERY_WORKBENCH_MESSAGES", "REFINERY_WORKBENCH_BYTES"):
        monkeypatch.delenv(variable, raising=False)
    configurations = {
        "all defaults": (Settings(), {}, None),
        "defaults, `REFINERY_MAX_DATASETS_PER_PARTITION=1`": (Settings(max_datasets_per_partition=1), {}, None),
        "16 bits": (
            Settings(max_labels_per_dataset=100, max_datasets_per_partition=2),
            {"feature_bits": 16, "validation_window": 2000, "live_window": 2000, "max_reviewed": 50000},
            None,
        ),
        "bench_adversarial.py": (
            Settings(max_labels_per_dataset=100, max_datasets_per_partition=3),
            {"validation_window": 300, "live_window": 300, "max_reviewed": 1000},
            2,
        ),
    }
    rows = _documented_memory_budgets()
    assert len(rows) == len(configurations)
    for row, (name, (settings, config, partitions)) in zip(rows, configurations.items()):
        assert row[0].startswith(name)
        budget = MemoryBudget.of(settings, config, partitions=partitions)
        mib, gib = 2**20, 2**30
        total = f"{budget.total / gib:.1f}" if budget.total < 100 * gib else f"{budget.total / gib:.0f}"
        assert row[1:] == [
            f"{round(budget.per_dataset / mib):,} MiB",
            str(budget.datasets),
            f"{round(budget.base / mib):,} MiB ({round(budget.snapshot / mib):,} MiB)",
            f"{total} GiB",
        ], name


# -- memory caps -------------------------------------------------------------------------------


def _capped(max_datasets=None, max_labels=None) -> PartitionEngines:
    return PartitionEngines(
        "refinery.events",
        0,
        lambda d: Refiner(d, config=CONFIG, seed=0),
        Refiner.restore,
        max_datasets=max_datasets,
        max_labels=max_labels,
    )


def _message(dataset: str, i: int) -> Message:
    return Message(dataset=dataset, id=f"m-{i}", timestamp=float(i), body=f"card number {i} not arrived")


def _review(dataset: str, i: int, labels) -> Annotation:
    return Annotation.from_dict(
        {
            "dataset": dataset,
            "message_id": f"m-{i}",
            "timestamp": i,
            "labels": [{"name": n} for n in labels],
            "message": _message(dataset, i).to_dict(),
        }
    )


def _log(events) -> list[tuple[int, bytes]]:
    out = []
    for offset, record in enumerate(events):
        kind = "message" if isinstance(record, Message) else "annotation"
        source = "refinery.messages" if kind == "message" else "refinery.annotations"
        out.append((offset, Event(source_topic=source, partition=0, offset=offset, **{kind: record}).encode()))
    return out


def test_datasets_beyond_the_cap_are_dead_lettered_naming_it_and_keep_no_state():
    engines = _capped(max_datasets=3)
    log = _log([_message(f"d{i}", i) for i in range(1000)] + [_message("d0", 1000)])

    outcome = engines.apply(log, now=0)

    assert sorted(engines.engines) == ["d0", "d1", "d2"]
    assert len(outcome.predictions) == 4  # d0, d1, d2, and d0's second message
    assert len(outcome.dead_letters) == 997
    assert all(d.error == "limit" and "REFINERY_MAX_DATASETS_PER_PARTITION=3" in d.reason for d in outcome.dead_letters)
    assert set(engines.sources) <= {"d0", "d1", "d2"}  # nothing remembered of refused datasets


def test_a_review_that_would_pass_the_labels_cap_is_dead_lettered_naming_it_and_changes_nothing():
    engines = _capped(max_labels=10)
    first = _review("support", 1, ["Card > Delivery", "Urgent"])  # 3 labels with the parent
    flood = _review("support", 2, [f"New {i}" for i in range(1000)])
    fits = _review("support", 3, [f"Other {i}" for i in range(7)])  # 3 + 7 = 10: at the cap
    over = _review("support", 4, ["One more"])

    outcome = engines.apply(_log([first, flood, fits, over]), now=0)

    reasons = [d.reason for d in outcome.dead_letters]
    assert len(reasons) == 2 and all("REFINERY_MAX_LABELS_PER_DATASET=10" in r for r in reasons)
    assert "1003 labels" in reasons[0] and "11 labels" in reasons[1]
    assert len(engines.engines["support"].labels) == 10
    assert engines.engines["support"].model_version == 2  # the two refused reviews were not learnt


def test_the_caps_refuse_the_same_events_however_the_log_is_cut_into_batches():
    events = [_message(f"d{i % 7}", i) for i in range(40)]
    events += [_review(f"d{i % 7}", i, [f"L{i}", f"L{i} > x"]) for i in range(40)]
    log = _log(events)
    whole = _capped(max_datasets=4, max_labels=6).apply(log, now=0)
    pieces = _capped(max_datasets=4, max_labels=6)
    letters = []
    for start in range(0, len(log), 7):
        letters += pieces.apply(log[start : start + 7], now=0).dead_letters

    assert [d.offset for d in letters] == [d.offset for d in whole.dead_letters]
    assert [orjson.loads(d.encode())["reason"] for d in letters] == [d.reason for d in whole.dead_letters]
