"""REFINERY_WORKER_ROLE: a worker runs both agents, or the sequencer alone, or the engines alone
(the two roles in one group on a real broker: tests/worker/test_worker_kafka.py)."""

from __future__ import annotations

import pytest

from agents.settings import SettingError, Settings
from agents.worker.app import WorkerOptions, create_app
from agents.worker.options import ROLES


@pytest.mark.parametrize(
    ("role", "agents", "topics"),
    [
        ("all", ["engine", "sequencer"], {"refinery.messages", "refinery.annotations", "refinery.events"}),
        ("sequencer", ["sequencer"], {"refinery.messages", "refinery.annotations"}),
        ("engine", ["engine"], {"refinery.events"}),
    ],
)
def test_a_worker_subscribes_to_the_topics_of_the_agents_its_role_runs(role, agents, topics, tmp_path):
    app = create_app(Settings.from_env({}), WorkerOptions(role=role, data_dir=tmp_path))
    assert sorted(name.rsplit(".", 1)[-1] for name in app.agents) == agents
    assert {topic for agent in app.agents.values() for topic in agent.channel.topics} == topics


def test_an_unknown_role_is_refused_naming_the_variable_and_the_roles():
    with pytest.raises(SettingError, match=r"REFINERY_WORKER_ROLE: expected one of all, sequencer, engine, got 'both'"):
        WorkerOptions.from_env({"REFINERY_WORKER_ROLE": "both"})


def test_refinery_worker_takes_the_role_as_a_flag():
    from agents.cli.main import build_parser

    assert build_parser().parse_args(["worker", "--role", "engine"]).role == "engine"
    for role in ROLES:  # the flag's choices are the setting's values
        assert build_parser().parse_args(["worker", "--role", role]).role == role
    with pytest.raises(SystemExit):
        build_parser().parse_args(["worker", "--role", "both"])
