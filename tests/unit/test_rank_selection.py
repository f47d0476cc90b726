"""Selection after scoring: filters, user controls, diversity and explanations.

A small shop (``Shop``) with categories ``c0 .. c4`` (item ``i`` is in ``c{i % 5}``) and a
skewed popularity from background shoppers; tests act as one user and read the lists.
The exploration side (bandit, propensities, rewards) is in ``test_rank_feedback.py``.
"""

from __future__ import annotations

import collections
import random
import re

import numpy as np
import pytest

from streams.rank.diversity import category_similarity, mmr
from streams.ranking import Recommender
from streams.records import Event, ItemUpdate, RecommendedItem, UserControls
from streams.settings import Settings
from streams.state import UserState

T0 = 1_700_000_000_000
N_CATEGORIES = 5


def category(item_id: str) -> str:
    return f"c{int(item_id[1:]) % N_CATEGORIES}"


class Shop:
    """A recommender over ``n_items`` items, warmed by ``n_background`` events of 60 other
    shoppers with a favourite category each (so the learned blend values content)."""

    def __init__(self, n_items: int = 200, seed: int = 0, n_background: int = 800,
                 attributes: dict[int, dict] | None = None, **settings) -> None:
        settings.setdefault("skip_bursts", False)  # one event a second all day is no bot here
        # The blend's prior weights, not learned: these tests are about what selection does
        # with the scores, whatever the blend would learn from this small shop.
        self.rec = Recommender(Settings(seed=seed, **settings), learn_blend=False)
        for i in range(n_items):
            self.rec.apply_item(ItemUpdate(f"i{i:03d}", categories=(f"c{i % N_CATEGORIES}",),
                                           attributes=(attributes or {}).get(i, {})))
        self.states: dict[str, UserState] = {}
        self.n = 0
        rng = random.Random(seed)
        per_category = n_items // N_CATEGORIES
        for _ in range(n_background):
            # Shopper s prefers category s % 5 (80%), else any item; Zipf-like within both.
            shopper = rng.randrange(60)
            rank = min(int(rng.paretovariate(0.8)) - 1, per_category - 1)
            if rng.random() < 0.8:
                item = shopper % N_CATEGORIES + N_CATEGORIES * rank
            else:
                item = min(int(rng.paretovariate(0.8)) - 1, n_items - 1)
            self.act(f"bg{shopper}", f"i{item:03d}", rng.choice(["view", "view", "click"]))

    def act(self, user: str, item: str | None, kind: str = "view",
            recommendation_id: str | None = None, context: dict | None = None) -> Event:
        self.n += 1
        event = Event(f"e{self.n}", user, item, kind, T0 + self.n * 1_000,
                      context=context or {}, recommendation_id=recommendation_id)
        state = self.states.setdefault(user, UserState())
        if state.apply(event, recent_max=50, dedupe_window=256):
            self.rec.learn_one(event, state)
        return event

    def recommend(self, user: str, k: int = 10, **kwargs) -> list[RecommendedItem]:
        return self.rec.recommend(user, self.states.get(user), {}, k, **kwargs)

    def fan_of(self, user: str, cat: int, n: int = 6) -> None:
        """``user`` views ``n`` items of category ``c{cat}``: one dominant taste."""
        for j in range(n):
            self.act(user, f"i{cat + N_CATEGORIES * (10 + j):03d}")


def ids(items: list[RecommendedItem]) -> list[str]:
    return [r.item_id for r in items]


# -- filters --------------------------------------------------------------------------------


def test_muted_items_and_categories_are_never_shown():
    shop = Shop(exploration_rate=0.5)
    shop.fan_of("ann", 2)
    before = ids(shop.recommend("ann", 20))
    muted_item = before[0]
    controls = UserControls(muted_items=frozenset({muted_item}),
                            muted_categories=frozenset({"c2", "c4"}))
    for n in range(40):  # explored items too: many lists, each with its own draw
        listed = shop.recommend("ann", 20, controls=controls, recommendation_id=f"r{n}")
        assert len(listed) == 20
        assert muted_item not in ids(listed)
        assert not {category(i) for i in ids(listed)} & {"c2", "c4"}
    challengers = shop.rec.challenger_lists("ann", shop.states["ann"], {}, 20, controls)
    for listed in challengers.values():
        assert muted_item not in listed and not {category(i) for i in listed} & {"c2", "c4"}


def test_business_rules_from_configuration_are_never_shown():
    shop = Shop(exclude_categories=frozenset({"c1"}),
                exclude_item_attributes=frozenset({"adult=true"}),
                attributes={0: {"adult": "true"}, 2: {"adult": "false"}}, exploration_rate=0.5)
    shop.fan_of("ann", 1)  # a taste for the excluded category changes nothing
    for n in range(30):
        for user in ("ann", "newcomer"):
            listed = ids(shop.recommend(user, 30, recommendation_id=f"{user}{n}"))
            assert len(listed) == 30
            assert "c1" not in {category(i) for i in listed}
            assert "i000" not in listed
    assert "i002" in ids(shop.recommend("newcomer", 60))  # adult=false is fine
    # An item re-categorized by the catalog feed into an excluded category goes too.
    shown = ids(shop.recommend("newcomer", 5))[0]
    shop.rec.apply_item(ItemUpdate(shown, categories=("c1",)))
    assert shown not in ids(shop.recommend("newcomer", 60))


def test_purchased_and_unavailable_items_are_never_shown_even_when_exploring():
    shop = Shop(exploration_rate=0.6)
    shop.fan_of("ann", 0)
    bought = ids(shop.recommend("ann", 3))
    for item in bought:
        shop.act("ann", item, "purchase")
    gone = ids(shop.recommend("ann", 3))
    for item in gone:
        shop.rec.remove_item(item)
    for n in range(40):
        listed = ids(shop.recommend("ann", 15, recommendation_id=f"x{n}"))
        assert not set(listed) & set(bought + gone)


# -- user controls --------------------------------------------------------------------------


def test_personalization_zero_is_the_non_personalized_list_and_one_the_default():
    shop = Shop()
    shop.fan_of("ann", 3)
    zero = shop.recommend("ann", 10, controls=UserControls(personalization=0.0))
    assert ids(zero) == ids(shop.recommend("ann", 10, personalized=False))
    assert {r.source for r in zero} == {"popularity"}
    full = shop.recommend("ann", 10, controls=UserControls(personalization=1.0))
    assert ids(full) == ids(shop.recommend("ann", 10))


def test_personalization_in_between_scales_the_personal_part():
    shop = Shop(diversity=0.0)
    shop.fan_of("ann", 3)
    share = {}
    for p in (0.0, 0.1, 0.3, 1.0):
        listed = shop.recommend("ann", 20, controls=UserControls(personalization=p))
        share[p] = sum(category(i) == "c3" for i in ids(listed)) / 20
    assert share[0.0] <= share[0.1] <= share[0.3] <= share[1.0]
    assert share[0.0] < share[1.0]
    assert 0.0 < share[0.1] < 1.0  # a real in-between, not one of the ends


def test_novelty_moves_towards_unseen_categories_and_less_popular_items():
    shop = Shop(diversity=0.0)
    shop.fan_of("ann", 3)
    seen = {category(i) for i in shop.states["ann"].recent_items}
    popularity = shop.rec.popularity

    def unseen_share(novelty: float) -> float:
        listed = ids(shop.recommend("ann", 10, controls=UserControls(novelty=novelty)))
        return sum(category(i) not in seen for i in listed) / len(listed)

    def mean_popularity(novelty: float) -> float:  # a newcomer: every category is unseen
        listed = ids(shop.recommend("newcomer", 10, controls=UserControls(novelty=novelty)))
        return float(np.mean([popularity.predict_one("x", i) for i in listed]))

    assert ids(shop.recommend("ann", 10, controls=UserControls(novelty=0.5))) == ids(
        shop.recommend("ann", 10))  # 0.5 is neutral
    assert unseen_share(1.0) > unseen_share(0.75) > unseen_share(0.5) >= unseen_share(0.0)
    assert 0 < unseen_share(0.75) < 1  # a mix
    assert mean_popularity(1.0) < mean_popularity(0.5) <= mean_popularity(0.0)
    new = shop.recommend("ann", 10, controls=UserControls(novelty=1.0))
    assert any(r.reason.startswith("new to you: c") for r in new)  # says why
    assert all(popularity.predict_one("x", r.item_id) > 0 for r in new)  # the tail, not dead


# -- diversity ------------------------------------------------------------------------------


def test_diversity_brings_more_categories_for_a_one_category_user_keeping_relevance():
    plain, diverse = Shop(diversity=0.0), Shop(diversity=0.5)
    for shop in (plain, diverse):
        shop.fan_of("ann", 4, n=8)
    relevance = plain.recommend("ann", 10)
    varied = diverse.recommend("ann", 10)
    categories = {category(i) for i in ids(relevance)}, {category(i) for i in ids(varied)}
    assert len(categories[1]) > len(categories[0])
    assert varied[0].item_id == relevance[0].item_id  # the best item still leads
    ranked = ids(plain.recommend("ann", 50))
    assert all(i in ranked for i in ids(varied))  # picked from the relevant ones
    best_of = collections.defaultdict(list)
    for item in ranked:
        best_of[category(item)].append(item)
    for item in ids(varied):  # within a kind, among the most relevant (embeddings count too)
        if category(item) != "c4":
            assert item in best_of[category(item)][:3]
    in_c4 = [i for i in ids(varied) if category(i) == "c4"]
    assert len(in_c4) >= 3  # the taste still dominates
    assert all(ranked.index(i) < 20 for i in in_c4)  # near the top of the relevance order


def test_mmr_and_category_similarity():
    relevance = np.array([1.0, 0.9, 0.8, 0.3])
    sim = category_similarity(np.array([[0], [0], [0], [1]]))
    assert mmr(relevance, sim, 4, 0.0).tolist() == [0, 1, 2, 3]
    assert mmr(relevance, sim, 4, 0.6).tolist()[:2] == [0, 3]
    assert mmr(relevance, sim, 2, 1.0).tolist() == [0, 3]  # only variety counts


# -- explanations ---------------------------------------------------------------------------


REASON_FORMS = [
    r"more c\d: you (viewed|bought) i\d{3}", r"because you like c\d", r"#\d+ in c\d right now",
    r"#\d+ most popular right now", r"popular right now", r"available now",
    r"because you (viewed|bought) i\d{3}", r"often (viewed|bought) after i\d{3}",
    r"new in c\d, a category you like", r"just listed in c\d", r"something different.*",
    r"still undiscovered in c\d", r"new to you: c\d",
    r"popular .*", r"picked for .*", r"matches your taste", r"matches what you like",
]


def test_reasons_differ_within_a_list_and_cite_true_evidence():
    shop = Shop(diversity=0.0)
    shop.act("ann", "i007", "click")  # one event: a list of c2 items
    shop.act("ann", "i012", "view")
    listed = shop.recommend("ann", 10)
    reasons = [r.reason for r in listed]
    assert len(set(reasons)) == len(reasons), reasons
    assert all(any(re.fullmatch(form, reason) for form in REASON_FORMS) for reason in reasons)
    state = shop.states["ann"]
    for r in listed:
        if m := re.fullmatch(r"more (c\d): you (viewed|bought) (i\d{3})", r.reason):
            assert m[1] == category(r.item_id) and m[3] in state.recent_items
            assert category(m[3]) == m[1]
        if m := re.fullmatch(r"#(\d+) in (c\d) right now", r.reason):
            assert m[2] == category(r.item_id)
            pop = shop.rec.popularity
            mine = pop.predict_one("x", r.item_id)
            rivals = [f"i{i:03d}" for i in range(200) if category(f"i{i:03d}") == m[2]]
            better = [i for i in rivals if pop.predict_one("x", i) > mine
                      and i not in state.recent_items]
            assert int(m[1]) == 1 + len(better)


def test_cold_start_reasons_are_distinct_popularity_evidence():
    shop = Shop()
    listed = shop.recommend("nobody", 10)
    reasons = [r.reason for r in listed]
    assert reasons[0] == "popular right now"
    assert len(set(reasons)) == 10, reasons
    assert all(re.fullmatch(r"popular right now|#\d+ (in c\d|most popular) right now", reason)
               for reason in reasons)


def test_a_new_item_in_a_liked_category_says_so():
    shop = Shop(diversity=0.0)
    shop.fan_of("ann", 1)
    shop.rec.apply_item(ItemUpdate("fresh", categories=("c1",)))  # listed after events began
    listed = shop.recommend("ann", 200)
    fresh = next(r for r in listed if r.item_id == "fresh")
    assert fresh.source == "content"
    assert fresh.reason == "new in c1, a category you like"


def test_explain_false_leaves_reasons_empty():
    shop = Shop()
    shop.fan_of("ann", 1)
    assert all(r.reason == "" for r in shop.recommend("ann", 10, explain=False))
    assert ids(shop.recommend("ann", 10, explain=False)) == ids(shop.recommend("ann", 10))


@pytest.mark.parametrize("k", [1, 3, 199, 500])
def test_list_length_is_k_unless_fewer_candidates(k):
    shop = Shop()
    shop.fan_of("ann", 0)
    listed = shop.recommend("ann", k, recommendation_id=f"len{k}")
    candidates = int(shop.rec.candidates(shop.states["ann"]).sum())
    assert len(listed) == min(k, candidates)
    assert len(set(ids(listed))) == len(listed)
