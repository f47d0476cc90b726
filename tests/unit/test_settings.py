"""Settings: environment, overrides, and clear errors naming the variable."""

from __future__ import annotations

import pytest

from streams.settings import Settings, SettingsError


def test_defaults_match_the_documented_contract():
    s = Settings.from_env({})
    assert (s.topic_events, s.topic_items, s.topic_users, s.topic_recommendations,
            s.topic_dead_letters) == ("events", "items", "users", "recommendations", "dead-letters")
    assert s.top_k == 10
    assert s.trigger_event_types == {"view", "click", "add_to_cart", "recommendation_request"}
    assert s.broker_servers == ["localhost:9092"]
    assert s.session_timeout_s == 10


def test_flags_override_environment():
    env = {"MICROMOMENT_BROKER": "kafka://a:1", "MICROMOMENT_TOP_K": "7"}
    s = Settings.from_env(env, broker="kafka://b:2")
    assert s.broker_servers == ["b:2"] and s.top_k == 7


def test_several_brokers_and_faust_form():
    s = Settings.from_env({"MICROMOMENT_BROKER": "kafka://a:1;kafka://b:2"})
    assert s.broker_servers == ["a:1", "b:2"]
    assert s.faust_broker == "micromoment://a:1;micromoment://b:2"


@pytest.mark.parametrize("env, fragment", [
    ({"MICROMOMENT_TOP_K": "ten"}, "MICROMOMENT_TOP_K"),
    ({"MICROMOMENT_TOP_K": "0"}, "MICROMOMENT_TOP_K"),
    ({"MICROMOMENT_OUTPUT_FORMAT": "xml"}, "MICROMOMENT_OUTPUT_FORMAT"),
    ({"MICROMOMENT_TRIGGER_EVENT_TYPES": "view,teleport"}, "teleport"),
    ({"MICROMOMENT_BROKER": "http://x:1"}, "kafka://"),
    ({"MICROMOMENT_BROKER": "kafka://nohostport"}, "host:port"),
])
def test_bad_values_name_the_variable(env, fragment):
    with pytest.raises(SettingsError, match=fragment):
        Settings.from_env(env)


def test_changelog_topics_follow_faust_naming():
    s = Settings.from_env({"MICROMOMENT_APP_ID": "shop"})
    assert s.changelog_topics == ["shop-user_state-changelog", "shop-user_profiles-changelog"]
