"""Per-call costs of the learners: ``python -m streams.learners.costs [--items 10000 100000]``.

A measurement script, not a test (timings depend on the machine and its load). For each
catalog size it builds a catalog (200 categories, some items in two, 100 brands),
feeds every learner the same synthetic stream (a few thousand users, items drawn with a
popularity skew, device/page context, sessions), then reports the mean ``learn_one``
time per event and the median time of one whole-catalog scoring call made right after
learning each event. It uses only
the public API, so it also shows how each learner is driven.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import typing

from streams.catalog import Catalog
from streams.learners import (
    BurstDetector,
    CategoryAffinity,
    ContextualFM,
    DecayedPopularity,
    ImplicitMF,
    ItemTransitions,
    KeyedPopularity,
    UserSegments,
)
from streams.records import ItemUpdate

__all__ = ["measure", "main"]

T0 = 1_700_000_000_000


def _catalog(n_items: int, seed: int) -> Catalog:
    rng = random.Random(seed)
    catalog = Catalog(initial_capacity=n_items)
    for i in range(n_items):
        categories = (f"c{i % 200}",)
        if rng.random() < 0.2:  # one item in five has a second category
            categories += (f"c{(i * 7) % 200}",)
        catalog.upsert(ItemUpdate(f"i{i}", categories=categories,
                                  attributes={"brand": f"b{rng.randrange(100)}"}))
    return catalog


def _stream(n_items: int, n_events: int, seed: int) -> list[tuple[str, str, float, dict]]:
    rng = random.Random(seed)
    events, t = [], T0
    for _ in range(n_events):
        t += rng.randrange(10, 400)
        user = f"u{rng.randrange(3_000)}"
        item = f"i{min(n_items - 1, int(rng.paretovariate(1.2)) * 7 % n_items)}"
        x = {"timestamp": t, "device": rng.choice(["ios", "android", "web"]),
             "page": rng.choice(["home", "pdp", "cart", "search"]),
             "session": f"{user}-{t // 1_800_000}"}
        events.append((user, item, rng.choice([1.0, 1.0, 1.5, 2.0, 3.0]), x))
    return events


def _candidates(n_items: int, k: int = 500) -> list[int]:
    """A fixed set of ``k`` rows: what a re-ranker would receive from a first stage."""
    return list(range(0, n_items, max(1, n_items // k)))[:k]


def _learners(catalog: Catalog) -> dict[str, tuple[typing.Any, typing.Callable]]:
    """name -> (learner, score(learner, user, n_items, x, recent))"""
    return {
        "DecayedPopularity": (DecayedPopularity(catalog=catalog),
                              lambda m, u, n, x, r: m.score_all(n, x)),
        "CategoryAffinity": (CategoryAffinity(catalog=catalog),
                             lambda m, u, n, x, r: m.score_all(u, n, x)),
        "ImplicitMF": (ImplicitMF(catalog=catalog), lambda m, u, n, x, r: m.score_all(u, n)),
        "ItemTransitions": (ItemTransitions(catalog=catalog),
                            lambda m, u, n, x, r: m.score_all(u, n, recent_items=r)),
        "ContextualFM": (ContextualFM(catalog=catalog),
                         lambda m, u, n, x, r: m.score_all(u, n, x)),
        "ContextualFM+brand": (ContextualFM(attributes=("brand",), catalog=catalog),
                               lambda m, u, n, x, r: m.score_all(u, n, x)),
        "ContextualFM rows": (ContextualFM(attributes=("brand",), catalog=catalog),
                              lambda m, u, n, x, r: m.score_rows(u, _candidates(n), x)),
        "KeyedPopularity": (KeyedPopularity(catalog=catalog),
                            lambda m, u, n, x, r: m.score_all(n, x)),
        "UserSegments": (UserSegments(catalog=catalog), lambda m, u, n, x, r: m.predict_one(u, x)),
        "BurstDetector": (BurstDetector(), lambda m, u, n, x, r: m.is_anomalous(u, "i1", x)),
    }


def measure(n_items: int, n_events: int = 6_000, seed: int = 0) -> list[dict]:
    """One row per learner: ``learn_us``, the mean ``learn_one`` time per event, and
    ``score_ms``, the median time of one scoring call made right after a ``learn_one``
    (over the last 300 events: the pipeline's pattern of learning an event, then ranking
    for that user)."""
    catalog = _catalog(n_items, seed)
    events = _stream(n_items, n_events, seed)
    warm, timed = events[: n_events // 2], events[n_events // 2:]
    recent = [f"i{k}" for k in (3, 14, 7, 1, 21)]
    rows = []
    for name, (learner, score) in _learners(catalog).items():
        for user, item, y, x in warm:
            learner.learn_one(user, item, y, x)
        score(learner, "u1", n_items, timed[0][3], recent)  # first call indexes the catalog
        learning, scoring = 0.0, []
        for k, (user, item, y, x) in enumerate(timed):
            start = time.perf_counter()
            learner.learn_one(user, item, y, x)
            learning += time.perf_counter() - start
            if k >= len(timed) - 300:
                start = time.perf_counter()
                score(learner, user, n_items, x, recent)
                scoring.append(time.perf_counter() - start)
        rows.append({"learner": name, "n_items": n_items, "learn_us": learning / len(timed) * 1e6,
                     "score_ms": statistics.median(scoring) * 1e3})
    return rows


def main(argv: typing.Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--events", type=int, default=6_000)
    args = parser.parse_args(argv)
    print("score ms: one whole-catalog call, except 'ContextualFM rows': score_rows on 500 rows")
    print(f"{'learner':<18} {'items':>7} {'learn_one us':>13} {'score ms':>9}")
    for n_items in args.items:
        for row in measure(n_items, args.events):
            print(f"{row['learner']:<18} {row['n_items']:>7} {row['learn_us']:>13.1f} "
                  f"{row['score_ms']:>9.3f}")


if __name__ == "__main__":
    main()
