"""The online learners: decayed popularity, implicit matrix factorization, content affinity."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest

from streams.catalog import Catalog
from streams.learners import CategoryAffinity, DecayedPopularity, ImplicitMF
from streams.records import ItemUpdate

HOUR_MS = 3_600_000


# -- DecayedPopularity ----------------------------------------------------------------------


def test_popularity_halves_every_half_life_of_event_time():
    pop = DecayedPopularity(half_life_s=3_600.0)
    pop.learn_one("u", "old", 4.0, {"timestamp": 0})
    pop.learn_one("u", "new", 1.0, {"timestamp": 2 * HOUR_MS})
    assert pop.predict_one("u", "old") == pytest.approx(1.0)  # 4 * 2 ** -2
    assert pop.predict_one("u", "new") == pytest.approx(1.0)
    assert pop.predict_one("u", "new", {"timestamp": 3 * HOUR_MS}) == pytest.approx(0.5)
    assert pop.predict_one("u", "unknown") == 0.0


def test_popularity_score_all_is_aligned_with_catalog_rows():
    catalog = Catalog()
    for item in ("a", "b", "c", "d"):
        catalog.ensure(item)
    pop = DecayedPopularity(60.0, catalog=catalog)
    pop.learn_one("u", "c", 2.0, {"timestamp": 1_000})
    pop.learn_one("u", "a", 1.0, {"timestamp": 1_000})
    pop.learn_one("u", "e", 1.0, {"timestamp": 1_000})  # registers a new row
    assert catalog.index_of("e") == 4
    scores = pop.score_all(6)  # longer than anything learned: zeros
    np.testing.assert_allclose(scores, [1.0, 0.0, 2.0, 0.0, 1.0, 0.0])
    for item in ("a", "b", "c", "d", "e"):
        assert scores[catalog.index_of(item)] == pytest.approx(pop.predict_one("u", item))


def test_popularity_is_order_insensitive_and_ignores_non_positive_weights():
    events = [("a", 1.0, 0), ("b", 1.0, 5 * HOUR_MS), ("a", 2.0, 3 * HOUR_MS), ("b", 1.5, HOUR_MS)]
    forward, shuffled = DecayedPopularity(3_600.0), DecayedPopularity(3_600.0)
    for item, y, t in events:
        forward.learn_one("u", item, y, {"timestamp": t})
    for item, y, t in [events[1], events[3], events[0], events[2]]:  # out of order
        shuffled.learn_one("u", item, y, {"timestamp": t})
    for item in ("a", "b"):
        assert forward.predict_one("u", item) == pytest.approx(shuffled.predict_one("u", item))
    before = forward.predict_one("u", "a")
    forward.learn_one("u", "a", -3.0, {"timestamp": 5 * HOUR_MS})
    forward.learn_one("u", "a", float("nan"), {"timestamp": 5 * HOUR_MS})
    assert forward.predict_one("u", "a") == before


def test_popularity_renormalizes_instead_of_overflowing():
    pop = DecayedPopularity(half_life_s=1.0)
    for step in range(3_000):  # 3000 half-lives: 2 ** 3000 would overflow float64
        pop.learn_one("u", "steady", 1.0, {"timestamp": step * 1_000})
    pop.learn_one("u", "fresh", 1.0, {"timestamp": 2_999 * 1_000})
    scores = pop.score_all(2)
    assert np.isfinite(scores).all()
    # A steady stream of weight 1 per half-life converges to 1 / (1 - 1/2) = 2.
    assert scores[0] == pytest.approx(2.0)
    assert scores[1] == pytest.approx(1.0)


def test_popularity_half_life_follows_a_slow_log_and_keeps_a_busy_one():
    # A slow log (an event every 10 minutes) with pace_events=100: the half-life grows to
    # about 100 events' time (~16.7 h) instead of the 1 h configured, so a hit from the
    # first hours still outranks a single recent event; a busy stream (an event a second)
    # keeps the configured hour.
    slow = DecayedPopularity(3_600.0, pace_events=100)
    fixed = DecayedPopularity(3_600.0)
    for n in range(300):
        item = "hit" if n < 30 else f"one-off-{n}"
        for pop in (slow, fixed):
            pop.learn_one("u", item, 1.0, {"timestamp": n * 600_000})
    assert slow.effective_half_life_s == pytest.approx(100 * 600, rel=0.11)
    assert fixed.effective_half_life_s == 3_600.0
    assert slow.predict_one("u", "hit") > slow.predict_one("u", "one-off-299")
    assert fixed.predict_one("u", "hit") < fixed.predict_one("u", "one-off-299")
    busy = DecayedPopularity(3_600.0, pace_events=100)
    for n in range(2_000):
        busy.learn_one("u", f"i{n % 7}", 1.0, {"timestamp": n * 1_000})
    assert busy.effective_half_life_s == 3_600.0
    # Switching half-life keeps the scores continuous (no jump at the switch).
    assert np.isfinite(slow.score_all(400)).all() and slow.n_resets == 0


def test_popularity_clips_huge_strengths():
    pop = DecayedPopularity(60.0, max_strength=10.0)
    pop.learn_one("u", "a", 1e308, {"timestamp": 0})
    pop.learn_one("u", "b", 2.0, {"timestamp": 0})
    assert pop.predict_one("u", "a") == 10.0 and pop.predict_one("u", "b") == 2.0


def test_popularity_pickle_round_trip_continues_identically():
    pop = DecayedPopularity(600.0)
    for i in range(50):
        pop.learn_one("u", f"i{i % 7}", 1.0 + i % 3, {"timestamp": i * 60_000})
    clone = pickle.loads(pickle.dumps(pop))
    for learner in (pop, clone):
        learner.learn_one("u", "i3", 2.0, {"timestamp": 51 * 60_000})
    np.testing.assert_array_equal(pop.score_all(8), clone.score_all(8))


# -- ImplicitMF -------------------------------------------------------------------------------


def _two_groups(seed: int = 0, n_events: int = 3_000) -> tuple[ImplicitMF, Catalog]:
    """Users u0..u19 like items a0..a9, users v0..v19 like items b0..b9."""
    catalog = Catalog()
    for prefix in ("a", "b"):
        for i in range(10):
            catalog.ensure(f"{prefix}{i}")
    mf = ImplicitMF(n_factors=8, n_negatives=3, seed=seed, catalog=catalog)
    rng = random.Random(seed)
    for _ in range(n_events):
        group = rng.choice("ab")
        user = f"{'u' if group == 'a' else 'v'}{rng.randrange(20)}"
        mf.learn_one(user, f"{group}{rng.randrange(10)}", 1.0)
    return mf, catalog


def test_mf_learns_planted_groups():
    mf, catalog = _two_groups()
    hits = 0
    for i in range(20):
        for user, liked in ((f"u{i}", "a"), (f"v{i}", "b")):
            top = np.argsort(-mf.score_all(user, len(catalog)))[:10]
            hits += sum(catalog.item_id_at(int(row)).startswith(liked) for row in top)
    assert hits / 400 > 0.9


def test_mf_item_similarity_reflects_groups():
    mf, catalog = _two_groups()
    a_rows, b_rows = list(range(10)), list(range(10, 20))
    within = mf.item_similarity(a_rows, a_rows)
    across = mf.item_similarity(a_rows, b_rows)
    assert within.shape == (10, 10) and across.shape == (10, 10)
    np.testing.assert_allclose(np.diag(within), 1.0)
    assert within[~np.eye(10, dtype=bool)].mean() > across.mean() + 0.5
    assert np.all(np.abs(across) <= 1.0 + 1e-9)
    # Unknown rows (no latents) have similarity 0, not NaN.
    assert mf.item_similarity([0], [500]).tolist() == [[0.0]]


def test_mf_score_all_agrees_with_predict_one_and_has_no_side_effects():
    mf, catalog = _two_groups(n_events=500)
    scores = mf.score_all("u3", len(catalog))
    for row in range(len(catalog)):
        assert scores[row] == pytest.approx(mf.predict_one("u3", catalog.item_id_at(row)))
    n_users = len(mf.model.u_latents)
    neutral = mf.score_all("stranger", len(catalog))
    mf.predict_one("stranger", "a0")
    mf.predict_one("stranger", "never-seen")
    assert len(mf.model.u_latents) == n_users
    assert not mf.knows_user("stranger")
    assert "never-seen" not in catalog
    # An unknown user gets the neutral vector: global mean plus item biases, no latents.
    expected = mf.model.global_mean.get() + np.array(
        [mf.model.i_biases.get(catalog.item_id_at(row), 0.0) for row in range(len(catalog))]
    )
    np.testing.assert_allclose(neutral, expected)


def test_mf_mirror_grows_with_the_catalog():
    catalog = Catalog(initial_capacity=1)
    mf = ImplicitMF(n_factors=4, seed=3, catalog=catalog)
    catalog.ensure("first")
    mf.learn_one("u", "first", 1.0)
    for i in range(300):  # the catalog outgrows the mirror
        catalog.ensure(f"later-{i}")
    scores = mf.score_all("u", len(catalog))
    assert scores.shape == (301,)
    assert np.isfinite(scores).all()
    mf.learn_one("u", "later-299", 2.0)  # a row past the mirror's initial capacity
    row = catalog.index_of("later-299")
    assert mf.score_all("u", len(catalog))[row] == pytest.approx(mf.predict_one("u", "later-299"))
    assert mf.item_similarity([row], [row])[0, 0] == pytest.approx(1.0)


def test_mf_explicit_negative_lowers_the_score():
    mf, catalog = _two_groups(n_events=1_000)
    before = mf.predict_one("u1", "a1")
    for _ in range(20):
        mf.learn_one("u1", "a1", -1.0)
    assert mf.predict_one("u1", "a1") < before


# River's own step on the poisoned parameters warns; the guard is what is under test.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_mf_nan_guard_resets_and_never_emits_non_finite_scores():
    mf, catalog = _two_groups(n_events=500)
    n = len(catalog)
    # Force divergence: poison a user's latents and an item's (River and mirror) latents.
    mf.model.u_latents["u1"][:] = np.nan
    mf.model.i_latents["a2"][:] = np.inf
    mf._item_factors[catalog.index_of("a2")] = np.inf  # the mirror, as a diverged step leaves it
    assert np.isfinite(mf.score_all("u1", n)).all()
    assert np.isfinite(mf.score_all("u2", n)).all()
    assert math.isfinite(mf.predict_one("u2", "a2"))
    assert mf.n_resets == 0  # scoring does not mutate
    mf.learn_one("u1", "a3", 1.0)  # learning notices the user and resets it
    mf.learn_one("u2", "a2", 1.0)  # ... and the item
    assert mf.n_resets >= 2
    assert np.isfinite(mf.model.u_latents["u1"]).all()
    assert np.isfinite(mf.score_all("u1", n)).all()
    assert np.isfinite(mf.item_similarity(range(n), range(n))).all()
    mf.learn_one("u1", "a3", float("inf"))  # a non-finite target is ignored
    assert np.isfinite(mf.score_all("u1", n)).all()


def test_mf_is_deterministic_given_the_seed():
    first, catalog = _two_groups(seed=5, n_events=800)
    second, _ = _two_groups(seed=5, n_events=800)
    other, _ = _two_groups(seed=6, n_events=800)
    np.testing.assert_array_equal(first.score_all("u0", 20), second.score_all("u0", 20))
    assert not np.allclose(first.score_all("u0", 20), other.score_all("u0", 20))


def test_mf_pickle_round_trip_continues_identically():
    mf, catalog = _two_groups(n_events=600)
    clone = pickle.loads(pickle.dumps(mf))
    np.testing.assert_array_equal(mf.score_all("v4", 20), clone.score_all("v4", 20))
    for learner in (mf, clone):  # same RNG state: same sampled negatives
        for i in range(30):
            learner.learn_one(f"v{i % 5}", f"b{i % 10}", 1.5)
    np.testing.assert_array_equal(mf.score_all("v4", 20), clone.score_all("v4", 20))
    assert clone.n_learned == mf.n_learned == 630


# -- CategoryAffinity -------------------------------------------------------------------------


def _shop_catalog() -> Catalog:
    catalog = Catalog()
    for item, categories, brand in [
        ("boot", ("shoes",), "acme"),
        ("sneaker", ("shoes",), "zoom"),
        ("tote", ("bags",), "acme"),
        ("gym-bag", ("bags", "sport"), "zoom"),
        ("cap", ("hats",), "acme"),
    ]:
        catalog.upsert(ItemUpdate(item, categories=categories, attributes={"brand": brand}))
    return catalog


def test_content_affinity_halves_every_half_life_of_event_time():
    catalog = _shop_catalog()
    content = CategoryAffinity(half_life_s=3_600.0, catalog=catalog)
    content.learn_one("u", "boot", 4.0, {"timestamp": 0})
    content.learn_one("u", "tote", 1.0, {"timestamp": 2 * HOUR_MS})
    assert content.predict_one("u", "sneaker") == pytest.approx(1.0)  # 4 * 2 ** -2
    assert content.predict_one("u", "tote") == pytest.approx(1.0)
    assert content.predict_one("u", "tote", {"timestamp": 3 * HOUR_MS}) == pytest.approx(0.5)
    # A late event (older than the user's latest) is added already decayed.
    content.learn_one("u", "cap", 2.0, {"timestamp": HOUR_MS})
    assert content.predict_one("u", "cap") == pytest.approx(1.0)
    assert content.affinities("u") == pytest.approx({"shoes": 1.0, "bags": 1.0, "hats": 1.0})


def test_content_negative_strength_lowers_the_category_below_unknown_ones():
    content = CategoryAffinity(catalog=_shop_catalog())
    content.learn_one("u", "boot", 1.5, {"timestamp": 0})
    content.learn_one("u", "tote", 1.0, {"timestamp": 0})
    assert content.predict_one("u", "sneaker") > content.predict_one("u", "tote") > 0
    for _ in range(2):
        content.learn_one("u", "tote", -1.0, {"timestamp": 0})  # disliked twice
    assert content.predict_one("u", "tote") == pytest.approx(-1.0)
    assert content.predict_one("u", "tote") < content.predict_one("u", "cap") == 0.0
    assert content.top_category("u", "tote") is None  # no longer liked: no evidence
    assert content.top_category("u", "sneaker") == "shoes"
    assert content.knows_user("u") and not content.knows_user("v")


def test_content_multi_category_items_average_and_unknown_categories_score_zero():
    catalog = _shop_catalog()
    catalog.ensure("mystery")  # seen in an event before the catalog feed described it
    content = CategoryAffinity(catalog=catalog)
    content.learn_one("u", "tote", 2.0, {"timestamp": 0})
    scores = content.score_all("u", len(catalog))
    expected = {"boot": 0.0, "sneaker": 0.0, "tote": 2.0, "gym-bag": 1.0, "cap": 0.0,
                "mystery": 0.0}
    for item, score in expected.items():
        assert scores[catalog.index_of(item)] == pytest.approx(score)
        assert content.predict_one("u", item) == pytest.approx(score)
    content.learn_one("u", "mystery", 5.0, {"timestamp": 0})  # no categories: teaches nothing
    assert content.affinities("u") == {"bags": 2.0}
    # A multi-category item teaches each of its categories the full strength.
    content.learn_one("w", "gym-bag", 1.0, {"timestamp": 0})
    assert content.affinities("w") == {"bags": 1.0, "sport": 1.0}
    assert content.predict_one("w", "gym-bag") == pytest.approx(1.0)
    assert content.predict_one("w", "tote") == pytest.approx(1.0)


def test_content_new_item_in_a_liked_category_scores_before_any_interaction():
    catalog = _shop_catalog()
    content = CategoryAffinity(catalog=catalog)
    content.learn_one("u", "boot", 1.0, {"timestamp": 0})
    for i in range(200):  # the catalog grows past the index's initial capacity
        catalog.upsert(ItemUpdate(f"new-{i}", categories=("shoes" if i % 2 else "bags",)))
    scores = content.score_all("u", len(catalog))
    assert scores.shape == (205,)
    assert content.predict_one("u", "new-199") == scores[catalog.index_of("new-199")] > 0
    assert content.predict_one("u", "new-198") == 0.0
    # A re-categorized item is re-read with index_item (what Recommender.apply_item does).
    catalog.upsert(ItemUpdate("new-198", categories=("shoes",)))
    assert content.predict_one("u", "new-198") == 0.0  # stale until re-indexed
    content.index_item("new-198")
    assert content.predict_one("u", "new-198") == pytest.approx(1.0)
    assert content.score_all("nobody", len(catalog)).tolist() == [0.0] * 205


def test_content_memory_per_user_is_bounded_keeping_the_strongest():
    catalog = Catalog()
    for i in range(100):
        catalog.upsert(ItemUpdate(f"i{i}", categories=(f"c{i}",)))
    content = CategoryAffinity(max_features=8, catalog=catalog)
    content.learn_one("u", "i0", 50.0, {"timestamp": 0})  # one strong interest
    for i in range(1, 100):
        content.learn_one("u", f"i{i}", 1.0 + i / 100, {"timestamp": 0})
        assert len(content.affinities("u")) <= 8
    kept = content.affinities("u")
    assert len(kept) == 8 and "c0" in kept
    assert set(kept) - {"c0"} == {f"c{i}" for i in range(93, 100)}  # the strongest of the rest
    assert content.predict_one("u", "i1") == 0.0  # forgotten


def test_content_attributes_are_optional_features():
    catalog = _shop_catalog()
    plain = CategoryAffinity(catalog=catalog)
    branded = CategoryAffinity(attributes=("brand",), attribute_weight=0.5, catalog=catalog)
    for learner in (plain, branded):
        learner.learn_one("u", "boot", 2.0, {"timestamp": 0})  # shoes, brand acme
    assert plain.predict_one("u", "tote") == 0.0
    assert branded.predict_one("u", "tote") == pytest.approx(0.5 * 2.0)  # same brand
    assert branded.predict_one("u", "sneaker") == pytest.approx(2.0)  # same category
    assert branded.predict_one("u", "boot") == pytest.approx(2.0 + 0.5 * 2.0)
    assert branded.top_category("u", "tote") is None  # liked by brand, not category


def test_content_ignores_zero_and_non_finite_strengths():
    content = CategoryAffinity(catalog=_shop_catalog())
    for y in (0.0, float("nan"), float("inf")):
        content.learn_one("u", "boot", y, {"timestamp": 0})
    assert not content.knows_user("u") and content.n_learned == 0


def test_content_pickle_round_trip_continues_identically():
    catalog = _shop_catalog()
    content = CategoryAffinity(600.0, attributes=("brand",), catalog=catalog)
    items = ["boot", "sneaker", "tote", "gym-bag", "cap"]
    for i in range(40):
        content.learn_one(f"u{i % 3}", items[i % 5], 1.0 + i % 3 - (i % 7 == 0) * 3,
                          {"timestamp": i * 60_000})
    clone = pickle.loads(pickle.dumps(content))
    assert clone.catalog_ is not catalog
    for learner in (content, clone):
        learner.learn_one("u1", "cap", 2.0, {"timestamp": 41 * 60_000})
    for user in ("u0", "u1", "u2"):
        np.testing.assert_array_equal(content.score_all(user, 5), clone.score_all(user, 5))
    assert clone.affinities("u1") == content.affinities("u1")


def test_content_users_idle_past_the_ttl_are_evicted_and_the_count_is_capped():
    catalog = Catalog()
    catalog.upsert(ItemUpdate("boot", categories=("shoes",)))
    content = CategoryAffinity(1_800.0, catalog=catalog, max_users=3, user_ttl_s=3_600.0)
    content.learn_one("early", "boot", 1.0, {"timestamp": 0})
    content.learn_one("later", "boot", 1.0, {"timestamp": HOUR_MS // 2})
    content.learn_one("now", "boot", 1.0, {"timestamp": HOUR_MS + 1})
    assert not content.knows_user("early")  # idle for more than an hour of event time
    assert content.knows_user("later") and content.knows_user("now")
    for n in range(5):
        content.learn_one(f"burst{n}", "boot", 1.0, {"timestamp": HOUR_MS + 2 + n})
    assert content.n_users == 3
    assert [u for u in ("burst2", "burst3", "burst4") if content.knows_user(u)] == [
        "burst2", "burst3", "burst4"]


def test_content_clips_huge_strengths_and_stays_finite():
    catalog = Catalog()
    catalog.upsert(ItemUpdate("boot", categories=("shoes",)))
    content = CategoryAffinity(1_800.0, catalog=catalog, max_strength=10.0)
    for y in (1e308, 1e308, -1e308, 1e308):
        content.learn_one("ann", "boot", y, {"timestamp": 0})
    assert content.predict_one("ann", "boot") == 20.0
    assert content.n_resets == 0
