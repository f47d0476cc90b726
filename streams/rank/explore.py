"""Exploration slots with exact propensities: Poisson sampling from the bandit's pool.

The champion's list (relevance, then diversity) is deterministic. Exploration mixes in
items the bandit wants to learn about, so that feedback on them can correct the model,
and records for every item the probability that the policy shows it, so that a later
policy can be evaluated offline by inverse propensity scoring (IPS).

The policy, for a list of ``n`` exploit items (best first) and an exploration pool of
``m <= n - 1`` other candidates (the bandit's best upper confidence bounds):

1. each pool item ``e`` is drawn *independently* with probability ``pi_e``: a softmax of
   its standardized upper bound (``temperature`` in standard deviations), scaled so the
   ``pi`` sum to ``rate * n`` (the expected number of explored slots) and capped at 1
   (the excess is spread over the others);
2. the ``N`` drawn items (``N <= m < n``) take ``N`` positions chosen uniformly among
   positions 2..n (the top slot always goes to the best exploit item), in pool order;
   the exploit items fill the other positions in their order, so the last ``N`` of
   them drop out.

**Propensity** (what ``RecommendedItem.propensity`` holds) is the probability, under this
policy and given everything the model knew when it ranked, that the item is *in the
list* (at any position): ``pi_e`` for an explored item, and for the exploit item at
rank ``i``, ``P(N <= n - i)``, where ``N`` follows the Poisson-binomial distribution of
the ``pi`` (computed exactly, ``O(m^2)``). The top item's is 1. Positions are random
but independent of which items were drawn, so they do not enter the set propensity.
"""

from __future__ import annotations

import random

import numpy as np

__all__ = ["count_distribution", "exploit_propensities", "inclusion_probabilities", "sample_slate"]


def inclusion_probabilities(scores: np.ndarray, target: float, temperature: float = 1.0
                            ) -> np.ndarray:
    """Probabilities in ``[0, 1]`` summing to ``min(target, len(scores))``, increasing with
    ``scores`` (a softmax of their standardized values, capped at 1 and water-filled).

    >>> p = inclusion_probabilities(np.array([3.0, 2.0, 1.0, 1.0]), target=1.0)
    >>> round(float(p.sum()), 6), bool(p[0] > p[1] > p[2] == p[3])
    (1.0, True)
    >>> inclusion_probabilities(np.array([5.0, 0.0]), target=1.5).round(3).tolist()
    [1.0, 0.5]
    >>> inclusion_probabilities(np.array([1.0, 1.0]), target=0.0).tolist()
    [0.0, 0.0]
    """
    m = len(scores)
    target = min(max(float(target), 0.0), float(m))
    if m == 0 or target == 0.0:
        return np.zeros(m)
    spread = float(np.std(scores))
    z = (scores - np.max(scores)) / (spread * max(temperature, 1e-9)) if spread > 0 else \
        np.zeros(m)
    weights = np.exp(z)
    pi = weights * (target / weights.sum())
    if pi.max() <= 1.0:  # the usual case: nothing to cap
        return pi
    capped = np.zeros(m, dtype=bool)
    for _ in range(m):  # water-filling: cap at 1, give the rest to the uncapped
        free = ~capped
        pi[free] = weights[free] * (target - capped.sum()) / weights[free].sum()
        over = free & (pi >= 1.0)
        if not over.any():
            break
        capped |= over
        pi[capped] = 1.0
    return np.clip(pi, 0.0, 1.0)


def count_distribution(pi: np.ndarray) -> np.ndarray:
    """``P(N = j)``, ``j = 0 .. len(pi)``, for ``N`` the number of independent successes
    with probabilities ``pi`` (the Poisson-binomial distribution).

    >>> count_distribution(np.array([0.5, 0.5])).tolist()
    [0.25, 0.5, 0.25]
    """
    dist = [1.0]
    for p in pi.tolist():  # a handful of items: plain floats beat numpy's call overhead
        q = 1.0 - p
        dist = [dist[0] * q] + [dist[j] * q + dist[j - 1] * p for j in range(1, len(dist))] + [
            dist[-1] * p]
    return np.array(dist)


def exploit_propensities(n_exploit: int, pi: np.ndarray) -> np.ndarray:
    """For exploit ranks ``1 .. n_exploit``: the probability the item stays in the list,
    ``P(N <= n_exploit - rank)``.

    >>> exploit_propensities(3, np.array([0.5, 0.5])).tolist()
    [1.0, 0.75, 0.25]
    """
    cdf = np.cumsum(count_distribution(pi))
    slack = n_exploit - np.arange(1, n_exploit + 1)  # explored items rank i can absorb
    return np.minimum(cdf[np.minimum(slack, len(pi))], 1.0)


def sample_slate(n_exploit: int, pi: np.ndarray, rng: random.Random
                 ) -> tuple[list[int], list[bool]]:
    """Draw one list: per position, an index into the exploit list or into the pool,
    and whether it is explored. ``len(pi)`` must be below ``n_exploit``.

    >>> slots, explored = sample_slate(4, np.array([1.0, 0.0, 1.0]), random.Random(0))
    >>> slots[0], explored[0], sorted(s for s, e in zip(slots, explored) if e)
    (0, False, [0, 2])
    >>> [s for s, e in zip(slots, explored) if not e]  # exploit items keep their order
    [0, 1]
    """
    if len(pi) >= n_exploit:
        raise ValueError("the exploration pool must be smaller than the list")
    draws = [rng.random() for _ in range(len(pi))]
    drawn = [e for e, (u, p) in enumerate(zip(draws, pi.tolist())) if u < p]
    positions = sorted(rng.sample(range(1, n_exploit), len(drawn)))
    explore_at = dict(zip(positions, drawn))
    slots: list[int] = []
    explored: list[bool] = []
    next_exploit = 0
    for position in range(n_exploit):
        if position in explore_at:
            slots.append(explore_at[position])
            explored.append(True)
        else:
            slots.append(next_exploit)
            explored.append(False)
            next_exploit += 1
    return slots, explored
