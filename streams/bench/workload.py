"""The events every bench stage feeds: the synthetic shop, with users drawn uniformly.

The demo's shop (:class:`streams.synthetic.SyntheticShop`) gives users a heavy-tailed
activity: its busiest user makes about a quarter of all events. Through Kafka's key
partitioning that puts about half of the load on one of the four partitions, so two
workers could at best split it unevenly, and the scale-out ratio would measure that key
skew instead of the system. The bench therefore draws each event's user uniformly; the
rest (categories, planted tastes, sessions, item popularity, event mix) is the shop's.
``recommendation_request`` events are left out (``request_share=0``): every event then
names an item and teaches the learners, so "learn from every event" means every event.

Users scale with the event count (:data:`EVENTS_PER_USER` on average), so that a quick
run and a full run see users of the same size of state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

from streams.codecs import encode, encode_event
from streams.produce import item_record
from streams.records import Event
from streams.synthetic import SyntheticShop

__all__ = ["EVENTS_PER_USER", "CATALOG_ITEMS", "UniformShop", "Record", "event_records",
           "catalog_records", "shop_for"]

#: Average events per user in a throughput stage (users = events / this).
EVENTS_PER_USER = 10
#: Items in the catalog of the pipeline stages (ranking cost per catalog size is ``rank_ms``).
CATALOG_ITEMS = 1_000

#: ``(key, value, headers)`` of one Kafka record.
Record = tuple[bytes, bytes, list[tuple[str, bytes]]]


@dataclass
class UniformShop(SyntheticShop):
    """The synthetic shop with every user equally active.

    >>> shop = UniformShop(n_users=4, n_items=20, seed=3, request_share=0.0)
    >>> sorted({e.user_id for e in shop.events(200, start_ms=0)})
    ['user-00000', 'user-00001', 'user-00002', 'user-00003']
    """

    def _pick_user(self) -> str:
        return self.user_id(self._rng.randrange(self.n_users))


def shop_for(n_events: int, seed: int = 42, n_items: int = CATALOG_ITEMS) -> UniformShop:
    """The shop of a stage of ``n_events`` events."""
    return UniformShop(n_users=max(1, n_events // EVENTS_PER_USER), n_items=n_items, seed=seed,
                       request_share=0.0)


def events_until_now(shop: SyntheticShop, n_events: int, step_ms: int = 50) -> Iterator[Event]:
    """``n_events`` events, ``step_ms`` apart, the last one stamped now (none in the future)."""
    now = int(time.time() * 1000)
    return shop.events(n_events, start_ms=now - n_events * step_ms, step_ms=step_ms)


def event_records(shop: SyntheticShop, n_events: int) -> list[Record]:
    """The stage's events as JSON records keyed by user id, as an app would send them.

    >>> records = event_records(UniformShop(n_users=3, n_items=10, seed=1), 5)
    >>> len(records), records[0][0].startswith(b"user-"), records[0][2]
    (5, True, [('content-type', b'application/json')])
    """
    out = []
    for event in events_until_now(shop, n_events):
        value, headers = encode_event(event, "json")
        out.append((event.user_id.encode(), value, list(headers)))
    return out


def catalog_records(shop: SyntheticShop) -> list[Record]:
    """The shop's catalog as JSON records for the ``items`` topic, keyed by item id."""
    out = []
    for item in shop.catalog():
        value, headers = encode("item", item_record(item), "json")
        out.append((item.item_id.encode(), value, list(headers)))
    return out
