"""The worker's stream processors: thin loops that move records between topics and tables.

All per-record decisions live in :class:`streams.pipeline.Pipeline`. Stateful agents run at
concurrency 1: with more, Faust can commit an offset past an event still in flight
(faust-streaming #606) and a crash would lose it.

Invalid input never stops an agent: it goes to the dead-letter topic with its reason and
original bytes. A *bug* (any other exception) crashes the worker loudly, because a Faust
agent that dies on its own just stops consuming while the worker looks alive.
"""

from __future__ import annotations

import hashlib
import logging
from time import perf_counter
from typing import Any, AsyncIterator

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.app import app, settings
from streams.codecs import encode_dead_letter, encode_recommendation
from streams.logs import pseudonymize
from streams.monitor import monitor, readiness_problems
from streams.pipeline import Pipeline, RawRecord, profile_to_dict
from streams.records import DeadLetter, Recommendation
from streams.security import aiokafka_options
from streams.tables import user_profiles, user_state
from streams.topics import (dead_letters_topic, events_topic, items_topic,
                            recommendations_topic, users_topic)

__all__ = ["pipeline", "process_events", "process_items", "process_users", "replicate_catalog",
           "replicate_forgets", "refresh_monitor"]

log = logging.getLogger(__name__)

pipeline = Pipeline(settings)
monitor.worker_url = f"http://{settings.web_host}:{settings.web_port}"
monitor.catalog_size = lambda: int(pipeline.recommender.catalog_.available_mask().sum())
monitor.categories_of = pipeline.recommender.catalog_.categories_of


def _raw(event: Any) -> RawRecord:
    message = event.message
    return RawRecord(message.topic, message.partition, message.offset, message.key,
                     message.value, message.headers)


_MAX_DEAD_LETTER_KEY = 1024


def _dead_letter_key(key: bytes | None) -> bytes | None:
    """The dead letter's Kafka key: the original, or a digest of one too long to resend.

    The original key bytes stay in the dead letter's value either way.
    """
    if key is None or len(key) <= _MAX_DEAD_LETTER_KEY:
        return key
    return b"sha256:" + hashlib.sha256(key).hexdigest().encode()


async def _send_dead_letter(dead: DeadLetter, topic_kind: str) -> None:
    value, headers = encode_dead_letter(dead, settings.output_format)
    await dead_letters_topic.send(key=_dead_letter_key(dead.key), value=value, headers=headers)
    monitor.observe_dead_letter(topic_kind, dead.error_type)
    # The reason can quote ids from the record; it goes to the dead-letter topic, not the log.
    log.info("dead-lettered %s[%d]@%d (key %s): %s", dead.topic, dead.partition, dead.offset,
             pseudonymize(dead.key, settings.pseudonym_key), dead.error_type,
             extra={"error_type": dead.error_type})


async def _send_recommendation(rec: Recommendation) -> None:
    value, headers = encode_recommendation(rec, settings.output_format)
    await recommendations_topic.send(key=rec.user_id.encode("utf-8"), value=value, headers=headers)


async def _crash(agent_name: str, exc: BaseException) -> None:
    log.critical("agent %s failed on a record it could not dead-letter; stopping the worker",
                 agent_name, exc_info=exc)
    await app.crash(exc)


@app.agent(events_topic, concurrency=1)
async def process_events(stream: AsyncIterator[Any]) -> None:
    """Events → user state (deduplicated) → learners → a recommendation per trigger."""
    async for event in stream.events():  # type: ignore[attr-defined]
        try:
            started = perf_counter()
            outcome = pipeline.process_event(_raw(event), user_state.get, user_profiles.get)
            if outcome.dead_letter is not None:
                await _send_dead_letter(outcome.dead_letter, "events")
                monitor.observe_event("dead_lettered", None, perf_counter() - started)
                continue
            if outcome.applied:
                user_state[outcome.user_id] = outcome.state.to_dict()  # type: ignore[union-attr]
            if outcome.recommendation is not None:
                await _send_recommendation(outcome.recommendation)
            # Scores the event against the user's previous list before recording the new one.
            monitor.observe_event("processed" if outcome.applied else "duplicate", outcome.event,
                                  perf_counter() - started)
            if outcome.recommendation is not None:
                monitor.observe_recommendation(outcome.recommendation, outcome.personalized)
        except Exception as exc:
            await _crash("process_events", exc)
            raise


@app.agent(items_topic, concurrency=1)
async def process_items(stream: AsyncIterator[Any]) -> None:
    """Dead-letters invalid catalog records, once (by the partition's owner).

    Valid ones are applied by :func:`replicate_catalog` on every worker, since every
    worker ranks the whole catalog.
    """
    async for event in stream.events():  # type: ignore[attr-defined]
        try:
            started = perf_counter()
            _, dead = pipeline.process_item(_raw(event))
            if dead is not None:
                await _send_dead_letter(dead, "items")
            monitor.observe_record("items", perf_counter() - started)
        except Exception as exc:
            await _crash("process_items", exc)
            raise


async def _forget(user_id: str, explicit: bool) -> None:
    """Erase a user: tombstones in both tables' changelogs, learners, quality memory.

    After an explicit forget record, a tombstone on ``users`` lets compaction erase the
    user's profile history and the request itself; that tombstone comes back here and is
    applied again, harmlessly, without another tombstone.
    """
    for table in (user_state, user_profiles):
        if user_id in table:
            del table[user_id]  # Faust writes a tombstone to the changelog
    pipeline.recommender.forget_user(user_id)
    monitor.quality.forget(user_id)
    if explicit:
        await users_topic.send(key=user_id.encode("utf-8"), value=None)
    log.info("forgot user %s", pseudonymize(user_id, settings.pseudonym_key))


@app.agent(users_topic, concurrency=1)
async def process_users(stream: AsyncIterator[Any]) -> None:
    """Profile and consent upserts → ``user_profiles`` (co-partitioned with events); forgets."""
    async for event in stream.events():  # type: ignore[attr-defined]
        try:
            started = perf_counter()
            raw = _raw(event)
            profile, dead = pipeline.process_user(raw)
            if dead is not None:
                await _send_dead_letter(dead, "users")
            elif profile is not None and profile.forget:
                await _forget(profile.user_id, explicit=raw.value is not None and raw.value != b"")
            elif profile is not None:
                user_profiles[profile.user_id] = profile_to_dict(profile, pipeline.clock())
            monitor.observe_record("users", perf_counter() - started)
        except Exception as exc:
            await _crash("process_users", exc)
            raise


async def _replicate(topic: str, apply: Any, name: str) -> None:
    """Read every partition of ``topic`` from the start, forever, applying each record.

    Like a Kafka Streams GlobalKTable, this bypasses the consumer group on purpose: every
    worker needs every record (the whole catalog; every forget request, since any worker
    may hold learned parameters of any user). Both topics are compacted, so reading from
    the start after a restart rebuilds what matters.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=settings.fetch_max_wait_ms,
                                client_id=f"{settings.app_id}-{name}",
                                **aiokafka_options(settings))
    await consumer.start()
    try:
        partitions = None
        while not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await app.sleep(1.0)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        while not app.should_stop:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for messages in batches.values():
                for m in messages:
                    apply(RawRecord(m.topic, m.partition, m.offset, m.key, m.value, m.headers))
    finally:
        await consumer.stop()


@app.task
async def replicate_catalog() -> None:
    """Keep this worker's catalog complete: every valid ``items`` record, on every worker."""
    await _replicate(settings.topic_items, pipeline.apply_item, "catalog")


@app.task
async def replicate_forgets() -> None:
    """Erase forgotten users from this worker's learners, whoever owns their partition."""

    def apply(record: RawRecord) -> None:
        user_id = pipeline.apply_forget(record)
        if user_id is not None:
            monitor.quality.forget(user_id)

    await _replicate(settings.topic_users, apply, "forgets")


class _RebalanceSensor(faust.Sensor):
    """Counts rebalances and logs each one with its duration."""

    def on_rebalance_start(self, app: Any) -> dict:
        monitor.on_rebalance()
        return {"started": perf_counter()}

    def on_rebalance_end(self, app: Any, state: dict) -> None:
        log.info("rebalance done in %.2f s; assigned %d partitions",
                 perf_counter() - state.get("started", perf_counter()), len(app.consumer.assignment()))


app.sensors.add(_RebalanceSensor())


def _input_lags() -> dict[tuple[str, int], int]:
    """Per owned input partition: highwater minus the committed offset (messages)."""
    inputs = {settings.topic_events, settings.topic_items, settings.topic_users}
    consumer = app.consumer
    lags = {}
    for tp in consumer.assignment():
        if tp.topic not in inputs:
            continue
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        committed = consumer._committed_offset.get(tp)  # Faust's record of what it committed
        lags[(tp.topic, tp.partition)] = max(0, highwater - (committed or 0))
    return lags


_logged_recovery_end: list[float | None] = [None]


def _log_finished_recovery() -> None:
    """One line per table recovery, with the duration Faust's own recovery stamps measured."""
    recovery = app.tables.recovery
    started = getattr(recovery, "_recovery_started_at", None)
    ended = getattr(recovery, "_recovery_ended_at", None)
    if started and ended and ended != _logged_recovery_end[0] and not recovery.in_recovery:
        _logged_recovery_end[0] = ended
        log.info("table recovery done in %.2f s", max(0.0, ended - started),
                 extra={"recovery_seconds": round(max(0.0, ended - started), 3)})


@app.timer(interval=2.0)
async def refresh_monitor() -> None:
    """What can only be read periodically: lag, table sizes, readiness, learner counts."""
    monitor.set_readiness(readiness_problems(app))
    _log_finished_recovery()
    try:
        monitor.set_lag(_input_lags())
    except Exception as exc:  # the consumer may be mid-rebalance
        log.debug("lag not available: %s", exc)
    monitor.set_table_sizes({"user_state": len(user_state), "user_profiles": len(user_profiles)})
    recommender = pipeline.recommender
    monitor.observe_learners({"content": recommender.content.n_learned,
                              "mf": recommender.mf.n_learned,
                              "popularity": recommender.popularity.n_learned})
    monitor.sample()
