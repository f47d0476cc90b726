"""Small kafka-python helpers for tests: produce keyed records, read a topic until a predicate."""

from __future__ import annotations

import time
from typing import Any, Callable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.codecs import decode_dead_letter, decode_recommendation


def producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all")


def send_all(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None, list]]) -> None:
    """Send and confirm every record: a test's input must never be lost silently."""
    p = producer(bootstrap)
    try:
        futures = [p.send(topic, key=key, value=value, headers=headers or None)
                   for key, value, headers in records]
        p.flush()
        confirm(futures)
    finally:
        p.close()


def confirm(futures: list[Any], timeout: float = 60) -> None:
    """Raise if any send failed (``flush()`` alone does not say)."""
    for future in futures:
        future.get(timeout=timeout)


def read_topic(bootstrap: str, topic: str, *, until: Callable[[list[Any]], bool],
               timeout: float = 60, partitions: int = 4) -> list[Any]:
    """Every record of ``topic`` from the start, polled until ``until(records)`` holds."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
            if until(records):
                return records
        raise AssertionError(f"{topic}: condition not met in {timeout} s; read {len(records)} records")
    finally:
        consumer.close()


def recommendations(bootstrap: str, topic: str, until: Callable[[list[dict]], bool],
                    timeout: float = 60) -> list[dict]:
    box: list[list[dict]] = [[]]

    def decoded_until(records: list[Any]) -> bool:
        box[0] = [dict(decode_recommendation(r.value, r.headers), _key=r.key) for r in records]
        return until(box[0])

    read_topic(bootstrap, topic, until=decoded_until, timeout=timeout)
    return box[0]


def dead_letters(bootstrap: str, topic: str, until: Callable[[list[dict]], bool],
                 timeout: float = 60) -> list[dict]:
    box: list[list[dict]] = [[]]

    def decoded_until(records: list[Any]) -> bool:
        box[0] = [decode_dead_letter(r.value, r.headers) for r in records]
        return until(box[0])

    read_topic(bootstrap, topic, until=decoded_until, timeout=timeout)
    return box[0]
