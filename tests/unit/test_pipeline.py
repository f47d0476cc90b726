"""Pipeline: the per-record logic of a worker, exercised without Kafka."""

from __future__ import annotations

import orjson

from streams.codecs import encode, encode_event
from streams.pipeline import (Pipeline, RawRecord, controls_from_profile, profile_to_dict,
                              recommendation_id_for)
from streams.ranking import Recommender
from streams.records import DEFAULT_CONTROLS, Event, UserControls, UserProfile
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


# -- controls, feedback and challengers (issue #6) ----------------------------------------------


class FeedbackStats:
    """Stands in for the ranker's feedback counters (``Recommender.selector.stats()``)."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(("rewards", "reward_upgrades", "resolved", "resolved_early",
                                     "zero_rewards"), 0)

    def stats(self) -> dict:
        return dict(self.counts)


class SpyRecommender(Recommender):
    """The real recommender, recording what the pipeline asks of the feedback/controls API;
    it attributes a reward when feedback names a list it served and an item of that list."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.calls: list[tuple[str, dict]] = []
        self.expire_now: list[int] = []
        self.reset: list[str] = []
        self.served: dict[str, set[str]] = {}
        self.feedback = FeedbackStats()
        self.bursts_skipped = 0

    @property
    def selector(self) -> FeedbackStats:
        return self.feedback

    def recommend(self, user_id, state, context=None, k=10, personalized=True, *,
                  controls=None, recommendation_id=None, explore=True):
        self.calls.append(("recommend", {"user_id": user_id, "personalized": personalized,
                                         "controls": controls,
                                         "recommendation_id": recommendation_id}))
        items = Recommender.recommend(self, user_id, state, context, k + 30, personalized)
        controls = controls or DEFAULT_CONTROLS
        items = [i for i in items if i.item_id not in controls.muted_items][:k]
        self.served[recommendation_id] = {i.item_id for i in items}
        return items

    def learn_one(self, event, state=None):
        super().learn_one(event, state)
        if event.item_id in self.served.get(event.recommendation_id, ()):
            self.feedback.counts["rewards"] += 1

    def challenger_lists(self, user_id, state, context, k, controls=None, *, personalized=True):
        self.calls.append(("challengers", {"user_id": user_id, "controls": controls, "k": k,
                                           "personalized": personalized}))
        return {"popularity": ["i3", "i4"], "champion": ["ignored"]}

    def close_expired(self, now_ms):
        self.expire_now.append(now_ms)
        self.feedback.counts["resolved"] += 2
        self.feedback.counts["zero_rewards"] += 5
        return 2

    def reset_user(self, user_id):
        self.reset.append(user_id)
        super().forget_user(user_id)


def spy_pipeline(**settings) -> tuple[Pipeline, SpyRecommender, dict, dict]:
    s = Settings.from_env({}, **settings)
    spy = SpyRecommender(s)
    pipeline = Pipeline(s, recommender=spy, clock=lambda: NOW)
    seed_catalog(pipeline)
    return pipeline, spy, {}, {}


def user_record(data: dict, fmt: str = "json", offset: int = 0, timestamp_ms=None) -> RawRecord:
    value, headers = encode("user", data, fmt)
    return RawRecord("users", 0, offset, data["user_id"].encode(), value, headers, timestamp_ms)


def test_profile_keeps_controls_and_the_next_recommendation_gets_them():
    pipeline, spy, states, profiles = spy_pipeline(top_k="5")
    profile, dead = pipeline.process_user(user_record(
        {"user_id": "u1", "muted_items": ["i0", "i2"], "muted_categories": ["c1"],
         "personalization_strength": 0.5, "novelty": 0.9}, fmt="avro"))
    assert dead is None
    profiles["u1"] = orjson.loads(orjson.dumps(profile_to_dict(profile, NOW)))  # as the table
    outcome = run(pipeline, states, profiles, record(Event("e1", "u1", "i1", "click", NOW)))
    name, call = spy.calls[0]
    assert name == "recommend"
    assert call["controls"] == UserControls(frozenset({"i0", "i2"}), frozenset({"c1"}), 0.5, 0.9)
    assert call["personalized"] is True
    assert call["recommendation_id"] == recommendation_id_for("e1")
    assert outcome.recommendation.recommendation_id == call["recommendation_id"]
    assert outcome.recommendation.strategy == "champion"
    assert {"i0", "i2"}.isdisjoint(i.item_id for i in outcome.recommendation.items)


def test_profile_without_controls_stores_none_and_reads_back_defaults():
    stored = profile_to_dict(UserProfile("u1", attributes={"tier": "gold"}), NOW)
    assert "controls" not in stored
    assert controls_from_profile(stored) is DEFAULT_CONTROLS
    assert controls_from_profile(None) is DEFAULT_CONTROLS


def test_reset_and_forget_flags_are_never_stored_in_the_profile():
    profile = UserProfile("u1", reset_history=True, forget=True,
                          controls=UserControls(frozenset({"i1"})))
    stored = profile_to_dict(profile, NOW)
    assert set(stored) == {"consent_personalization", "attributes", "updated_at", "controls"}
    assert "reset_history" not in orjson.dumps(stored).decode()


def test_strength_zero_is_non_personalized_but_still_learned_from():
    pipeline, spy, states, profiles = spy_pipeline()
    controls = UserControls(personalization=0.0)
    profiles["u1"] = profile_to_dict(UserProfile("u1", controls=controls), NOW)
    learned = spy.n_learned
    outcome = run(pipeline, states, profiles, record(Event("e1", "u1", "i1", "click", NOW)))
    assert spy.n_learned == learned + 1
    assert spy.calls[0][1]["personalized"] is False and not outcome.personalized
    assert all(item.source == "popularity" for item in outcome.recommendation.items)


def test_no_consent_is_neither_learned_nor_personalized_and_challengers_follow():
    pipeline, spy, states, profiles = spy_pipeline()
    profiles["u1"] = {"consent_personalization": False}
    learned = spy.n_learned
    outcome = run(pipeline, states, profiles, record(Event("e1", "u1", "i1", "click", NOW)))
    assert spy.n_learned == learned
    challengers = [call for name, call in spy.calls if name == "challengers"]
    assert challengers[0]["personalized"] is False
    assert outcome.challengers == {"popularity": ["i3", "i4"]}  # the champion's name is dropped


def test_challengers_are_computed_per_trigger_only():
    pipeline, spy, states, profiles = spy_pipeline(top_k="4")
    run(pipeline, states, profiles, record(Event("e1", "u1", "i1", "purchase", NOW)))  # no trigger
    assert not [c for c in spy.calls if c[0] == "challengers"]
    outcome = run(pipeline, states, profiles, record(Event("e2", "u1", "i2", "view", NOW), 1))
    assert [c[1]["k"] for c in spy.calls if c[0] == "challengers"] == [4]
    assert outcome.challengers == {"popularity": ["i3", "i4"]}


def test_attributed_rewards_are_counted_by_type_and_windows_close_on_event_time():
    pipeline, spy, states, profiles = spy_pipeline()
    t0 = NOW - 10_000
    first = run(pipeline, states, profiles, record(Event("e1", "u1", "i1", "view", t0)))
    rid = first.recommendation.recommendation_id
    assert spy.calls[0][1]["recommendation_id"] == rid  # the ranker remembers the impression
    item = first.recommendation.items[0].item_id
    run(pipeline, states, profiles, record(Event("e2", "u1", item, "click", t0 + 10,
                                                 recommendation_id=rid), 1))
    run(pipeline, states, profiles, record(Event("e3", "u1", item, "purchase", t0 + 20,
                                                 recommendation_id=rid), 2))
    run(pipeline, states, profiles, record(Event("e4", "u1", item, "view", t0 + 30,
                                                 recommendation_id=rid), 3))  # no reward type
    run(pipeline, states, profiles, record(Event("e4b", "u1", "i1", "click", t0 + 40,
                                                 recommendation_id=rid), 4))  # not in the list
    run(pipeline, states, profiles, record(Event("e4c", "u1", item, "click", t0 + 50,
                                                 recommendation_id="unknown"), 5))
    assert spy.expire_now == [t0]  # at most once per second of event time
    run(pipeline, states, profiles, record(Event("e5", "u1", "i9", "view", t0 + 1_500), 4))
    far_future = NOW + 3_600_000  # capped by the clock: cannot close everybody's windows
    run(pipeline, states, profiles, record(Event("e6", "u1", "i8", "view", far_future), 5))
    assert spy.expire_now == [t0, t0 + 1_500, NOW]
    stats = pipeline.stats()
    assert stats["rewards:click"] == 1 and stats["rewards:purchase"] == 1
    assert "rewards:view" not in stats
    assert stats["expired"] == 6 and stats["zero_rewards"] == 15 and stats["bursts_skipped"] == 0
    assert pipeline.tick(NOW + 5_000) == 2 and pipeline.stats()["expired"] == 8


def test_duplicate_feedback_is_not_a_second_reward():
    pipeline, _, states, profiles = spy_pipeline()
    first = run(pipeline, states, profiles, record(Event("e1", "u1", "i1", "view", NOW)))
    rid = first.recommendation.recommendation_id
    item = first.recommendation.items[0].item_id
    click = record(Event("e2", "u1", item, "click", NOW, recommendation_id=rid), 1)
    run(pipeline, states, profiles, click)
    run(pipeline, states, profiles, click)  # redelivered: not applied, not learned
    assert pipeline.stats()["rewards:click"] == 1


def test_replicated_reset_clears_learners_and_a_replayed_old_one_is_skipped():
    pipeline, spy, states, profiles = spy_pipeline()
    run(pipeline, states, profiles, record(Event("e1", "u1", "i1", "click", NOW)))
    assert spy.content.knows_user("u1")
    assert pipeline.replicate_user(user_record({"user_id": "u1", "attributes": {}})) is None
    reset = {"user_id": "u1", "reset_history": True}
    assert pipeline.replicate_user(user_record(reset, timestamp_ms=NOW)) == ("reset", "u1")
    assert spy.reset == ["u1"] and not spy.content.knows_user("u1")
    pipeline.reset_replay_before_ms = NOW + 1  # after a restart: the model already reflects it
    assert pipeline.replicate_user(user_record(reset, timestamp_ms=NOW)) is None
    assert pipeline.replicate_user(user_record(reset, timestamp_ms=NOW + 1)) == ("reset", "u1")
    assert pipeline.replicate_user(user_record(reset)) == ("reset", "u1")  # no timestamp: apply
    forget = user_record({"user_id": "u1", "forget": True}, timestamp_ms=0)
    assert pipeline.replicate_user(forget) == ("forget", "u1")  # a forget always applies
    assert pipeline.apply_forget(forget) == "u1"
    bad = RawRecord("users", 0, 9, b"u1", b"{", None)
    assert pipeline.replicate_user(bad) is None
