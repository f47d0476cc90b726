"""The feedback loop: remembered impressions, attributed rewards, zero rewards on expiry.

A recommendation served with a ``recommendation_id`` is remembered as an
:class:`Impression`: who saw which items, when (event time), and the bandit's features
of each item in that request. A later event of the same user carrying that
``recommendation_id`` -- a click, add to cart or purchase of one of the items (weights
configurable, scaled so the largest is 1) within the attribution window -- is a reward
for that item. An impression whose window closed is resolved: every item that earned
nothing is a zero reward. Both feed :class:`~streams.rank.bandit.LinearUCB`.

Exactly-once per impression and item: the reward of an item is the *largest* weight
attributed to it, so a redelivered or repeated click counts once, and a purchase after
a click raises the reward to the purchase's weight instead of adding a second
observation (the bandit's ``add_reward``).

Bounded: at most ``max_pending`` impressions are held; past it, the oldest is resolved
early (what it earned so far is learned, the rest as zeros). Expired impressions are
resolved lazily by event time as events arrive (:meth:`ImpressionLog.expired`) and
whenever the caller asks. Everything here pickles with the recommender's checkpoints.
"""

from __future__ import annotations

import collections
import typing
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_REWARD_WEIGHTS", "Impression", "ImpressionLog", "parse_reward_weights"]

DEFAULT_REWARD_WEIGHTS = "click:1,add_to_cart:2,purchase:3"


def parse_reward_weights(text: str) -> dict[str, float]:
    """``"type:weight,..."`` as a dict of event type -> reward in ``(0, 1]`` (over the max).

    >>> parse_reward_weights("click:1, add_to_cart:2, purchase:4")
    {'click': 0.25, 'add_to_cart': 0.5, 'purchase': 1.0}
    >>> parse_reward_weights("click")
    Traceback (most recent call last):
    ...
    ValueError: reward weight 'click' must look like event_type:weight with weight > 0
    """
    from streams.records import EVENT_TYPES

    weights: dict[str, float] = {}
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        kind, sep, raw = part.partition(":")
        kind = kind.strip()
        try:
            weight = float(raw) if sep else float("nan")
        except ValueError:
            weight = float("nan")
        if not weight > 0 or weight == float("inf"):
            raise ValueError(f"reward weight {part!r} must look like event_type:weight "
                             "with weight > 0")
        if kind not in EVENT_TYPES:
            raise ValueError(f"reward weight {part!r} names an unknown event type")
        weights[kind] = weight
    if not weights:
        raise ValueError("reward weights name no event type")
    top = max(weights.values())
    return {kind: weight / top for kind, weight in weights.items()}


@dataclass(slots=True)
class Impression:
    """One served list, pending feedback (compact: ~1 KB; thousands are held).

    ``rows`` are the listed items' catalog rows (a row is never reused by another item),
    ``features`` each item's candidate features, ``context`` the request's context
    vector; ``rewards`` the best reward attributed so far per item; ``learned`` whether
    the item's observation is in the bandit yet.
    """

    user_id: str
    created_ms: float
    rows: np.ndarray
    context: np.ndarray
    features: np.ndarray
    rewards: np.ndarray
    learned: np.ndarray


class ImpressionLog:
    """Pending impressions by ``recommendation_id``, oldest first.

    Examples
    --------
    >>> log = ImpressionLog(window_ms=1_000, max_pending=2)
    >>> def impression(user, t):  # listing catalog rows 7 and 3
    ...     return Impression(user, t, np.array([7, 3]), np.ones(1), np.ones((2, 1)),
    ...                       np.zeros(2), np.zeros(2, dtype=bool))
    >>> log.remember("r1", impression("ann", 0))
    []
    >>> log.remember("r1", impression("ann", 5))  # the same list re-emitted: kept once
    []
    >>> log.find("r1", "ann", 3, 900)[1], log.find("r1", "bob", 3, 900), log.find("r1", "ann", 5, 9)
    (1, None, None)
    >>> log.find("r1", "ann", 3, 1_001) is None  # after the window: not attributed
    True
    >>> [old.user_id for old in log.remember("r2", impression("bob", 10))]
    []
    >>> [old.user_id for old in log.remember("r3", impression("cy", 20))]  # over the cap
    ['ann']
    >>> [old.user_id for old in log.expired(1_015)], len(log)
    (['bob'], 1)
    """

    def __init__(self, window_ms: float, max_pending: int) -> None:
        if not window_ms > 0:
            raise ValueError(f"window_ms must be positive, got {window_ms!r}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending!r}")
        self.window_ms = window_ms
        self.max_pending = max_pending
        self._pending: collections.OrderedDict[str, Impression] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, recommendation_id: object) -> bool:
        return recommendation_id in self._pending

    def remember(self, recommendation_id: str, impression: Impression) -> list[Impression]:
        """Hold ``impression``; return the impressions evicted to stay within the cap.

        A ``recommendation_id`` already held (the same trigger re-emitted after a
        redelivery) keeps its first impression.
        """
        if recommendation_id in self._pending:
            return []
        self._pending[recommendation_id] = impression
        evicted = []
        while len(self._pending) > self.max_pending:
            evicted.append(self._pending.popitem(last=False)[1])
        return evicted

    def find(self, recommendation_id: str, user_id: str, row: int | None, t_ms: float
             ) -> tuple[Impression, int] | None:
        """The pending impression and position of catalog ``row`` in it that an event of
        ``user_id`` at ``t_ms`` is feedback on, if any."""
        impression = self._pending.get(recommendation_id)
        if impression is None or impression.user_id != user_id or row is None:
            return None
        if t_ms > impression.created_ms + self.window_ms:
            return None
        positions = np.flatnonzero(impression.rows == row)
        return (impression, int(positions[0])) if len(positions) else None

    def expired(self, now_ms: float) -> typing.Iterator[Impression]:
        """Pop and yield impressions whose window closed before ``now_ms``, oldest first.

        Stops at the first one still open (impressions are held in serving order, which
        is event-time order up to late events).
        """
        pending = self._pending
        while pending:
            impression = next(iter(pending.values()))
            if impression.created_ms + self.window_ms >= now_ms:
                return
            pending.popitem(last=False)
            yield impression

    def pop_user(self, user_id: str) -> int:
        """Drop (without learning) every impression of ``user_id``; return how many."""
        doomed = [rid for rid, imp in self._pending.items() if imp.user_id == user_id]
        for rid in doomed:
            del self._pending[rid]
        return len(doomed)
