"""The worker's stream processors: thin loops that move records between topics and tables.

All per-record decisions live in :class:`streams.pipeline.Pipeline`. Stateful agents run at
concurrency 1: with more, Faust can commit an offset past an event still in flight
(faust-streaming #606) and a crash would lose it.

Invalid input never stops an agent: it goes to the dead-letter topic with its reason and
original bytes. A *bug* (any other exception) crashes the worker loudly, because a Faust
agent that dies on its own just stops consuming while the worker looks alive.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from time import perf_counter
from typing import Any, AsyncIterator

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.app import app, settings
from streams.checkpoints import (CheckpointWriter, choose_checkpoint, owned_by,
                                 read_checkpoints)
from streams.codecs import encode_dead_letter, encode_recommendation
from streams.logs import pseudonymize
from streams.monitor import monitor, readiness_problems
from streams.pipeline import Pipeline, RawRecord, profile_to_dict
from streams.records import DeadLetter, Recommendation
from streams.security import aiokafka_options
from streams.tables import user_profiles, user_state
from streams.topics import (checkpoints_topic, dead_letters_topic, events_topic, items_topic,
                            recommendations_topic, users_topic)

__all__ = ["pipeline", "process_events", "process_items", "process_users", "replicate_catalog",
           "replicate_forgets", "refresh_monitor", "restore_models", "checkpoint_models"]

log = logging.getLogger(__name__)

pipeline = Pipeline(settings)
monitor.worker_url = f"http://{settings.web_host}:{settings.web_port}"
# Late-bound: a restored checkpoint replaces the recommender (and its catalog).
monitor.catalog_size = lambda: int(pipeline.recommender.catalog_.available_mask().sum())
monitor.categories_of = lambda item_id: pipeline.recommender.catalog_.categories_of(item_id)


#: Topics the worker consumes in its consumer group (lag, stranded-partition checks).
_INPUT_TOPICS = frozenset({settings.topic_events, settings.topic_items, settings.topic_users,
                           settings.topic_decisions, settings.topic_rewards})
#: Topics whose agents write tables (checked for stalls).
_TABLE_TOPICS = frozenset({settings.topic_events, settings.topic_users})


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
            await _handle_event(event)
        except Exception as exc:
            await _crash("process_events", exc)
            raise
        _stalled.handled += 1


async def _handle_event(event: Any) -> None:
    started = perf_counter()
    outcome = pipeline.process_event(_raw(event), user_state.get, user_profiles.get)
    if outcome.dead_letter is not None:
        await _send_dead_letter(outcome.dead_letter, "events")
        monitor.observe_event("dead_lettered", None, perf_counter() - started)
        return
    if outcome.applied:
        user_state[outcome.user_id] = outcome.state.to_dict()  # type: ignore[union-attr]
    if outcome.recommendation is not None:
        await _send_recommendation(outcome.recommendation)
    # Scores the event against the user's previous list before recording the new one.
    monitor.observe_event("processed" if outcome.applied else "duplicate", outcome.event,
                          perf_counter() - started)
    if outcome.recommendation is not None:
        monitor.observe_recommendation(outcome.recommendation, outcome.personalized,
                                       outcome.challengers)


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


async def _forget(user_id: str, explicit: bool, *, history_only: bool = False) -> None:
    """Erase a user: tombstones in both tables' changelogs, learners, quality memory.

    After an explicit forget record, a tombstone on ``users`` lets compaction erase the
    user's profile history and the request itself; that tombstone comes back here and is
    applied again, harmlessly, without another tombstone.

    ``history_only`` is "reset my history": the state (a tombstone in the ``user_state``
    changelog) and what the learners hold go, the profile with consent and controls
    stays, and nothing is sent to ``users``. The user is a new user from then on.
    """
    for table in (user_state,) if history_only else (user_state, user_profiles):
        if user_id in table:
            del table[user_id]  # Faust writes a tombstone to the changelog
    if history_only:
        pipeline.reset_user(user_id)
    else:
        pipeline.recommender.forget_user(user_id)
    monitor.quality.forget(user_id)
    # Also for a reset: rewrite the checkpoint soon, and never adopt the user's older
    # parameters back from another worker's checkpoint.
    _checkpoints.forgotten(user_id)
    if explicit and not history_only:
        await users_topic.send(key=user_id.encode("utf-8"), value=None)
    log.info("%s user %s", "reset the history of" if history_only else "forgot",
             pseudonymize(user_id, settings.pseudonym_key))


@app.agent(users_topic, concurrency=1)
async def process_users(stream: AsyncIterator[Any]) -> None:
    """Profile, consent and controls upserts → ``user_profiles`` (co-partitioned with
    events); forgets; history resets (a request: the record's other fields are not applied)."""
    async for event in stream.events():  # type: ignore[attr-defined]
        try:
            started = perf_counter()
            raw = _raw(event)
            profile, dead = pipeline.process_user(raw)
            if dead is not None:
                await _send_dead_letter(dead, "users")
            elif profile is not None and profile.forget:
                await _forget(profile.user_id, explicit=raw.value is not None and raw.value != b"")
            elif profile is not None and profile.reset_history:
                await _forget(profile.user_id, explicit=True, history_only=True)
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
                    apply(RawRecord(m.topic, m.partition, m.offset, m.key, m.value, m.headers,
                                    m.timestamp))
    finally:
        await consumer.stop()


@app.task
async def replicate_catalog() -> None:
    """Keep this worker's catalog complete: every valid ``items`` record, on every worker."""
    await _replicate(settings.topic_items, pipeline.apply_item, "catalog")


@app.task
async def replicate_forgets() -> None:
    """Erase forgotten users, and reset histories, in this worker's learners, whoever
    owns their partition.

    A cold model (no checkpoint restored) knows nothing from before this start, so
    resets requested before it need not be replayed; after a restore, the checkpoint's
    age would say which ones (``pipeline.reset_replay_before_ms``). Either takes effect
    once :func:`_replicate` passes the records' timestamps (``RawRecord.timestamp_ms``).
    """
    if pipeline.reset_replay_before_ms is None and pipeline.recommender.n_learned == 0:
        pipeline.reset_replay_before_ms = pipeline.clock()

    def apply(record: RawRecord) -> None:
        done = pipeline.replicate_user(record)
        if done is not None:
            monitor.quality.forget(done[1])
            _checkpoints.forgotten(done[1])
            if done[0] == "forget":  # pending decisions and their dedupe memory, too
                from streams.decisions.agents import engine  # imports this module
                engine.forget_user(done[1])

    await _replicate(settings.topic_users, apply, "forgets")


class _Checkpoints:
    """This worker's side of ``streams.checkpoints``: when to write, what to restore.

    A forget makes the next refresh (within ~2 s) write a new checkpoint, so the
    erased user survives in no current checkpoint; forgotten users are also never
    adopted from another worker's older checkpoint (kept as digests, not ids).
    """

    #: Other workers' checkpoints older than this are not restored from or adopted:
    #: Kafka keeps tombstones (a forget's trace) ~24 h by default (delete.retention.ms).
    MAX_FOREIGN_AGE_S = 86_400.0

    def __init__(self) -> None:
        self.writer = CheckpointWriter(settings.resolved_worker_id)
        self.enabled = settings.checkpoint_interval_s > 0
        self.written_at_learned = -1
        self.due = False
        self.owned: set[int] = set()
        self.forgotten_digests: set[bytes] = set()
        self.read_at_start: dict | None = None  # what restore_models read: the first adoption reuses it

    def forgotten(self, user_id: str) -> None:
        self.forgotten_digests.add(hashlib.sha256(user_id.encode("utf-8")).digest())
        self.due = True

    def not_forgotten(self, user_id: str) -> bool:
        return hashlib.sha256(str(user_id).encode("utf-8")).digest() not in self.forgotten_digests

    def foreign(self, checkpoints: dict) -> list:
        horizon = time.time() - self.MAX_FOREIGN_AGE_S
        return sorted((c for worker, c in checkpoints.items()
                       if worker != self.writer.worker and c.created_at >= horizon),
                      key=lambda c: -c.created_at)


_checkpoints = _Checkpoints()


def restore_models() -> None:
    """Before the worker starts: load this worker's checkpoint, or the newest recent one.

    Blocking on purpose (nothing runs yet). Any failure leaves the models cold, with a
    warning: a checkpoint is an optimization, the tables hold the truth.
    """
    if not _checkpoints.enabled:
        return
    started = perf_counter()
    try:
        found = _checkpoints.read_at_start = read_checkpoints(settings)
        own = found.get(_checkpoints.writer.worker)
        candidates = {c.worker: c for c in _checkpoints.foreign(found)}
        if own is not None:
            candidates[own.worker] = own
        chosen = choose_checkpoint(candidates, _checkpoints.writer.worker)
        if chosen is None:
            log.info("no learner checkpoint to restore: models start cold")
            return
        model = chosen.load()
        model.recommend("checkpoint-probe", None, {}, 1)  # fails fast on an incompatible model
    except Exception as exc:
        log.warning("learner checkpoint not restored (%s: %s): models start cold",
                    type(exc).__name__, exc)
        return
    pipeline.recommender = model
    # History resets older than the checkpoint are in it already: not replayed again.
    pipeline.reset_replay_before_ms = int(chosen.created_at * 1000) - 5_000
    _checkpoints.written_at_learned = model.n_learned
    if chosen.worker == _checkpoints.writer.worker:
        _checkpoints.writer.resume_after(chosen.seq, chosen.chunks)
    log.info("restored learner checkpoint %d of %s (%d events learned, %.0f s old) in %.2f s",
             chosen.seq, chosen.worker, chosen.n_learned, time.time() - chosen.created_at,
             perf_counter() - started)


async def checkpoint_models(reason: str) -> None:
    """Write the recommender to the checkpoint topic: chunks, manifest, old tombstones.

    Pickling runs on the event loop, between events, so the model never changes under
    it; its duration is logged (at 1k users and 2k items: ~1.6 MB in ~30 ms).
    """
    recommender = pipeline.recommender
    started = perf_counter()
    records = _checkpoints.writer.records(recommender, n_learned=recommender.n_learned)
    pickled = perf_counter() - started
    futures = [await checkpoints_topic.send(key=key.encode("utf-8"), value=value, partition=0)
               for key, value in records]
    await asyncio.gather(*futures)
    _checkpoints.written_at_learned = recommender.n_learned
    _checkpoints.due = False
    log.info("learner checkpoint %d written (%s): %d records, %d events learned; "
             "pickled in %.3f s, sent in %.3f s", _checkpoints.writer._seq, reason, len(records),
             recommender.n_learned, pickled, perf_counter() - started - pickled)


async def _checkpoint_if_changed(reason: str) -> None:
    if _checkpoints.enabled and (
            _checkpoints.due or pipeline.recommender.n_learned != _checkpoints.written_at_learned):
        await checkpoint_models(reason)


if _checkpoints.enabled:
    @app.timer(interval=settings.checkpoint_interval_s)
    async def periodic_checkpoint() -> None:
        """Every ``MICROMOMENT_CHECKPOINT_INTERVAL`` seconds, if anything was learned."""
        await _checkpoint_if_changed("periodic")


@app.on_before_shutdown.connect
async def final_checkpoint(sender: Any, **kwargs: Any) -> None:
    """On a clean stop (agents already stopped), so a restart loses no learning."""
    try:
        await _checkpoint_if_changed("shutdown")
    except Exception as exc:
        log.warning("final learner checkpoint failed: %s", exc)


@app.on_partitions_assigned.connect
async def adopt_moved_users(sender: Any, assigned: Any, **kwargs: Any) -> None:
    """After a rebalance: take the newly owned partitions' users from other checkpoints."""
    owned = {tp.partition for tp in assigned if tp.topic == settings.topic_events}
    new, _checkpoints.owned = owned - _checkpoints.owned, owned
    if new and _checkpoints.enabled:
        app.add_future(_adopt(new))


async def _adopt(partitions: set[int]) -> None:
    started = perf_counter()
    try:
        found, _checkpoints.read_at_start = _checkpoints.read_at_start, None
        if found is None:  # after a later rebalance: read what the others wrote since
            found = await asyncio.get_running_loop().run_in_executor(None, read_checkpoints, settings)
        mine = owned_by(partitions, settings.partitions)
        wanted = lambda user_id: mine(user_id) and _checkpoints.not_forgotten(user_id)  # noqa: E731
        adopted = 0
        for checkpoint in _checkpoints.foreign(found):
            adopted += pipeline.recommender.adopt_users(checkpoint.load(), wanted)
    except Exception as exc:
        log.warning("could not adopt users of partitions %s from checkpoints: %s",
                    sorted(partitions), exc)
        return
    log.info("adopted %d users of partitions %s from other workers' checkpoints in %.2f s",
             adopted, sorted(partitions), perf_counter() - started)


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
    inputs = _INPUT_TOPICS
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


def _settled() -> bool:
    """No rebalance or table recovery under way: partitions should be flowing."""
    recovery = app.tables.recovery
    return not (app.rebalancing or recovery.in_recovery or not recovery.completed.is_set())


class _StrandedPartitions:
    """Resumes input partitions that Faust left paused after a rebalance.

    Seen here (faust-streaming 0.15.3, a worker taking over a departed worker's
    partitions): recovery completes and logs "Seek stream partitions to committed
    offsets", yet the taken-over partitions stay in the consumer's paused set, so they
    are never fetched again: events wait forever while the worker reports ready (akin to
    faust-streaming #629). Faust pauses stream partitions only while a rebalance or a
    table recovery runs, so an input partition still paused several checks after both
    ended is stranded, and resuming it is what Faust meant to do.
    """

    CHECKS_BEFORE_RESUME = 3  # refresh_monitor runs every 2 s

    def __init__(self) -> None:
        self.seen: dict[Any, int] = {}

    def check(self) -> list[Any]:
        consumer = app.consumer
        if not _settled():
            self.seen.clear()
            return []
        inputs = _INPUT_TOPICS
        paused = {tp for tp in consumer._paused_partitions
                  if tp.topic in inputs and tp in consumer.assignment()}
        self.seen = {tp: self.seen.get(tp, 0) + 1 for tp in paused}
        stranded = [tp for tp, count in self.seen.items() if count >= self.CHECKS_BEFORE_RESUME]
        if stranded:
            log.warning("resuming %d input partitions Faust left paused after a rebalance: %s",
                        len(stranded), sorted(f"{tp.topic}[{tp.partition}]" for tp in stranded))
            consumer.resume_partitions(stranded)
            for tp in stranded:
                self.seen.pop(tp, None)
        return stranded


class _StalledPartitions:
    """Reads again from the committed offset a partition that stopped moving.

    Seen here (faust-streaming 0.15.3 on the embedded broker):

    * after a takeover, Faust resumed the stream partitions, awaited the seek to committed
      offsets, then cleared the streams' buffers as it resumed the flow: records fetched in
      between were dropped as already read or cleared unprocessed, with the fetch position
      past them. Nothing more arrived; the partition sat with lag and a committed offset
      that never moved while the worker, ready, handled nothing at all;
    * after a restart, one partition was never delivered again (its read offset frozen,
      10,410 records behind it) while the others were processed.

    Either way, reading again from the committed offset is safe: state updates are
    idempotent by event id.
    """

    CHECKS_BEFORE_SEEK = 5  # refresh_monitor runs every 2 s; Faust commits every 2.8 s

    def __init__(self) -> None:
        self.seen: dict[Any, tuple[tuple, int]] = {}  # tp -> (what it was at, checks)
        self.handled = 0  # events the events agent handled: an idle worker with lag is stuck
        self._handled_at_last_check = 0

    async def check(self) -> list[Any]:
        consumer = app.consumer
        idle = self.handled == self._handled_at_last_check
        self._handled_at_last_check = self.handled
        if not _settled():
            self.seen.clear()
            return []
        stalled = []
        for tp in consumer.assignment():
            if tp.topic not in _TABLE_TOPICS or tp in consumer._paused_partitions:
                continue
            highwater = consumer.highwater(tp)
            committed = consumer._committed_offset.get(tp)  # Faust's record of its commits
            read = consumer._read_offset.get(tp)  # the last offset Faust delivered
            waiting_delivery = highwater is not None and read is not None and highwater > read + 1
            waiting_commit = (idle and highwater is not None and committed is not None
                              and highwater > committed)
            if committed is None or not (waiting_delivery or waiting_commit):
                self.seen.pop(tp, None)
                continue
            at = (committed, read) if waiting_delivery else (committed,)
            before = self.seen.get(tp)
            checks = before[1] + 1 if before is not None and before[0] == at else 1
            self.seen[tp] = (at, checks)
            if checks >= self.CHECKS_BEFORE_SEEK:
                stalled.append((tp, committed))
        for tp, committed in stalled:
            log.warning("%s[%d] has not moved from offset %d for %d checks with %d records "
                        "behind it: reading again from there", tp.topic, tp.partition,
                        committed, self.CHECKS_BEFORE_SEEK, consumer.highwater(tp) - committed)
            await consumer.seek(tp, committed)
            self.seen.pop(tp, None)
        return stalled


_stranded = _StrandedPartitions()
_stalled = _StalledPartitions()
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
    if _checkpoints.due:
        await _checkpoint_if_changed("forget")
    try:
        monitor.set_lag(_input_lags())
        _stranded.check()
        await _stalled.check()
    except Exception as exc:  # the consumer may be mid-rebalance
        log.debug("lag not available: %s", exc)
    monitor.set_table_sizes({"user_state": len(user_state), "user_profiles": len(user_profiles)})
    recommender = pipeline.recommender
    monitor.observe_pipeline(pipeline.stats())
    monitor.observe_learners({"content": recommender.content.n_learned,
                              "mf": recommender.mf.n_learned,
                              "popularity": recommender.popularity.n_learned})
    monitor.sample()
