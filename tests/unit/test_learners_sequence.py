"""The sequence-aware next-item learner (item-to-item transitions)."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

from streams.catalog import Catalog
from streams.learners import ItemTransitions

MIN_MS = 60_000
HOUR_MS = 3_600_000


def _top(learner: ItemTransitions, recent: list[str], k: int = 1) -> list[str]:
    catalog = learner.catalog_
    scores = learner.score_all("anyone", len(catalog), recent_items=recent)
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return [catalog.item_id_at(int(row)) for row in order if scores[row] > 0]


def _planted(seed: int = 0, n_users: int = 200) -> ItemTransitions:
    """Sessions A -> B -> C (and X -> Y -> Z) mixed with random noise over 50 items."""
    catalog = Catalog()
    noise = [f"n{i}" for i in range(50)]
    for item in ("A", "B", "C", "X", "Y", "Z", *noise):
        catalog.ensure(item)
    seq = ItemTransitions(catalog=catalog)
    rng = random.Random(seed)
    for u in range(n_users):
        t = u * HOUR_MS  # every user in their own session
        chain = ["A", "B", "C"] if u % 2 else ["X", "Y", "Z"]
        path = [rng.choice(noise)] + chain + [rng.choice(noise) for _ in range(2)]
        for item in path:
            seq.learn_one(f"u{u}", item, 1.0, {"timestamp": t})
            t += rng.randrange(5_000, 120_000)
    return seq


def test_planted_sequence_ranks_the_next_item_first():
    seq = _planted()
    assert _top(seq, ["A"]) == ["B"]
    assert _top(seq, ["B"]) == ["C"]
    assert _top(seq, ["X"]) == ["Y"]
    # The most recent item counts most: after B (most recent) then A, C beats B.
    assert _top(seq, ["B", "A"]) == ["C"]
    assert _top(seq, ["A", "B"]) == ["B"]
    (best, p), *_ = seq.successors("A")
    assert best == "B" and p > 0.9


def test_score_all_is_aligned_and_agrees_with_predict_one():
    seq = _planted(n_users=40)
    catalog = seq.catalog_
    scores = seq.score_all("u", len(catalog), recent_items=["A", "Y"])
    assert scores.shape == (len(catalog),) and np.isfinite(scores).all()
    for row in range(len(catalog)):
        item = catalog.item_id_at(row)
        assert scores[row] == pytest.approx(seq.predict_one("u", item, recent_items=["A", "Y"]))
    # Longer than the catalog: trailing zeros; shorter: a prefix.
    longer = seq.score_all("u", len(catalog) + 5, recent_items=["A"])
    assert longer[len(catalog):].tolist() == [0.0] * 5
    np.testing.assert_array_equal(seq.score_all("u", 3, recent_items=["A"]), longer[:3])
    # Unknown recent items and unknown users score nothing.
    assert not seq.score_all("u", len(catalog), recent_items=["nope"]).any()
    assert not seq.score_all("stranger", len(catalog)).any()
    assert seq.predict_one("u", "never-seen", recent_items=["A"]) == 0.0
    assert "never-seen" not in catalog


def test_without_recent_items_the_users_own_last_item_is_used():
    catalog = Catalog()
    seq = ItemTransitions(catalog=catalog)
    for user in ("a", "b", "c"):
        seq.learn_one(user, "tent", 1.0, {"timestamp": 0})
        seq.learn_one(user, "stove", 1.0, {"timestamp": MIN_MS})
    seq.learn_one("dan", "tent", 1.0, {"timestamp": 2 * MIN_MS})
    assert seq.last_item("dan") == "tent"
    scores = seq.score_all("dan", len(catalog))
    assert catalog.item_id_at(int(scores.argmax())) == "stove"


def test_session_gap_and_session_key_break_the_chain():
    seq = ItemTransitions(session_gap_s=600.0)
    seq.learn_one("u", "a", 1.0, {"timestamp": 0})
    seq.learn_one("u", "b", 1.0, {"timestamp": 11 * MIN_MS})  # past the 10-minute gap
    assert seq.successors("a") == []
    seq.learn_one("u", "c", 1.0, {"timestamp": 12 * MIN_MS, "session": "s1"})
    assert [i for i, _ in seq.successors("b")] == ["c"]  # b had no session: counted
    seq.learn_one("u", "d", 1.0, {"timestamp": 13 * MIN_MS, "session": "s2"})  # new session
    assert seq.successors("c") == []
    seq.learn_one("u", "e", 1.0, {"timestamp": 14 * MIN_MS, "session": "s2"})
    assert [i for i, _ in seq.successors("d")] == ["e"]
    assert seq.n_transitions == 2


def test_repeats_negatives_late_and_non_finite_events_teach_nothing():
    seq = ItemTransitions()
    seq.learn_one("u", "a", 1.0, {"timestamp": 10 * MIN_MS})
    seq.learn_one("u", "a", 1.0, {"timestamp": 11 * MIN_MS})  # a repeat
    seq.learn_one("u", "b", -1.0, {"timestamp": 12 * MIN_MS})  # a dislike
    seq.learn_one("u", "b", float("nan"), {"timestamp": 12 * MIN_MS})
    seq.learn_one("u", "c", 1.0, {"timestamp": 5 * MIN_MS})  # late: before the previous event
    assert seq.n_transitions == 0 and seq.last_item("u") == "a"
    seq.learn_one("u", "d", 1e300, {"timestamp": float("nan")})  # huge, at the current clock
    assert [i for i, _ in seq.successors("a")] == ["d"]
    assert np.isfinite(seq.score_all("u", 10, recent_items=["a"])).all()


def test_older_transitions_decay_so_a_new_habit_takes_over():
    seq = ItemTransitions(half_life_s=3_600.0, smoothing=0.0)
    for i in range(8):  # a -> old, 8 times, long ago
        seq.learn_one(f"o{i}", "a", 1.0, {"timestamp": 0})
        seq.learn_one(f"o{i}", "old", 1.0, {"timestamp": MIN_MS})
    for i in range(2):  # a -> new, twice, 5 half-lives later: 2 > 8 / 32
        seq.learn_one(f"n{i}", "a", 1.0, {"timestamp": 5 * HOUR_MS})
        seq.learn_one(f"n{i}", "new", 1.0, {"timestamp": 5 * HOUR_MS + MIN_MS})
    assert [i for i, _ in seq.successors("a")] == ["new", "old"]
    assert _top(seq, ["a"]) == ["new"]


def test_weights_are_rescaled_instead_of_overflowing_and_faded_ones_dropped():
    seq = ItemTransitions(half_life_s=1.0, session_gap_s=10.0)
    seq.learn_one("u", "a", 1.0, {"timestamp": 0})
    seq.learn_one("u", "gone", 1.0, {"timestamp": 1_000})
    for step in range(2, 3_000):  # 3000 half-lives: 2 ** 3000 would overflow float64
        seq.learn_one("u", "a" if step % 2 else "b", 1.0, {"timestamp": step * 1_000})
    assert seq.successors("gone") == []
    successors = dict(seq.successors("a"))
    assert set(successors) == {"b"} and np.isfinite(list(successors.values())).all()
    assert np.isfinite(seq.score_all("u", 4, recent_items=["a", "b"])).all()


def test_memory_is_bounded_by_the_caps():
    seq = ItemTransitions(max_successors=5, max_items=20, max_users=30, session_gap_s=60.0)
    rng = random.Random(1)
    t = 0
    for _ in range(5_000):
        t += 100
        seq.learn_one(f"u{rng.randrange(500)}", f"i{rng.randrange(300)}", 1.0, {"timestamp": t})
        assert seq.n_users <= 30
    assert len(seq._successors) <= 20
    assert all(len(s) <= 5 for s in seq._successors.values())
    assert seq.n_entries <= 100


def test_successor_cap_keeps_the_strongest():
    seq = ItemTransitions(max_successors=4, smoothing=0.0)

    def follow(target: str, times: int) -> None:
        for i in range(times):
            seq.learn_one(f"{target}-{i}", "src", 1.0, {"timestamp": 0})
            seq.learn_one(f"{target}-{i}", target, 1.0, {"timestamp": 1_000})
            assert len(seq._successors[seq.catalog_.index_of("src")]) <= 4

    for target, times in [("s1", 5), ("s2", 4), ("s3", 3), ("weak", 1), ("s4", 1)]:
        follow(target, times)  # s4 overflows the cap: the three strongest stay
    assert [item for item, _ in seq.successors("src")] == ["s1", "s2", "s3"]
    follow("s5", 6)  # a newcomer that keeps coming back gets in and ranks by its weight
    assert [item for item, _ in seq.successors("src")] == ["s5", "s1", "s2", "s3"]


def test_users_last_item_expires_after_the_session_gap():
    seq = ItemTransitions(session_gap_s=60.0)
    seq.learn_one("idle", "a", 1.0, {"timestamp": 0})
    seq.learn_one("busy", "b", 1.0, {"timestamp": 2 * MIN_MS})  # the clock moves on
    assert not seq.knows_user("idle") and seq.knows_user("busy")


def test_evidence_names_the_recent_item_that_contributed_most():
    seq = _planted()
    source, contribution = seq.evidence("C", ["A", "B"])  # B -> C outweighs A (no A -> C)
    assert source == "B" and contribution > 0
    assert seq.evidence("C", ["X"]) is None
    assert seq.evidence("unknown", ["A"]) is None
    # Evidence is the argmax of the per-recent-item contributions that make up the score.
    recent = ["Y", "B"]
    score = seq.predict_one("u", "C", recent_items=recent)
    assert seq.evidence("C", recent)[1] == pytest.approx(score)  # Y contributes nothing to C


def test_forget_user_erases_their_last_item():
    seq = _planted(n_users=20)
    seq.learn_one("me", "A", 1.0, {"timestamp": 30 * HOUR_MS})
    assert seq.score_all("me", len(seq.catalog_)).any()
    seq.forget_user("me")
    assert not seq.knows_user("me") and not seq.score_all("me", len(seq.catalog_)).any()
    before = seq.n_transitions
    seq.learn_one("me", "B", 1.0, {"timestamp": 30 * HOUR_MS + 1})  # no chain from before
    assert seq.n_transitions == before


def test_pickle_round_trip_continues_identically():
    seq = _planted(n_users=30)
    clone = pickle.loads(pickle.dumps(seq))
    for learner in (seq, clone):
        for i, item in enumerate(["A", "B", "C", "n3"]):
            learner.learn_one("late", item, 2.0, {"timestamp": 40 * HOUR_MS + i * 1_000})
    n = len(seq.catalog_)
    np.testing.assert_array_equal(seq.score_all("late", n), clone.score_all("late", n))
    recent = ["B", "A"]
    np.testing.assert_array_equal(
        seq.score_all("x", n, recent_items=recent), clone.score_all("x", n, recent_items=recent)
    )
    assert clone.n_transitions == seq.n_transitions


def test_invalid_parameters_are_rejected():
    with pytest.raises(ValueError):
        ItemTransitions(half_life_s=0)
    with pytest.raises(ValueError):
        ItemTransitions(max_successors=0)
    with pytest.raises(ValueError):
        ItemTransitions(recency_weight=2.0)
