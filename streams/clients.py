"""kafka-python clients configured from settings, for the CLI's produce/consume side.

The worker itself uses Faust (aiokafka); these are the plain clients an app would use,
which is also what keeps the CLI honest about the wire format.
"""

from __future__ import annotations

from typing import Any

from streams.security import kafka_python_options
from streams.settings import Settings

__all__ = ["make_producer", "make_consumer"]


def make_producer(settings: Settings, **overrides: Any):
    from kafka import KafkaProducer

    options: dict[str, Any] = dict(bootstrap_servers=settings.broker_servers,
                                   client_id=f"{settings.app_id}-cli-producer",
                                   linger_ms=5, acks="all", retries=5,
                                   **kafka_python_options(settings))
    options.update(overrides)
    return KafkaProducer(**options)


def make_consumer(settings: Settings, topic: str, *, from_beginning: bool, **overrides: Any):
    """A group-less consumer assigned every partition of ``topic`` (a tail, not a member)."""
    from kafka import KafkaConsumer, TopicPartition

    options: dict[str, Any] = dict(bootstrap_servers=settings.broker_servers, group_id=None,
                                   enable_auto_commit=False,
                                   fetch_max_wait_ms=settings.fetch_max_wait_ms,
                                   client_id=f"{settings.app_id}-cli-consumer",
                                   auto_offset_reset="earliest" if from_beginning else "latest",
                                   **kafka_python_options(settings))
    options.update(overrides)
    consumer = KafkaConsumer(**options)
    partitions = consumer.partitions_for_topic(topic) or set(range(settings.partitions))
    consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
    if from_beginning:
        consumer.seek_to_beginning()
    else:
        consumer.seek_to_end()
    return consumer
