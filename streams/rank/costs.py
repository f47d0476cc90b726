"""What selection costs per ranking: ``python -m streams.rank.costs [N_ITEMS] [CALLS]``.

Warms a recommender on the bench's synthetic shop (``streams.bench.rank``), then times
``Recommender.recommend`` interleaved, call by call, in four modes: the scoring part
followed by the bare top-k and reasons (what ranking did before :mod:`streams.rank`),
then the selector without a ``recommendation_id`` (filters, controls, MMR, distinct
reasons), with one (plus exploration and the remembered impression), and with one and
off-neutral controls. Interleaving makes each mode see the same load on the machine.
Prints the median wall and process CPU time of each, and what ``challenger_lists`` adds
right after a ranking.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from streams.rank import selection
from streams.records import UserControls

__all__ = ["measure"]


def _bare_top_k(self, request: selection.Request):  # the tail before streams.rank
    blended = request.blended
    k = min(request.k, int(np.count_nonzero(request.candidates)))
    top = np.argpartition(-blended, k - 1)[:k]
    return request.describe(top[np.lexsort((top, -blended[top]))])


def measure(n_items: int = 10_000, calls: int = 1_000, warm_events: int = 4_000) -> dict:
    """``{mode: (wall p50 us, cpu p50 us)}`` plus ``"challengers"``: added CPU us."""
    from streams.bench.rank import warm_recommender

    rec, states = warm_recommender(n_items, warm_events=warm_events)
    users = list(states.items())
    select = selection.Selector.select
    modes = {
        "scoring + bare top-k (before streams.rank)": (_bare_top_k, {}),
        "streams.rank, no recommendation_id": (select, {}),
        "streams.rank, with recommendation_id (explores)": (select, {"rid": True}),
        "streams.rank, with id, novelty 0.8, personalization 0.5": (
            select, {"rid": True, "controls": UserControls(novelty=0.8, personalization=0.5)}),
    }
    wall: dict[str, list] = {m: [] for m in modes}
    cpu: dict[str, list] = {m: [] for m in modes}
    try:
        for n in range(calls + 20):
            user, state = users[n % len(users)]
            for mode, (fn, options) in modes.items():
                selection.Selector.select = fn
                kwargs: dict = {}
                if options.get("rid"):
                    kwargs["recommendation_id"] = f"{mode[:24]}-{n}"
                if "controls" in options:
                    kwargs["controls"] = options["controls"]
                started, cpu_started = time.perf_counter_ns(), time.process_time_ns()
                rec.recommend(user, state, state.last_context, 10, **kwargs)
                if n >= 20:
                    wall[mode].append((time.perf_counter_ns() - started) / 1e3)
                    cpu[mode].append((time.process_time_ns() - cpu_started) / 1e3)
    finally:
        selection.Selector.select = select
    out: dict = {m: (statistics.median(wall[m]), statistics.median(cpu[m])) for m in modes}
    extra = []
    for n in range(min(calls, 300)):
        user, state = users[n % len(users)]
        rec.recommend(user, state, state.last_context, 10, recommendation_id=f"c-{n}")
        started = time.process_time_ns()
        rec.challenger_lists(user, state, state.last_context, 10)
        extra.append((time.process_time_ns() - started) / 1e3)
    out["challengers"] = statistics.median(extra)
    return out


def main(argv: list[str]) -> None:
    n_items = int(argv[0]) if argv else 10_000
    calls = int(argv[1]) if len(argv) > 1 else 1_000
    results = measure(n_items, calls)
    print(f"recommend, {n_items:,}-item catalog, k=10, {calls} calls per mode (median):")
    for mode, value in results.items():
        if mode == "challengers":
            print(f"  challenger_lists right after recommend: {value:,.0f} us CPU")
        else:
            print(f"  {mode:58s} {value[0]:7,.0f} us wall {value[1]:7,.0f} us CPU")


if __name__ == "__main__":
    main(sys.argv[1:])
