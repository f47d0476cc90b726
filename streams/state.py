"""Per-user state kept in the ``user_state`` table, and the pure logic that updates it.

The update is idempotent by ``event_id``: the state remembers the last
``dedupe_window`` event ids it applied, so a redelivered event (after a crash or a
rebalance, with at-least-once delivery) is recognised and changes nothing. That is what
turns Kafka's at-least-once delivery into an exactly-once *effect* on state.

The state is compact, because a worker keeps every user's in memory and writes it to the
changelog on every event:

* the dedupe window is one string of fixed-width tokens, 11 characters per event id
  (a 64-bit BLAKE2b digest of the id, base64), instead of a list of the ids themselves
  (ids are often UUIDs: 36 characters, ~80 bytes each as Python objects). Two different
  ids share a token with probability 2^-64, so a genuinely new event is mistaken for a
  duplicate about once in 10^17 events with a full 256-id window;
* item ids, event types and context strings are interned: one object per distinct
  string in the worker, not one per user that mentions it.

Changelog value format (a JSON object; a persisted contract, evolved with defaults):
``event_count``, ``counts``, ``recent_items``, ``purchased``, ``last_context``,
``first_seen``, ``last_seen``, ``event_digests``. Records written before the digests
carried ``recent_event_ids`` (the ids as a list) instead; :meth:`UserState.from_dict`
still reads them (turning the ids into digests), so a state restored from an old
changelog keeps its dedupe memory. A missing field takes its default.
"""

from __future__ import annotations

import base64
import hashlib
import sys
from typing import Any

from streams.records import Event

__all__ = ["UserState", "event_digest", "DIGEST_WIDTH"]

#: Characters per event id in the dedupe window (base64 of 8 bytes, without padding).
DIGEST_WIDTH = 11

_intern = sys.intern


def event_digest(event_id: str) -> str:
    """The dedupe window's token for ``event_id``: 64 bits of BLAKE2b, as 11 base64 chars.

    >>> event_digest("evt-1"), len(event_digest("e" * 500)) == DIGEST_WIDTH
    ('vkNugt2hXEc', True)
    """
    digest = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return base64.b64encode(digest)[:DIGEST_WIDTH].decode("ascii")


def _window_has(window: str, token: str) -> bool:
    """Whether ``token`` is one of ``window``'s aligned tokens (not straddling two)."""
    at = window.find(token)
    while at != -1:
        if at % DIGEST_WIDTH == 0:
            return True
        at = window.find(token, at + 1)
    return False


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
    >>> s.has_applied("e1"), s.has_applied("e3"), len(s.event_digests)
    (True, False, 22)
    """

    __slots__ = (
        "event_count",
        "counts",
        "recent_items",
        "purchased",
        "last_context",
        "first_seen",
        "last_seen",
        "event_digests",
    )

    def __init__(self) -> None:
        self.event_count = 0
        self.counts: dict[str, int] = {}
        self.recent_items: list[str] = []  # most recent first, no repeats
        self.purchased: list[str] = []
        self.last_context: dict[str, str] = {}
        self.first_seen = 0
        self.last_seen = 0
        self.event_digests = ""  # DIGEST_WIDTH characters per applied event id, oldest first

    def has_applied(self, event_id: str) -> bool:
        return _window_has(self.event_digests, event_digest(event_id))

    def apply(self, event: Event, *, recent_max: int, dedupe_window: int) -> bool:
        """Fold ``event`` into the state; return ``False`` (and change nothing) on a duplicate."""
        token = event_digest(event.event_id)
        window = self.event_digests
        if _window_has(window, token):
            return False
        window += token
        keep = max(0, dedupe_window) * DIGEST_WIDTH
        if len(window) > keep:
            window = window[len(window) - keep:] if keep else ""
        self.event_digests = window
        self.event_count += 1
        kind = _intern(event.event_type)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        item = event.item_id
        if item is not None:
            item = _intern(item)
            recent = self.recent_items
            if item in recent:
                recent.remove(item)
            recent.insert(0, item)
            del recent[recent_max:]
            if kind == "purchase" and item not in self.purchased:
                self.purchased.append(item)
        if event.context:
            self.last_context = {_intern(k): _intern(v) if isinstance(v, str) else v
                                 for k, v in event.context.items()}
        if not self.first_seen or event.timestamp < self.first_seen:
            self.first_seen = event.timestamp
        if event.timestamp > self.last_seen:
            self.last_seen = event.timestamp
        return True

    def to_dict(self) -> dict[str, Any]:
        """The changelog value (the lists and dicts are the state's own, not copies)."""
        return {
            "event_count": self.event_count,
            "counts": self.counts,
            "recent_items": self.recent_items,
            "purchased": self.purchased,
            "last_context": self.last_context,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "event_digests": self.event_digests,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "UserState":
        """A state from a changelog value, current or old (``recent_event_ids``), or ``None``.

        >>> old = {"event_count": 1, "recent_event_ids": ["e1"], "recent_items": ["i1"]}
        >>> state = UserState.from_dict(old)
        >>> state.has_applied("e1"), state.to_dict()["event_digests"] == event_digest("e1")
        (True, True)
        """
        state = cls()
        if not data:
            return state
        slots = cls.__slots__
        for name, value in data.items():
            if name in slots:
                setattr(state, name, value)
        ids = data.get("recent_event_ids")
        if ids and "event_digests" not in data:  # written before the digests
            state.event_digests = "".join(event_digest(str(i)) for i in ids)
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
