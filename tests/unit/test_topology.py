"""The Faust topology's persisted contracts, checked without a broker."""

from __future__ import annotations

from streams.settings import TABLE_NAMES


def test_table_changelogs_key_users_by_their_raw_id_bytes():
    # Producers key events with the raw id; the web router hashes table keys with the
    # changelog's key serializer. If they differ, GET /users/{id} asks the wrong worker.
    from streams.tables import user_profiles, user_state

    for table in (user_state, user_profiles):
        topic = table.changelog_topic
        assert topic.prepare_key("user-1", None)[0] == b"user-1"
        assert topic.prepare_value({"event_count": 2}, None)[0] == b'{"event_count":2}'


def test_table_names_are_the_declared_contracts():
    from streams.app import app
    import streams.tables  # noqa: F401

    assert {table.name for table in app.tables.values()} == set(TABLE_NAMES)


def test_every_topic_carries_raw_bytes_so_bad_records_reach_the_agents():
    from streams import topics

    for topic in (topics.events_topic, topics.items_topic, topics.users_topic):
        assert topic.key_serializer == "raw" and topic.value_serializer == "raw"
