"""Every changelog-backed table. Table names are persisted contracts: renaming one
orphans its changelog topic (``<app_id>-<name>-changelog``) and the state in it.

Keys are user ids as ``str`` serialized raw (UTF-8 bytes, the same bytes producers key
events with); values are dicts serialized with orjson.
"""

from __future__ import annotations

from streams.app import app, settings
from streams.settings import TABLE_NAMES

__all__ = ["user_state", "user_profiles"]


def _user_table(name: str, help: str):
    assert name in TABLE_NAMES, f"declare {name!r} in settings.TABLE_NAMES (it is a contract)"
    table = app.Table(name, default=None, key_type=str, partitions=settings.partitions, help=help)
    # Faust derives a table's changelog serializers from its types (str -> "json", which
    # would store '"u1"'), ignoring Schema and app settings, and builds the changelog topic
    # as the table registers. Set them and rebuild it: the web router hashes keys with it.
    table.key_serializer = "raw"
    table.value_serializer = "orjson"
    table.changelog_topic = table._new_changelog_topic()
    return table


user_state = _user_table("user_state", "per-user state: counts, recent items, context, dedupe window")
user_profiles = _user_table("user_profiles", "per-user profile and consent from the users topic")
