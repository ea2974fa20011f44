"""Faust's Kafka transport with the consumer's fetch wait the worker chooses: `transport_class`.

Faust creates its aiokafka consumer with ``fetch_max_wait_ms=1500`` written in the code, and no
setting changes it. With one broker every partition the worker reads (``messages``,
``annotations``, ``events``) is fetched from the same node, and aiokafka keeps one fetch in
flight per node, leaving out the partitions whose records are still buffered. When the fetch in
flight names only partitions without new data, the broker holds it for the whole wait, and the
partitions meanwhile drained by the agents wait with it: both agents received nothing for up to
1.4 s while input arrived at 367 events/s (bench/README.md, *Service throughput*). A short wait
bounds that stall; an idle worker pays one small fetch request per wait.

>>> cls = transport_class(0.05)
>>> cls.Consumer.fetch_max_wait_ms
50
"""

from __future__ import annotations

from faust.transport.drivers import aiokafka as driver

__all__ = ["transport_class"]


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    """Faust's consumer thread; its aiokafka consumer waits at most ``fetch_max_wait_ms``."""

    fetch_max_wait_ms = 1500

    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps the argument here and hands it to its Fetcher in start(), not before
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer


def transport_class(fetch_wait: float) -> type[driver.Transport]:
    """Faust's aiokafka transport whose worker consumer waits at most ``fetch_wait`` seconds per fetch."""
    wait_ms = max(1, round(fetch_wait * 1000))
    thread = type("ConsumerThread", (_ConsumerThread,), {"fetch_max_wait_ms": wait_ms})

    class Consumer(driver.Consumer):
        fetch_max_wait_ms = wait_ms

        def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
            return thread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport
