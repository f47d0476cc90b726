"""Decision requests and rewards at the edge: what is accepted, what is dead-lettered and why."""

from __future__ import annotations

import orjson
import pytest

from streams.codecs import encode
from streams.decisions.config import ConfigError, DecisionConfig
from streams.decisions.validation import DecisionValidator, parse_request, parse_reward
from streams.errors import InvalidRecord
from streams.settings import Settings

SETS = '{"hero-images": [{"id": "beach", "features": {"tone": "warm"}}, {"id": "city"}]}'
V = DecisionValidator(Settings(decision_max_actions=5), DecisionConfig.parse("", SETS))


def body(**overrides) -> dict:
    data = {"decision_id": "d1", "decision_point": "hero", "user_id": "u1",
            "context": {"device": "mobile", "hour": 20},
            "actions": [{"id": "a", "features": {"tone": "warm"}}, {"id": "b"}]}
    data.update(overrides)
    return data


def error_of(data: dict | bytes, key: bytes = b"u1") -> str:
    value = data if isinstance(data, bytes) else orjson.dumps(data)
    with pytest.raises(InvalidRecord) as exc:
        parse_request(key, value, None, V)
    return exc.value.error_type


@pytest.mark.parametrize("overrides, error", [
    ({"actions": []}, "no_actions"),
    ({"actions": None}, "no_actions"),
    ({"actions": "a,b"}, "wrong_type"),
    ({"actions": ["a", "b"]}, "malformed_action"),
    ({"actions": [{"features": {}}]}, "malformed_action"),
    ({"actions": [{"id": ""}]}, "malformed_action"),
    ({"actions": [{"id": "a", "score": 3}]}, "malformed_action"),
    ({"actions": [{"id": "a"}, {"id": "a"}]}, "duplicate_action"),
    ({"actions": [{"id": f"a{n}"} for n in range(6)]}, "too_many_actions"),
    ({"actions": [{"id": "a", "features": {"x": [1]}}]}, "wrong_type"),
    ({"context": {"hour": None}}, "wrong_type"),
    ({"slots": 3}, "invalid_value"),
    ({"slots": 0}, "invalid_value"),
    ({"baseline_action": "zzz"}, "invalid_value"),
    ({"action_set": "nope", "actions": None}, "unknown_action_set"),
    ({"action_set": "hero-images"}, "malformed_action"),  # both actions and a set
    ({"decision_point": ""}, "invalid_value"),
    ({"user_id": None}, "missing_field"),
])
def test_malformed_requests_are_rejected_with_a_stable_reason(overrides, error):
    assert error_of(body(**overrides)) == error


def test_nan_features_are_rejected_in_avro_and_json():
    value, headers = encode("decision_request", body(context={"hour": float("nan")}), "avro")
    with pytest.raises(InvalidRecord) as exc:
        parse_request(b"u1", value, headers, V)
    assert exc.value.error_type == "invalid_value" and "finite" in exc.value.reason
    assert error_of(orjson.dumps(body()).replace(b'"hour":20', b'"hour":NaN')) == "invalid_json"


def test_requests_must_be_keyed_by_their_user():
    assert error_of(body(), key=b"u2") == "key_mismatch"


def test_a_valid_request_round_trips_through_avro_and_json_alike():
    data = body(slots=2, baseline_action="b", timestamp=1_700_000_000_000)
    from_json = parse_request(b"u1", orjson.dumps(data), None, V)
    value, headers = encode("decision_request", data, "avro")
    from_avro = parse_request(b"u1", value, headers, V)
    assert from_json == from_avro
    assert from_json.context == {"device": "mobile", "hour": 20.0}
    assert [a.id for a in from_json.actions] == ["a", "b"] and from_json.slots == 2


def test_a_named_action_set_is_expanded():
    value = orjson.dumps(body(actions=None, action_set="hero-images"))
    request = parse_request(b"u1", value, None, V)
    assert [a.id for a in request.actions] == ["beach", "city"]
    assert request.actions[0].features == {"tone": "warm"} and request.action_set == "hero-images"


def test_invalid_action_sets_fail_at_start_not_per_request():
    with pytest.raises(ConfigError, match="more than once"):
        DecisionValidator(Settings(), DecisionConfig.parse("", '{"s": [{"id": "a"}, {"id": "a"}]}'))


@pytest.mark.parametrize("data, error", [
    ({"value": 1.0}, "missing_field"),
    ({"decision_id": "d1"}, "missing_field"),
    ({"decision_id": "d1", "value": "1"}, "wrong_type"),
    ({"decision_id": "d1", "value": 1, "timestamp": 5}, "timestamp_out_of_range"),
])
def test_malformed_rewards_are_rejected(data, error):
    with pytest.raises(InvalidRecord) as exc:
        parse_reward(b"u1", orjson.dumps(data), None, V)
    assert exc.value.error_type == error


def test_rewards_accept_any_finite_number_in_either_format():
    data = {"decision_id": "d1", "value": 12.5, "timestamp": 1_700_000_000_000, "action_id": "a"}
    value, headers = encode("reward", data, "avro")
    from_json = parse_reward(b"u1", orjson.dumps(data), None, V)
    assert parse_reward(b"u1", value, headers, V) == from_json
