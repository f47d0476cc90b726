"""End offsets that table recovery can trust, on the real embedded broker.

Faust stops recovering a table partition at the end offset the broker reports. If that
number were one producer batch short (as the embedded broker's ListOffsets answer is), a
worker taking over partitions would miss their last state writes. These tests produce in
multi-record batches and check the end offsets the worker's transport uses.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from streams.end_offsets import verified_end_offsets

pytestmark = pytest.mark.integration


async def _produce_in_batches(bootstrap: str, topic: str, batches: int, per_batch: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:
        for _ in range(batches):
            futures = [await producer.send(topic, b"x" * 40, partition=0) for _ in range(per_batch)]
            await producer.flush()
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


def test_end_offsets_count_every_record_of_the_last_batch(broker):
    topic = f"end-offsets-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)])  # partition 1 stays empty
    admin.close()

    async def run() -> tuple[dict, dict]:
        await _produce_in_batches(broker.bootstrap, topic, batches=5, per_batch=25)
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        lister = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await lister.start()
        try:
            reported = await lister.end_offsets(tps)
        finally:
            await lister.stop()
        def probe() -> AIOKafkaConsumer:
            return AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, fetch_max_wait_ms=20)
        return reported, await verified_end_offsets(probe, reported)

    reported, verified = asyncio.run(run())
    assert verified[TopicPartition(topic, 0)] == 125, (reported, verified)
    assert verified[TopicPartition(topic, 1)] == 0
    assert reported[TopicPartition(topic, 0)] <= 125  # never lowered, only raised
