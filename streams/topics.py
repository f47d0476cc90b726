"""Every topic the worker reads or writes, declared once (names come from settings).

All carry raw bytes (see ``streams.app``); the schemas in ``schemas/`` define the values.
"""

from __future__ import annotations

from streams.app import app, settings

__all__ = ["events_topic", "items_topic", "users_topic", "recommendations_topic",
           "dead_letters_topic", "checkpoints_topic"]


def _raw_topic(name: str, partitions: int = settings.partitions):
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=partitions)


events_topic = _raw_topic(settings.topic_events)
items_topic = _raw_topic(settings.topic_items)
users_topic = _raw_topic(settings.topic_users)
recommendations_topic = _raw_topic(settings.topic_recommendations)
dead_letters_topic = _raw_topic(settings.topic_dead_letters)
checkpoints_topic = _raw_topic(settings.checkpoint_topic, partitions=1)  # see streams.checkpoints
