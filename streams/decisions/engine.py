"""The decision loop without Kafka: requests → decisions, rewards → learning, windows close.

:class:`DecisionEngine` is everything one worker knows about decisions, in one picklable
object: the decision points (policies and estimates), the pending decisions waiting for
their rewards, and the ids of recently closed ones. Keeping the dedupe memory in the
same object as the policies is what makes the effect exactly-once: a snapshot never
holds a policy that learned a reward without also holding that the reward was applied,
so a redelivered request or reward never updates a policy twice.

* A request whose ``decision_id`` is pending gets the stored answer again (the first
  send may have been lost), and one already closed is dropped; neither decides again.
* The first reward for a shown action closes it and updates the policy at once. A
  redelivery of that same reward is a ``duplicate`` (counted, dropped); a *different*
  later reward, or one after the reward window closed, is rejected as
  ``decision_closed``; a reward for an id this worker never saw (or forgot) is
  ``unknown_decision``. Rejections are :class:`~streams.errors.InvalidRecord`, so the
  agent dead-letters them with the reason.
* When a decision's reward window (per point, ``reward_window_s``, on the worker's
  clock) ends, every shown action without a reward learns the point's
  ``default_reward`` (e.g. 0 for "no click").

Rewards must be keyed by the decision's ``user_id``: that is how they reach the worker
holding the pending decision (the ``rewards`` and ``decisions`` topics are
co-partitioned); a reward under another key is rejected (``key_mismatch``).
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from streams.decisions.config import DecisionConfig
from streams.decisions.point import DecisionPoint, Shown
from streams.decisions.records import Decision, DecisionRequest, Reward
from streams.errors import InvalidRecord

__all__ = ["Pending", "DecisionEngine"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Pending:
    """A decision waiting for rewards: its answer and its shown actions not yet rewarded."""

    decision: Decision
    deadline_ms: int
    open: dict[str, Shown]
    rewarded: dict[str, tuple[float, int | None]] = field(default_factory=dict)


class DecisionEngine:
    """Every decision point of one worker, the pending decisions, and the dedupe memory.

    Parameters
    ----------
    config
        Decision points' options and action sets.
    seed
        Seeds every point (each point mixes in a digest of its name).
    max_points
        Distinct decision points served; requests for more are rejected
        (``too_many_decision_points``), which also bounds the metrics' labels.
    max_pending
        Pending decisions kept; beyond it the oldest closes early with the default reward.
    closed_memory
        Closed decision ids remembered to recognise duplicates and late rewards.

    Examples
    --------
    >>> from streams.decisions.records import Action, DecisionRequest, Reward
    >>> engine = DecisionEngine(DecisionConfig({}), seed=3)
    >>> request = DecisionRequest("d1", "hero", "u1", (Action("a"), Action("b")))
    >>> decision, status = engine.decide(request, now_ms=1_000)
    >>> status, round(sum(a.probability for a in decision.actions), 9)
    ('decided', 1.0)
    >>> engine.decide(request, now_ms=1_001)[1]  # redelivered: the same answer again
    'resent'
    >>> engine.reward(Reward("d1", 1.0), b"u1", now_ms=2_000)
    'applied'
    >>> engine.reward(Reward("d1", 1.0), b"u1", now_ms=2_001)  # redelivered: no second update
    'duplicate'
    >>> engine.points["hero"].policy.n_learned
    1
    """

    def __init__(self, config: DecisionConfig, seed: int = 42, max_points: int = 256,
                 max_pending: int = 100_000, closed_memory: int = 100_000) -> None:
        self.config = config
        self.seed = seed
        self.max_points = max_points
        self.max_pending = max_pending
        self.closed_memory = closed_memory
        self.points: dict[str, DecisionPoint] = {}
        self._pending: dict[str, Pending] = {}
        self._deadlines: list[tuple[int, str]] = []
        self._closed: OrderedDict[str, tuple[str, dict[str, tuple[float, int | None]]]] = (
            OrderedDict())
        self.counts: Counter[str] = Counter()  # outcome -> count, for metrics

    # -- points -----------------------------------------------------------------------------
    def point(self, name: str) -> DecisionPoint:
        """The decision point ``name``, created with its configured options on first use."""
        point = self.points.get(name)
        if point is None:
            if len(self.points) >= self.max_points:
                raise InvalidRecord("too_many_decision_points", f"decision point {name[:64]!r} "
                                    f"would be the {self.max_points + 1}th; at most "
                                    f"{self.max_points} decision points are served")
            import zlib

            seed = (self.seed * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % 2**32
            point = self.points[name] = DecisionPoint(name, self.config.point(name), seed)
        return point

    def reconfigure(self, config: DecisionConfig) -> list[str]:
        """Adopt ``config`` (e.g. after restoring a snapshot); points whose options changed
        start over, since their learned state belongs to other options. Returns them."""
        self.config = config
        reset = [name for name, point in self.points.items() if point.config != config.point(name)]
        for name in reset:
            old = self.points.pop(name)
            self.points[name] = DecisionPoint(name, config.point(name), old.seed)
        return reset

    @property
    def n_learned(self) -> int:
        """Rewards learned by all points (a checkpoint is due when it changes)."""
        return sum(point.policy.n_learned for point in self.points.values())

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # -- requests ---------------------------------------------------------------------------
    def decide(self, request: DecisionRequest, now_ms: int) -> tuple[Decision | None, str]:
        """Answer a request: ``(decision, "decided")``, ``(stored, "resent")`` for a
        redelivered pending one, or ``(None, "duplicate")`` for one already closed."""
        pending = self._pending.get(request.decision_id)
        if pending is not None:
            self.counts["resent"] += 1
            return pending.decision, "resent"
        if request.decision_id in self._closed:
            self.counts["duplicate_request"] += 1
            return None, "duplicate"
        point = self.point(request.decision_point)
        decision, shown = point.decide(request, now_ms)
        deadline = now_ms + int(point.config.reward_window_s * 1000)
        self._pending[request.decision_id] = Pending(decision, deadline,
                                                     {s.action_id: s for s in shown})
        heapq.heappush(self._deadlines, (deadline, request.decision_id))
        self.counts["decided"] += 1
        while len(self._pending) > self.max_pending:
            oldest = next(iter(self._pending))
            self._close(oldest, "evicted")
        return decision, "decided"

    # -- rewards ----------------------------------------------------------------------------
    def reward(self, reward: Reward, key: bytes | str | None, now_ms: int) -> str:
        """Apply a reward: ``"applied"`` or ``"duplicate"``; raises :class:`InvalidRecord`
        (``unknown_decision``, ``decision_closed``, ``unknown_action``, ``key_mismatch``)."""
        pending = self._pending.get(reward.decision_id)
        fingerprint = (reward.value, reward.timestamp)
        if pending is None:
            closed = self._closed.get(reward.decision_id)
            if closed is None:
                self.counts["unknown_decision"] += 1
                raise InvalidRecord("unknown_decision", f"reward for decision "
                                    f"{reward.decision_id[:64]!r}, which this worker has no record "
                                    "of: an unknown id, a reward keyed otherwise than by the "
                                    "decision's user_id, or a decision older than this worker's "
                                    "memory (restart, rebalance)")
            how, rewarded = closed
            if rewarded.get(reward.action_id or "") == fingerprint or (
                    reward.action_id is None and fingerprint in rewarded.values()):
                self.counts["duplicate_reward"] += 1
                return "duplicate"
            self.counts["decision_closed"] += 1
            raise InvalidRecord("decision_closed", f"reward for decision "
                                f"{reward.decision_id[:64]!r}, which is already closed ({how}); "
                                "only the first reward of each shown action is learned")
        decision = pending.decision
        if _key_text(key) != decision.user_id:
            self.counts["key_mismatch"] += 1
            shown_key = "no key" if key is None else f"key {key[:64]!r}"
            raise InvalidRecord("key_mismatch", f"reward for decision {reward.decision_id[:64]!r} "
                                f"has {shown_key} but the decision is for user "
                                f"{decision.user_id[:64]!r}; rewards must be keyed by the "
                                "decision's user_id so they reach the worker holding it")
        action_id = reward.action_id or decision.actions[0].id
        shown = pending.open.pop(action_id, None)
        if shown is None:
            if pending.rewarded.get(action_id) == fingerprint:
                self.counts["duplicate_reward"] += 1
                return "duplicate"
            if action_id in pending.rewarded:
                self.counts["decision_closed"] += 1
                raise InvalidRecord("decision_closed", f"action {action_id[:64]!r} of decision "
                                    f"{reward.decision_id[:64]!r} was already rewarded; only the "
                                    "first reward of each shown action is learned")
            self.counts["unknown_action"] += 1
            raise InvalidRecord("unknown_action", f"reward names action {action_id[:64]!r}, which "
                                f"decision {reward.decision_id[:64]!r} did not show (shown: "
                                f"{', '.join(decision.chosen)[:200]})")
        self.point(decision.decision_point).learn_one(shown, reward.value)
        pending.rewarded[action_id] = fingerprint
        self.counts["reward_applied"] += 1
        if not pending.open:
            self._close(reward.decision_id, "rewarded")
        return "applied"

    # -- windows --------------------------------------------------------------------------
    def expire(self, now_ms: int) -> int:
        """Close every decision whose reward window has ended; returns how many closed."""
        closed = 0
        while self._deadlines and self._deadlines[0][0] <= now_ms:
            _, decision_id = heapq.heappop(self._deadlines)
            if decision_id in self._pending:
                self._close(decision_id, "expired")
                closed += 1
        return closed

    def _close(self, decision_id: str, how: str) -> None:
        """Close a pending decision; actions still open learn the point's default reward."""
        pending = self._pending.pop(decision_id)
        if pending.open:
            point = self.point(pending.decision.decision_point)
            default = point.config.default_reward
            for shown in pending.open.values():
                point.learn_one(shown, default, defaulted=True)
            self.counts["reward_defaulted"] += len(pending.open)
        if how != "rewarded":
            how = f"{how}: the reward window's default applied to unrewarded actions"
        self._closed[decision_id] = (how, pending.rewarded)
        while len(self._closed) > self.closed_memory:
            self._closed.popitem(last=False)

    def forget_user(self, user_id: str) -> int:
        """Drop a user's pending decisions without learning from them (erasure)."""
        gone = [d for d, p in self._pending.items() if p.decision.user_id == user_id]
        for decision_id in gone:
            del self._pending[decision_id]
        return len(gone)

    def stats(self) -> dict[str, Any]:
        """JSON-ready: every point's figures, pending decisions, outcome counts."""
        return {"points": {name: point.stats() for name, point in sorted(self.points.items())},
                "pending": len(self._pending), "counts": dict(self.counts)}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_deadlines"] = list(self._deadlines)
        return state


def _key_text(key: bytes | str | None) -> str | None:
    if key is None or type(key) is str:
        return key  # type: ignore[return-value]
    try:
        return bytes(key).decode("utf-8")
    except UnicodeDecodeError:
        return None
