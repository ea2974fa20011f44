"""A broker outage costs little: aiokafka's failed metadata refreshes back off, repeated lines are summarised."""

from __future__ import annotations

import asyncio
import logging
import socket

from agents.worker import outage


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


def test_failed_metadata_refreshes_of_the_real_client_back_off_exponentially_up_to_a_cap(monkeypatch):
    from aiokafka.client import AIOKafkaClient

    pauses: list[float] = []

    async def pause(seconds):
        pauses.append(seconds)

    monkeypatch.setattr(outage, "_pause", pause)
    outage.install_metadata_backoff(first=0.5, cap=5.0)
    outage.install_metadata_backoff(first=0.5, cap=5.0)  # installing twice wraps once

    async def run():
        client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{_closed_port()}")
        return [await client._metadata_update(client.cluster, []) for _ in range(6)]

    assert asyncio.run(run()) == [False] * 6  # the broker is away: every refresh fails
    assert pauses == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_aiokafka_lines_repeated_during_an_outage_are_cut_to_a_burst_and_one_summary(caplog):
    caplog.set_level(logging.INFO)
    for logger in logging.root.manager.loggerDict.values():  # a worker made earlier in this process
        if isinstance(logger, logging.Logger):  # (create_app installs one) keeps its filter: drop it
            for old in [f for f in logger.filters if isinstance(f, outage.RepeatFilter)]:
                logger.removeFilter(old)
    limit = outage.install(burst=3, interval=3600.0)
    client_log = logging.getLogger("aiokafka")  # aiokafka/client.py logs there
    for _ in range(1000):
        client_log.error("Unable connect to node with id %s: %s", 1, "Connect call failed")
        client_log.error("Unable to update metadata from %s", [1])
    shown = [r for r in caplog.records if r.name == "aiokafka"]
    assert len(shown) == 6  # three of each template
    limit.interval = 0.0  # the interval is over
    limit.flush()
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("log_lines_suppressed")]
    assert sorted(summaries) == [
        "log_lines_suppressed source='aiokafka' message='Unable connect to node with id %s: %s' lines=997 seconds=0.0",
        "log_lines_suppressed source='aiokafka' message='Unable to update metadata from %s' lines=997 seconds=0.0",
    ]
    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            logger.removeFilter(limit)
