"""Prometheus figures of the decision loop, labelled by decision point (a bounded set:
the engine serves at most ``max_points`` of them)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from streams.decisions.engine import DecisionEngine

__all__ = ["DecisionMetrics"]


class DecisionMetrics:
    """Counters per record outcome, gauges per decision point refreshed from the engine.

    >>> from streams.decisions.config import DecisionConfig
    >>> m = DecisionMetrics(CollectorRegistry())
    >>> m.observe_request("hero", "decided")
    >>> m.refresh(DecisionEngine(DecisionConfig({})))["pending"]
    0
    >>> m.requests.labels("hero", "decided")._value.get()
    1.0
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter("micromoment_decision_requests", "Decision requests by decision "
                                "point and outcome (decided, resent, duplicate, dead_lettered)",
                                ["decision_point", "outcome"], registry=r)
        self.rewards = Counter("micromoment_decision_rewards", "Rewards by outcome (applied, "
                               "duplicate, or the dead-letter reason: unknown_decision, "
                               "decision_closed, ...)", ["outcome"], registry=r)
        self.served = Gauge("micromoment_decision_served", "Decisions served per decision point",
                            ["decision_point"], registry=r)
        self.closed = Gauge("micromoment_decision_closed_actions", "Shown actions closed, by how "
                            "(reward received, or the window's default reward)",
                            ["decision_point", "how"], registry=r)
        self.reward_rate = Gauge("micromoment_decision_reward_rate", "Mean reward of closed "
                                 "shown actions (default rewards included)", ["decision_point"],
                                 registry=r)
        self.regret = Gauge("micromoment_decision_regret_vs_baseline", "Doubly robust estimate "
                            "of the baseline action's mean reward minus the served policy's "
                            "(negative: better than the caller's baseline)", ["decision_point"],
                            registry=r)
        self.apprentice = Gauge("micromoment_decision_apprentice", "1 while the decision point "
                                "imitates the caller's baseline (apprentice mode)",
                                ["decision_point"], registry=r)
        self.pending = Gauge("micromoment_decision_pending", "Decisions waiting for a reward",
                             registry=r)

    def observe_request(self, point: str | None, outcome: str) -> None:
        self.requests.labels(point or "unknown", outcome).inc()

    def observe_reward(self, outcome: str) -> None:
        self.rewards.labels(outcome).inc()

    def refresh(self, engine: DecisionEngine) -> dict[str, Any]:
        """Set the gauges from ``engine``; returns its stats (for ``GET /decisions``)."""
        stats = engine.stats()
        self.pending.set(stats["pending"])
        for name, point in stats["points"].items():
            self.served.labels(name).set(point["decisions"])
            self.closed.labels(name, "received").set(point["rewards_received"])
            self.closed.labels(name, "default").set(point["rewards_defaulted"])
            if point["reward_rate"] is not None:
                self.reward_rate.labels(name).set(point["reward_rate"])
            if point["regret_vs_baseline"] is not None:
                self.regret.labels(name).set(point["regret_vs_baseline"])
            self.apprentice.labels(name).set(1 if point["apprentice"] else 0)
        return stats
