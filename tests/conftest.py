"""Shared fixtures: a real Kafka broker, per-test topic names, the real data sets."""

from __future__ import annotations

import dataclasses
import os
import uuid

import pytest
from hypothesis import settings as hypothesis_settings

from agents.settings import Settings, datasets_dir

# Property-based tests (Hypothesis): moderate example counts keep the suite fast; CI runs more.
# No example database: runs leave no files behind, and a failure prints its reproducing example.
hypothesis_settings.register_profile("dev", max_examples=25, deadline=None, database=None)
hypothesis_settings.register_profile("ci", max_examples=200, deadline=None, database=None, print_blob=True)
hypothesis_settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") == "true" else "dev")
)


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """The bootstrap of a running broker, for tests marked ``@pytest.mark.kafka``.

    ``REFINERY_KAFKA_BOOTSTRAP`` if set; else the local broker, started for the session (and
    stopped at its end) only if it was not already running.
    """
    from agents.kafka import broker

    settings = Settings.from_env()
    if not settings.uses_local_broker or broker.is_running(settings):
        yield broker.start(settings, quiet=True)  # only waits until it answers
        return
    try:
        bootstrap = broker.start(settings, quiet=True)
    except broker.BrokerError as error:
        pytest.fail(f"no Kafka broker for the kafka tests: {error}", pytrace=False)
    try:
        yield bootstrap
    finally:
        broker.stop(settings, quiet=True)


@pytest.fixture
def unique_prefix() -> str:
    """A topic prefix of this test's own, e.g. ``t3f9a1c2e.``: tests never see each other's records."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def settings_for(kafka_bootstrap):
    """``settings_for(prefix)``: Settings for the test broker whose topics carry ``prefix``."""

    def make(prefix: str, **changes) -> Settings:
        return dataclasses.replace(
            Settings.from_env(), external_bootstrap=kafka_bootstrap, topic_prefix=prefix, **changes
        )

    return make


@pytest.fixture(scope="session")
def datasets():
    """The shared real data sets directory (``REFINERY_DATASETS``, else ``../shared/datasets``)."""
    path = datasets_dir()
    if not path.is_dir():
        pytest.skip(f"real data sets not found at {path}: set REFINERY_DATASETS or place them beside the project")
    return path


#: Partitions of the dataset-keyed topics in integration tests (the worker tests rely on 4).
TEST_PARTITIONS = 4


@pytest.fixture
def topics(settings_for, unique_prefix):
    """Settings whose topics (``TEST_PARTITIONS`` partitions each) this test owns: created on
    the broker first, deleted afterwards (best effort: cleanup never fails a test)."""
    from agents.kafka.admin import create_topics, delete_topics

    settings = settings_for(unique_prefix, partitions=TEST_PARTITIONS)
    create_topics(settings)
    yield settings
    try:
        delete_topics(settings)
    except Exception:
        pass
