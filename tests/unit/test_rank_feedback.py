"""Exploration and the feedback loop: propensities, rewards, the bandit learning, challengers.

The shop of ``test_rank_selection`` (categories ``c0 .. c4``, item ``i`` in ``c{i % 5}``).
Lists that explore are served with a ``recommendation_id``; feedback events carry it.
"""

from __future__ import annotations

import collections
import pickle

import numpy as np
import pytest

from streams.rank.explore import exploit_propensities, inclusion_probabilities
from streams.records import UserControls
from tests.unit.test_rank_selection import Shop, category, ids

N_SAMPLES = 4_000


def test_propensities_are_the_frequencies_of_repeated_draws():
    # With the model fixed (nothing learned between the draws: impressions are only
    # learned when rewarded or resolved), each item's reported propensity must be its
    # frequency in the lists, within sampling error, exploit and explored items alike.
    shop = Shop(exploration_rate=0.2)
    shop.fan_of("ann", 2)
    state = shop.states["ann"]
    counts: collections.Counter = collections.Counter()
    reported: dict[str, float] = {}
    sources: dict[str, set] = collections.defaultdict(set)
    for n in range(N_SAMPLES):
        listed = shop.rec.recommend("ann", state, {"device": "mobile"}, 10,
                                    recommendation_id=f"r{n}")
        assert len(listed) == 10 and listed[0].source != "explore"  # the top slot is kept
        for r in listed:
            counts[r.item_id] += 1
            assert reported.setdefault(r.item_id, r.propensity) == r.propensity  # fixed state
            sources[r.item_id].add(r.source)
            if r.source == "explore":
                assert r.reason.startswith("something different"), r.reason
    assert shop.rec.selector.bandit.n_learned == 0
    explored = {i for i, s in sources.items() if "explore" in s}
    assert len(explored) >= 3
    # Propensities are probabilities of being listed: they sum to the list length.
    assert sum(reported.values()) == pytest.approx(10, abs=0.02)
    for item, p in reported.items():
        frequency = counts[item] / N_SAMPLES
        bound = 4 * np.sqrt(p * (1 - p) / N_SAMPLES) + 1e-9
        assert abs(frequency - p) <= bound, (item, frequency, p)
    assert any(p == 1.0 for p in reported.values()) and any(p < 0.5 for p in reported.values())


def test_no_exploration_without_an_id_when_disabled_or_at_rate_zero():
    shop = Shop(exploration_rate=0.3)
    shop.fan_of("ann", 1)
    plain = shop.recommend("ann", 10)
    assert all(r.propensity == 1.0 and r.source != "explore" for r in plain)
    assert shop.rec.selector.n_pending == 0  # nothing remembered without an id
    for n in range(20):
        assert ids(shop.recommend("ann", 10, recommendation_id=f"q{n}", explore=False)) == ids(
            plain)
    off = Shop(exploration_rate=0.0)
    off.fan_of("ann", 1)
    assert all(r.propensity == 1.0 for n in range(20)
               for r in off.recommend("ann", 10, recommendation_id=f"z{n}"))


def test_the_same_recommendation_id_gets_the_same_list_and_is_remembered_once():
    shop = Shop(exploration_rate=0.5)
    shop.fan_of("ann", 1)
    lists = {tuple(ids(shop.recommend("ann", 10, recommendation_id=f"r{n}"))) for n in range(30)}
    assert len(lists) > 1  # exploration varies between requests...
    again = [ids(shop.recommend("ann", 10, recommendation_id="r7")) for _ in range(3)]
    assert again[0] == again[1] == again[2]  # ...but a re-emitted trigger is the same list
    assert shop.rec.selector.n_pending == 30
    assert shop.rec.selector.stats()["impressions"] == 30


def test_inclusion_probabilities_and_exploit_propensities():
    pi = inclusion_probabilities(np.array([2.0, 1.0, 0.5, 0.1]), target=1.5)
    assert pi.sum() == pytest.approx(1.5) and np.all((0 <= pi) & (pi <= 1))
    assert list(pi) == sorted(pi, reverse=True)
    keep = exploit_propensities(5, pi)
    assert keep[0] == 1.0 and np.all(np.diff(keep) <= 0)
    # Expected list length: the kept exploit items plus the explored ones.
    assert keep.sum() + pi.sum() == pytest.approx(5)


# -- rewards ----------------------------------------------------------------------------


def _served(shop: Shop, user: str, rid: str) -> list[str]:
    shop.act(user, None, "recommendation_request")
    return ids(shop.recommend(user, 10, recommendation_id=rid))


def test_a_click_with_the_recommendation_id_is_one_reward_per_item():
    shop = Shop(exploration_rate=0.1)
    shop.fan_of("ann", 3)
    listed = _served(shop, "ann", "rec-1")
    stats = shop.rec.selector.stats
    learned = shop.rec.selector.bandit.n_learned
    shop.act("ann", listed[2], "click", recommendation_id="rec-1")
    assert stats()["rewards"] == 1 and shop.rec.selector.bandit.n_learned == learned + 1
    shop.act("ann", listed[2], "click", recommendation_id="rec-1")  # clicked again: once
    assert stats()["rewards"] == 1 and stats()["reward_upgrades"] == 0
    shop.act("ann", listed[2], "purchase", recommendation_id="rec-1")  # raises the reward
    assert stats()["reward_upgrades"] == 1 and stats()["reward_sum"] == pytest.approx(1.0)
    assert shop.rec.selector.bandit.n_learned == learned + 1  # not a second observation
    shop.act("ann", listed[3], "view", recommendation_id="rec-1")  # a view is no reward
    shop.act("bob", listed[4], "click", recommendation_id="rec-1")  # not bob's list
    shop.act("ann", "i199" if "i199" not in listed else "i198", "click",
             recommendation_id="rec-1")  # not in the list
    shop.act("ann", listed[5], "click", recommendation_id="unknown")
    assert stats()["rewards"] == 1


def test_impressions_resolve_as_zero_rewards_when_the_window_closes():
    shop = Shop(attribution_window_s=60.0)
    shop.fan_of("ann", 3)
    listed = _served(shop, "ann", "rec-1")
    shop.act("ann", listed[0], "click", recommendation_id="rec-1")
    selector = shop.rec.selector
    assert selector.n_pending == 1 and selector.stats()["zero_rewards"] == 0
    t = shop.states["ann"].last_seen
    assert shop.rec.close_expired(t + 30_000) == 0  # still open
    assert shop.rec.close_expired(t + 120_000) == 1
    assert selector.n_pending == 0
    assert selector.stats()["zero_rewards"] == 9 and selector.stats()["resolved"] == 1
    assert selector.bandit.n_learned == 10  # one observation per listed item
    shop.act("ann", listed[1], "click", recommendation_id="rec-1")  # too late
    assert selector.stats()["rewards"] == 1


def test_expired_impressions_close_lazily_by_event_time():
    shop = Shop(attribution_window_s=10.0)
    shop.fan_of("ann", 3)
    _served(shop, "ann", "rec-1")
    for _ in range(12):  # events are 1 s apart: 12 s later the window has closed
        shop.act("bob", "i001")
    assert shop.rec.selector.n_pending == 0
    assert shop.rec.selector.stats()["zero_rewards"] == 10


def test_pending_impressions_are_bounded_and_survive_pickling():
    shop = Shop(max_pending_impressions=5)
    shop.fan_of("ann", 3)
    for n in range(8):
        _served(shop, "ann", f"rec-{n}")
    selector = shop.rec.selector
    assert selector.n_pending == 5 and selector.stats()["resolved_early"] == 3
    clone = pickle.loads(pickle.dumps(shop.rec))
    listed = ids(shop.recommend("ann", 10, recommendation_id="rec-7"))
    assert clone.selector.n_pending == 5
    shop.rec = clone
    shop.act("ann", listed[1], "click", recommendation_id="rec-7")
    assert clone.selector.stats()["rewards"] == 1
    shop.act("ann", listed[1], "click", recommendation_id="rec-0")  # evicted: gone
    assert clone.selector.stats()["rewards"] == 1


def test_reset_user_drops_pending_impressions_and_what_was_learned():
    shop = Shop()
    shop.fan_of("ann", 3)
    listed = _served(shop, "ann", "rec-1")
    _served(shop, "bob", "rec-2")
    assert shop.rec.content.knows_user("ann")
    shop.rec.reset_user("ann")
    assert not shop.rec.content.knows_user("ann") and not shop.rec.mf.knows_user("ann")
    assert shop.rec.selector.n_pending == 1  # bob's
    shop.act("ann", listed[0], "click", recommendation_id="rec-1")
    assert shop.rec.selector.stats()["rewards"] == 0


# -- the bandit learns ---------------------------------------------------------------------


def test_rewards_change_later_rankings_the_bandit_learns():
    # Shoppers who click only items from categories new to them: after a few hundred
    # lists of feedback, the bandit gives those items more of the exploration slots
    # than a twin shop whose shoppers clicked nothing.
    rewarded, ignored = (Shop(exploration_rate=0.2, diversity=0.5, seed=3) for _ in range(2))
    users = [f"u{n}" for n in range(20)]
    for shop in (rewarded, ignored):
        for n, user in enumerate(users):
            shop.fan_of(user, n % 5)
    for round_ in range(25):
        for user in users:
            for shop, clicks in ((rewarded, True), (ignored, False)):
                rid = f"{user}-{round_}"
                state = shop.states[user]
                seen = {category(i) for i in state.recent_items}
                listed = shop.rec.recommend(user, state, {}, 10, recommendation_id=rid)
                if clicks:
                    for r in listed:
                        if category(r.item_id) not in seen:
                            shop.act(user, r.item_id, "click", recommendation_id=rid)
                            break
    for shop in (rewarded, ignored):
        shop.rec.close_expired(shop.states["u0"].last_seen + 10**9)
    assert rewarded.rec.selector.stats()["rewards"] > 50
    assert ignored.rec.selector.stats()["rewards"] == 0
    for shop in (rewarded, ignored):
        shop.fan_of("probe", 2)
    # The bandit alone: its expected reward of an item from a category new to the user
    # over a familiar one, other features equal, in the context of the next request.
    gains = []
    for shop in (rewarded, ignored):
        bandit = shop.rec.selector.bandit
        context = bandit.context_vector({}, shop.states["probe"].last_seen)
        unseen, familiar = np.array([[1, 0.3, 0.3, 1, 1, 0], [1, 0.3, 0.3, 0, 1, 0]], float)
        mean, _ = bandit.estimate(context, np.vstack([unseen, familiar]))
        gains.append(mean[0] - mean[1])
    assert gains[0] > 0.05 and abs(gains[1]) < 1e-9
    # The whole loop (bandit and learners): the same requests get other lists afterwards.
    def draws(shop: Shop) -> list[list[str]]:
        state = shop.states["probe"]
        return [ids(shop.rec.recommend("probe", state, {}, 10, recommendation_id=f"p-{n}"))
                for n in range(8)]

    assert draws(rewarded) != draws(ignored)


# -- challengers -----------------------------------------------------------------------------


def test_challengers_are_scored_beside_the_champion_without_side_effects():
    shop = Shop(exploration_rate=0.4)
    shop.fan_of("ann", 1)
    state = shop.states["ann"]
    champion = shop.rec.recommend("ann", state, {}, 10, recommendation_id="c1")
    pending = shop.rec.selector.n_pending
    lists = shop.rec.challenger_lists("ann", state, {}, 10)
    assert set(lists) == {"popularity", "no-explore", "no-diversity"}
    assert all(len(v) == 10 for v in lists.values())
    assert shop.rec.selector.n_pending == pending  # nothing remembered
    # no-explore is the champion with its explored slots given back to exploit items
    exploit = [r.item_id for r in champion if r.source != "explore"]
    assert lists["no-explore"][: len(exploit)] == exploit
    popularity = shop.rec.popularity
    allowed = shop.rec.candidates(state)
    expected = sorted((shop.rec.catalog_.item_id_at(r) for r in np.flatnonzero(allowed)),
                      key=lambda i: (-popularity.predict_one("x", i), int(i[1:])))[:10]
    assert lists["popularity"] == expected
    # Asking again (no recommend in between) or cold gives the same; the champion's draw
    # for an id does not depend on challengers having been computed.
    assert shop.rec.challenger_lists("ann", state, {}, 10) == lists
    assert ids(shop.rec.recommend("ann", state, {}, 10, recommendation_id="c1")) == ids(champion)
    fresh = Shop(exploration_rate=0.4)
    fresh.fan_of("ann", 1)
    assert fresh.rec.challenger_lists("ann", fresh.states["ann"], {}, 10) == lists
    muted = UserControls(muted_categories=frozenset({"c1"}))
    for listed in shop.rec.challenger_lists("ann", state, {}, 10, muted).values():
        assert "c1" not in {category(i) for i in listed}
    assert shop.rec.challenger_lists("ann", state, {}, 10, UserControls(personalization=0.0))[
        "no-explore"] == ids(shop.recommend("ann", 10, personalized=False))
