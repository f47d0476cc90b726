"""Ranking one user against a large catalog, in-process (``rank_ms``).

A :class:`~streams.ranking.Recommender` gets the synthetic shop's catalog at the given
size (``10000`` and ``100000`` items, 6 categories), then learns ``warm_events`` events of
the shop (users drawn uniformly, ~20 events each): popularity covers the items touched,
every warm user has content affinities and MF latents (so all three scores are blended),
and the MF item mirror has grown to the whole catalog (its sampled negatives reach every
part of it), so ranking does the full catalog-sized work a long-running worker does.

``rank_ms[size]`` is the median wall time of ``Recommender.recommend(user, state,
context, k=10)``, cycling over the warm users, after a few untimed calls; details also
give p95, p99 and ``cpu_p50``, the median process CPU time of a call (all threads, so
numpy's too), which other load on the machine disturbs less. No Kafka, no
serialization: the ranking alone.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from streams.bench.report import summarize
from streams.bench.workload import UniformShop
from streams.ranking import Recommender
from streams.settings import Settings
from streams.state import UserState

__all__ = ["warm_recommender", "time_ranking", "run_rank"]


def warm_recommender(n_items: int, warm_events: int = 4_000, n_users: int = 200,
                     seed: int = 42) -> tuple[Recommender, dict[str, UserState]]:
    """A recommender over an ``n_items`` catalog that has learned ``warm_events`` events.

    >>> rec, states = warm_recommender(200, warm_events=100, n_users=5)
    >>> len(rec.catalog_), len(states)
    (200, 5)
    """
    settings = Settings()
    shop = UniformShop(n_users=n_users, n_items=n_items, seed=seed, request_share=0.0)
    recommender = Recommender(settings)
    for item in shop.catalog():
        recommender.apply_item(item)
    states: dict[str, UserState] = {}
    start_ms = int(time.time() * 1000) - warm_events * 50
    for event in shop.events(warm_events, start_ms=start_ms):
        state = states.setdefault(event.user_id, UserState())
        if state.apply(event, recent_max=settings.recent_items_max, dedupe_window=settings.dedupe_window):
            recommender.learn_one(event, state)
    return recommender, states


def time_ranking(recommender: Recommender, states: dict[str, UserState], calls: int, k: int = 10,
                 warmup_calls: int = 5) -> dict[str, Any]:
    """Timings (ms) of ``calls`` rankings, cycling over the users in ``states``.

    Fails (``AssertionError``) if a ranking returns other than ``k`` items.

    >>> rec, states = warm_recommender(200, warm_events=100, n_users=5)
    >>> stats = time_ranking(rec, states, calls=20, k=10)
    >>> stats["n"], stats["p50"] > 0
    (20, True)
    """
    users: Sequence[tuple[str, UserState]] = list(states.items())
    clock: Callable[[], int] = time.perf_counter_ns
    cpu_clock: Callable[[], int] = time.process_time_ns
    timings, cpu = [], []
    for n in range(warmup_calls + calls):
        user_id, state = users[n % len(users)]
        started, cpu_started = clock(), cpu_clock()
        ranked = recommender.recommend(user_id, state, state.last_context, k=k)
        elapsed, cpu_elapsed = clock() - started, cpu_clock() - cpu_started
        if len(ranked) != k:
            raise AssertionError(f"ranked {len(ranked)} items for {user_id}, asked for {k}")
        if n >= warmup_calls:
            timings.append(elapsed / 1e6)
            cpu.append(cpu_elapsed / 1e6)
    stats: dict[str, Any] = summarize(timings)
    stats["cpu_p50"] = summarize(cpu)["p50"]  # process CPU time (all threads): less load-sensitive
    return stats


def run_rank(sizes: dict[int, int], k: int = 10, warm_events: int = 4_000,
             progress: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """``{str(size): timing summary}`` for each catalog ``size`` -> number of timed calls."""
    out: dict[str, Any] = {}
    for size, calls in sizes.items():
        progress(f"{size:,}-item catalog: learning {warm_events:,} events")
        recommender, states = warm_recommender(size, warm_events=warm_events)
        progress(f"{size:,}-item catalog: {calls:,} rankings")
        stats = time_ranking(recommender, states, calls, k=k)
        stats.update(items=len(recommender.catalog_), users=len(states), k=k)
        out[str(size)] = stats
    return out
