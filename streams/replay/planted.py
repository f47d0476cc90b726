"""A synthetic interaction log with planted structure, one kind per recommender component.

Why it exists: a real log says whether the hybrid beats popularity, not *which* part of
it does. Here each kind of structure the learners are meant to find is planted on
purpose, and can be switched off, so a replay can show each component's contribution
(``tests/unit/test_replay_planted.py``) and the whole hybrid's gain on a log where
users have histories:

* **taste** (``taste=True``): users belong to ``n_segments`` segments; on each device
  a segment prefers one category (on mobile category ``s``, on desktop ``s + 1``):
  content affinity and segments find the category, MF the latent groups, and the
  factorization machine that the taste depends on the device;
* **sequences** (``sequences=True``): within a session, the next item is often the
  planted successor of the previous one (a fixed random permutation of the catalog):
  what item-to-item transitions find;
* **context** (``context=True``): each (device, daypart) has its own set of favourite
  items, chosen often in that context by everyone: what popularity per context finds;
* and always a global popularity skew (Zipf over a shuffled catalog), so popularity
  is a fair baseline, not a strawman.

Users browse in sessions (a few events, a minute or two apart, one device); sessions
start every ``session_gap_s`` on a global clock that runs over many days, so dayparts
and the decay of the learners are exercised. Every event is a ``view`` or ``click``.

The log is the project's own event records (``LogEvent``), replayed through the
pipeline exactly as ``micromoment replay --format events`` would; ``python -m
streams.replay.planted EVENTS.jsonl ITEMS.jsonl`` writes it to files for the CLI.
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass

import orjson

from streams.learners._common import daypart
from streams.produce import item_record
from streams.records import ItemUpdate
from streams.replay.loaders import LogEvent

__all__ = ["PlantedLog", "DEVICES", "main"]

DEVICES = ("mobile", "desktop")
T0 = 1_700_000_000_000


@dataclass
class PlantedLog:
    """A seeded generator of a catalog and a time-ordered event log.

    Parameters
    ----------
    n_users, n_items, n_categories, n_segments
        Sizes; items are spread evenly over the categories.
    taste, sequences, context
        Which structure to plant (see the module docstring).
    categories
        Whether the catalog tells the categories (``False``: items without metadata,
        so only behaviour can reveal taste).
    p_taste, p_sequence, p_context
        Probability that an event follows its structure (checked in the order
        sequence, context, taste; otherwise the global popularity draws the item).
    session_length
        Mean events per session (geometric).
    session_gap_s
        Event time between two session starts.
    seed
        Seeds everything.

    Examples
    --------
    >>> log = PlantedLog(n_users=20, n_items=60, seed=1)
    >>> items, events = log.catalog(), log.events(200)
    >>> len(items), len(events), events[0].event_type in ("view", "click")
    (60, 200, True)
    >>> all(a.timestamp <= b.timestamp for a, b in zip(events, events[1:]))
    True
    >>> log.successor("item-0000") != "item-0000"
    True
    """

    n_users: int = 300
    n_items: int = 600
    n_categories: int = 6
    n_segments: int = 6
    taste: bool = True
    sequences: bool = True
    context: bool = True
    categories: bool = True
    p_taste: float = 0.6
    p_sequence: float = 0.35
    p_context: float = 0.3
    session_length: float = 6.0
    session_gap_s: float = 90.0
    seed: int = 0

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self._items = [f"item-{n:04d}" for n in range(self.n_items)]
        self._category = [n % self.n_categories for n in range(self.n_items)]
        self._by_category = [[n for n in range(self.n_items) if self._category[n] == c]
                             for c in range(self.n_categories)]
        order = list(range(self.n_items))
        rng.shuffle(order)
        self._successor = {order[n]: order[(n + 1) % self.n_items] for n in range(self.n_items)}
        ranks = list(range(self.n_items))
        rng.shuffle(ranks)
        self._global_weights = [1.0 / (1 + r) for r in ranks]
        self._context_items = {
            (device, part): rng.sample(range(self.n_items), 20)
            for device in DEVICES for part in ("night", "morning", "afternoon", "evening")
        }
        self._rng = random.Random(self.seed + 1)

    # -- the planted truth ----------------------------------------------------------------
    def segment_of(self, user: str) -> int:
        return int(user.split("-")[1]) % self.n_segments

    def device_of(self, user: str) -> str:
        return DEVICES[int(user.split("-")[1]) // self.n_segments % len(DEVICES)]

    def taste_of(self, user: str, device: str) -> int:
        """The category the user prefers on ``device``."""
        return (self.segment_of(user) + DEVICES.index(device)) % self.n_categories

    def successor(self, item: str) -> str:
        return self._items[self._successor[int(item.split("-")[1])]]

    # -- the catalog and the log ------------------------------------------------------------
    def catalog(self) -> list[ItemUpdate]:
        return [ItemUpdate(item, categories=(f"cat-{self._category[n]}",) if self.categories
                           else ()) for n, item in enumerate(self._items)]

    def item_records(self) -> list[tuple[bytes, bytes]]:
        """The catalog as ``items`` records ``(key, value)``, for ``Prequential.add_items``."""
        return [(item.item_id.encode(), orjson.dumps(item_record(item))) for item in self.catalog()]

    def events(self, n_events: int) -> list[LogEvent]:
        rng = self._rng
        events: list[LogEvent] = []
        t_session = T0
        session = 0
        while len(events) < n_events:
            session += 1
            user = f"user-{rng.randrange(self.n_users):04d}"
            device = self.device_of(user) if rng.random() < 0.8 else rng.choice(DEVICES)
            t = t_session
            last: int | None = None
            length = 1 + int(rng.expovariate(1.0 / max(self.session_length - 1, 1e-9)))
            for _ in range(length):
                if len(events) >= n_events:
                    break
                hour = int(t // 3_600_000 % 24)
                row = self._pick(user, device, daypart(hour), last)
                last = row
                events.append(self._record(len(events), user, row, device, session, t))
                t += rng.randrange(20_000, 120_000)
            t_session += int(self.session_gap_s * 1_000)
        events.sort(key=lambda e: e.timestamp)
        return events

    def _pick(self, user: str, device: str, part: str, last: int | None) -> int:
        rng = self._rng
        if self.sequences and last is not None and rng.random() < self.p_sequence:
            return self._successor[last]
        if self.context and rng.random() < self.p_context:
            favourites = self._context_items[(device, part)]
            return favourites[min(int(rng.expovariate(1 / 5)), len(favourites) - 1)]
        if self.taste and rng.random() < self.p_taste:
            items = self._by_category[self.taste_of(user, device)]
            return items[min(int(rng.expovariate(1 / 15)), len(items) - 1)]
        return rng.choices(range(self.n_items), self._global_weights)[0]

    def _record(self, n: int, user: str, row: int, device: str, session: int, t: int) -> LogEvent:
        kind = "click" if self._rng.random() < 0.3 else "view"
        record = {"event_id": f"p{self.seed}-{n}", "user_id": user, "item_id": self._items[row],
                  "event_type": kind, "timestamp": t,
                  "context": {"device": device, "session_id": f"s{session}"}}
        return LogEvent(t, user, self._items[row], kind, None, None, orjson.dumps(record))


def median_events_per_user(events: list[LogEvent]) -> float:
    """The median number of events per user of ``events``.

    >>> median_events_per_user(PlantedLog(n_users=10, seed=1).events(300)) >= 20
    True
    """
    counts: dict[str | None, int] = {}
    for event in events:
        counts[event.user_id] = counts.get(event.user_id, 0) + 1
    ordered = sorted(counts.values())
    middle = len(ordered) // 2
    if not ordered:
        return math.nan
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main(argv: list[str] | None = None) -> int:
    """Write a planted log and its catalog as JSONL, for ``micromoment replay``."""
    parser = argparse.ArgumentParser(prog="python -m streams.replay.planted",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("events", help="events JSONL to write")
    parser.add_argument("items", help="items JSONL to write")
    parser.add_argument("--events-count", type=int, default=12_000)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    log = PlantedLog(n_users=args.users, seed=args.seed)
    with open(args.items, "wb") as f:
        for _, value in log.item_records():
            f.write(value + b"\n")
    with open(args.events, "wb") as f:
        for event in log.events(args.events_count):
            f.write(event.record + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
