"""Ranking, exposure and rating-error metrics: pure functions, no state.

The replay loop scores one recommendation list at a time against the one item the user
actually engaged with next, so the per-list metrics take a ranked list and a single
target. With one relevant item, NDCG's ideal DCG is 1 and MRR is the reciprocal rank.
Lists are the top K only: an item ranked below K counts as a miss in every metric
(HR@K, NDCG@K and "MRR" are all truncated at K), because that is all a user is shown.

The aggregate metrics describe *what was shown* over the whole replay:

* **coverage** — the share of the catalog recommended at least once;
* **Gini** of exposure — 0 when every catalog item was shown equally often, towards 1
  when a few items take all the exposure (items never shown count, as zeros);
* **novelty** — the mean self-information of the recommended items,
  ``log2((n_users + 1) / (users_of_item + 1))`` bits, weighted by how often each was
  shown: recommending what everybody already interacted with scores ~0 bits.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from streams.quality import gini

__all__ = [
    "rank_of",
    "hit_at_k",
    "ndcg_at_k",
    "reciprocal_rank",
    "catalog_coverage",
    "exposure_gini",
    "novelty",
    "mae",
    "rmse",
]


def rank_of(recommended: Sequence[str], target: str, k: int | None = None) -> int | None:
    """0-based position of ``target`` in the first ``k`` of ``recommended``, else ``None``.

    >>> rank_of(["a", "b", "c"], "b"), rank_of(["a", "b", "c"], "c", k=2)
    (1, None)
    """
    top = recommended if k is None else recommended[:k]
    for position, item in enumerate(top):
        if item == target:
            return position
    return None


def hit_at_k(recommended: Sequence[str], target: str, k: int) -> float:
    """1.0 if ``target`` is among the first ``k`` recommended items, else 0.0.

    >>> hit_at_k(["a", "b", "c"], "c", 3), hit_at_k(["a", "b", "c"], "c", 2)
    (1.0, 0.0)
    """
    return 0.0 if rank_of(recommended, target, k) is None else 1.0


def ndcg_at_k(recommended: Sequence[str], target: str, k: int) -> float:
    """NDCG@K with one relevant item: ``1 / log2(rank + 2)`` within the top ``k``, else 0.

    >>> ndcg_at_k(["a", "b"], "a", 10), round(ndcg_at_k(["a", "b"], "b", 10), 4)
    (1.0, 0.6309)
    >>> ndcg_at_k(["a", "b"], "z", 10)
    0.0
    """
    position = rank_of(recommended, target, k)
    return 0.0 if position is None else 1.0 / math.log2(position + 2)


def reciprocal_rank(recommended: Sequence[str], target: str, k: int | None = None) -> float:
    """``1 / (rank + 1)`` of ``target`` within the top ``k`` (0 when absent); MRR is its mean.

    >>> reciprocal_rank(["a", "b", "c"], "c"), reciprocal_rank(["a", "b", "c"], "c", k=2)
    (0.3333333333333333, 0.0)
    """
    position = rank_of(recommended, target, k)
    return 0.0 if position is None else 1.0 / (position + 1)


def catalog_coverage(exposures: Mapping[str, int], catalog_size: int) -> float:
    """Share of the ``catalog_size`` items recommended at least once.

    >>> catalog_coverage({"a": 3, "b": 1, "c": 0}, 10)
    0.2
    >>> catalog_coverage({}, 0)
    0.0
    """
    if catalog_size <= 0:
        return 0.0
    shown = sum(1 for count in exposures.values() if count > 0)
    return min(1.0, shown / catalog_size)


def exposure_gini(exposures: Mapping[str, int], catalog_size: int) -> float:
    """Gini coefficient of exposure over the whole catalog (unshown items count as 0).

    Uses :func:`streams.quality.gini`, the same formula as the worker's live metric.

    >>> exposure_gini({"a": 5, "b": 5}, 2)
    0.0
    >>> exposure_gini({"a": 5, "b": 5}, 4)  # half the catalog never shown
    0.5
    """
    counts = [float(c) for c in exposures.values()]
    counts.extend([0.0] * max(0, catalog_size - len(counts)))
    return gini(counts)


def novelty(exposures: Mapping[str, int], users_per_item: Mapping[str, int], n_users: int) -> float:
    """Exposure-weighted mean self-information (bits) of the recommended items.

    An item that ``u`` of ``n_users`` users interacted with carries
    ``log2((n_users + 1) / (u + 1))`` bits: 0 for an item everybody knows, the most for
    one nobody touched. The +1s keep unseen items finite.

    >>> novelty({"hit": 1}, {"hit": 7}, n_users=7)
    0.0
    >>> novelty({"hit": 1, "niche": 1}, {"hit": 7, "niche": 1}, n_users=7)
    1.0
    >>> novelty({}, {}, 5)
    0.0
    """
    total = 0
    bits = 0.0
    for item, count in exposures.items():
        if count <= 0:
            continue
        total += count
        bits += count * math.log2((n_users + 1) / (users_per_item.get(item, 0) + 1))
    return bits / total if total else 0.0


def _pairs(predicted: Iterable[float], actual: Iterable[float]) -> list[tuple[float, float]]:
    pairs = list(zip(predicted, actual, strict=True))
    if not pairs:
        raise ValueError("no predictions to score")
    return pairs


def mae(predicted: Iterable[float], actual: Iterable[float]) -> float:
    """Mean absolute error.

    >>> mae([3.0, 4.0], [4.0, 2.0])
    1.5
    """
    pairs = _pairs(predicted, actual)
    return sum(abs(p - a) for p, a in pairs) / len(pairs)


def rmse(predicted: Iterable[float], actual: Iterable[float]) -> float:
    """Root mean squared error.

    >>> rmse([3.0, 4.0], [4.0, 2.0])
    1.5811388300841898
    """
    pairs = _pairs(predicted, actual)
    return math.sqrt(sum((p - a) ** 2 for p, a in pairs) / len(pairs))
