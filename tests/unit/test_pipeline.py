"""Pipeline: the per-record logic of a worker, exercised without Kafka."""

from __future__ import annotations

import orjson

from streams.codecs import encode, encode_event
from streams.pipeline import Pipeline, RawRecord, recommendation_id_for
from streams.records import Event
from streams.settings import Settings

NOW = 1_800_000_000_000


def make_pipeline(**settings) -> tuple[Pipeline, dict, dict]:
    pipeline = Pipeline(Settings.from_env({}, **settings), clock=lambda: NOW)
    return pipeline, {}, {}


def record(event: Event, offset: int = 0, fmt: str = "json") -> RawRecord:
    value, headers = encode_event(event, fmt)
    return RawRecord("events", 0, offset, event.user_id.encode(), value, headers)


def run(pipeline: Pipeline, states: dict, profiles: dict, rec: RawRecord):
    outcome = pipeline.process_event(rec, states.get, profiles.get)
    if outcome.applied:
        states[outcome.user_id] = orjson.loads(orjson.dumps(outcome.state.to_dict()))
    return outcome


def seed_catalog(pipeline: Pipeline, n: int = 30) -> None:
    for i in range(n):
        value, headers = encode("item", {"item_id": f"i{i}", "categories": [f"c{i % 3}"]}, "json")
        assert pipeline.apply_item(RawRecord("items", 0, i, f"i{i}".encode(), value, headers))


def test_trigger_event_learns_and_recommends_with_deterministic_id():
    pipeline, states, profiles = make_pipeline(top_k="5")
    seed_catalog(pipeline)
    before = pipeline.recommender.model_version
    outcome = run(pipeline, states, profiles, record(Event("e1", "u1", "i1", "click", NOW)))
    assert outcome.applied and outcome.dead_letter is None
    assert pipeline.recommender.model_version != before
    rec = outcome.recommendation
    assert rec is not None and rec.user_id == "u1" and rec.trigger_event_id == "e1"
    assert rec.recommendation_id == recommendation_id_for("e1")
    assert len(rec.items) == 5 and "i1" not in [i.item_id for i in rec.items]
    assert rec.event_timestamp == NOW and rec.created_at == NOW
    assert states["u1"]["event_count"] == 1


def test_non_trigger_event_emits_nothing_but_updates_state():
    pipeline, states, profiles = make_pipeline()
    seed_catalog(pipeline)
    outcome = run(pipeline, states, profiles, record(Event("e1", "u1", "i1", "purchase", NOW)))
    assert outcome.applied and outcome.recommendation is None
    assert states["u1"]["purchased"] == ["i1"]


def test_redelivery_is_not_applied_or_learned_twice_but_recommendation_is_reemitted():
    pipeline, states, profiles = make_pipeline()
    seed_catalog(pipeline)
    first = run(pipeline, states, profiles, record(Event("e1", "u1", "i1", "view", NOW)))
    learned = pipeline.recommender.n_learned
    again = run(pipeline, states, profiles, record(Event("e1", "u1", "i1", "view", NOW), offset=1))
    assert not again.applied
    assert pipeline.recommender.n_learned == learned
    assert states["u1"]["event_count"] == 1
    assert again.recommendation.recommendation_id == first.recommendation.recommendation_id


def test_invalid_event_becomes_a_dead_letter_with_original_bytes():
    pipeline, states, profiles = make_pipeline()
    raw = RawRecord("events", 2, 41, b"u1", b'{"event_id": 1}', None)
    outcome = run(pipeline, states, profiles, raw)
    dead = outcome.dead_letter
    assert dead is not None and not outcome.applied and outcome.recommendation is None
    assert (dead.topic, dead.partition, dead.offset) == ("events", 2, 41)
    assert dead.value == b'{"event_id": 1}' and dead.key == b"u1"
    assert dead.error_type in {"missing_field", "wrong_type"} and dead.reason
    assert states == {}


def test_opted_out_user_is_not_learned_from_and_gets_non_personalized_items():
    pipeline, states, profiles = make_pipeline()
    seed_catalog(pipeline)
    profiles["u1"] = {"consent_personalization": False}
    learned = pipeline.recommender.n_learned
    outcome = run(pipeline, states, profiles, record(Event("e1", "u1", "i1", "click", NOW)))
    assert pipeline.recommender.n_learned == learned
    assert outcome.recommendation is not None
    assert all(item.source != "collaborative" for item in outcome.recommendation.items)


def test_avro_and_json_events_have_the_same_effect():
    results = []
    for fmt in ("json", "avro"):
        pipeline, states, profiles = make_pipeline()
        seed_catalog(pipeline)
        run(pipeline, states, profiles, record(Event("e1", "u1", "i1", "click", NOW,
                                                     context={"device": "ios"}), fmt=fmt))
        results.append(states["u1"])
    assert results[0] == results[1]


def test_catalog_tombstone_removes_item_from_recommendations():
    pipeline, states, profiles = make_pipeline(top_k="30")
    seed_catalog(pipeline)
    assert pipeline.apply_item(RawRecord("items", 0, 99, b"i7", None))
    outcome = run(pipeline, states, profiles, record(Event("e1", "u1", "i1", "view", NOW)))
    assert "i7" not in [i.item_id for i in outcome.recommendation.items]
    bad = RawRecord("items", 0, 100, b"i8", b"[1,2]")
    item, dead = pipeline.process_item(bad)
    assert item is None and dead is not None and dead.error_type == "not_an_object"
