"""The in-process bench stages at tiny scale: ranking time and memory per user."""

from __future__ import annotations

import math

from streams.bench.memory import per_user_containers, run_memory
from streams.bench.rank import run_rank, time_ranking, warm_recommender


def test_rank_times_full_rankings_of_k_items():
    result = run_rank({300: 15, 1_000: 10}, k=7, warm_events=300)
    assert set(result) == {"300", "1000"}
    for size, stats in result.items():
        assert stats["items"] == int(size) and stats["k"] == 7 and stats["n"] in (15, 10)
        assert all(math.isfinite(stats[q]) and stats[q] > 0 for q in ("p50", "p95", "p99"))
        assert stats["p50"] <= stats["p95"] <= stats["p99"] <= stats["max"]


def test_rank_refuses_a_short_ranking():
    recommender, states = warm_recommender(12, warm_events=200, n_users=3)
    try:
        time_ranking(recommender, states, calls=3, k=12)  # recent items are excluded: fewer than 12
    except AssertionError as exc:
        assert "asked for 12" in str(exc)
    else:
        raise AssertionError("a ranking shorter than k was accepted")


def test_memory_per_user_counts_state_learners_and_quality():
    result = run_memory(n_users=3_000, sample=150, events_per_user=5, heavy_users=10)
    assert result["users"] == 3_000
    assert math.isfinite(result["bytes_per_user"]) and result["bytes_per_user"] > 0
    assert result["bytes_per_user"] == result["traced_objects_per_user"] + result["container_share_per_user"]
    containers = result["containers"]
    # The table, the MF user index (and parameter rows: latents, biases, optimizer state), the
    # content affinities and the quality monitor's last-recommendation LRU: one entry per user.
    assert "user_state" in containers and "quality._last" in containers
    assert any(path.endswith("_mf._user_row") for path in containers)
    assert any("content" in path for path in containers)
    for path in ("user_state", "quality._last", "recommender._mf._user_row",
                 "recommender._content._users"):  # one entry per user (other learners may
        assert containers[path]["entries"] == 3_000  # also key contexts, or expire users)
    # The MF user parameters are rows of arrays: counted by their bytes over the users.
    rows = containers["recommender._mf._users"]
    assert rows["kind"] == "array" and rows["entries"] >= 3_000 and rows["value_objects"] == 0
    assert rows["share_per_user"] >= (4 + 1) * 8  # [bias, latents] in float64, at least
    assert containers["user_state"]["value_objects"] > 0
    assert result["resized_in_window"] == []
    # A full dedupe window (256 ids) and 50 recent items cost more than 5 events.
    assert result["state_bytes_after_300_events"] > containers["user_state"]["value_objects"]


def test_containers_found_by_path_not_descending_into_them():
    class Learner:
        def __init__(self):
            self.users = {f"u{n}": [n] for n in range(50)}
            self.items = {"a": 1}

    found = per_user_containers({"root": {"learner": Learner(), "table": {n: n for n in range(60)}}},
                                min_len=50)
    assert sorted(found) == ["root['learner'].users", "root['table']"]
