"""The context-aware factorization machine (River FMRegressor, vectorized scoring)."""

from __future__ import annotations

import copy
import math
import pickle
import random

import numpy as np
import pytest
from river import facto

from streams.catalog import Catalog
from streams.learners import ContextualFM
from streams.records import ItemUpdate

DAY_MS = 86_400_000
T0 = 1_699_920_000_000  # Tue 2023-11-14 00:00 UTC
MORNING, EVENING = 9 * 3_600_000, 20 * 3_600_000


def _shop(n_per_category: int = 30) -> Catalog:
    catalog = Catalog()
    for category in ("dresses", "office", "garden"):
        for i in range(n_per_category):
            brand = f"brand{i % 4}"
            categories = (category,) if i % 5 else (category, "sale")  # some multi-category
            catalog.upsert(ItemUpdate(f"{category}-{i}", categories=categories,
                                      attributes={"brand": brand}))
    return catalog


def _planted(seed: int = 0, n_events: int = 3_000, **params) -> ContextualFM:
    """Mobile users in the evening buy dresses, desktop users in the morning office
    supplies; anything else is uniform over the catalog. 150 users, no taste of their own."""
    catalog = _shop()
    fm = ContextualFM(catalog=catalog, attributes=("brand",), seed=seed, **params)
    rng = random.Random(seed)
    items = {c: [f"{c}-{i}" for i in range(30)] for c in ("dresses", "office", "garden")}
    everything = [item for group in items.values() for item in group]
    for _ in range(n_events):
        device = rng.choice(["mobile", "desktop"])
        hour = EVENING if rng.random() < 0.5 else MORNING
        t = T0 + rng.randrange(30) * DAY_MS + hour + rng.randrange(3_600_000)
        if device == "mobile" and hour == EVENING and rng.random() < 0.8:
            item = rng.choice(items["dresses"])
        elif device == "desktop" and hour == MORNING and rng.random() < 0.8:
            item = rng.choice(items["office"])
        else:
            item = rng.choice(everything)
        fm.learn_one(f"u{rng.randrange(150)}", item, rng.choice([1.0, 1.5, 3.0]),
                     {"timestamp": t, "device": device, "page": "home"})
    return fm


def _share_of_top(fm: ContextualFM, user: str, x: dict, category: str, k: int = 10) -> float:
    catalog = fm.catalog_
    scores = fm.score_all(user, len(catalog), x)
    top = np.argsort(-scores)[:k]
    return sum(category in catalog.categories_of(catalog.item_id_at(int(r))) for r in top) / k


@pytest.fixture(scope="module")
def planted() -> ContextualFM:
    return _planted()


def test_learns_a_planted_context_effect(planted):
    fm = planted
    mobile_evening = {"timestamp": T0 + 40 * DAY_MS + EVENING, "device": "mobile", "page": "home"}
    desktop_morning = {"timestamp": T0 + 40 * DAY_MS + MORNING, "device": "desktop", "page": "home"}
    for user in ("u7", "someone-new"):
        assert _share_of_top(fm, user, mobile_evening, "dresses") >= 0.9
        assert _share_of_top(fm, user, desktop_morning, "office") >= 0.9
    assert fm.n_resets == 0
    # The evidence names the context: for a dress on mobile in the evening, the device
    # or the daypart contributes most among the user-side features.
    top_feature = fm.explain("someone-new", "dresses-3", mobile_evening)[0][0]
    assert top_feature in {"x:device=mobile", "t:daypart=evening", "t:hour=20"}


def test_a_new_item_is_scored_through_its_category(planted):
    fm = copy.deepcopy(planted)
    brand = {"brand": "brand1"}
    fm.catalog_.upsert(ItemUpdate("dress-new", categories=("dresses",), attributes=brand))
    fm.catalog_.upsert(ItemUpdate("rake-new", categories=("garden",), attributes=brand))
    x = {"timestamp": T0 + 40 * DAY_MS + EVENING, "device": "mobile"}
    assert fm.predict_one("anyone", "dress-new", x) > fm.predict_one("anyone", "rake-new", x)


def test_score_all_equals_rivers_predict_one(planted):
    fm = planted
    stock = facto.FMRegressor(n_factors=fm.n_factors)
    stock.weights.update(copy.deepcopy(dict(fm.model.weights)))
    stock.latents.update(copy.deepcopy(dict(fm.model.latents)))
    stock.intercept = fm.model.intercept
    catalog = fm.catalog_
    x = {"timestamp": T0 + 3 * DAY_MS + EVENING + 60_000, "device": "mobile", "page": "home"}
    scores = fm.score_all("u3", len(catalog), x)
    checked = 0
    for row in range(0, len(catalog), 7):
        item = catalog.item_id_at(row)
        features = fm.features("u3", item, x)
        if all(name in fm.model.latents for name in features):
            assert scores[row] == pytest.approx(stock.predict_one(features), rel=1e-9, abs=1e-9)
            assert fm.predict_one("u3", item, x) == pytest.approx(scores[row], rel=1e-12, abs=1e-12)
            checked += 1
    assert checked >= 10
    assert any(len(catalog.categories_of(catalog.item_id_at(r))) == 2 for r in range(0, 90, 7))


def test_scoring_has_no_side_effects(planted):
    fm = planted
    n_latents, n_weights = len(fm.model.latents), len(fm.model.weights)
    x = {"timestamp": T0, "device": "smart-fridge", "page": "never-seen"}
    before = fm.score_all("stranger", len(fm.catalog_), x)
    fm.predict_one("stranger", "no-such-item", x)
    fm.explain("stranger", "dresses-1", x)
    fm.features("stranger", "dresses-1", x)
    assert (len(fm.model.latents), len(fm.model.weights)) == (n_latents, n_weights)
    assert not fm.knows_user("stranger") and "no-such-item" not in fm.catalog_
    np.testing.assert_array_equal(before, fm.score_all("stranger", len(fm.catalog_), x))


def test_time_features_are_local_to_the_given_timezone():
    fm = ContextualFM(context_keys=(), time_features=("hour", "daypart", "weekday"))
    t = T0 + 22 * 3_600_000  # 22:00 UTC on a Tuesday
    utc = fm.features(None, None, {"timestamp": t})
    tokyo = fm.features(None, None, {"timestamp": t, "timezone": "Asia/Tokyo"})
    assert utc == {"t:hour=22": 1.0, "t:daypart=evening": 1.0, "t:weekday=1": 1.0}
    assert tokyo == {"t:hour=7": 1.0, "t:daypart=morning": 1.0, "t:weekday=2": 1.0}
    assert fm.features(None, None, {"timestamp": t, "local_hour": "13"})["t:hour=13"] == 1.0
    assert fm.features(None, None, {}) == {}  # no time: no time features


def test_divergence_is_guarded_and_scores_stay_finite():
    fm = _planted(n_events=400)
    n = len(fm.catalog_)
    x = {"timestamp": T0 + EVENING, "device": "mobile"}
    fm.model.latents["u:u1"][:] = np.nan
    fm.model.latents["x:device=mobile"][:] = np.inf
    assert np.isfinite(fm.score_all("u1", n, x)).all()
    assert np.isfinite(fm.score_all("u2", n, x)).all()
    fm.learn_one("u1", "dresses-1", 1.0, x)
    assert fm.n_resets >= 2
    assert np.isfinite(fm.model.latents["u:u1"]).all()
    assert np.isfinite(fm.model.latents["x:device=mobile"]).all()
    for y in (1e300, -1e300, float("nan"), float("inf")):  # clipped or ignored
        fm.learn_one("u1", "dresses-2", y, {"timestamp": float("nan"), "device": "mobile"})
    huge = ContextualFM(learning_rate=5.0, seed=1, catalog=_shop(5))  # a rate that diverges
    for i in range(300):
        huge.learn_one(f"u{i % 7}", f"office-{i % 5}", 5.0, {"timestamp": T0 + i, "device": "d"})
    scores = huge.score_all("u1", len(huge.catalog_), {"timestamp": T0, "device": "d"})
    assert huge.n_resets > 0  # the guard did work
    assert np.isfinite(scores).all() and np.isfinite(huge.model.intercept)
    assert all(np.isfinite(v).all() and np.abs(v).max() < 1e6 for v in huge.model.latents.values())


def test_memory_is_bounded():
    fm = ContextualFM(max_users=50, user_ttl_s=3_600.0, max_values_per_key=5,
                      context_keys=("page",), time_features=(), catalog=_shop(5))
    for i in range(1_000):
        x = {"timestamp": T0 + i * 1_000, "page": f"p{i}"}
        fm.learn_one(f"u{i}", f"garden-{i % 5}", 1.0, x)
        assert fm.n_users <= 50
    users = [name for name in fm.model.latents if name.startswith("u:")]
    assert len(users) <= 50
    pages = {name for name in fm.model.latents if name.startswith("x:page=")}
    assert pages == {f"x:page=p{i}" for i in range(5)} | {"x:page=<other>"}
    # A user idle longer than user_ttl_s is evicted once the clock moves past it.
    fm.learn_one("late", "garden-1", 1.0, {"timestamp": T0 + 1_000 * 1_000 + 2 * 3_600_000})
    assert fm.n_users == 1 and fm.knows_user("late")


def test_forget_user_erases_their_parameters(planted):
    fm = copy.deepcopy(planted)
    x = {"timestamp": T0 + EVENING, "device": "mobile", "page": "home"}
    n = len(fm.catalog_)
    assert fm.knows_user("u5")
    assert not np.allclose(fm.score_all("u5", n, x), fm.score_all("nobody", n, x))
    fm.forget_user("u5")
    assert not fm.knows_user("u5")
    np.testing.assert_array_equal(fm.score_all("u5", n, x), fm.score_all("nobody", n, x))


def test_same_seed_same_model_and_pickle_continues_identically():
    first, second = _planted(seed=3, n_events=500), _planted(seed=3, n_events=500)
    other = _planted(seed=4, n_events=500)
    x = {"timestamp": T0 + EVENING, "device": "mobile", "page": "home"}
    n = len(first.catalog_)
    np.testing.assert_array_equal(first.score_all("u1", n, x), second.score_all("u1", n, x))
    assert not np.allclose(first.score_all("u1", n, x), other.score_all("u1", n, x))
    clone = pickle.loads(pickle.dumps(first))
    for learner in (first, clone):  # same RNG and initializer state: same negatives, same latents
        for i in range(40):
            later = dict(x, timestamp=x["timestamp"] + i)
            learner.learn_one(f"new{i % 3}", f"office-{i % 30}", 1.5, later)
    np.testing.assert_array_equal(first.score_all("new1", n, x), clone.score_all("new1", n, x))
    assert clone.n_learned == first.n_learned


def test_rows_past_the_catalog_score_the_neutral_value(planted):
    fm = planted
    x = {"timestamp": T0, "device": "mobile"}
    n = len(fm.catalog_)
    scores = fm.score_all("u1", n + 3, x)
    assert scores.shape == (n + 3,)
    assert math.isclose(scores[-1], fm.predict_one("u1", "not-in-catalog", x))
    np.testing.assert_allclose(scores[:n], fm.score_all("u1", n, x))


def test_score_rows_equals_score_all_on_those_rows(planted):
    fm = planted
    n = len(fm.catalog_)
    x = {"timestamp": T0 + EVENING, "device": "desktop", "page": "home"}
    rows = np.array([0, 5, 17, 44, 89, 3, n + 4])  # any order, one past the catalog
    for user in ("u3", "stranger"):
        full = fm.score_all(user, n + 5, x)
        np.testing.assert_allclose(fm.score_rows(user, rows, x), full[rows], rtol=1e-12, atol=1e-12)
    assert fm.score_rows("u3", [], x).shape == (0,)


def test_cached_scores_stay_exact_while_learning_between_rankings():
    """score_all's caches are refreshed incrementally; score_rows computes from scratch."""
    fm = _planted(n_events=300)
    catalog = fm.catalog_
    catalog.upsert(ItemUpdate("late-item", categories=("garden", "sale")))  # a new signature
    rng = random.Random(11)
    rows = np.arange(len(catalog))
    for k in range(60):
        x = {"timestamp": T0 + 31 * DAY_MS + k * 60_000, "device": rng.choice(["mobile", "tv"])}
        for _ in range(k % 3):  # 0, 1 or 2 events between two rankings
            item = catalog.item_id_at(rng.randrange(len(catalog)))
            fm.learn_one(f"u{rng.randrange(5)}", item, 1.0, x)
        if k == 30:  # a re-categorized item moves to another signature
            catalog.upsert(ItemUpdate("garden-3", categories=("office",)))
            fm.index_item("garden-3")
        user = f"u{rng.randrange(5)}"
        np.testing.assert_allclose(fm.score_all(user, len(catalog), x),
                                   fm.score_rows(user, rows, x), rtol=1e-10, atol=1e-10)
