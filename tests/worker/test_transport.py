"""The worker's consumer waits at most ``REFINERY_FETCH_WAIT_SECONDS`` per fetch, not Faust's 1.5 s."""

from __future__ import annotations

import asyncio

from agents.settings import Settings
from agents.worker.app import create_app
from agents.worker.options import WorkerOptions


def _fetch_wait_ms(options: WorkerOptions) -> int:
    app = create_app(Settings(), options)

    async def build() -> int:
        consumer = app.consumer._thread._create_worker_consumer(app.transport)  # what Faust starts
        return consumer._fetch_max_wait_ms  # aiokafka hands it to its Fetcher in start()

    return asyncio.run(build())


def test_the_worker_consumer_fetch_wait_is_the_setting():
    assert _fetch_wait_ms(WorkerOptions()) == 50
    assert _fetch_wait_ms(WorkerOptions.from_env({"REFINERY_FETCH_WAIT_SECONDS": "0.2"})) == 200
