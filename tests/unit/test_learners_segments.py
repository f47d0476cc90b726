"""Online user segmentation (River KMeans over category mix and activity)."""

from __future__ import annotations

import collections
import pickle
import random

import pytest
from river import cluster

from streams.catalog import Catalog
from streams.learners import UserSegments
from streams.records import ItemUpdate

GROUPS = {"A": ["shoes", "bags"], "B": ["tents"], "C": ["lipstick", "mascara", "perfume"]}
NOISE = ["misc1", "misc2", "misc3", "misc4"]


def _catalog() -> Catalog:
    catalog = Catalog()
    for category in [c for group in GROUPS.values() for c in group] + NOISE:
        for i in range(20):
            catalog.upsert(ItemUpdate(f"{category}-{i}", categories=(category,)))
    return catalog


def _planted(seed: int = 0, **params) -> tuple[UserSegments, list[tuple[str, str]]]:
    """60 users per group, 2-14 events each, 80% in their group's categories, shuffled."""
    segments = UserSegments(seed=seed, catalog=_catalog(), **params)
    rng = random.Random(seed)
    users = [(group, f"{group}{i}") for group in GROUPS for i in range(60)]
    everything = [c for group in GROUPS.values() for c in group] + NOISE
    events = []
    for group, user in users:
        for _ in range(rng.randrange(2, 15)):
            category = rng.choice(GROUPS[group]) if rng.random() < 0.8 else rng.choice(everything)
            events.append((user, f"{category}-{rng.randrange(20)}"))
    rng.shuffle(events)
    for n, (user, item) in enumerate(events):
        segments.learn_one(user, item, rng.choice([1.0, 1.5, 3.0]), {"timestamp": n * 1_000})
    return segments, users


def _majority_group(segments: UserSegments, users: list[tuple[str, str]]) -> dict[int, str]:
    by_segment: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for group, user in users:
        by_segment[segments.segment_of(user)][group] += 1
    return {segment: groups.most_common(1)[0][0] for segment, groups in by_segment.items()}


@pytest.mark.parametrize("seed", [0, 1])
def test_segments_recover_planted_groups_with_high_purity(seed):
    segments, users = _planted(seed)
    by_segment: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for group, user in users:
        by_segment[segments.segment_of(user)][group] += 1
    purity = sum(groups.most_common(1)[0][1] for groups in by_segment.values()) / len(users)
    assert purity >= 0.9
    assert len({g for g in _majority_group(segments, users).values()}) == 3  # no group lost
    # A segment's label names its group's categories.
    for segment, group in _majority_group(segments, users).items():
        if sum(by_segment[segment].values()) >= 10:
            assert set(segments.top_categories(segment, k=1)) <= set(GROUPS[group])


def test_a_new_user_with_one_event_lands_in_a_segment_of_their_group():
    segments, users = _planted(0)
    majority = _majority_group(segments, users)
    rng = random.Random(7)
    right = 0
    for group in GROUPS:
        for i in range(10):
            user = f"new-{group}{i}"
            segments.learn_one(user, f"{rng.choice(GROUPS[group])}-{rng.randrange(20)}", 1.0,
                               {"timestamp": 10**7 + i})
            right += majority.get(segments.segment_of(user)) == group
    assert right / 30 >= 0.9


def test_predictions_match_rivers_kmeans_and_have_no_side_effects():
    segments, users = _planted(0)
    stock_predict = cluster.KMeans.predict_one  # River's own loop over the center dicts
    centers_before = {c: dict(center) for c, center in segments.model.centers.items()}
    for _, user in users[::7]:
        vector = segments.features(user)
        assert segments.predict_one(user) == stock_predict(segments.model, vector)
    segments.predict_one("nobody"), segments.features("nobody"), segments.segment_of("nobody")
    assert {c: dict(center) for c, center in segments.model.centers.items()} == centers_before
    assert not segments.knows_user("nobody")


def test_same_seed_same_segments_and_pickle_continues_identically():
    first, users = _planted(3)
    second, _ = _planted(3)
    assert [first.segment_of(u) for _, u in users] == [second.segment_of(u) for _, u in users]
    clone = pickle.loads(pickle.dumps(first))
    for learner in (first, clone):
        for i in range(30):
            learner.learn_one(f"late{i % 4}", f"tents-{i % 20}", 2.0, {"timestamp": 10**8 + i})
    assert [first.segment_of(u) for _, u in users] == [clone.segment_of(u) for _, u in users]
    assert first.segment_of("late1") == clone.segment_of("late1")
    assert first.model.centers == clone.model.centers


def test_min_events_and_activity_features():
    segments = UserSegments(min_events=2, catalog=_catalog())
    segments.learn_one("u", "tents-1", 1.0, {"timestamp": 0})
    assert segments.segment_of("u") is None and segments.knows_user("u")
    segments.learn_one("u", "tents-2", 5.0, {"timestamp": 1})
    assert segments.segment_of("u") is not None
    vector = segments.features("u")
    assert sum(v for k, v in vector.items() if k.startswith("b")) == pytest.approx(1.0)
    assert 0 < vector["activity:events"] <= segments.activity_weight
    assert vector["activity:strength"] == pytest.approx(segments.activity_weight * 3.0 / 5.0)


def test_adversarial_inputs_change_nothing_or_are_clipped():
    segments = UserSegments(catalog=_catalog())
    for y in (float("nan"), float("inf"), -3.0, 0.0):
        segments.learn_one("u", "tents-1", y, {"timestamp": 0})
    assert not segments.knows_user("u") and segments.n_learned == 0
    segments.learn_one("u", "tents-1", 1e300, {"timestamp": float("nan")})
    vector = segments.features("u")
    assert all(0.0 <= v <= 1.0 for v in vector.values())
    segments.learn_one("u", "uncategorized-item", 1.0, {"timestamp": 5})  # activity only
    assert segments.segment_of("u") is not None


def test_memory_is_bounded_and_idle_users_expire():
    segments = UserSegments(max_users=40, user_ttl_s=60.0, catalog=_catalog())
    for i in range(500):
        segments.learn_one(f"u{i}", f"shoes-{i % 20}", 1.0, {"timestamp": i * 100})
        assert segments.n_users <= 40 and len(segments._segment) <= 40
    segments.learn_one("later", "bags-1", 1.0, {"timestamp": 500 * 100 + 61_000})
    assert segments.n_users == 1 and segments.knows_user("later")


def test_forget_user_erases_profile_and_segment():
    segments, users = _planted(0)
    _, user = users[0]
    assert segments.segment_of(user) is not None
    segments.forget_user(user)
    assert segments.segment_of(user) is None and segments.predict_one(user) is None
    assert segments.features(user) is None and not segments.knows_user(user)
