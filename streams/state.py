"""Per-user state kept in the ``user_state`` table, and the pure logic that updates it.

The update is idempotent by ``event_id``: the state remembers the last
``dedupe_window`` event ids it applied, so a redelivered event (after a crash or a
rebalance, with at-least-once delivery) is recognised and changes nothing. That is what
turns Kafka's at-least-once delivery into an exactly-once *effect* on state.
"""

from __future__ import annotations

from typing import Any

from streams.records import Event

__all__ = ["UserState"]


class UserState:
    """What the pipeline knows about one user, JSON-serializable for the changelog.

    >>> from streams.records import Event
    >>> s = UserState()
    >>> s.apply(Event("e1", "u1", "i1", "view", 1_000), recent_max=3, dedupe_window=8)
    True
    >>> s.apply(Event("e1", "u1", "i1", "view", 1_000), recent_max=3, dedupe_window=8)
    False
    >>> s.apply(Event("e2", "u1", "i2", "purchase", 2_000, context={"device": "ios"}),
    ...         recent_max=3, dedupe_window=8)
    True
    >>> s.event_count, s.recent_items, s.purchased, s.last_context
    (2, ['i2', 'i1'], ['i2'], {'device': 'ios'})
    """

    __slots__ = (
        "event_count",
        "counts",
        "recent_items",
        "purchased",
        "last_context",
        "first_seen",
        "last_seen",
        "recent_event_ids",
    )

    def __init__(self) -> None:
        self.event_count = 0
        self.counts: dict[str, int] = {}
        self.recent_items: list[str] = []  # most recent first, no repeats
        self.purchased: list[str] = []
        self.last_context: dict[str, str] = {}
        self.first_seen = 0
        self.last_seen = 0
        self.recent_event_ids: list[str] = []  # oldest first

    def has_applied(self, event_id: str) -> bool:
        return event_id in self.recent_event_ids

    def apply(self, event: Event, *, recent_max: int, dedupe_window: int) -> bool:
        """Fold ``event`` into the state; return ``False`` (and change nothing) on a duplicate."""
        if self.has_applied(event.event_id):
            return False
        self.recent_event_ids.append(event.event_id)
        if len(self.recent_event_ids) > dedupe_window:
            del self.recent_event_ids[: len(self.recent_event_ids) - dedupe_window]
        self.event_count += 1
        self.counts[event.event_type] = self.counts.get(event.event_type, 0) + 1
        item = event.item_id
        if item is not None:
            if item in self.recent_items:
                self.recent_items.remove(item)
            self.recent_items.insert(0, item)
            del self.recent_items[recent_max:]
            if event.event_type == "purchase" and item not in self.purchased:
                self.purchased.append(item)
        if event.context:
            self.last_context = dict(event.context)
        if not self.first_seen or event.timestamp < self.first_seen:
            self.first_seen = event.timestamp
        self.last_seen = max(self.last_seen, event.timestamp)
        return True

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "UserState":
        state = cls()
        for name, value in (data or {}).items():
            if name in cls.__slots__:
                setattr(state, name, value)
        return state

    def public_view(self, user_id: str) -> dict[str, Any]:
        """What ``GET /users/{id}`` returns: no dedupe bookkeeping."""
        return {
            "user_id": user_id,
            "event_count": self.event_count,
            "counts": dict(self.counts),
            "recent_items": list(self.recent_items),
            "purchased": list(self.purchased),
            "last_context": dict(self.last_context),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }
