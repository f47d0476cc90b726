"""Diversity: maximal marginal relevance (MMR) over categories and item embeddings.

A relevance ranking is a list of near-duplicates for a user with one dominant taste:
ten pairs of black sneakers. MMR (Carbonell & Goldstein, 1998) builds the list greedily,
each step taking the item with the best

    (1 - lambda) * relevance - lambda * (highest similarity to an item already taken)

so ``lambda = 0`` is the relevance order and larger values trade relevance for variety.
Relevance is the blended score scaled by the pool's best (so "1" is the top item and
``lambda`` reads as "how much one more item of the same kind costs, relative to the
best item"); a large gap in relevance still wins over a small ``lambda``, which is what
keeps the order "within reason". Similarity is the Jaccard overlap of two items'
categories, averaged with the cosine of their embeddings (e.g. matrix-factorization
item factors) when those are given. Only a pool of the best few dozen items is
re-ranked, so the cost is ``O(k * pool)`` whatever the catalog size.
"""

from __future__ import annotations

import numpy as np

__all__ = ["category_similarity", "mmr"]


def category_similarity(codes: np.ndarray) -> np.ndarray:
    """Jaccard similarity of the category sets of each pair of rows of ``codes``.

    ``codes`` is ``(n, width)`` category codes padded with ``-1``. Items without any
    category are similar to nothing (0), themselves included.

    >>> category_similarity(np.array([[0, -1], [0, 1], [2, -1], [-1, -1]])).tolist()
    [[1.0, 0.5, 0.0, 0.0], [0.5, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    """
    n = len(codes)
    if codes.shape[1] == 1:  # one category each: similar iff the same one
        first = codes[:, 0]
        return ((first[:, None] == first[None, :]) & (first >= 0)[:, None]).astype(np.float64)
    valid = codes >= 0
    present, inverse = np.unique(codes[valid], return_inverse=True)
    incidence = np.zeros((n, len(present)), dtype=np.float64)
    incidence[np.nonzero(valid)[0], inverse] = 1.0
    inter = incidence @ incidence.T
    sizes = incidence.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - inter
    return np.divide(inter, union, out=np.zeros((n, n)), where=union > 0)


def mmr(relevance: np.ndarray, similarity: np.ndarray, k: int, diversity: float) -> np.ndarray:
    """Positions (into the pool) of the ``k`` items MMR picks, in pick order.

    ``relevance`` is the pool's scores, best first is not required; ties go to the
    lower position, so a pool sorted best first with ties broken by row keeps the
    ranking deterministic. ``diversity`` is MMR's ``lambda`` in ``[0, 1]``.

    >>> relevance = np.array([1.0, 0.95, 0.9, 0.5])
    >>> same = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1.0]])
    >>> mmr(relevance, same, 3, 0.0).tolist()  # relevance order
    [0, 1, 2]
    >>> mmr(relevance, same, 3, 0.5).tolist()  # the other kind comes second
    [0, 3, 1]
    """
    n = len(relevance)
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    if diversity <= 0.0 or n == 1:
        return np.lexsort((np.arange(n), -relevance))[:k]
    high = float(np.max(relevance))
    low = min(0.0, float(np.min(relevance)))
    scale = 1.0 / (high - low) if high > low else 0.0
    gain = (1.0 - diversity) * (relevance - low) * scale
    closest = np.zeros(n, dtype=np.float64)
    taken = np.zeros(n, dtype=bool)
    picks = np.empty(k, dtype=np.intp)
    for step in range(k):
        score = gain - diversity * closest
        score[taken] = -np.inf
        pick = int(np.argmax(score))
        picks[step] = pick
        taken[pick] = True
        np.maximum(closest, similarity[pick], out=closest)
    return picks
