"""Behaviour anomaly detection: keep bot-like bursts out of what the learners learn.

Why it exists: every other learner believes its events. A scraper, a load test left
running, or a click bot firing hundreds of events a second would become "trending",
drag its items into every user's popularity list, and teach the sequence learner
transitions no human made. Validation cannot catch it (each event is well-formed);
only the *rate and shape* of a user's behaviour can. This detector scores each event
against what normal users' recent behaviour looks like, so the pipeline can skip
learning from anomalous events (it should still record them for metrics).

Per user it keeps a few numbers, updated in O(1) per event: the time of their last
event, two exponentially decayed event counters (time constants 1 s and 60 s: events
"in the last second" and "in the last minute") and their last ``recent_items`` item ids.
An event becomes four features in ``[0, 1]``:

* ``gap``: log-scaled time since the user's previous event (1 for a first event, or
  a gap of an hour or more),
* ``rate_1s`` and ``rate_60s``: the decayed counts including this event, log-scaled
  to saturate at ``max_rate_1s`` and ``max_rate_60s``,
* ``distinct``: the share of distinct items among the user's recent items.

River's :class:`river.anomaly.HalfSpaceTrees` scores them: a high score means the
event falls where normal traffic rarely goes. Trees learn only from events judged
normal, so a long burst does not become the new normal. An event is anomalous if
its score reaches ``threshold`` or, independently of the trees (which score 0 until
their first window of ``window_size`` normal events), if the user's rate in the last
second reaches ``hard_rate_1s`` (``None`` disables that rule).

Memory bound: one small record per user for at most ``max_users`` users, each dropped
``user_ttl_s`` of event time after their last event (after an hour idle a user's
features are those of a new user anyway); the trees are fixed-size
(``n_trees * 2 ** (height + 1)`` nodes).
"""

from __future__ import annotations

import math
import typing

from river import anomaly

from streams.learners._common import Recency
from streams.learners.base import event_time

__all__ = ["BurstDetector"]

_GAP_SATURATION_MS = 3_600_000.0


class BurstDetector:
    """Flags bot-like bursts from per-user rate features with River's Half-Space Trees.

    Parameters
    ----------
    threshold
        Half-Space Trees score (0 to 1) from which an event is anomalous.
    hard_rate_1s
        Events per (decayed) second from which an event is anomalous whatever the trees
        say; also covers the trees' warm-up. ``None``: trees only.
    max_rate_1s, max_rate_60s
        Rates at which the two rate features saturate at 1.
    recent_items
        How many of the user's last items the ``distinct`` feature looks at.
    n_trees, height, window_size
        Half-Space Trees parameters (see River); the trees score 0 during their first
        window of ``window_size`` normal events.
    max_users, user_ttl_s
        Users tracked at most, and how long (event time) an idle user is remembered.
    seed
        Seeds the trees.

    Examples
    --------
    >>> detector = BurstDetector(window_size=100, seed=1)
    >>> t = 0
    >>> for i in range(600):  # normal traffic: 30 users, an event every few seconds each
    ...     t += 150
    ...     detector.learn_one(f"user{i % 30}", f"item{i % 97}", 1.0, {"timestamp": t})
    >>> flags = [detector.observe("bot", f"item{i}", {"timestamp": t + 10 * i})
    ...          for i in range(200)]  # 200 events in 2 seconds
    >>> sum(flags) >= 190, detector.is_anomalous("user3", "item5", {"timestamp": t + 4_000})
    (True, False)
    """

    def __init__(
        self,
        threshold: float = 0.8,
        hard_rate_1s: float | None = 20.0,
        max_rate_1s: float = 100.0,
        max_rate_60s: float = 1_000.0,
        recent_items: int = 8,
        n_trees: int = 10,
        height: int = 6,
        window_size: int = 250,
        max_users: int = 1_000_000,
        user_ttl_s: float = 3_600.0,
        seed: int | None = 42,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        if min(max_rate_1s, max_rate_60s, user_ttl_s) <= 0 or recent_items < 1 or max_users < 1:
            raise ValueError("rates, user_ttl_s, recent_items and max_users must be positive")
        self.threshold = threshold
        self.hard_rate_1s = hard_rate_1s
        self.max_rate_1s = max_rate_1s
        self.max_rate_60s = max_rate_60s
        self.recent_items = recent_items
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.max_users = max_users
        self.user_ttl_s = user_ttl_s
        self.seed = seed
        self._trees = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        self._log_rate_1s = math.log1p(max_rate_1s)
        self._log_rate_60s = math.log1p(max_rate_60s)
        self._log_gap = math.log1p(_GAP_SATURATION_MS)
        # The rate_1s feature value from which the hard rule fires (above 1: never).
        self._hard_feature = (
            2.0 if hard_rate_1s is None else min(1.0, math.log1p(hard_rate_1s) / self._log_rate_1s)
        )
        # User -> [last event time ms, decayed 1 s count, decayed 60 s count, [recent items]].
        self._users: dict[typing.Hashable, list] = {}
        self._recency = Recency()
        self._clock: float | None = None
        self._n_learned = 0
        self._n_flagged = 0

    # -- state, read-only ---------------------------------------------------------------

    @property
    def model(self) -> anomaly.HalfSpaceTrees:
        """The wrapped River detector."""
        return self._trees

    @property
    def n_learned(self) -> int:
        """Events observed (normal or not)."""
        return self._n_learned

    @property
    def n_flagged(self) -> int:
        """Events judged anomalous so far."""
        return self._n_flagged

    @property
    def n_users(self) -> int:
        """Users tracked: at most ``max_users``."""
        return len(self._users)

    def knows_user(self, user: typing.Hashable) -> bool:
        return user in self._users

    def forget_user(self, user: typing.Hashable) -> None:
        """Erase the user's rate record (the trees hold only aggregate masses)."""
        self._users.pop(user, None)
        self._recency.discard(user)

    # -- scoring (no side effects) ---------------------------------------------------------

    def features(self, user: typing.Hashable, item: str | None, x: dict | None) -> dict[str, float]:
        """The features of an event by ``user`` on ``item`` at ``x["timestamp"]``, as if it
        happened now (the user's record is not changed)."""
        t = self._time(x)
        state = self._users.get(user)
        if state is None:
            gap_ms, rate_1s, rate_60s, recent = math.inf, 1.0, 1.0, []
        else:
            last_t, count_1s, count_60s, recent = state
            gap_ms = max(0.0, t - last_t)
            rate_1s = count_1s * math.exp(-gap_ms / 1_000.0) + 1.0
            rate_60s = count_60s * math.exp(-gap_ms / 60_000.0) + 1.0
        window = ([item] if item is not None else []) + recent[: self.recent_items - 1]
        distinct = len(set(window)) / len(window) if window else 1.0
        gap = 1.0 if gap_ms == math.inf else min(1.0, math.log1p(gap_ms) / self._log_gap)
        return {
            "gap": gap,
            "rate_1s": min(1.0, math.log1p(rate_1s) / self._log_rate_1s),
            "rate_60s": min(1.0, math.log1p(rate_60s) / self._log_rate_60s),
            "distinct": distinct,
        }

    def score_one(self, user: typing.Hashable, item: str | None, x: dict | None) -> float:
        """The trees' anomaly score of the event (0: normal-looking, 1: never seen)."""
        return float(self._trees.score_one(self.features(user, item, x)))

    def is_anomalous(self, user: typing.Hashable, item: str | None, x: dict | None) -> bool:
        """Whether the event looks like a burst (see the class docstring for the rule)."""
        return self._judge(self.features(user, item, x))

    # -- learning -----------------------------------------------------------------------

    def learn_one(
        self, user: typing.Hashable, item: str | None, y: float = 1.0, x: dict | None = None
    ) -> None:
        """Fold the event into the user's record; the trees learn it if it looks normal.

        ``y`` is accepted for a uniform signature and ignored: every event counts
        towards the rates, whatever its strength.
        """
        self.observe(user, item, x)

    def observe(self, user: typing.Hashable, item: str | None, x: dict | None) -> bool:
        """``is_anomalous`` and ``learn_one`` in one call (features computed once):
        what the pipeline should call for every event before letting others learn."""
        features = self.features(user, item, x)
        flagged = self._judge(features)
        if not flagged:
            self._trees.learn_one(features)
        else:
            self._n_flagged += 1
        self._record(user, item, self._time(x))
        self._n_learned += 1
        return flagged

    # -- internals ------------------------------------------------------------------------

    def _time(self, x: dict | None) -> float:
        t = event_time(x)
        if t is None:
            return self._clock if self._clock is not None else 0.0
        return t

    def _judge(self, features: dict[str, float]) -> bool:
        if features["rate_1s"] >= self._hard_feature:
            return True
        return self._trees.score_one(features) >= self.threshold

    def _record(self, user: typing.Hashable, item: str | None, t: float) -> None:
        if self._clock is None or t > self._clock:
            self._clock = t
        state = self._users.get(user)
        if state is None:
            state = self._users[user] = [t, 1.0, 1.0, []]
        else:
            last_t, count_1s, count_60s, recent = state
            gap_ms = max(0.0, t - last_t)
            state[0] = max(last_t, t)
            state[1] = count_1s * math.exp(-gap_ms / 1_000.0) + 1.0
            state[2] = count_60s * math.exp(-gap_ms / 60_000.0) + 1.0
        if item is not None:
            recent = state[3]
            recent.insert(0, item)
            del recent[self.recent_items :]
        self._recency.touch(user, t)
        for gone in self._recency.evict(self.max_users, self.user_ttl_s * 1_000.0, self._clock):
            self._users.pop(gone, None)
