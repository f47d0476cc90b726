"""Rating prediction: what would this user rate this item, before they do?

Why it exists: the other learners rank items, on implicit signals turned into
strengths; none predicts a rating on the log's own scale, so a replay of a rating log
could not report MAE/RMSE. This is the classic damped-means baseline (Koren, "Factor
in the neighbors", 2008), online: the global mean ``mu``, an item bias and a user bias,
each the sum of residuals divided by its count plus a damping pseudo-count,

    b_i = sum (r - mu) / (n_i + item_damping)
    b_u = sum (r - mu - b_i) / (n_u + user_damping)
    r_hat(u, i) = clip(mu + b_i + b_u, lowest rating seen, highest rating seen)

so an item rated once by an enthusiast moves little, and a user nobody knows gets the
item's mean. Residuals use the biases as they were when each rating arrived (one pass,
O(1) per rating). It is a strong baseline on sparse logs, where a factor model has
too few ratings per user to beat it.

Guards and bounds: non-finite ratings are ignored; at most ``max_users`` users (least
recently seen evicted first, and any unseen for ``user_ttl_s`` of event time) and
``max_items`` items are kept.
"""

from __future__ import annotations

import collections
import math
import typing

from streams.learners._common import Recency
from streams.learners.base import event_time

__all__ = ["RatingBaseline"]


class RatingBaseline:
    """Online damped global, item and user means: a rating predictor (River-style).

    Parameters
    ----------
    item_damping, user_damping
        Pseudo-counts that shrink an item's and a user's mean residual towards 0.
    max_users, user_ttl_s
        Users kept at most, and how long (event time) an idle user is kept.
    max_items
        Items kept at most (least recently rated evicted first).

    Examples
    --------
    >>> ratings = RatingBaseline(item_damping=1.0, user_damping=1.0)
    >>> ratings.predict_one("ann", "film") is None  # nothing rated yet: no prediction
    True
    >>> for user, item, r in [("ann", "epic", 9), ("bob", "epic", 8), ("bob", "flop", 2),
    ...                       ("cy", "flop", 3), ("cy", "epic", 9)]:
    ...     ratings.learn_one(user, item, r, {"timestamp": 0})
    >>> epic, flop = ratings.predict_one("dee", "epic"), ratings.predict_one("dee", "flop")
    >>> round(ratings.mean, 2), epic > flop
    (6.2, True)
    >>> 2.0 <= ratings.predict_one("dee", "unseen") <= 9.0
    True
    """

    def __init__(
        self,
        item_damping: float = 5.0,
        user_damping: float = 5.0,
        max_users: int = 1_000_000,
        user_ttl_s: float = 90 * 86_400.0,
        max_items: int = 1_000_000,
    ) -> None:
        if not (item_damping >= 0 and user_damping >= 0 and user_ttl_s > 0):
            raise ValueError("dampings must be non-negative and user_ttl_s positive")
        if max_users < 1 or max_items < 1:
            raise ValueError("max_users and max_items must be at least 1")
        self.item_damping = item_damping
        self.user_damping = user_damping
        self.max_users = max_users
        self.user_ttl_s = user_ttl_s
        self.max_items = max_items
        self._sum = 0.0
        self._count = 0
        self._low = math.inf
        self._high = -math.inf
        # Item -> [residual sum, count]; user -> [residual sum, count].
        self._items: collections.OrderedDict[typing.Hashable, list] = collections.OrderedDict()
        self._users: dict[typing.Hashable, list] = {}
        self._recency = Recency()
        self._clock: float | None = None

    @property
    def n_learned(self) -> int:
        return self._count

    @property
    def mean(self) -> float | None:
        """The mean of every rating learned (``None`` before the first)."""
        return self._sum / self._count if self._count else None

    @property
    def n_users(self) -> int:
        return len(self._users)

    def knows_user(self, user: typing.Hashable) -> bool:
        return user in self._users

    def forget_user(self, user: typing.Hashable) -> None:
        """Erase the user's bias (item means are aggregates over everyone, kept)."""
        self._users.pop(user, None)
        self._recency.discard(user)

    def _item_bias(self, item: typing.Hashable) -> float:
        entry = self._items.get(item)
        return 0.0 if entry is None else entry[0] / (entry[1] + self.item_damping)

    def _user_bias(self, user: typing.Hashable) -> float:
        entry = self._users.get(user)
        return 0.0 if entry is None else entry[0] / (entry[1] + self.user_damping)

    def learn_one(
        self, user: typing.Hashable, item: typing.Hashable, y: float, x: dict | None = None
    ) -> None:
        """Learn that ``user`` rated ``item`` ``y`` (at ``x["timestamp"]``, epoch ms)."""
        try:
            y = float(y)
        except (TypeError, ValueError):
            return
        if not math.isfinite(y) or abs(y) > 1e12:
            return
        mu = self.mean if self._count else y
        item_bias = self._item_bias(item)
        entry = self._items.get(item)
        if entry is None:
            entry = self._items[item] = [0.0, 0]
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(item)
        entry[0] += y - mu
        entry[1] += 1
        user_entry = self._users.setdefault(user, [0.0, 0])
        user_entry[0] += y - mu - item_bias
        user_entry[1] += 1
        self._sum += y
        self._count += 1
        self._low, self._high = min(self._low, y), max(self._high, y)
        t = event_time(x)
        if t is not None and (self._clock is None or t > self._clock):
            self._clock = t
        self._recency.touch(user, t if t is not None else (self._clock or 0.0))
        for gone in self._recency.evict(self.max_users, self.user_ttl_s * 1_000.0, self._clock):
            self._users.pop(gone, None)

    def predict_one(self, user: typing.Hashable, item: typing.Hashable,
                    x: dict | None = None) -> float | None:
        """The predicted rating, within the range seen; ``None`` before any rating."""
        if not self._count:
            return None
        guess = self._sum / self._count + self._item_bias(item) + self._user_bias(user)
        return min(max(guess, self._low), self._high)
