"""What ops see: Prometheus metrics, rolling windows, and one snapshot for the dashboard.

The agents report each record's outcome here; a timer refreshes what can only be read
periodically (consumer lag, table sizes, readiness) and samples a short history. Metric
names follow Prometheus conventions (``micromoment_`` prefix, base units, ``_total``
counters) and labels are bounded sets: never a user or item id.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections import deque
from typing import Any, Callable

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST as _PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from streams.quality import OnlineQuality
from streams.records import EVENT_TYPES, Event, Recommendation

__all__ = ["Monitor", "monitor", "CONTENT_TYPE_LATEST", "OUTCOMES", "readiness_problems"]

OUTCOMES = ("processed", "duplicate", "dead_lettered")
#: The exposition content type without its charset parameter, which aiohttp (Faust's web
#: driver) refuses inside ``content_type``; UTF-8 is the format's default anyway.
CONTENT_TYPE_LATEST = "; ".join(part for part in _PROMETHEUS_CONTENT_TYPE.split("; ")
                                if not part.startswith("charset="))
_KNOWN_TYPES = frozenset(EVENT_TYPES)
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0, 2.5)
_FRESHNESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                      10.0, 30.0, 60.0)
#: ``RecommendedItem.source`` of an item the bandit showed to explore, not to exploit
#: (``streams.rank.selection.SOURCE_EXPLORE``).
EXPLORATION_SOURCE = "explore"
#: Event types a reward can be attributed for (the ``event_type`` label's values).
_REWARD_TYPES = ("click", "add_to_cart", "purchase")


def readiness_problems(app: Any) -> list[str]:
    """Why a Faust worker cannot serve fresh results yet (empty when it can)."""
    problems = []
    if getattr(app, "rebalancing", False):
        problems.append("consumer group is rebalancing")
    recovery = app.tables.recovery
    if recovery.in_recovery or not recovery.completed.is_set():
        problems.append("tables are recovering from their changelogs")
    if not app.consumer.assignment():
        problems.append("no partitions assigned yet")
    return problems


def _percentile(values: deque[float], q: float) -> float | None:
    return float(np.percentile(np.fromiter(values, float), q)) if values else None


class Monitor:
    """Metrics and windows of one worker process.

    >>> m = Monitor()
    >>> m.observe_dead_letter("events", "invalid_json")
    >>> m.observe_event("dead_lettered", None, 0.0002)
    >>> m.snapshot()["events"]["dead_lettered"], m.snapshot()["deadletter_rate"]
    (1, 1.0)
    >>> b"micromoment_deadletters_total" in m.exposition()
    True
    """

    def __init__(self, registry: CollectorRegistry | None = None, window: int = 2_000,
                 history: int = 150, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry or CollectorRegistry()
        self.clock = clock
        r = self.registry
        self.events = Counter("micromoment_events", "Input events by outcome and event type",
                              ["outcome", "event_type"], registry=r)
        self.deadletters = Counter("micromoment_deadletters", "Records sent to the dead-letter "
                                   "topic, by input topic and reason", ["topic", "reason"], registry=r)
        self.processing = Histogram("micromoment_processing_seconds", "Time to process one record",
                                    ["agent"], buckets=_LATENCY_BUCKETS, registry=r)
        self.freshness = Histogram("micromoment_freshness_seconds", "Trigger event timestamp to "
                                   "recommendation emitted", buckets=_FRESHNESS_BUCKETS, registry=r)
        self.recommendations = Counter("micromoment_recommendations", "Recommendations emitted",
                                       ["personalized"], registry=r)
        self.consumer_lag = Gauge("micromoment_consumer_lag", "Messages not yet processed, per "
                                  "input topic-partition owned by this worker", ["topic", "partition"],
                                  registry=r)
        self.rebalances = Counter("micromoment_rebalances", "Consumer-group rebalances seen", registry=r)
        self.table_keys = Gauge("micromoment_table_keys", "Keys held in each table", ["table"], registry=r)
        self.model_updates = Counter("micromoment_model_updates", "Learning steps per learner",
                                     ["learner"], registry=r)
        self.hit_rate = Gauge("micromoment_online_hit_rate", "Prequential hit rate@K: engagements "
                              "with an item of the user's last recommendation", ["strategy"], registry=r)
        self.ctr = Gauge("micromoment_recommendation_ctr", "Recommendations with a click-through, "
                         "sliding window", registry=r)
        self.coverage = Gauge("micromoment_catalog_coverage", "Share of the available catalog "
                              "recommended in the sliding window", registry=r)
        self.gini = Gauge("micromoment_exposure_gini", "Gini of item exposures in the sliding "
                          "window (0 even, 1 one item)", registry=r)
        self.rewards = Counter("micromoment_rewards", "Feedback events carrying a "
                               "recommendation_id, learned as rewards, by event type",
                               ["event_type"], registry=r)
        self.impressions_expired = Counter("micromoment_impressions_expired", "Recommended "
                                           "impressions whose attribution window closed",
                                           registry=r)
        self.zero_rewards = Counter("micromoment_zero_rewards", "Items of expired impressions "
                                    "that got no feedback: zero rewards for the bandit",
                                    registry=r)
        self.exploration_share = Gauge("micromoment_exploration_share", "Share of recommended "
                                       "items chosen to explore, sliding window", registry=r)
        self.bursts_skipped = Counter("micromoment_bursts_skipped", "Events not learned from "
                                      "because they looked like a bot-like burst", registry=r)
        self.model_info = Info("micromoment_model", "The serving model", registry=r)
        self.ready = Gauge("micromoment_ready", "1 when partitions are assigned and tables recovered",
                           registry=r)
        self.quality = OnlineQuality(window=window)
        self._freshness_ms: deque[float] = deque(maxlen=window)
        self._recent_dead: deque[int] = deque(maxlen=window)
        self._explored: deque[tuple[int, int]] = deque(maxlen=window)  # (explored, items)
        self._pipeline_counts: dict[str, int] = {}
        self._totals: Tally[str] = Tally()
        self._recommended = 0
        self._learned: dict[str, int] = {}
        self._history: deque[dict[str, Any]] = deque(maxlen=history)
        self._last_sample: tuple[float, int] | None = None
        self._throughput: float | None = None
        self._lag: list[dict[str, Any]] = []
        self._ready = False
        self._reasons: list[str] = ["worker starting"]
        self._model_version = ""
        self.worker_url = ""
        self.catalog_size: Callable[[], int] = lambda: 0
        self.categories_of: Callable[[str], tuple[str, ...]] = lambda item: ()

    # -- per record -------------------------------------------------------------------------
    def observe_event(self, outcome: str, event: Event | None, seconds: float) -> None:
        """Count one record of the events topic; score it against the user's last list first."""
        event_type = event.event_type if event is not None else "unknown"
        if event_type not in _KNOWN_TYPES:
            event_type = "unknown"
        self.events.labels(outcome, event_type).inc()
        self.processing.labels("events").observe(seconds)
        self._totals[outcome] += 1
        self._recent_dead.append(outcome == "dead_lettered")
        if event is not None and outcome == "processed":
            self.quality.on_event(event)

    def observe_dead_letter(self, topic: str, reason: str) -> None:
        """Count a dead letter by input topic kind (events, items, users) and error type."""
        self.deadletters.labels(topic, reason).inc()

    def observe_record(self, agent: str, seconds: float) -> None:
        self.processing.labels(agent).observe(seconds)

    def observe_recommendation(self, rec: Recommendation, personalized: bool,
                               challengers: dict[str, list[str]] | None = None) -> None:
        """Count a sent recommendation; remember it, and the challengers' lists for the
        same trigger, to score the user's next engagement against."""
        self.recommendations.labels("true" if personalized else "false").inc()
        explored = sum(item.source == EXPLORATION_SOURCE for item in rec.items)
        self._explored.append((explored, len(rec.items)))
        self._recommended += 1
        fresh_s = max(0.0, (rec.created_at - rec.event_timestamp) / 1000.0)
        self.freshness.observe(fresh_s)
        self._freshness_ms.append(fresh_s * 1000.0)
        self.quality.on_recommendation(rec.user_id, [item.item_id for item in rec.items],
                                       rec.recommendation_id, challengers)
        self._model_version = rec.model_version

    def observe_learners(self, counts: dict[str, int]) -> None:
        """Turn learners' cumulative update counts into counter increments."""
        for learner, total in counts.items():
            delta = total - self._learned.get(learner, 0)
            if delta > 0:
                self.model_updates.labels(learner).inc(delta)
            self._learned[learner] = total

    def observe_pipeline(self, counts: dict[str, int]) -> None:
        """Turn the pipeline's cumulative counts (``Pipeline.stats()``) into increments:
        ``rewards:<event type>``, ``expired``, ``zero_rewards``, ``bursts_skipped``. A
        count that went down (the recommender was replaced) starts over from zero."""
        for key, total in counts.items():
            before = self._pipeline_counts.get(key, 0)
            delta = total - before if total >= before else total
            self._pipeline_counts[key] = total
            if delta <= 0:
                continue
            if key.startswith("rewards:"):
                event_type = key.partition(":")[2]
                label = event_type if event_type in _REWARD_TYPES else "other"
                self.rewards.labels(label).inc(delta)
            elif key == "expired":
                self.impressions_expired.inc(delta)
            elif key == "zero_rewards":
                self.zero_rewards.inc(delta)
            elif key == "bursts_skipped":
                self.bursts_skipped.inc(delta)

    def exploration(self) -> float | None:
        """Share of the items recommended in the window that were chosen to explore."""
        shown = sum(n for _, n in self._explored)
        return sum(e for e, _ in self._explored) / shown if shown else None

    def on_rebalance(self) -> None:
        self.rebalances.inc()

    # -- periodic -------------------------------------------------------------------------
    def set_lag(self, lags: dict[tuple[str, int], int]) -> None:
        self.consumer_lag.clear()
        self._lag = []
        for (topic, partition), lag in sorted(lags.items()):
            self.consumer_lag.labels(topic, str(partition)).set(lag)
            self._lag.append({"topic": topic, "partition": partition, "lag": lag})

    def set_table_sizes(self, sizes: dict[str, int]) -> None:
        for table, size in sizes.items():
            self.table_keys.labels(table).set(size)

    def set_readiness(self, problems: list[str]) -> None:
        self._ready, self._reasons = not problems, list(problems)
        self.ready.set(1 if not problems else 0)

    def sample(self) -> None:
        """Refresh quality gauges and append a history point (called every few seconds)."""
        now = self.clock()
        total = sum(self._totals.values())
        if self._last_sample is not None and now > self._last_sample[0]:
            self._throughput = (total - self._last_sample[1]) / (now - self._last_sample[0])
        self._last_sample = (now, total)
        hit_rates = [(self.hit_rate.labels(name), self.quality.hit_rate(name))
                     for name in self.quality.strategies()]
        for gauge, value in (*hit_rates,
                             (self.exploration_share, self.exploration()),
                             (self.ctr, self.quality.ctr()),
                             (self.coverage, self.quality.coverage(self.catalog_size())),
                             (self.gini, self.quality.exposure_gini(self.catalog_size()))):
            if value is not None:
                gauge.set(value)
        if self._model_version:
            self.model_info.info({"version": self._model_version})
        self._history.append({"t": now, "throughput_eps": self._throughput,
                              "freshness_p50_ms": _percentile(self._freshness_ms, 50),
                              "lag": sum(entry["lag"] for entry in self._lag)})

    # -- reading ------------------------------------------------------------------------
    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """Everything the dashboard and ``micromoment status`` show, as plain JSON."""
        catalog_size = self.catalog_size()
        exposed = self.quality.most_exposed(10_000)
        categories: Tally[str] = Tally()
        for item, count in exposed:
            for category in self.categories_of(item):
                categories[category] += count
        return {
            "worker": self.worker_url,
            "time": self.clock(),
            "ready": self._ready,
            "reasons": list(self._reasons),
            "model_version": self._model_version,
            "events": {outcome: self._totals[outcome] for outcome in OUTCOMES},
            "recommendations": self._recommended,
            "throughput_eps": self._throughput,
            "deadletter_rate": (sum(self._recent_dead) / len(self._recent_dead)
                                if self._recent_dead else None),
            "freshness_ms": {"p50": _percentile(self._freshness_ms, 50),
                             "p99": _percentile(self._freshness_ms, 99)},
            "lag": {"total": sum(entry["lag"] for entry in self._lag), "partitions": list(self._lag)},
            "quality": {"hit_rate": self.quality.hit_rate(), "ctr": self.quality.ctr(),
                        "hit_rate_by_strategy": {name: self.quality.hit_rate(name)
                                                 for name in self.quality.strategies()},
                        "exploration_share": self.exploration(),
                        "coverage": self.quality.coverage(catalog_size),
                        "gini": self.quality.exposure_gini(catalog_size) if exposed else None},
            "most_exposed_items": [[item, count] for item, count in exposed[:10]],
            "most_exposed_categories": [[c, n] for c, n in categories.most_common(10)],
            "history": list(self._history),
        }


#: The worker process's monitor (agents report to it; web views read it).
monitor = Monitor()
