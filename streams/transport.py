"""Faust's aiokafka transport with the worker's own fetch wait and producer linger.

* **Fetch wait.** Faust hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer.
  Kafka answers a fetch as soon as data arrives, but the embedded broker (Tansu) holds it
  for the whole wait: measured here, one message at a time, p50 event latency was 436 ms
  at 1500 ms and 5 ms at 20 ms (``MICROMOMENT_FETCH_MAX_WAIT_MS``).
* **Producer linger** (``MICROMOMENT_PRODUCER_LINGER_MS``, default 2 ms; Faust's default
  is 0). The worker writes a changelog record per event, and a recommendation per
  trigger; with no linger, at worker rates (~1,000 records/s, well below what fills a
  batch) each goes out as its own produce request: a socket write, a broker round trip,
  a response to parse. Measured here with aiokafka sending 3,000 records at ~750/s to the
  embedded broker, producer CPU per record was ~350 µs at 0 ms, ~250 µs at 2 ms and
  ~220 µs at 5 ms. The price is latency: a record waits up to the linger before it goes.

Registered as the ``micromoment`` transport through Faust's own plugin entry point
(``faust.transports`` in pyproject.toml); everything else is Faust's aiokafka driver.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.end_offsets import verified_end_offsets
from streams.settings import get_settings

__all__ = ["Transport", "Producer", "SCHEME"]

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


class Producer(faust_aiokafka.Producer):
    def _settings_default(self) -> Any:
        settings = dict(super()._settings_default())
        settings["linger_ms"] = get_settings().producer_linger_ms
        return settings


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer
