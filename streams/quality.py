"""Online quality of the recommendations, measured on the live stream.

Offline evaluation (``replay``) says how a model did on yesterday's log; ops need to know how
it does *now*. Everything here is computed from what flows through the worker anyway:

- **prequential hit rate@K**: when a user interacts with an item, was it in the last
  recommendation we made them (test-then-learn, the way River evaluates online models),
  per ranking strategy: the champion's list is the one served, and each challenger's list
  for the same trigger is scored against the same later events. Users only see the
  champion's items, so challengers are judged on behaviour the champion shaped: the
  comparison favours the champion, and a challenger that still wins is worth a look;
- **CTR**: feedback events that carry a ``recommendation_id`` (click, add_to_cart, purchase)
  per recommendation sent, over a sliding window;
- **catalog coverage** and **exposure Gini** over the items recommended in a sliding window:
  a recommender that shows everybody the same ten items has low coverage and a Gini near 1.

Memory is bounded: sliding windows have fixed lengths and the per-user "last recommendation"
memory is an LRU of fixed size.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from typing import Iterable, Mapping, Sequence

import numpy as np

from streams.records import Event

__all__ = ["OnlineQuality", "gini", "CHAMPION"]

#: The strategy whose lists are served (``Recommendation.strategy``).
CHAMPION = "champion"

#: Event types that count as a user taking up an item (a hit, or a click-through).
ENGAGEMENT_TYPES = frozenset({"click", "add_to_cart", "purchase", "like", "view", "rating", "dwell"})
FEEDBACK_TYPES = frozenset({"click", "add_to_cart", "purchase"})


def gini(counts: Iterable[float]) -> float:
    """Gini coefficient of exposure counts: 0 = every item shown equally, →1 = one item.

    >>> gini([5, 5, 5, 5])
    0.0
    >>> round(gini([0, 0, 0, 20]), 2)
    0.75
    >>> gini([])
    0.0
    """
    values = np.sort(np.asarray(list(counts), dtype=float))
    n = values.size
    if n == 0 or values.sum() <= 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2 * (ranks * values).sum()) / (n * values.sum()) - (n + 1) / n)


class OnlineQuality:
    """Sliding-window quality figures for one worker.

    >>> from streams.records import Event
    >>> q = OnlineQuality(window=100)
    >>> q.on_recommendation("u1", ["a", "b"], "r1")
    >>> q.on_event(Event("e1", "u1", "b", "click", 1, recommendation_id="r1"))
    >>> q.on_event(Event("e2", "u1", "z", "view", 2))
    >>> q.hit_rate(), q.ctr()
    (0.5, 1.0)

    Challengers' lists for the same trigger are scored on the same events:

    >>> q.on_recommendation("u1", ["a", "b"], "r2", challengers={"diverse": ["c", "z"]})
    >>> q.on_event(Event("e3", "u1", "z", "view", 3))
    >>> q.strategies(), q.hit_rate(), q.hit_rate("diverse")
    (['champion', 'diverse'], 0.3333333333333333, 1.0)
    """

    def __init__(self, window: int = 2_000, max_users: int = 100_000) -> None:
        self.window = window
        self.max_users = max_users
        # user -> their last list per strategy, in the order of ``_names`` (None: no list
        # from that strategy). Short tuples, not sets: ten items are scanned as fast as
        # hashed, and a challenger's list equal to the champion's shares its tuple, which
        # keeps this LRU (one entry per recent user) small.
        self._names: list[str] = [CHAMPION]
        self._last: OrderedDict[str, tuple[tuple[str, ...] | None, ...]] = OrderedDict()
        self._hits: dict[str, deque[int]] = {CHAMPION: deque(maxlen=window)}
        self._sent: deque[str] = deque(maxlen=window)  # recommendation ids, newest last
        self._sent_ids: set[str] = set()
        self._clicked: set[str] = set()
        self._exposures: deque[tuple[str, ...]] = deque(maxlen=window)
        self._exposure_counts: Counter[str] = Counter()

    def on_recommendation(self, user_id: str, item_ids: Sequence[str], recommendation_id: str,
                          challengers: Mapping[str, Sequence[str]] | None = None) -> None:
        """Remember the served list (and each challenger's for the same trigger)."""
        items = tuple(item_ids)
        if challengers:
            lists: list[tuple[str, ...] | None] = [items] + [None] * (len(self._names) - 1)
            for name, challenger in challengers.items():
                if name == CHAMPION:
                    continue
                if name not in self._hits:
                    self._hits[name] = deque(maxlen=self.window)
                    self._names.append(name)
                    lists.append(None)
                listed = tuple(challenger)
                lists[self._names.index(name)] = items if listed == items else listed
            self._last[user_id] = tuple(lists)
        else:
            self._last[user_id] = (items,)
        self._last.move_to_end(user_id)
        if len(self._last) > self.max_users:
            self._last.popitem(last=False)
        if len(self._sent) == self._sent.maxlen:
            oldest = self._sent[0]
            self._sent_ids.discard(oldest)
            self._clicked.discard(oldest)
        self._sent.append(recommendation_id)
        self._sent_ids.add(recommendation_id)
        if len(self._exposures) == self._exposures.maxlen:
            self._exposure_counts.subtract(self._exposures[0])
        self._exposures.append(items)
        self._exposure_counts.update(items)

    def forget(self, user_id: str) -> None:
        """Drop what is remembered of the user's last recommendation (privacy)."""
        self._last.pop(user_id, None)

    def on_event(self, event: Event) -> None:
        """Score the event against what we last recommended to its user (before learning)."""
        if event.item_id is None or event.event_type not in ENGAGEMENT_TYPES:
            return
        last = self._last.get(event.user_id)
        if last is not None:
            item = event.item_id
            for name, items in zip(self._names, last):
                if items is not None:
                    self._hits[name].append(int(item in items))
        rid = event.recommendation_id
        if rid is not None and event.event_type in FEEDBACK_TYPES and rid in self._sent_ids:
            self._clicked.add(rid)

    def hit_rate(self, strategy: str = CHAMPION) -> float | None:
        """Share of engagements with an item from the user's last list of ``strategy``."""
        hits = self._hits.get(strategy)
        return sum(hits) / len(hits) if hits else None

    def strategies(self) -> list[str]:
        """The champion, then every challenger seen so far (sorted)."""
        return [CHAMPION, *sorted(name for name in self._hits if name != CHAMPION)]

    def ctr(self) -> float | None:
        """Recommendations in the window that got at least one click-through."""
        return len(self._clicked) / len(self._sent) if self._sent else None

    def coverage(self, catalog_size: int) -> float | None:
        """Share of the available catalog recommended at least once in the window."""
        if catalog_size <= 0:
            return None
        shown = sum(1 for count in self._exposure_counts.values() if count > 0)
        return min(1.0, shown / catalog_size)

    def exposure_gini(self, catalog_size: int = 0) -> float:
        """Gini of exposures over the catalog: never-shown available items count as zeros."""
        shown = [count for count in self._exposure_counts.values() if count > 0]
        return gini(shown + [0] * max(0, catalog_size - len(shown)))

    def most_exposed(self, n: int = 10) -> list[tuple[str, int]]:
        return [(item, count) for item, count in self._exposure_counts.most_common(n) if count > 0]
