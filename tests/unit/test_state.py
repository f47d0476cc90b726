"""UserState: idempotent application, bounded memory, JSON round trip."""

from __future__ import annotations

import orjson

from streams.records import Event
from streams.state import UserState


def ev(n: int, item: str | None = "i", kind: str = "view", ts: int = 1_000, **kw) -> Event:
    return Event(f"e{n}", "u", item, kind, ts, **kw)


def test_redelivered_event_changes_nothing():
    state = UserState()
    assert state.apply(ev(1, "a"), recent_max=10, dedupe_window=10)
    before = state.to_dict()
    assert not state.apply(ev(1, "a"), recent_max=10, dedupe_window=10)
    assert state.to_dict() == before


def test_recent_items_are_most_recent_first_unique_and_bounded():
    state = UserState()
    for n, item in enumerate(["a", "b", "c", "a", "d"]):
        state.apply(ev(n, item), recent_max=3, dedupe_window=10)
    assert state.recent_items == ["d", "a", "c"]
    assert state.event_count == 5


def test_dedupe_window_is_bounded_and_forgets_oldest():
    state = UserState()
    for n in range(10):
        state.apply(ev(n), recent_max=5, dedupe_window=4)
    assert state.recent_event_ids == ["e6", "e7", "e8", "e9"]
    assert state.apply(ev(0), recent_max=5, dedupe_window=4)  # beyond the window: counted again


def test_counts_purchases_context_and_times():
    state = UserState()
    state.apply(ev(1, "a", "purchase", ts=5_000, context={"device": "ios"}), recent_max=5, dedupe_window=9)
    state.apply(ev(2, None, "recommendation_request", ts=3_000), recent_max=5, dedupe_window=9)
    state.apply(ev(3, "a", "purchase", ts=7_000), recent_max=5, dedupe_window=9)
    assert state.counts == {"purchase": 2, "recommendation_request": 1}
    assert state.purchased == ["a"]
    assert state.last_context == {"device": "ios"}  # an event without context keeps the last one
    assert (state.first_seen, state.last_seen) == (3_000, 7_000)


def test_json_round_trip_keeps_dedupe_memory():
    state = UserState()
    state.apply(ev(1, "a", "click", context={"page": "home"}), recent_max=5, dedupe_window=9)
    restored = UserState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert restored.to_dict() == state.to_dict()
    assert not restored.apply(ev(1, "a", "click"), recent_max=5, dedupe_window=9)
    view = restored.public_view("u")
    assert view["event_count"] == 1 and "recent_event_ids" not in view
