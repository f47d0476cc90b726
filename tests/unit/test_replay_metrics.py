"""Replay metrics on small cases computed by hand."""

from __future__ import annotations

import math

import pytest

from streams.replay import metrics

RANKED = ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("target", "k", "hit", "ndcg", "rr"),
    [
        ("a", 4, 1.0, 1.0, 1.0),
        ("b", 4, 1.0, 1 / math.log2(3), 0.5),
        ("d", 4, 1.0, 1 / math.log2(5), 0.25),
        ("d", 3, 0.0, 0.0, 0.0),  # ranked 4th: outside the top 3 counts as a miss everywhere
        ("z", 4, 0.0, 0.0, 0.0),
    ],
)
def test_per_list_metrics(target, k, hit, ndcg, rr):
    assert metrics.hit_at_k(RANKED, target, k) == hit
    assert metrics.ndcg_at_k(RANKED, target, k) == pytest.approx(ndcg)
    assert metrics.reciprocal_rank(RANKED, target, k) == pytest.approx(rr)


def test_mean_of_per_list_metrics_over_a_small_replay():
    # Three targets: hit at rank 1, hit at rank 3, miss.
    lists = [(["x", "y"], "x"), (["p", "q", "r"], "r"), (["m"], "n")]
    hr = sum(metrics.hit_at_k(l, t, 3) for l, t in lists) / 3
    ndcg = sum(metrics.ndcg_at_k(l, t, 3) for l, t in lists) / 3
    mrr = sum(metrics.reciprocal_rank(l, t, 3) for l, t in lists) / 3
    assert hr == pytest.approx(2 / 3)
    assert ndcg == pytest.approx((1 + 0.5) / 3)  # 1/log2(4) = 0.5
    assert mrr == pytest.approx((1 + 1 / 3) / 3)


def test_coverage_counts_items_shown_at_least_once():
    assert metrics.catalog_coverage({"a": 2, "b": 1, "c": 0}, 8) == 0.25
    assert metrics.catalog_coverage({"a": 1}, 0) == 0.0
    assert metrics.catalog_coverage({"a": 1, "b": 1}, 1) == 1.0  # capped


def test_gini_counts_unshown_catalog_items_as_zeros():
    assert metrics.exposure_gini({"a": 3, "b": 3, "c": 3}, 3) == pytest.approx(0.0)
    # One of four items takes all exposure: (n - 1) / n = 0.75.
    assert metrics.exposure_gini({"a": 12}, 4) == pytest.approx(0.75)
    # Sorted [0, 0, 1, 3]: G = 2*sum(i*x_i)/(n*sum) - (n+1)/n = 2*(3+12)/(4*4) - 5/4 = 0.625
    assert metrics.exposure_gini({"a": 1, "b": 3}, 4) == pytest.approx(0.625)


def test_novelty_is_exposure_weighted_self_information():
    users = {"hit": 9, "niche": 0}
    # hit: log2(10/10) = 0 bits; niche: log2(10/1) bits; shown 3:1.
    expected = (3 * 0.0 + 1 * math.log2(10)) / 4
    assert metrics.novelty({"hit": 3, "niche": 1}, users, n_users=9) == pytest.approx(expected)
    assert metrics.novelty({"hit": 5}, users, 9) == 0.0


def test_rating_errors():
    assert metrics.mae([1.0, 2.0, 3.0], [2.0, 2.0, 6.0]) == pytest.approx(4 / 3)
    assert metrics.rmse([1.0, 2.0, 3.0], [2.0, 2.0, 6.0]) == pytest.approx(math.sqrt(10 / 3))
    with pytest.raises(ValueError):
        metrics.mae([], [])
    with pytest.raises(ValueError):
        metrics.rmse([1.0], [1.0, 2.0])
