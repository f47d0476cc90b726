"""Popularity per context/segment key, shrunk towards the global popularity."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

from streams.catalog import Catalog
from streams.learners import KeyedPopularity

HOUR_MS = 3_600_000
T0 = 1_699_920_000_000  # Tue 2023-11-14 00:00 UTC
MORNING, EVENING = T0 + 9 * HOUR_MS, T0 + 20 * HOUR_MS


def _top(pop: KeyedPopularity, x: dict | None, k: int = 5) -> list[str]:
    catalog = pop.catalog_
    scores = pop.score_all(len(catalog), x)
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return [catalog.item_id_at(int(r)) for r in order]


def _planted(seed: int = 0) -> KeyedPopularity:
    """Mobile evenings favour dresses, desktop mornings staplers; the rest is uniform,
    and overall garden items are the most popular (a big anonymous crowd)."""
    catalog = Catalog()
    for prefix in ("dress", "stapler", "garden"):
        for i in range(10):
            catalog.ensure(f"{prefix}{i}")
    pop = KeyedPopularity(half_life_s=86_400.0, catalog=catalog)
    rng = random.Random(seed)
    for _ in range(600):
        pop.learn_one("u", f"dress{rng.randrange(5)}", 1.0,
                      {"timestamp": EVENING + rng.randrange(HOUR_MS), "device": "mobile"})
        pop.learn_one("u", f"stapler{rng.randrange(5)}", 1.0,
                      {"timestamp": MORNING + rng.randrange(HOUR_MS), "device": "desktop"})
        pop.learn_one("u", f"garden{rng.randrange(3)}", 3.0, {"timestamp": EVENING})  # no device
    return pop


def test_context_keys_rank_their_own_popular_items_with_a_global_fallback():
    pop = _planted()
    mobile_evening = {"timestamp": EVENING + 2 * HOUR_MS, "device": "mobile"}
    desktop_morning = {"timestamp": EVENING + 2 * HOUR_MS, "device": "desktop", "local_hour": "10"}
    assert all(item.startswith("dress") for item in _top(pop, mobile_evening))
    assert all(item.startswith("stapler") for item in _top(pop, desktop_morning))
    gardens = {"garden0", "garden1", "garden2"}
    assert set(_top(pop, {"timestamp": EVENING}, k=3)) == gardens
    assert set(_top(pop, None, k=3)) == gardens
    assert pop.describe(mobile_evening) == "popular on mobile this evening"
    assert pop.describe(desktop_morning) == "popular on desktop this morning"
    assert pop.describe({"device": "tv"}) == "popular right now"  # an unseen device
    # An unseen device falls back to the global list.
    assert set(_top(pop, {"device": "tv"}, k=3)) == gardens


def test_a_thin_key_barely_moves_the_global_list_and_a_busy_one_takes_over():
    pop = KeyedPopularity(keys=(("device",),), prior_mass=10.0)
    for i in range(50):
        pop.learn_one("u", "global-hit", 1.0, {"timestamp": 0})
    pop.learn_one("u", "niche", 1.0, {"timestamp": 0, "device": "watch"})
    watch = {"device": "watch"}
    assert _top(pop, watch, k=1) == ["global-hit"]  # one event on a watch: not enough
    assert pop.dominant_key(watch) is None
    for i in range(40):
        pop.learn_one("u", "niche", 1.0, {"timestamp": 0, "device": "watch"})
    assert _top(pop, watch, k=1) == ["niche"]
    assert pop.dominant_key(watch) == (("device", "watch"),)
    scores = pop.score_all(2, watch)
    assert np.all((scores >= 0) & (scores <= 1)) and scores.sum() == pytest.approx(1.0)


def test_segment_keys_and_their_explanation():
    pop = KeyedPopularity(keys=(("segment",),), prior_mass=1.0)
    for i in range(20):
        pop.learn_one("u", "tent", 1.0, {"timestamp": 0, "segment": 3})
        pop.learn_one("u", "lipstick", 1.0, {"timestamp": 0, "segment": 5})
    assert _top(pop, {"segment": 3}, k=1) == ["tent"]
    assert _top(pop, {"segment": "5"}, k=1) == ["lipstick"]  # ids are compared as text
    assert pop.describe({"segment": 3}) == "popular with shoppers like you"


def test_popularity_decays_by_event_time():
    pop = KeyedPopularity(half_life_s=3_600.0, keys=(("device",),), prior_mass=1e-9)
    pop.learn_one("u", "old", 4.0, {"timestamp": 0, "device": "ios"})
    pop.learn_one("u", "new", 1.0, {"timestamp": 2 * HOUR_MS, "device": "ios"})
    scores = pop.score_all(2, {"device": "ios"})
    assert scores[0] == pytest.approx(scores[1])  # 4 * 2 ** -2 == 1
    assert pop.mass((("device", "ios"),)) == pytest.approx(2.0)


def test_daypart_follows_the_given_timezone():
    pop = KeyedPopularity(keys=(("daypart",),))
    assert pop.keys_of({"timestamp": T0 + 22 * HOUR_MS}) == [(("daypart", "evening"),)]
    assert pop.keys_of({"timestamp": T0 + 22 * HOUR_MS, "timezone": "Asia/Tokyo"}) == [
        (("daypart", "morning"),)]
    assert pop.keys_of({}) == []


def test_memory_is_bounded():
    pop = KeyedPopularity(keys=(("page",), ("device",)), max_keys=10, max_items_per_key=8)
    rng = random.Random(2)
    for i in range(3_000):
        pop.learn_one("u", f"i{rng.randrange(200)}", 1.0,
                      {"timestamp": i * 1_000, "page": f"p{rng.randrange(40)}", "device": "ios"})
        assert pop.n_keys <= 10
    assert all(len(items) <= 8 for _, items in pop._by_key.values())
    assert (("device", "ios"),) in pop._by_key  # the busiest key is the most recently updated


def test_rescaling_keeps_weights_finite_and_drops_faded_keys():
    pop = KeyedPopularity(half_life_s=1.0, keys=(("device",),))
    pop.learn_one("u", "a", 1.0, {"timestamp": 0, "device": "old-phone"})
    for step in range(1, 3_000):  # 3000 half-lives
        pop.learn_one("u", "b", 1.0, {"timestamp": step * 1_000, "device": "ios"})
    assert (("device", "old-phone"),) not in pop._by_key
    scores = pop.score_all(2, {"device": "ios"})
    assert np.isfinite(scores).all() and scores[1] > 0.99


def test_adversarial_inputs_are_ignored_or_clipped():
    pop = KeyedPopularity(keys=(("device",),))
    pop.learn_one("u", "a", 1.0, {"timestamp": 1_000, "device": "ios"})
    for y in (float("nan"), float("inf"), -5.0, 0.0):
        pop.learn_one("u", "b", y, {"timestamp": 1_000, "device": "ios"})
    assert "b" not in pop.catalog_
    pop.learn_one("u", "c", 1e300, {"timestamp": float("nan"), "device": "ios"})  # clipped, at the clock
    scores = pop.score_all(2, {"device": "ios"})
    assert np.isfinite(scores).all() and scores[1] > scores[0]
    pop.learn_one("u", "d", 1.0, {"timestamp": 1_000, "device": None})  # a missing field: global only
    assert pop.n_keys == 1


def test_pickle_round_trip_continues_identically():
    pop = _planted()
    clone = pickle.loads(pickle.dumps(pop))
    for learner in (pop, clone):
        learner.learn_one("u", "garden7", 2.0, {"timestamp": EVENING + HOUR_MS, "device": "mobile"})
    x = {"timestamp": EVENING, "device": "mobile"}
    np.testing.assert_array_equal(pop.score_all(30, x), clone.score_all(30, x))
    assert clone.describe(x) == pop.describe(x)
