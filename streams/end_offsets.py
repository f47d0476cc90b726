"""End offsets read from fetch responses, because ListOffsets cannot always be trusted.

Faust decides that a table partition is recovered when its changelog reader reaches the
partition's end offset ("highwater"), which it asks for with ListOffsets (aiokafka's
``end_offsets``). The embedded broker (Tansu) answers that request with the base offset of
the partition's last record *batch* plus one, not with the offset after its last record:
measured here, after 19 records produced in one batch it answered 1, and after 3,800 records
in batches of ~19 it answered 3,782. A table recovery that trusts that number stops up to one
producer batch short of the end. A survivor taking over a departed worker's partitions from
its standby copy then misses the departed worker's last state writes, while the input
offsets of those events are already committed: the events are lost from state.

A fetch response carries the partition's true high watermark. So the reported end offsets
are checked by fetching from one before each of them, and the larger of the two is used.
Against a broker whose ListOffsets is right (Apache Kafka) this costs one short fetch per
partition per recovery and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Mapping, TypeVar

from aiokafka.structs import TopicPartition

__all__ = ["verified_end_offsets"]

log = logging.getLogger(__name__)

TP = TypeVar("TP")


async def verified_end_offsets(new_consumer: Callable[[], Any], reported: Mapping[TP, int], *,
                               timeout_s: float = 10.0) -> dict[TP, int]:
    """``reported`` end offsets, raised to what a fetch from just before each one shows.

    ``new_consumer()`` makes an unstarted ``AIOKafkaConsumer`` without a group, configured
    like the worker's (security settings included); it is called only if some partition
    needs checking, and the consumer is started and stopped here. Keys of
    ``reported`` may be any ``(topic, partition)`` named tuple (Faust's ``TP``) and come
    back unchanged. Partitions reported empty are not probed. If a partition gives no
    fetch response within ``timeout_s``, its reported offset is kept, with a warning.
    """
    result = dict(reported)
    probe = {TopicPartition(tp.topic, tp.partition): tp  # type: ignore[attr-defined]
             for tp, offset in reported.items() if offset and offset > 0}
    if not probe:
        return result
    consumer = new_consumer()
    await consumer.start()
    try:
        consumer.assign(list(probe))
        for tp, original in probe.items():
            consumer.seek(tp, reported[original] - 1)
        pending = set(probe)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while pending and loop.time() < deadline:
            batches = await consumer.getmany(*pending, timeout_ms=200)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                records = batches.get(tp) or []
                if highwater is None and not records:
                    continue
                last = records[-1].offset + 1 if records else 0
                original = probe[tp]
                result[original] = max(result[original], highwater or 0, last)
                pending.discard(tp)
        for tp in pending:
            log.warning("No fetch response from %s[%d] within %.0f s; trusting the broker's "
                        "reported end offset %d", tp.topic, tp.partition, timeout_s,
                        reported[probe[tp]])
    finally:
        await consumer.stop()
    corrected = {tp: (reported[tp], end) for tp, end in result.items() if end != reported[tp]}
    if corrected:
        log.debug("End offsets corrected from fetch high watermarks: %s", corrected)
    return result
