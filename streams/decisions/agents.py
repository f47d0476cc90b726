"""The decision loop's Faust side: requests → ``decisions.out``, rewards → policies, windows.

Thin loops, like ``streams.agents``: every per-record choice is made by
:class:`~streams.decisions.engine.DecisionEngine`. Both agents run at concurrency 1
(faust-streaming #606) and share the engine on the event loop, so its state never
changes under a running call. Invalid input — including a reward for an unknown or
closed decision — is dead-lettered with its reason and bytes; a bug crashes the worker.

The engine lives in this worker's memory: it is one picklable object
(:data:`engine`) for the learner checkpoints to carry. ``decisions`` and ``rewards`` are
co-partitioned and keyed by user id, so Faust gives a user's decisions and rewards to
the same worker; after a rebalance, rewards for decisions made by the previous owner
are ``unknown_decision`` there (that owner closes them with the default reward).
"""

from __future__ import annotations

import logging
import time
from time import perf_counter
from typing import Any, AsyncIterator

from streams.agents import _crash, _raw, _send_dead_letter
from streams.app import app, settings
from streams.codecs import encode
from streams.decisions.config import DecisionConfig
from streams.decisions.engine import DecisionEngine
from streams.decisions.metrics import DecisionMetrics
from streams.decisions.records import Decision
from streams.decisions.validation import DecisionValidator, parse_request, parse_reward
from streams.errors import InvalidRecord
from streams.monitor import monitor
from streams.pipeline import Pipeline

__all__ = ["engine", "decisions_topic", "decisions_out_topic", "rewards_topic",
           "process_decisions", "process_rewards", "close_expired_decisions", "restore_engine"]

log = logging.getLogger(__name__)

_config = DecisionConfig.from_settings(settings)
validator = DecisionValidator(settings, _config)
#: This worker's decision engine (policies, pending decisions, dedupe memory): picklable.
engine = DecisionEngine(_config, seed=settings.seed)
metrics = DecisionMetrics(monitor.registry)


def _raw_topic(name: str):
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=settings.partitions)


decisions_topic = _raw_topic(settings.topic_decisions)
decisions_out_topic = _raw_topic(settings.topic_decisions_out)
rewards_topic = _raw_topic(settings.topic_rewards)


def _now_ms() -> int:
    return int(time.time() * 1000)


def restore_engine(restored: DecisionEngine) -> list[str]:
    """Adopt a checkpointed engine (before the agents start); returns points reset
    because their options changed since it was written."""
    global engine
    reset = restored.reconfigure(_config)
    engine = restored
    return reset


async def _send_decision(decision: Decision) -> None:
    value, headers = encode("decision", decision.to_dict(),
                            settings.output_format)  # type: ignore[arg-type]
    await decisions_out_topic.send(key=decision.user_id.encode("utf-8"), value=value,
                                   headers=headers)


@app.agent(decisions_topic, concurrency=1)
async def process_decisions(stream: AsyncIterator[Any]) -> None:
    """Requests → a decision on ``decisions.out`` (the stored one again for a redelivery)."""
    async for event in stream.events():  # type: ignore[attr-defined]
        try:
            started = perf_counter()
            raw = _raw(event)
            now = _now_ms()
            try:
                request = parse_request(raw.key, raw.value, raw.headers, validator, now)
                decision, status = engine.decide(request, now)
            except InvalidRecord as exc:
                await _send_dead_letter(Pipeline.dead_letter(raw, exc, now), "decisions")
                metrics.observe_request(None, "dead_lettered")
                continue
            if decision is not None:
                await _send_decision(decision)
            metrics.observe_request(request.decision_point, status)
            monitor.observe_record("decisions", perf_counter() - started)
        except Exception as exc:
            await _crash("process_decisions", exc)
            raise


@app.agent(rewards_topic, concurrency=1)
async def process_rewards(stream: AsyncIterator[Any]) -> None:
    """Rewards → the pending decision's policy, once per shown action."""
    async for event in stream.events():  # type: ignore[attr-defined]
        try:
            started = perf_counter()
            raw = _raw(event)
            now = _now_ms()
            try:
                reward = parse_reward(raw.key, raw.value, raw.headers, validator, now)
                status = engine.reward(reward, raw.key, now)
            except InvalidRecord as exc:
                await _send_dead_letter(Pipeline.dead_letter(raw, exc, now), "rewards")
                metrics.observe_reward(exc.error_type)
                continue
            metrics.observe_reward(status)
            monitor.observe_record("rewards", perf_counter() - started)
        except Exception as exc:
            await _crash("process_rewards", exc)
            raise


@app.timer(interval=1.0)
async def close_expired_decisions() -> None:
    """Every second: decisions whose reward window ended learn the default reward."""
    closed = engine.expire(_now_ms())
    if closed:
        log.debug("closed %d decisions at the end of their reward window", closed)
    metrics.refresh(engine)


@app.page("/decisions")
async def decision_points(self: Any, request: Any) -> Any:
    """Per decision point: policy version, apprentice mode, counts, reward rate, regret."""
    return self.json(engine.stats())
