"""Wire formats: schemas, per-record format detection, JSON/Avro round trips, bad bytes."""

from __future__ import annotations

import base64
import json
import struct

import avro.schema
import fastavro
import orjson
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from streams import codecs
from streams.codecs import (
    SCHEMA_KINDS,
    decode,
    decode_dead_letter,
    decode_recommendation,
    detect_format,
    encode,
    encode_dead_letter,
    encode_event,
    encode_recommendation,
    load_schema,
    schema_dir,
)
from streams.errors import DecodeError, InvalidRecord
from streams.records import EVENT_TYPES, DeadLetter, Event, Recommendation, RecommendedItem
from streams.settings import Settings
from streams.validation import Validator, parse_event

NOW = 1_700_000_000_000
CONFLUENT_PREFIX = b"\x00" + struct.pack(">I", 42)  # magic byte + schema id 42
AVRO_HEADER = [("content-type", b"application/avro")]

# One full record of every kind, as the decoder should return it (all fields present).
SAMPLES: dict[str, dict] = {
    "event": {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "rating",
              "timestamp": NOW, "value": 4.5, "context": {"device": "ios", "locale": "fr-FR"},
              "recommendation_id": "r0"},
    "item": {"item_id": "i1", "available": False, "categories": ["shoes", "red"],
             "attributes": {"brand": "acme"}, "text": "Red shoes"},
    "user": {"user_id": "u1", "consent_personalization": False, "attributes": {"segment": "vip"},
             "forget": False, "muted_items": ["i9"], "muted_categories": ["hats"],
             "personalization_strength": 0.25, "novelty": 0.75, "reset_history": False},
    "recommendation": {"recommendation_id": "r1", "user_id": "u1", "trigger_event_id": "e1",
                       "items": [{"item_id": "i2", "score": 0.75, "reason": "similar to i1",
                                  "source": "similar", "propensity": 0.5}],
                       "model_version": "v1", "created_at": NOW + 5, "event_timestamp": NOW,
                       "context": {"page": "home"}, "strategy": "champion"},
    "dead_letter": {"topic": "events", "partition": 3, "offset": 12345, "key": b"u1",
                    "value": b"\xff\x00not json", "reason": "not valid UTF-8",
                    "error_type": "invalid_utf8", "failed_at": NOW},
    "decision_request": {"decision_id": "d1", "decision_point": "hero", "user_id": "u1",
                         "context": {"device": "ios", "hour": 20.0},
                         "actions": [{"id": "a1", "features": {"tone": "warm", "size": 2.0}}],
                         "action_set": None, "slots": 1, "baseline_action": "a1",
                         "timestamp": NOW},
    "decision": {"decision_id": "d1", "decision_point": "hero", "user_id": "u1",
                 "actions": [{"id": "a1", "probability": 1.0, "reason": "only action",
                              "slot_probability": 1.0}],
                 "policy_version": "linucb@0", "slots": 1, "apprentice": False,
                 "created_at": NOW},
    "reward": {"decision_id": "d1", "value": 1.0, "timestamp": NOW, "action_id": None},
}


def _all_records(schema):
    """Every record schema inside ``schema`` (nested records included)."""
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            yield schema
            for f in schema["fields"]:
                yield from _all_records(f["type"])
        elif schema.get("type") in ("array", "map"):
            yield from _all_records(schema.get("items", schema.get("values")))
    elif isinstance(schema, list):
        for branch in schema:
            yield from _all_records(branch)


# -- schema files ----------------------------------------------------------------------------


def test_schema_dir_has_exactly_the_known_kinds():
    assert schema_dir().is_dir()
    assert sorted(p.stem for p in schema_dir().glob("*.avsc")) == sorted(SCHEMA_KINDS)


@pytest.mark.parametrize("kind", SCHEMA_KINDS)
def test_schema_parses_with_avro_and_fastavro(kind):
    text = (schema_dir() / f"{kind}.avsc").read_text()
    parsed = avro.schema.parse(text)
    assert parsed.namespace == "io.micromoment"
    assert fastavro.parse_schema(json.loads(text))["name"].startswith("io.micromoment.")
    assert load_schema(kind)["name"] == parsed.fullname


@pytest.mark.parametrize("kind", SCHEMA_KINDS)
def test_every_record_and_field_is_documented_and_optional_fields_default(kind):
    schema = json.loads((schema_dir() / f"{kind}.avsc").read_text())
    records = list(_all_records(schema))
    assert records
    for record in records:
        assert record.get("doc", "").strip(), f"record {record['name']} has no doc"
        for f in record["fields"]:
            where = f"{record['name']}.{f['name']}"
            assert f.get("doc", "").strip(), f"{where} has no doc"
            t = f["type"]
            if isinstance(t, list):
                assert t[0] == "null", f"{where}: optional unions must list null first"
                assert "default" in f and f["default"] is None, f"{where}: optional needs default null"
            elif isinstance(t, dict) and t.get("type") == "map":
                assert f.get("default") == {}, f"{where}: maps default to {{}}"
            elif isinstance(t, dict) and t.get("type") == "array":
                assert f.get("default") == [], f"{where}: arrays default to []"


def test_event_type_is_a_string_and_its_doc_lists_every_type():
    fields = {f["name"]: f for f in json.loads((schema_dir() / "event.avsc").read_text())["fields"]}
    assert fields["event_type"]["type"] == "string"
    for event_type in EVENT_TYPES:
        assert event_type in fields["event_type"]["doc"]
    assert fields["timestamp"]["type"] == {"type": "long", "logicalType": "timestamp-millis"}


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown schema kind"):
        load_schema("order")


# -- format detection ------------------------------------------------------------------------


@pytest.mark.parametrize("value, headers, expected", [
    (b'{"a":1}', None, "json"),
    (b'{"a":1}', [], "json"),
    (b"\x00\x00\x00\x00\x01\x02u", None, "avro-confluent"),
    (b"\x02u", None, "json"),  # unframed Avro without header is NOT detected
    (b"\x02u", [("content-type", b"application/avro")], "avro"),
    (b"\x02u", [("Content-Type", b"avro/binary")], "avro"),
    (b"\x02u", [(b"CONTENT-TYPE", "application/avro")], "avro"),
    (b"\x02u", {"content-type": b"application/avro"}, "avro"),
    (b"\x00\x00\x00\x00\x01\x02u", [("content-type", b"application/avro")], "avro-confluent"),
    (b"\x00\x02", [("content-type", b"application/avro")], "avro"),  # too short to be framed
    (b"\x00\x00\x00\x00\x01", [("content-type", b"application/json")], "json"),
    (b'{"a":1}', [("content-type", b"Application/JSON; charset=utf-8")], "json"),
    (b'{"a":1}', [("x-trace", b"abc"), ("content-type", None)], "json"),
    (b"\x00\x00\x00\x00\x01", [("content-type", b"text/plain")], "avro-confluent"),  # unknown: sniff
])
def test_detect_format(value, headers, expected):
    assert detect_format(value, headers) == expected


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SCHEMA_KINDS)
def test_json_round_trip(kind):
    value, headers = encode(kind, SAMPLES[kind], "json")
    assert headers == [("content-type", b"application/json")]
    assert decode(kind, value, headers) == SAMPLES[kind]
    assert decode(kind, value) == SAMPLES[kind]  # JSON is the no-header default


@pytest.mark.parametrize("kind", SCHEMA_KINDS)
def test_avro_round_trip_with_header(kind):
    value, headers = encode(kind, SAMPLES[kind], "avro")
    assert headers == [("content-type", b"application/avro")]
    assert value != encode(kind, SAMPLES[kind], "json")[0]
    assert decode(kind, value, headers) == SAMPLES[kind]


@pytest.mark.parametrize("kind", SCHEMA_KINDS)
@pytest.mark.parametrize("headers", [None, AVRO_HEADER])
def test_avro_round_trip_confluent_framed(kind, headers):
    value, _ = encode(kind, SAMPLES[kind], "avro")
    assert decode(kind, CONFLUENT_PREFIX + value, headers) == SAMPLES[kind]


def test_avro_fills_defaults_and_keeps_timestamps_as_int():
    value, headers = encode("event", {"event_id": "e1", "user_id": "u1", "event_type": "view",
                                      "timestamp": NOW}, "avro")
    data = decode("event", value, headers)
    assert data == {"event_id": "e1", "user_id": "u1", "item_id": None, "event_type": "view",
                    "timestamp": NOW, "value": None, "context": {}, "recommendation_id": None}
    assert type(data["timestamp"]) is int  # not a datetime: logicalType is dropped on the hot path


def test_our_avro_is_readable_by_the_reference_avro_package():
    import io

    import avro.io

    value, _ = encode("event", SAMPLES["event"], "avro")
    reader = avro.io.DatumReader(codecs.avro_schema("event"))
    data = reader.read(avro.io.BinaryDecoder(io.BytesIO(value)))
    assert data["event_id"] == "e1" and data["context"] == {"device": "ios", "locale": "fr-FR"}


def test_encode_event_recommendation_dead_letter():
    event = Event("e1", "u1", None, "recommendation_request", NOW, None, {"page": "home"}, None)
    value, headers = encode_event(event, "json")
    assert orjson.loads(value) == {"event_id": "e1", "user_id": "u1", "item_id": None,
                                   "event_type": "recommendation_request", "timestamp": NOW,
                                   "value": None, "context": {"page": "home"},
                                   "recommendation_id": None}
    value, headers = encode_event(event, "avro")
    assert decode("event", value, headers)["context"] == {"page": "home"}

    rec = Recommendation("r1", "u1", "e1", (RecommendedItem("i1", 1.5, "popular now", "popularity"),),
                         "v1", NOW + 3, NOW, {"page": "home"})
    for fmt in ("json", "avro"):
        assert decode_recommendation(*encode_recommendation(rec, fmt)) == rec.to_dict()

    dl = DeadLetter("items", 1, 9, None, b"\x00\x01\xfe", "bad", "invalid_avro", NOW)
    for fmt in ("json", "avro"):
        assert decode_dead_letter(*encode_dead_letter(dl, fmt)) == dl.to_dict()


def test_dead_letter_bytes_are_standard_base64_in_json():
    value, _ = encode_dead_letter(DeadLetter("events", 0, 1, b"\xfb\xff", b"{}", "r", "invalid_json", NOW))
    raw = orjson.loads(value)
    assert raw["key"] == "+/8=" == base64.b64encode(b"\xfb\xff").decode()
    assert raw["value"] == "e30="


def test_dead_letter_json_with_bad_base64_is_rejected():
    good = orjson.loads(encode("dead_letter", SAMPLES["dead_letter"], "json")[0])
    with pytest.raises(InvalidRecord) as err:
        decode_dead_letter(orjson.dumps({**good, "value": "not base64!"}))
    assert err.value.error_type == "invalid_value" and "'value'" in err.value.reason
    with pytest.raises(InvalidRecord) as err:
        decode_dead_letter(orjson.dumps({**good, "key": 12}))
    assert err.value.error_type == "wrong_type" and "'key'" in err.value.reason


def test_encode_rejects_unknown_format():
    with pytest.raises(ValueError, match="wire format"):
        encode("user", SAMPLES["user"], "protobuf")


# -- bad bytes -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SCHEMA_KINDS)
def test_truncated_avro_is_rejected(kind):
    value, headers = encode(kind, SAMPLES[kind], "avro")
    for n in range(len(value)):
        with pytest.raises(DecodeError) as err:
            decode(kind, value[:n], headers)
        assert err.value.error_type == "invalid_avro", n
        framed = CONFLUENT_PREFIX + value[:n]
        with pytest.raises(DecodeError) as err:
            decode(kind, framed)
        assert err.value.error_type == "invalid_avro", n


@pytest.mark.parametrize("kind", SCHEMA_KINDS)
def test_trailing_bytes_after_avro_are_rejected(kind):
    value, headers = encode(kind, SAMPLES[kind], "avro")
    with pytest.raises(DecodeError) as err:
        decode(kind, value + b"\x00", headers)
    assert err.value.error_type == "invalid_avro"
    assert "1 trailing bytes" in err.value.reason
    with pytest.raises(DecodeError) as err:
        decode(kind, CONFLUENT_PREFIX + value + b"junk")
    assert err.value.error_type == "invalid_avro" and "4 trailing bytes" in err.value.reason


def test_confluent_frame_too_short():
    with pytest.raises(DecodeError) as err:
        decode("event", b"\x00\x00\x01")
    assert err.value.error_type == "invalid_avro" and "Confluent" in err.value.reason


def test_invalid_utf8_in_avro_string():
    value, headers = encode("user", {"user_id": "ab"}, "avro")
    assert value.startswith(b"\x04ab")
    with pytest.raises(DecodeError) as err:
        decode("user", b"\x04\xff\xfe" + value[3:], headers)
    assert err.value.error_type == "invalid_utf8"


def test_invalid_utf8_json_is_rejected():
    with pytest.raises(DecodeError) as err:
        decode("user", b'{"user_id": "\xff\xfe"}')
    assert err.value.error_type == "invalid_utf8"
    assert "not valid UTF-8" in err.value.reason


@pytest.mark.parametrize("value", [b'{"user_id": ', b"{'user_id': 'u1'}", b"", b'{"a": NaN}',
                                   b'{"a": 1e999}'])
def test_invalid_json_is_rejected(value):
    with pytest.raises(DecodeError) as err:
        decode("user", value)
    assert err.value.error_type == "invalid_json"
    assert "not valid JSON" in err.value.reason


HINT = ("not valid JSON; Avro records must start with the Confluent magic byte 0x00 "
        "or carry the header content-type: application/avro")


def test_undetected_binary_says_how_to_mark_avro():
    value, _ = encode("item", {"item_id": "u1"}, "avro")  # unframed, header dropped
    assert value == b"\x04u1\x01\x00\x00\x00"  # valid UTF-8: fails as JSON, not as UTF-8
    with pytest.raises(DecodeError) as err:
        decode("item", value)
    assert err.value.error_type == "invalid_json"
    assert HINT in str(err.value)
    value, _ = encode("event", SAMPLES["event"], "avro")  # has bytes >= 0x80: not UTF-8
    with pytest.raises(DecodeError) as err:
        decode("event", value)
    assert err.value.error_type == "invalid_utf8"
    assert HINT in str(err.value)


@pytest.mark.parametrize("value, got", [(b"[1, 2]", "array"), (b'"u1"', "string"), (b"null", "null"),
                                        (b"42", "number")])
def test_json_must_be_an_object(value, got):
    with pytest.raises(DecodeError) as err:
        decode("event", value)
    assert err.value.error_type == "not_an_object"
    assert f"got a JSON {got}" in err.value.reason


def test_decode_error_is_an_invalid_record():
    with pytest.raises(InvalidRecord):
        decode("event", b"{")


# -- property: any valid Event survives both formats ------------------------------------------

_SETTINGS = Settings()
_ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=_SETTINGS.max_id_length)
_short = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@st.composite
def valid_events(draw):
    event_type = draw(st.sampled_from(EVENT_TYPES))
    item_id = draw(_ids if event_type != "recommendation_request" else st.none() | _ids)
    return Event(
        event_id=draw(_ids),
        user_id=draw(_ids),
        item_id=item_id,
        event_type=event_type,
        timestamp=draw(st.integers(_SETTINGS.min_timestamp_ms,
                                   NOW + int(_SETTINGS.max_future_skew_s * 1000))),
        value=draw(st.none() | st.floats(allow_nan=False, allow_infinity=False)),
        context=draw(st.dictionaries(_short, _short, max_size=_SETTINGS.max_context_entries)),
        recommendation_id=draw(st.none() | _ids),
    )


@hsettings(max_examples=300, deadline=None)
@given(event=valid_events(), fmt=st.sampled_from(["json", "avro", "avro-confluent"]))
def test_any_valid_event_round_trips(event, fmt):
    value, headers = encode_event(event, "json" if fmt == "json" else "avro")
    if fmt == "avro-confluent":
        value, headers = CONFLUENT_PREFIX + value, None
    key = event.user_id.encode()
    assert parse_event(key, value, headers, Validator(_SETTINGS), NOW) == event


def test_schema_dir_prefers_the_schemas_packaged_in_the_wheel(tmp_path, monkeypatch):
    package = tmp_path / "streams"
    (package / "_schemas").mkdir(parents=True)
    monkeypatch.setattr(codecs, "__file__", str(package / "codecs.py"))
    assert schema_dir() == (package / "_schemas").resolve()
    (package / "_schemas").rmdir()
    assert schema_dir() == (tmp_path / "schemas").resolve()
