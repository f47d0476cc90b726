"""Burst (bot) detection with River's Half-Space Trees on per-user rate features."""

from __future__ import annotations

import pickle
import random

import pytest

from streams.learners import BurstDetector


def _normal_traffic(seed: int, n_users: int = 100, duration_s: float = 1_800.0) -> list:
    """Users arrive over half an hour; each browses 5-80 events, one every 2-8 s (one gap
    in ten is a quick 0.3-2 s click). Sorted by time: ``(t_ms, user, item)``."""
    rng = random.Random(seed)
    events = []
    for u in range(n_users):
        t = rng.uniform(0, duration_s * 800)
        for _ in range(rng.randrange(5, 80)):
            t += rng.uniform(2_000, 8_000) if rng.random() < 0.9 else rng.uniform(300, 2_000)
            events.append((t, f"user{u}", f"item{rng.randrange(500)}"))
    return sorted(events)


def _warmed(seed: int = 0, **params) -> tuple[BurstDetector, list, float]:
    detector = BurstDetector(seed=seed, **params)
    events = _normal_traffic(seed)
    split = len(events) // 3
    for t, user, item in events[:split]:
        detector.observe(user, item, {"timestamp": t})
    return detector, events[split:], events[-1][0]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_burst_of_200_events_in_2_seconds_is_flagged_by_the_trees(seed):
    detector, rest, end = _warmed(seed, hard_rate_1s=None)  # the trees alone
    for t, user, item in rest:
        detector.observe(user, item, {"timestamp": t})
    flagged_before = detector.n_flagged
    start = end + 1_000
    flags = [detector.observe("bot", f"item{k % 50}", {"timestamp": start + 10 * k})
             for k in range(200)]
    assert flags[0] is False  # a first event looks like any new user's
    assert sum(flags[10:]) == 190  # once the burst is under way, every event
    assert sum(flags) >= 190
    # Normal users just after the burst are not flagged, and the trees did not learn
    # the burst as normal.
    after = [detector.is_anomalous(f"user{u}", "item1", {"timestamp": start + 5_000})
             for u in range(100)]
    assert sum(after) == 0
    assert detector.score_one("bot2", "item1", {"timestamp": start + 10}) < 0.8
    assert detector.n_flagged - flagged_before == sum(flags)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_false_positive_rate_on_normal_traffic_is_below_half_a_percent(seed):
    detector, rest, _ = _warmed(seed)
    flagged = sum(detector.observe(user, item, {"timestamp": t}) for t, user, item in rest)
    assert len(rest) > 2_000
    assert flagged / len(rest) < 0.005


def test_the_hard_rate_rule_covers_the_trees_warm_up():
    detector = BurstDetector(hard_rate_1s=20.0, window_size=250)
    flags = [detector.observe("bot", "x", {"timestamp": 10 * k}) for k in range(200)]
    assert detector.model.score_one(detector.features("bot", "x", {"timestamp": 2_000})) == 0
    assert not any(flags[:15]) and all(flags[30:])  # ~22 events at 100/s reach 20/s
    without = BurstDetector(hard_rate_1s=None, window_size=250)
    assert not any(without.observe("bot", "x", {"timestamp": 10 * k}) for k in range(200))


def test_scoring_has_no_side_effects_and_features_are_in_the_unit_interval():
    detector, rest, end = _warmed(0)
    record = list(detector._users["user3"]) if detector.knows_user("user3") else None
    n_learned = detector.n_learned
    for k in range(50):
        x = {"timestamp": end + k}
        detector.is_anomalous("user3", "item1", x)
        detector.score_one("stranger", None, x)
        features = detector.features("user3", f"i{k}", x)
        assert all(0.0 <= v <= 1.0 for v in features.values())
    assert detector.n_learned == n_learned and not detector.knows_user("stranger")
    if record is not None:
        assert detector._users["user3"][:3] == record[:3]


def test_rate_features_follow_the_definition():
    detector = BurstDetector()
    first = detector.features("u", "a", {"timestamp": 0})
    assert first["gap"] == 1.0 and first["distinct"] == 1.0
    for k in range(4):
        detector.learn_one("u", "a", 1.0, {"timestamp": k * 100})  # the same item, 10 per second
    burst = detector.features("u", "a", {"timestamp": 400})
    assert burst["distinct"] == pytest.approx(1 / 5)
    assert burst["gap"] < 0.5 and burst["rate_1s"] > first["rate_1s"]


def test_memory_is_bounded_and_idle_users_expire():
    detector = BurstDetector(max_users=50, user_ttl_s=60.0)
    for i in range(1_000):
        detector.observe(f"u{i}", "a", {"timestamp": i * 10})
        assert detector.n_users <= 50
    detector.observe("late", "a", {"timestamp": 1_000 * 10 + 61_000})
    assert detector.n_users == 1
    assert all(len(record[3]) <= detector.recent_items for record in detector._users.values())


def test_adversarial_inputs_do_not_break_it():
    detector = BurstDetector(window_size=20)
    for _ in range(100):
        detector.learn_one("u", None, float("nan"), {"timestamp": float("nan")})
        detector.learn_one("v", "a", 1e300, {"timestamp": -1e15})
        detector.learn_one("w", "b", 1.0, None)
    score = detector.score_one("u", "a", {"timestamp": 5})
    assert 0.0 <= score <= 1.0


def test_forget_user_erases_their_record():
    detector, _, end = _warmed(0)
    for k in range(30):
        detector.observe("bot", "a", {"timestamp": end + 10 * k})
    assert detector.is_anomalous("bot", "a", {"timestamp": end + 300})
    detector.forget_user("bot")
    assert not detector.knows_user("bot")
    assert detector.features("bot", "a", {"timestamp": end + 300}) == detector.features(
        "new", "a", {"timestamp": end + 300})


def test_pickle_round_trip_and_seed_determinism():
    first, rest, end = _warmed(4)
    second, _, _ = _warmed(4)
    clone = pickle.loads(pickle.dumps(first))
    verdicts = []
    for learner in (first, second, clone):
        normal = [learner.observe(u, i, {"timestamp": t}) for t, u, i in rest[:500]]
        burst = [learner.observe("bot", "a", {"timestamp": end + 10 * k}) for k in range(40)]
        verdicts.append(normal + burst)
    assert verdicts[0] == verdicts[1] == verdicts[2]
    x = {"timestamp": end + 1_000}
    assert first.score_one("user1", "z", x) == clone.score_one("user1", "z", x)
