"""Online quality per ranking strategy, and the feedback metrics in the monitor."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from streams.monitor import EXPLORATION_SOURCE, Monitor
from streams.quality import CHAMPION, OnlineQuality
from streams.records import Event, Recommendation, RecommendedItem


def view(n: int, user: str, item: str) -> Event:
    return Event(f"e{n}", user, item, "view", n)


def samples(monitor: Monitor, name: str) -> dict[tuple, float]:
    families = {f.name: f for f in text_string_to_metric_families(monitor.exposition().decode())}
    return {tuple(sorted(s.labels.items())): s.value for s in families[name].samples
            if not s.name.endswith("_created")}


def test_champion_and_challengers_are_scored_on_the_same_events():
    q = OnlineQuality(window=100)
    q.on_recommendation("u1", ["a", "b"], "r1", challengers={"pop": ["b", "c"], "new": ["x"]})
    q.on_recommendation("u2", ["a"], "r2", challengers={"pop": ["z"], "new": ["z"]})
    for n, (user, item) in enumerate([("u1", "a"), ("u1", "c"), ("u2", "z"), ("u3", "a")]):
        q.on_event(view(n, user, item))  # u3 has no list: scored for nobody
    assert q.strategies() == [CHAMPION, "new", "pop"]
    assert q.hit_rate() == q.hit_rate(CHAMPION) == 1 / 3  # u1:a hit, u1:c miss, u2:z miss
    assert q.hit_rate("pop") == 2 / 3  # u1:a miss, u1:c hit, u2:z hit
    assert q.hit_rate("new") == 1 / 3
    assert q.hit_rate("never-seen") is None


def test_a_list_without_challengers_replaces_the_previous_ones():
    q = OnlineQuality(window=100)
    q.on_recommendation("u1", ["a"], "r1", challengers={"pop": ["b"]})
    q.on_recommendation("u1", ["a"], "r2")  # the next trigger had no challenger list
    q.on_event(view(1, "u1", "b"))
    assert q.hit_rate() == 0.0 and q.hit_rate("pop") is None


def test_challengers_are_not_exposures_and_forget_drops_every_strategy():
    q = OnlineQuality(window=100)
    q.on_recommendation("u1", ["a"], "r1", challengers={"pop": ["b", "c"]})
    assert q.most_exposed() == [("a", 1)]  # only what was served counts as exposure
    q.forget("u1")
    q.on_event(view(1, "u1", "b"))
    assert q.hit_rate("pop") is None and q.hit_rate() is None


def test_window_bounds_each_strategy():
    q = OnlineQuality(window=3)
    q.on_recommendation("u1", ["a"], "r1", challengers={"pop": ["b"]})
    for n in range(10):
        q.on_event(view(n, "u1", "b"))
    q.on_event(view(11, "u1", "a"))
    assert q.hit_rate() == 1 / 3 and q.hit_rate("pop") == 2 / 3


def recommendation(rid: str, sources: list[str]) -> Recommendation:
    items = tuple(RecommendedItem(f"i{n}", 1.0, "r", source, 0.5 if source == EXPLORATION_SOURCE
                                  else 1.0) for n, source in enumerate(sources))
    return Recommendation(rid, "u1", "t-" + rid, items, "v1", 1_050, 1_000)


def test_monitor_exports_hit_rate_per_strategy_and_exploration_share():
    m = Monitor(clock=iter(range(100, 200)).__next__)
    m.observe_recommendation(recommendation("r1", ["content", EXPLORATION_SOURCE, "popularity",
                                                   "content"]), True, {"pop": ["i9"]})
    m.observe_event("processed", view(1, "u1", "i9"), 0.001)
    m.sample()
    hit = samples(m, "micromoment_online_hit_rate")
    assert hit == {(("strategy", "champion"),): 0.0, (("strategy", "pop"),): 1.0}
    assert samples(m, "micromoment_exploration_share") == {(): 0.25}
    snap = m.snapshot()["quality"]
    assert snap["hit_rate_by_strategy"] == {"champion": 0.0, "pop": 1.0}
    assert snap["exploration_share"] == 0.25


def test_monitor_turns_pipeline_counts_into_counters():
    m = Monitor()
    m.observe_pipeline({"rewards:click": 3, "rewards:purchase": 1, "expired": 5,
                        "bursts_skipped": 2, "resets": 1})
    m.observe_pipeline({"rewards:click": 4, "rewards:purchase": 1, "expired": 5,
                        "bursts_skipped": 2, "resets": 1})
    rewards = samples(m, "micromoment_rewards")
    assert rewards == {(("event_type", "click"),): 4.0, (("event_type", "purchase"),): 1.0}
    assert samples(m, "micromoment_impressions_expired") == {(): 5.0}
    assert samples(m, "micromoment_bursts_skipped") == {(): 2.0}
    m.observe_pipeline({"expired": 1})  # a replaced recommender starts from zero again
    assert samples(m, "micromoment_impressions_expired") == {(): 6.0}


def test_a_challenger_list_equal_to_the_champions_is_stored_once():
    q = OnlineQuality(window=10)
    q.on_recommendation("u1", ["a", "b"], "r1", challengers={"same": ["a", "b"], "other": ["c"]})
    champion, same, other = q._last["u1"]  # the per-user memory: one LRU entry per user
    assert same is champion and other == ("c",)
    q.on_event(view(1, "u1", "b"))
    assert q.hit_rate() == q.hit_rate("same") == 1.0 and q.hit_rate("other") == 0.0
