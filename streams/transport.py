"""Faust's aiokafka transport with one setting Faust does not expose: the fetch wait.

Faust hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer. Kafka answers a fetch
as soon as data arrives, but the embedded broker (Tansu) holds it for the whole wait:
measured here, one message at a time, p50 event latency was 436 ms at 1500 ms and 5 ms at
20 ms. Registered as the ``micromoment`` transport through Faust's own plugin entry point
(``faust.transports`` in pyproject.toml); everything else is Faust's aiokafka driver.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.end_offsets import verified_end_offsets
from streams.settings import get_settings

__all__ = ["Transport", "SCHEME"]

#: URL scheme the app's broker list uses to select this transport.
SCHEME = "micromoment"


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        consumer._fetch_max_wait_ms = get_settings().fetch_max_wait_ms
        return consumer

    async def _highwaters(self, partitions: Any) -> Any:
        """End offsets for table recovery, checked against fetch responses
        (``streams.end_offsets``: the embedded broker under-reports them)."""
        reported = await super()._highwaters(partitions)
        if self.consumer.in_transaction:
            return reported
        return await verified_end_offsets(self._new_probe_consumer, reported)

    def _new_probe_consumer(self) -> Any:
        probe = self._create_client_consumer(self.transport)
        probe._fetch_max_wait_ms = get_settings().fetch_max_wait_ms
        return probe


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
