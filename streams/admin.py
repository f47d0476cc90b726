"""Broker checks and topic creation, shared by every command that talks to Kafka.

Topics are created explicitly, with the configured partition count, before anything
produces or consumes: a topic auto-created by a first produce would get the broker's
default partition count, and ``events`` and ``users`` must be co-partitioned (same count,
same key) so one worker owns all of a user's state.
"""

from __future__ import annotations

import logging
import time

from streams.broker import port_open
from streams.security import kafka_python_options
from streams.settings import Settings

__all__ = ["BrokerUnavailable", "wait_for_broker", "ensure_topics", "input_topics", "all_topics"]

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """No Kafka broker answered; the message tells how to start one."""


def input_topics(settings: Settings) -> list[str]:
    # decisions and rewards: co-partitioned (same count, both keyed by user_id), so a
    # reward reaches the worker holding its pending decision (streams.decisions.engine).
    return [settings.topic_events, settings.topic_items, settings.topic_users,
            settings.topic_decisions, settings.topic_rewards]


def all_topics(settings: Settings) -> list[str]:
    return input_topics(settings) + [settings.topic_recommendations, settings.topic_dead_letters,
                                     settings.checkpoint_topic, settings.topic_decisions_out]


def _compacted(settings: Settings) -> set[str]:
    """Keyed upsert topics: only the latest record per key matters (a catalog, profiles,
    each worker's newest learner checkpoint)."""
    return {settings.topic_items, settings.topic_users, settings.checkpoint_topic}


def _partitions(settings: Settings, name: str) -> int:
    """One partition for checkpoints: a manifest must follow its chunks in offset order."""
    return 1 if name == settings.checkpoint_topic else settings.partitions


def wait_for_broker(settings: Settings, timeout: float | None = None) -> None:
    """Return once a bootstrap server accepts connections, retrying with backoff.

    Raises :class:`BrokerUnavailable` with a one-line, actionable message on timeout.
    """
    timeout = settings.broker_wait_s if timeout is None else timeout
    deadline = time.monotonic() + timeout
    delay, warned = 0.1, False
    while True:
        for server in settings.broker_servers:
            host, _, port = server.rpartition(":")
            if port_open(host, int(port)):
                return
        if time.monotonic() + delay > deadline:
            raise BrokerUnavailable(
                f"no Kafka broker answers at {settings.broker} (waited {timeout:.0f} s). "
                "Start one with `micromoment broker` in another terminal (or point "
                "--broker / MICROMOMENT_BROKER at yours), or run `micromoment demo`, "
                "which starts its own.")
        if not warned and timeout > 1:
            log.warning("waiting for a Kafka broker at %s (up to %.0f s)", settings.broker, timeout)
            warned = True
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def ensure_topics(settings: Settings, topics: list[str] | None = None) -> list[str]:
    """Create the project's topics that do not exist yet; return the ones created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = all_topics(settings) if topics is None else topics
    admin = KafkaAdminClient(bootstrap_servers=settings.broker_servers,
                             client_id=f"{settings.app_id}-admin", request_timeout_ms=10_000,
                             **kafka_python_options(settings))
    try:
        existing = set(admin.list_topics())
        created = []
        for name in wanted:
            if name in existing:
                continue
            configs = {"cleanup.policy": "compact"} if name in _compacted(settings) else {}
            try:
                admin.create_topics([NewTopic(name, _partitions(settings, name), settings.replication_factor,
                                              topic_configs=configs)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # another process created it in between: fine
        if created:
            log.info("created topics %s with %d partitions", created, settings.partitions)
        return created
    finally:
        admin.close()
