"""A synthetic shop with planted structure, for the demo, load and tests.

Users belong to segments that each prefer one category; within a category some items are
more popular than others; users browse in sessions and tend to continue along a category;
devices and pages vary. A learner that finds these patterns beats popularity, which is
what the demo should show happening live.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Iterator

from streams.records import Event, ItemUpdate

__all__ = ["SyntheticShop"]

CATEGORIES = ("shoes", "dresses", "jackets", "bags", "watches", "sportswear", "jewelry", "hats")
DEVICES = ("mobile", "desktop", "tablet")
PAGES = ("home", "search", "product", "category", "cart")
# (event type, weight) for interactions on an item; recommendation requests are added apart.
EVENT_MIX = (("view", 60), ("click", 20), ("add_to_cart", 8), ("purchase", 4),
             ("like", 3), ("dwell", 3), ("dislike", 1), ("rating", 1))


@dataclass
class SyntheticShop:
    """A deterministic (seeded) generator of a catalog and an event stream.

    >>> shop = SyntheticShop(n_users=10, n_items=40, seed=1)
    >>> len(list(shop.catalog()))
    40
    >>> events = list(shop.events(100, start_ms=1_700_000_000_000))
    >>> len(events), len({e.event_id for e in events})
    (100, 100)
    >>> all(e.user_id.startswith("user-") for e in events)
    True
    >>> SyntheticShop(seed=1).event(0).event_id != SyntheticShop(seed=1).event(0).event_id
    True
    """

    n_users: int = 200
    n_items: int = 400
    n_categories: int = 6
    seed: int = 7
    unavailable_share: float = 0.03
    request_share: float = 0.05
    #: Prefix of event ids. Each run gets a fresh one by default: the same seed replays the
    #: same behaviour, but the worker would rightly drop re-sent event ids as duplicates.
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _rng: random.Random = field(init=False, repr=False)
    _items_by_category: dict[str, list[str]] = field(init=False, repr=False)
    _item_category: dict[str, str] = field(init=False, repr=False)
    _session: dict[str, tuple[str, int]] = field(init=False, repr=False)
    _last_item: dict[str, str] = field(init=False, repr=False)
    _counter: int = field(init=False, default=0, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        categories = CATEGORIES[: max(1, min(self.n_categories, len(CATEGORIES)))]
        self._items_by_category = {c: [] for c in categories}
        self._item_category = {}
        for n in range(self.n_items):
            category = categories[n % len(categories)]
            item_id = f"item-{n:05d}"
            self._items_by_category[category].append(item_id)
            self._item_category[item_id] = category
        self._session = {}
        self._last_item = {}

    # -- who is who ---------------------------------------------------------------------
    def user_id(self, n: int) -> str:
        return f"user-{n:05d}"

    def segment_of(self, user_id: str) -> str:
        """The category a user prefers (the planted structure a learner should find)."""
        categories = list(self._items_by_category)
        return categories[int(user_id.split("-")[1]) % len(categories)]

    def device_of(self, user_id: str) -> str:
        return DEVICES[int(user_id.split("-")[1]) % 7 % len(DEVICES)]

    def category_of(self, item_id: str) -> str:
        return self._item_category[item_id]

    # -- the catalog --------------------------------------------------------------------
    def catalog(self) -> Iterator[ItemUpdate]:
        rng = random.Random(self.seed + 1)
        for item_id, category in self._item_category.items():
            yield ItemUpdate(
                item_id=item_id,
                available=rng.random() >= self.unavailable_share,
                categories=(category,),
                attributes={"price_band": rng.choice(("low", "mid", "high")),
                            "brand": f"brand-{rng.randrange(20):02d}"},
                text=f"{category} {item_id}",
            )

    # -- the stream -----------------------------------------------------------------------
    def _pick_user(self) -> str:
        # A skewed activity: some users are far more active than others.
        n = min(int(self._rng.paretovariate(1.2)) - 1, self.n_users - 1)
        return self.user_id((n * 7919 + self._rng.randrange(self.n_users)) % self.n_users
                            if self._rng.random() < 0.5 else n)

    def _pick_item(self, user_id: str) -> str:
        rng = self._rng
        last = self._last_item.get(user_id)
        if last is not None and rng.random() < 0.25:  # continue along the sequence
            items = self._items_by_category[self._item_category[last]]
            return items[(items.index(last) + 1) % len(items)]
        if rng.random() < 0.75:
            items = self._items_by_category[self.segment_of(user_id)]
        else:
            items = self._items_by_category[rng.choice(list(self._items_by_category))]
        # Within a category, a popularity skew (low ranks are bestsellers).
        return items[min(int(rng.expovariate(1 / 6)), len(items) - 1)]

    def _context(self, user_id: str, now_ms: int) -> dict[str, str]:
        session, started = self._session.get(user_id, ("", 0))
        if not session or now_ms - started > 30 * 60_000 or self._rng.random() < 0.05:
            session, started = f"s-{self._rng.getrandbits(40):010x}", now_ms
            self._session[user_id] = (session, started)
        return {"device": self.device_of(user_id), "page": self._rng.choice(PAGES),
                "locale": "en-US", "session_id": session}

    def event(self, now_ms: int) -> Event:
        """The next event, stamped ``now_ms``."""
        rng = self._rng
        self._counter += 1
        user_id = self._pick_user()
        event_id = f"evt-{self.run_id}-{self._counter:09d}"
        context = self._context(user_id, now_ms)
        if rng.random() < self.request_share:
            return Event(event_id, user_id, None, "recommendation_request", now_ms, None, context)
        item_id = self._pick_item(user_id)
        event_type = rng.choices([t for t, _ in EVENT_MIX], [w for _, w in EVENT_MIX])[0]
        value = None
        if event_type == "dwell":
            value = round(rng.uniform(2, 120), 1)
        elif event_type == "rating":
            value = float(rng.randint(3, 5) if self.segment_of(user_id) == self.category_of(item_id)
                          else rng.randint(1, 3))
        if event_type != "dislike":
            self._last_item[user_id] = item_id
        return Event(event_id, user_id, item_id, event_type, now_ms, value, context)

    def events(self, count: int, start_ms: int, step_ms: int = 50) -> Iterator[Event]:
        for n in range(count):
            yield self.event(start_ms + n * step_ms)
