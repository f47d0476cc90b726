"""Validation at the edge: each rule, its error_type, and a reason that names the field."""

from __future__ import annotations

import math
import pickle

import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from streams.codecs import encode, encode_event
from streams.errors import DecodeError, InvalidRecord
from streams.records import (DEFAULT_CONTROLS, EVENT_TYPES, Event, ItemUpdate, UserControls,
                             UserProfile)
from streams.settings import Settings
from streams.validation import MAX_ENTRY_LENGTH, Validator, parse_event, parse_item, parse_user

NOW = 1_700_000_000_000
SETTINGS = Settings(max_id_length=16, max_context_entries=4, max_record_bytes=2_000,
                    max_future_skew_s=60.0, min_timestamp_ms=1_600_000_000_000)
V = Validator(SETTINGS)


def event_data(**changes):
    data = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "view",
            "timestamp": NOW, "value": None, "context": {"device": "ios"}, "recommendation_id": None}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}  # Ellipsis = drop the field


def json_bytes(data) -> bytes:
    return orjson.dumps(data)


def rejects(fn, *args, error_type: str, names: str):
    with pytest.raises(InvalidRecord) as err:
        fn(*args)
    assert err.value.error_type == error_type, err.value.reason
    assert names in err.value.reason, err.value.reason
    assert str(err.value) == err.value.reason
    return err.value


# -- the exception ---------------------------------------------------------------------------


def test_invalid_record_carries_code_and_reason_and_pickles():
    err = InvalidRecord("too_long", "event field 'user_id' is too long")
    assert (err.error_type, err.reason, str(err)) == ("too_long", "event field 'user_id' is too long",
                                                       "event field 'user_id' is too long")
    copy = pickle.loads(pickle.dumps(DecodeError("invalid_json", "bad")))
    assert isinstance(copy, InvalidRecord) and (copy.error_type, copy.reason) == ("invalid_json", "bad")


# -- events ----------------------------------------------------------------------------------


def test_valid_event_becomes_a_typed_record():
    event = V.event(event_data(event_type="rating", value=4, recommendation_id="r1",
                               extra_field_from_the_future=[1, 2]), NOW)
    assert event == Event("e1", "u1", "i1", "rating", NOW, 4.0, {"device": "ios"}, "r1")
    assert type(event.value) is float


def test_optional_fields_may_be_absent_or_null():
    event = V.event({"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "view",
                     "timestamp": NOW}, NOW)
    assert (event.value, event.context, event.recommendation_id) == (None, {}, None)
    assert V.event(event_data(context=None), NOW).context == {}


def test_recommendation_request_needs_no_item():
    assert V.event(event_data(event_type="recommendation_request", item_id=None), NOW).item_id is None
    assert V.event(event_data(event_type="recommendation_request", item_id=...), NOW).item_id is None


@pytest.mark.parametrize("field", ["event_id", "user_id", "event_type", "timestamp"])
@pytest.mark.parametrize("how", ["absent", "null"])
def test_required_event_field_missing(field, how):
    data = event_data(**{field: ... if how == "absent" else None})
    rejects(V.event, data, NOW, error_type="missing_field", names=f"'{field}'")


@pytest.mark.parametrize("event_type", [t for t in EVENT_TYPES if t != "recommendation_request"])
def test_item_id_required_for_item_events(event_type):
    err = rejects(V.event, event_data(event_type=event_type, item_id=None), NOW,
                  error_type="missing_field", names="'item_id'")
    assert event_type in err.reason


@pytest.mark.parametrize("field, bad", [
    ("event_id", 12), ("user_id", ["u1"]), ("item_id", 3.5), ("event_type", 1),
    ("timestamp", True), ("timestamp", False), ("timestamp", "1700000000000"), ("timestamp", 1.7e12),
    ("value", "4"), ("value", True), ("value", [1.0]), ("context", ["device", "ios"]),
    ("context", "device=ios"), ("recommendation_id", 7),
])
def test_event_wrong_type(field, bad):
    rejects(V.event, event_data(**{field: bad}), NOW, error_type="wrong_type", names=f"'{field}'")


def test_unknown_event_type_lists_the_known_ones():
    err = rejects(V.event, event_data(event_type="teleport"), NOW,
                  error_type="unknown_event_type", names="'event_type'")
    assert "teleport" in err.reason
    for known in EVENT_TYPES:
        assert known in err.reason


@pytest.mark.parametrize("field", ["event_id", "user_id", "item_id", "recommendation_id"])
def test_event_ids_must_be_non_empty_and_short(field):
    rejects(V.event, event_data(**{field: ""}), NOW, error_type="invalid_value", names=f"'{field}'")
    rejects(V.event, event_data(**{field: "x" * 17}), NOW, error_type="too_long", names=f"'{field}'")
    assert getattr(V.event(event_data(**{field: "x" * 16}), NOW), field) == "x" * 16


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 10**400])
def test_value_must_be_finite(bad):
    rejects(V.event, event_data(value=bad), NOW, error_type="invalid_value", names="'value'")


def test_timestamp_bounds_are_inclusive():
    low, high = SETTINGS.min_timestamp_ms, NOW + 60_000
    assert V.event(event_data(timestamp=low), NOW).timestamp == low
    assert V.event(event_data(timestamp=high), NOW).timestamp == high
    for bad in (low - 1, high + 1, 1_700_000_000, -1):  # the 3rd is seconds, not ms
        rejects(V.event, event_data(timestamp=bad), NOW, error_type="timestamp_out_of_range",
                names="'timestamp'")


def test_context_must_be_a_small_string_map():
    rejects(V.event, event_data(context={"device": 1}), NOW, error_type="wrong_type", names="'context'")
    rejects(V.event, event_data(context={"a": None}), NOW, error_type="wrong_type", names="'context'")
    rejects(V.event, event_data(context={str(i): "x" for i in range(5)}), NOW,
            error_type="too_many_entries", names="'context'")
    assert len(V.event(event_data(context={str(i): "x" for i in range(4)}), NOW).context) == 4
    rejects(V.event, event_data(context={"k": "v" * (MAX_ENTRY_LENGTH + 1)}), NOW,
            error_type="too_long", names="'context'")
    rejects(V.event, event_data(context={"k" * (MAX_ENTRY_LENGTH + 1): "v"}), NOW,
            error_type="too_long", names="'context'")


# -- items and users -------------------------------------------------------------------------


def test_valid_item_and_defaults():
    assert V.item({"item_id": "i1"}) == ItemUpdate("i1", True, (), {}, None)
    assert V.item({"item_id": "i1", "available": None, "categories": None, "attributes": None,
                   "text": None, "new_field": 1}) == ItemUpdate("i1")
    item = V.item({"item_id": "i1", "available": False, "categories": ["a", "b"],
                   "attributes": {"brand": "acme"}, "text": "hello"})
    assert item == ItemUpdate("i1", False, ("a", "b"), {"brand": "acme"}, "hello")


@pytest.mark.parametrize("field, bad, error_type", [
    ("item_id", None, "missing_field"), ("item_id", 5, "wrong_type"), ("item_id", "", "invalid_value"),
    ("item_id", "i" * 17, "too_long"), ("available", "true", "wrong_type"), ("available", 1, "wrong_type"),
    ("categories", "shoes", "wrong_type"), ("categories", ["a", 1], "wrong_type"),
    ("categories", {"a": "b"}, "wrong_type"), ("categories", ["c"] * 5, "too_many_entries"),
    ("categories", ["c" * (MAX_ENTRY_LENGTH + 1)], "too_long"), ("attributes", {"a": 1}, "wrong_type"),
    ("attributes", {str(i): "" for i in range(5)}, "too_many_entries"), ("text", 3, "wrong_type"),
])
def test_item_rejections(field, bad, error_type):
    rejects(V.item, {"item_id": "i1", field: bad}, error_type=error_type, names=f"'{field}'")


def test_valid_user_and_defaults():
    assert V.user({"user_id": "u1"}) == UserProfile("u1", True, {})
    assert V.user({"user_id": "u1", "consent_personalization": False, "attributes": {"s": "vip"}}) \
        == UserProfile("u1", False, {"s": "vip"})


@pytest.mark.parametrize("field, bad, error_type", [
    ("user_id", None, "missing_field"), ("user_id", "", "invalid_value"), ("user_id", "u" * 17, "too_long"),
    ("consent_personalization", "no", "wrong_type"), ("consent_personalization", 0, "wrong_type"),
    ("attributes", [], "wrong_type"), ("attributes", {str(i): "" for i in range(5)}, "too_many_entries"),
])
def test_user_rejections(field, bad, error_type):
    rejects(V.user, {"user_id": "u1", field: bad}, error_type=error_type, names=f"'{field}'")


# -- the user's own controls (users schema 0.2) ------------------------------------------------


def test_user_controls_are_parsed_and_default_when_absent():
    assert V.user({"user_id": "u1"}).controls is DEFAULT_CONTROLS
    assert V.user({"user_id": "u1", "muted_items": [], "muted_categories": None,
                   "personalization_strength": 1, "novelty": 0.5}).controls is DEFAULT_CONTROLS
    profile = V.user({"user_id": "u1", "muted_items": ["i1", "i2", "i1"],
                      "muted_categories": ["shoes"], "personalization_strength": 0,
                      "novelty": 0.9, "reset_history": True})
    assert profile.controls == UserControls(frozenset({"i1", "i2"}), frozenset({"shoes"}), 0.0, 0.9)
    assert type(profile.controls.personalization) is float
    assert profile.reset_history and not profile.forget
    assert V.user({"user_id": "u1", "novelty": 1}).controls.novelty == 1.0


@pytest.mark.parametrize("field, bad, error_type", [
    ("muted_items", "i1", "wrong_type"), ("muted_items", {"i1": "x"}, "wrong_type"),
    ("muted_items", [1], "wrong_type"), ("muted_items", [""], "invalid_value"),
    ("muted_items", ["i" * 17], "too_long"), ("muted_items", [f"i{n}" for n in range(5)],
                                              "too_many_entries"),
    ("muted_categories", "shoes", "wrong_type"), ("muted_categories", [None], "wrong_type"),
    ("muted_categories", ["c" * (MAX_ENTRY_LENGTH + 1)], "too_long"),
    ("muted_categories", ["c"] * 5, "too_many_entries"),
    ("personalization_strength", math.nan, "invalid_value"),
    ("personalization_strength", -0.1, "invalid_value"),
    ("personalization_strength", 2, "invalid_value"),
    ("personalization_strength", True, "wrong_type"), ("personalization_strength", "1", "wrong_type"),
    ("novelty", math.inf, "invalid_value"), ("novelty", 1.0000001, "invalid_value"),
    ("novelty", 10 ** 400, "invalid_value"), ("novelty", [0.5], "wrong_type"),
    ("reset_history", "yes", "wrong_type"), ("reset_history", 1, "wrong_type"),
])
def test_user_control_rejections(field, bad, error_type):
    rejects(V.user, {"user_id": "u1", field: bad}, error_type=error_type, names=f"'{field}'")


@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_parse_user_controls_json_and_avro(fmt):
    record = {"user_id": "u1", "consent_personalization": False, "muted_items": ["i7"],
              "muted_categories": ["hats", "bags"], "personalization_strength": 0.25,
              "novelty": 0.75, "reset_history": True}
    value, headers = encode("user", record, fmt)
    profile = parse_user(b"u1", value, headers, V)
    assert profile == UserProfile("u1", False, {}, False,
                                  UserControls(frozenset({"i7"}), frozenset({"hats", "bags"}),
                                               0.25, 0.75), True)


def test_nan_strength_from_avro_is_rejected():
    """JSON has no NaN, but an Avro double can carry one: it must not reach the ranker."""
    value, headers = encode("user", {"user_id": "u1", "personalization_strength": math.nan}, "avro")
    rejects(parse_user, b"u1", value, headers, V, error_type="invalid_value",
            names="'personalization_strength'")


# -- parse_* : size -> decode -> validate -> key ----------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_parse_event_json_and_avro(fmt):
    event = Event("e1", "u1", "i1", "purchase", NOW, 19.99, {"locale": "de"}, "r1")
    value, headers = encode_event(event, fmt)
    assert parse_event(b"u1", value, headers, V, NOW) == event
    assert parse_event("u1", value, headers, V, NOW) == event  # str keys are fine too


@pytest.mark.parametrize("value", [None, b""])
def test_empty_event_is_rejected_and_empty_user_is_a_forget_tombstone(value):
    rejects(parse_event, b"u1", value, None, V, NOW, error_type="empty", names="event value")
    assert parse_user(b"u1", value, None, V) == UserProfile("u1", forget=True)
    rejects(parse_user, None, value, None, V, error_type="key_mismatch", names="no key")
    rejects(parse_user, b"\xff", value, None, V, error_type="invalid_utf8", names="UTF-8")


def test_oversized_is_checked_before_decoding():
    garbage = b"\xff" * (SETTINGS.max_record_bytes + 1)  # would be invalid_utf8 if decoded
    rejects(parse_event, b"u1", garbage, None, V, NOW, error_type="oversized", names="2001 bytes")
    rejects(parse_item, b"i1", garbage, None, V, error_type="oversized", names="item value")
    rejects(parse_user, b"u1", garbage, None, V, error_type="oversized", names="user value")
    just_fits = json_bytes(event_data(context={"k": "v" * 1000}))
    assert len(just_fits) <= SETTINGS.max_record_bytes
    assert parse_event(b"u1", just_fits, None, V, NOW).user_id == "u1"


def test_parse_event_surfaces_decode_errors():
    rejects(parse_event, b"u1", b"\x80abc", None, V, NOW, error_type="invalid_utf8", names="UTF-8")
    rejects(parse_event, b"u1", b"{", None, V, NOW, error_type="invalid_json", names="JSON")
    rejects(parse_event, b"u1", b"[]", None, V, NOW, error_type="not_an_object", names="object")
    rejects(parse_event, b"u1", b"\x00\x00\x00\x00\x01\x02", None, V, NOW,
            error_type="invalid_avro", names="Avro")


@pytest.mark.parametrize("key", [b"u2", b"", None, b"U1", "u2"])
def test_events_must_be_keyed_by_user_id(key):
    err = rejects(parse_event, key, json_bytes(event_data()), None, V, NOW,
                  error_type="key_mismatch", names="user_id")
    assert "one partition" in err.reason


def test_users_must_be_keyed_by_user_id():
    rejects(parse_user, b"u2", b'{"user_id": "u1"}', None, V, error_type="key_mismatch", names="user_id")
    rejects(parse_user, None, b'{"user_id": "u1"}', None, V, error_type="key_mismatch", names="no key")
    assert parse_user(b"u1", b'{"user_id": "u1"}', None, V) == UserProfile("u1")


def test_non_ascii_ids_compare_as_utf8():
    value = json_bytes(event_data(user_id="ü-1"))
    assert parse_event("ü-1".encode(), value, None, V, NOW).user_id == "ü-1"
    rejects(parse_event, "ü-1".encode("latin-1"), value, None, V, NOW, error_type="key_mismatch",
            names="user_id")


def test_parse_item_upsert_and_tombstones():
    value, headers = encode("item", {"item_id": "i1", "categories": ["x"]}, "avro")
    assert parse_item(b"i1", value, headers, V) == ItemUpdate("i1", categories=("x",))
    assert parse_item(b"i1", None, None, V) is None
    assert parse_item(b"i1", b"", None, V) is None
    rejects(parse_item, b"i2", value, headers, V, error_type="key_mismatch", names="item_id")
    rejects(parse_item, None, None, None, V, error_type="key_mismatch", names="no key")
    rejects(parse_item, b"", None, None, V, error_type="key_mismatch", names="no key")
    rejects(parse_item, b"\xff", None, None, V, error_type="invalid_utf8", names="key")
    rejects(parse_item, b"i" * 17, None, None, V, error_type="too_long", names="'key'")


# -- properties ------------------------------------------------------------------------------

_headers = st.sampled_from([None, [], [("content-type", b"application/json")],
                            [("content-type", b"application/avro")], [("Content-Type", b"avro/binary")],
                            {"content-type": "text/plain"}])


@hsettings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.none() | st.binary(max_size=8), headers=_headers,
       value=st.none() | st.binary(max_size=64) | st.binary(max_size=64).map(lambda b: b"\x00" + b))
def test_random_bytes_only_ever_raise_invalid_record(key, value, headers):
    try:
        event = parse_event(key, value, headers, V, NOW)
    except InvalidRecord as err:
        assert err.error_type and err.reason
    else:
        assert isinstance(event, Event)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)
_event_like = st.fixed_dictionaries({}, optional={
    "event_id": _json | st.text(max_size=20), "user_id": st.just("u1") | _json,
    "item_id": _json | st.just("i1"), "event_type": st.sampled_from(EVENT_TYPES) | _json,
    "timestamp": st.just(NOW) | _json, "value": _json, "context": _json,
    "recommendation_id": _json,
})


@hsettings(max_examples=1000, deadline=None)
@given(data=_event_like, fmt=st.sampled_from(["json", "avro"]))
def test_random_event_shaped_records_only_ever_raise_invalid_record(data, fmt):
    if fmt == "json":
        try:
            value = orjson.dumps(data)
        except (TypeError, orjson.JSONEncodeError):  # e.g. integers beyond 64 bits
            return
        headers = None
    else:
        try:
            value, headers = encode("event", data, "avro")
        except Exception:  # not encodable: fastavro refuses it, fine
            return
    try:
        parse_event(b"u1", value, headers, V, NOW)
    except InvalidRecord as err:
        assert err.error_type and err.reason
