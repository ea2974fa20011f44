"""Topic administration (`agents.kafka.admin`): the registry's topics are created with the
partitions asked and its compaction, existing ones are kept, and every admin client is closed."""

from __future__ import annotations

import pytest

from agents import cli
from agents.kafka import admin
from agents.settings import TOPICS, Settings

kafka = pytest.mark.kafka


@pytest.fixture
def own_topics(settings_for, unique_prefix):
    """``own_topics(**changes)``: Settings with this test's prefix; its topics are deleted afterwards."""
    made = []

    def make(**changes) -> Settings:
        made.append(settings_for(unique_prefix, **changes))
        return made[-1]

    yield make
    for settings in made:
        try:
            admin.delete_topics(settings)
        except Exception:  # cleanup never fails a test
            pass


@kafka
def test_topics_are_created_with_the_partitions_asked_and_snapshots_compacted(own_topics):
    settings = own_topics()

    created = admin.create_topics(settings, partitions=3)

    assert created == {settings.topic(name): 3 for name in TOPICS}
    policies = {t["topic"]: t["cleanup.policy"] for t in admin.describe_topics(settings)}
    assert policies == {settings.topic(name): "compact" if name == "snapshots" else "delete" for name in TOPICS}


@kafka
def test_creating_topics_again_keeps_the_existing_ones(own_topics):
    settings = own_topics(partitions=2)
    admin.create_topics(settings, names=["messages"])

    again = admin.create_topics(settings, partitions=5, names=["messages", "annotations"])

    assert again == {settings.topic("messages"): 2, settings.topic("annotations"): 5}


@kafka
def test_deleting_topics_removes_only_those_of_the_prefix_that_exist(own_topics, settings_for, unique_prefix):
    settings = own_topics()
    neighbour = settings_for(unique_prefix + "n.")
    admin.create_topics(settings, names=["messages", "events"])
    admin.create_topics(neighbour, names=["messages"])
    try:
        deleted = admin.delete_topics(settings)

        assert sorted(deleted) == sorted([settings.topic("messages"), settings.topic("events")])
        assert [t["topic"] for t in admin.describe_topics(neighbour)] == [neighbour.topic("messages")]
    finally:
        admin.delete_topics(neighbour)


@kafka
def test_the_topics_command_creates_every_topic_with_the_prefix(
    own_topics, kafka_bootstrap, unique_prefix, monkeypatch, capsys
):
    own_topics()  # deleted afterwards
    monkeypatch.setenv("REFINERY_KAFKA_BOOTSTRAP", kafka_bootstrap)

    assert cli.main(["kafka", "topics", "--prefix", unique_prefix, "--partitions", "2"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert f"{unique_prefix}snapshots\tpartitions=2\tcleanup.policy=compact" in lines
    assert len([line for line in lines if line.startswith(unique_prefix)]) == len(TOPICS)


@kafka
def test_the_admin_client_is_closed_when_the_block_ends_even_on_error(kafka_bootstrap):
    with pytest.raises(RuntimeError, match="inside the block"), admin.admin_client(kafka_bootstrap) as client:
        assert client.list_topics() is not None
        raise RuntimeError("inside the block")

    assert client._closed


def test_an_unknown_topic_name_is_refused_before_any_broker_is_asked():
    settings = Settings(external_bootstrap="127.0.0.1:1")  # nothing listens there

    with pytest.raises(KeyError, match="no topic 'message': the topics are messages, annotations"):
        admin.create_topics(settings, names=["message"])


@kafka
def test_the_topics_command_takes_the_broker_from_its_flag(
    own_topics, kafka_bootstrap, unique_prefix, monkeypatch, capsys
):
    own_topics()  # deleted afterwards
    monkeypatch.setenv("REFINERY_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # nothing there: the flag must win

    assert cli.main(["kafka", "topics", "--bootstrap", kafka_bootstrap, "--prefix", unique_prefix]) == 0

    assert f"{unique_prefix}messages" in capsys.readouterr().out


def test_the_topics_command_without_a_broker_says_to_start_one(monkeypatch, capsys):
    monkeypatch.setenv("REFINERY_KAFKA_BOOTSTRAP", "127.0.0.1:1")

    assert cli.main(["kafka", "topics"]) == 1

    assert "no Kafka broker answers at 127.0.0.1:1: run `refinery kafka start` first" in capsys.readouterr().err
