"""UserState: idempotent application, bounded memory, JSON round trip."""

from __future__ import annotations

import orjson

from streams.records import Event
from streams.state import DIGEST_WIDTH, UserState, event_digest


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
    assert state.event_digests == "".join(event_digest(f"e{n}") for n in (6, 7, 8, 9))
    assert [state.has_applied(f"e{n}") for n in (5, 6, 9)] == [False, True, True]
    assert state.apply(ev(0), recent_max=5, dedupe_window=4)  # beyond the window: counted again


def test_counts_purchases_context_and_times():
    state = UserState()
    state.apply(ev(1, "a", "purchase", ts=5_000, context={"device": "ios"}), recent_max=5,
                dedupe_window=9)
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


def test_a_token_straddling_two_digests_is_not_a_match():
    state = UserState()
    for n in range(3):
        state.apply(ev(n), recent_max=5, dedupe_window=8)
    window = state.event_digests
    straddling = window[5:5 + DIGEST_WIDTH]  # the end of one digest and the start of the next
    assert straddling in window and straddling not in {event_digest(f"e{n}") for n in range(3)}
    import streams.state as module
    original = module.event_digest
    module.event_digest = lambda event_id: straddling if event_id == "new" else original(event_id)
    try:
        assert not state.has_applied("new")
        assert state.apply(Event("new", "u", "a", "view", 2_000), recent_max=5, dedupe_window=8)
    finally:
        module.event_digest = original


def test_old_changelog_values_with_event_ids_keep_their_dedupe_memory():
    # A value as written before the digests (recent_event_ids, the ids in clear).
    old = {"event_count": 3, "counts": {"view": 3}, "recent_items": ["c", "b", "a"],
           "purchased": [], "last_context": {"device": "ios"}, "first_seen": 1_000,
           "last_seen": 3_000, "recent_event_ids": ["e1", "e2", "e3"]}
    state = UserState.from_dict(orjson.loads(orjson.dumps(old)))
    assert not state.apply(ev(2, "b"), recent_max=5, dedupe_window=9)  # a redelivery
    assert state.apply(ev(4, "d"), recent_max=5, dedupe_window=9)
    assert state.event_count == 4 and state.recent_items == ["d", "c", "b", "a"]
    value = state.to_dict()
    assert "recent_event_ids" not in value  # written back in the current format
    assert all(state.has_applied(f"e{n}") for n in range(1, 5))
    # Missing fields take their defaults.
    assert UserState.from_dict({"event_count": 2}).to_dict() == dict(UserState().to_dict(),
                                                                     event_count=2)


def test_a_full_state_is_compact():
    import sys

    state = UserState()
    for n in range(300):
        state.apply(Event(f"{n:08d}-aaaa-bbbb-cccc-dddddddddddd", "u", f"item-{n % 80:05d}",
                          "view", 1_000 + n, context={"device": "ios", "page": "home"}),
                    recent_max=50, dedupe_window=256)
    value = orjson.dumps(state.to_dict())
    assert len(state.event_digests) == 256 * DIGEST_WIDTH
    # 256 UUIDs in clear were ~10 KB of JSON and ~20 KB of Python objects.
    assert len(value) < 4_500
    assert sys.getsizeof(state.event_digests) < 3_000
