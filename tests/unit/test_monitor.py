"""Monitor and online quality: the arithmetic behind the dashboard and the gauges."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from streams.monitor import Monitor
from streams.quality import OnlineQuality, gini
from streams.records import Event, Recommendation, RecommendedItem


def rec(user: str, items: list[str], rid: str, created: int = 1_050, ts: int = 1_000) -> Recommendation:
    return Recommendation(rid, user, "t-" + rid, tuple(RecommendedItem(i, 1.0, "r", "s") for i in items),
                          "v1", created, ts)


def test_hit_rate_scores_against_the_previous_list_only():
    q = OnlineQuality(window=10)
    q.on_event(Event("e0", "u", "a", "view", 1))  # no list yet: not scored
    assert q.hit_rate() is None
    q.on_recommendation("u", ["a", "b"], "r1")
    q.on_event(Event("e1", "u", "a", "view", 2))
    q.on_event(Event("e2", "u", "c", "view", 3))
    q.on_event(Event("e3", "u", None, "recommendation_request", 4))  # not an engagement
    assert q.hit_rate() == 0.5


def test_ctr_counts_each_recommendation_once_and_forgets_outside_the_window():
    q = OnlineQuality(window=2)
    q.on_recommendation("u", ["a"], "r1")
    q.on_recommendation("u", ["b"], "r2")
    for n in range(3):
        q.on_event(Event(f"c{n}", "u", "a", "click", n, recommendation_id="r1"))
    q.on_event(Event("v", "u", "b", "view", 9, recommendation_id="r2"))  # a view is no click-through
    assert q.ctr() == 0.5
    q.on_recommendation("u", ["c"], "r3")  # r1 leaves the window
    assert q.ctr() == 0.0


def test_coverage_and_gini_follow_exposures():
    q = OnlineQuality(window=100)
    for n in range(10):
        q.on_recommendation(f"u{n}", ["a", "b"], f"r{n}")
    assert q.coverage(catalog_size=4) == 0.5
    assert q.exposure_gini(catalog_size=2) == 0.0
    assert round(q.exposure_gini(catalog_size=4), 2) == 0.5
    assert q.most_exposed(1) == [("a", 10)]
    assert gini([1, 1, 1, 97]) > 0.7


def test_snapshot_and_exposition_agree():
    m = Monitor(clock=iter(range(100, 200, 2)).__next__)
    m.observe_event("processed", Event("e1", "u", "a", "view", 1_000), 0.001)
    m.observe_recommendation(rec("u", ["a", "b"], "r1"), personalized=True)
    m.observe_event("duplicate", Event("e1", "u", "a", "view", 1_000), 0.001)
    m.observe_event("dead_lettered", None, 0.0005)
    m.observe_dead_letter("events", "invalid_json")
    m.set_lag({("events", 0): 3, ("events", 1): 4})
    m.set_readiness([])
    m.sample()
    m.sample()
    snap = m.snapshot()
    assert snap["events"] == {"processed": 1, "duplicate": 1, "dead_lettered": 1}
    assert snap["recommendations"] == 1 and snap["freshness_ms"]["p50"] == 50.0
    assert snap["lag"]["total"] == 7 and snap["ready"] is True
    assert snap["deadletter_rate"] == 1 / 3
    assert snap["throughput_eps"] == 0.0 and len(snap["history"]) == 2
    families = {f.name: f for f in text_string_to_metric_families(m.exposition().decode())}
    assert families["micromoment_freshness_seconds"].type == "histogram"
    lag = {s.labels["partition"]: s.value for s in families["micromoment_consumer_lag"].samples}
    assert lag == {"0": 3.0, "1": 4.0}
    m.set_lag({("events", 1): 0})  # a partition moved away: its series goes
    assert "partition=\"0\"" not in m.exposition().decode()
