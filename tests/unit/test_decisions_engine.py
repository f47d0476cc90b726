"""The decision engine without Kafka: windows, late and missing rewards, dedupe, slots."""

from __future__ import annotations

import pickle

import pytest

from streams.decisions.config import DecisionConfig, PointConfig
from streams.decisions.engine import DecisionEngine
from streams.decisions.records import Action, DecisionRequest, Reward
from streams.errors import InvalidRecord

ACTIONS = (Action("a"), Action("b"), Action("c"))
CONFIG = DecisionConfig({"hero": PointConfig(policy="epsilon-greedy", reward_window_s=10.0,
                                             default_reward=-1.0)})


def req(decision_id: str, user: str = "u1", slots: int = 1) -> DecisionRequest:
    return DecisionRequest(decision_id, "hero", user, ACTIONS, {"device": "mobile"}, slots=slots)


def test_missing_reward_learns_the_default_when_the_window_ends():
    engine = DecisionEngine(CONFIG)
    engine.decide(req("d1"), now_ms=0)
    assert engine.expire(9_999) == 0 and engine.pending_count == 1
    assert engine.expire(10_000) == 1 and engine.pending_count == 0
    point = engine.points["hero"]
    assert (point.rewards_defaulted, point.rewards_received, point.reward_rate) == (1, 0, -1.0)
    assert point.policy.n_learned == 1


def test_late_reward_after_the_window_is_rejected_not_learned():
    engine = DecisionEngine(CONFIG)
    engine.decide(req("d1"), now_ms=0)
    engine.expire(20_000)
    with pytest.raises(InvalidRecord) as late:
        engine.reward(Reward("d1", 1.0), b"u1", now_ms=20_001)
    assert late.value.error_type == "decision_closed" and "expired" in late.value.reason
    assert engine.points["hero"].policy.n_learned == 1  # only the default


def test_reward_inside_the_window_is_learned_once_and_redeliveries_are_duplicates():
    engine = DecisionEngine(CONFIG)
    decision, _ = engine.decide(req("d1"), now_ms=0)
    assert engine.reward(Reward("d1", 1.0, 5), b"u1", now_ms=5_000) == "applied"
    assert engine.reward(Reward("d1", 1.0, 5), b"u1", now_ms=5_001) == "duplicate"
    with pytest.raises(InvalidRecord) as second:  # a different, later reward
        engine.reward(Reward("d1", 0.0, 6), b"u1", now_ms=5_002)
    assert second.value.error_type == "decision_closed"
    engine.expire(100_000)  # nothing left to default
    point = engine.points["hero"]
    assert (point.policy.n_learned, point.rewards_received, point.rewards_defaulted) == (1, 1, 0)
    assert engine.decide(req("d1"), now_ms=6_000) == (None, "duplicate")


def test_a_redelivered_request_gets_the_stored_answer():
    engine = DecisionEngine(CONFIG, seed=1)
    first, status = engine.decide(req("d1"), now_ms=0)
    again, status_again = engine.decide(req("d1"), now_ms=1)
    assert (status, status_again) == ("decided", "resent") and again is first
    assert engine.points["hero"].decisions == 1


def test_unknown_decisions_wrong_keys_and_unknown_actions_are_rejected_with_reasons():
    engine = DecisionEngine(CONFIG)
    engine.decide(req("d1"), now_ms=0)
    cases = [(Reward("nope", 1.0), b"u1", "unknown_decision"),
             (Reward("d1", 1.0), b"u2", "key_mismatch"),
             (Reward("d1", 1.0), None, "key_mismatch"),
             (Reward("d1", 1.0, action_id="zzz"), b"u1", "unknown_action")]
    for reward, key, error in cases:
        with pytest.raises(InvalidRecord) as exc:
            engine.reward(reward, key, now_ms=1)
        assert exc.value.error_type == error
    assert engine.points["hero"].policy.n_learned == 0


def test_multi_slot_rewards_close_each_shown_action_and_the_rest_default():
    engine = DecisionEngine(CONFIG)
    decision, _ = engine.decide(req("d1", slots=2), now_ms=0)
    first, second = decision.chosen
    assert engine.reward(Reward("d1", 1.0, action_id=second), b"u1", now_ms=1) == "applied"
    assert engine.pending_count == 1  # the first slot is still open
    engine.expire(10_000)
    point = engine.points["hero"]
    assert (point.rewards_received, point.rewards_defaulted) == (1, 1)
    assert engine.reward(Reward("d1", 1.0, action_id=second), b"u1", now_ms=2) == "duplicate"


def test_pending_decisions_are_bounded_oldest_closed_first():
    engine = DecisionEngine(CONFIG, max_pending=2)
    for n in range(3):
        engine.decide(req(f"d{n}"), now_ms=n)
    assert engine.pending_count == 2
    with pytest.raises(InvalidRecord) as evicted:
        engine.reward(Reward("d0", 1.0), b"u1", now_ms=5)
    assert "evicted" in evicted.value.reason


def test_decision_points_are_bounded_and_each_has_its_own_policy():
    engine = DecisionEngine(DecisionConfig({}), max_points=2)
    for point in ("p1", "p2"):
        engine.decide(DecisionRequest(f"{point}-d", point, "u", ACTIONS), now_ms=0)
    assert engine.points["p1"].policy is not engine.points["p2"].policy
    with pytest.raises(InvalidRecord) as exc:
        engine.decide(DecisionRequest("p3-d", "p3", "u", ACTIONS), now_ms=0)
    assert exc.value.error_type == "too_many_decision_points"


def test_the_engine_pickles_with_its_dedupe_memory_and_restarts_consistently():
    engine = DecisionEngine(CONFIG)
    engine.decide(req("d1"), now_ms=0)
    engine.reward(Reward("d1", 1.0, 7), b"u1", now_ms=1)
    engine.decide(req("d2"), now_ms=2)
    restored = pickle.loads(pickle.dumps(engine))
    # The snapshot's policy learned d1 and remembers it: a redelivery is not learned again.
    assert restored.reward(Reward("d1", 1.0, 7), b"u1", now_ms=3) == "duplicate"
    assert restored.reward(Reward("d2", 0.0), b"u1", now_ms=3) == "applied"
    assert restored.points["hero"].policy.n_learned == 2
    assert restored.expire(10**9) == 0


def test_reconfigure_resets_only_points_whose_options_changed():
    engine = DecisionEngine(DecisionConfig({"a": PointConfig(), "b": PointConfig()}))
    for point in ("a", "b"):
        engine.decide(DecisionRequest(f"{point}1", point, "u", ACTIONS), now_ms=0)
        engine.reward(Reward(f"{point}1", 1.0), b"u", now_ms=1)
    reset = engine.reconfigure(DecisionConfig({"a": PointConfig(), "b": PointConfig(alpha=2.0)}))
    assert reset == ["b"]
    assert engine.points["a"].policy.n_learned == 1 and engine.points["b"].policy.n_learned == 0


def test_forget_user_drops_their_pending_decisions_without_learning():
    engine = DecisionEngine(CONFIG)
    engine.decide(req("d1", user="gone"), now_ms=0)
    engine.decide(req("d2", user="stays"), now_ms=0)
    assert engine.forget_user("gone") == 1 and engine.pending_count == 1
    engine.expire(10**9)
    assert engine.points["hero"].policy.n_learned == 1
