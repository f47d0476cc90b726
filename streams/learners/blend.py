"""The learned blend: how much each recommender component should count, learned per event.

Why it exists: the ranking adds up several normalized scores (popularity, context,
content, collaborative, sequence, factorization machine). Which of them predicts what a
user does next depends on the domain and on how much is known about the user: on a
movie-rating log where most users rate twice, genre affinity after one rating is noise
and popularity is king; in a shop with long sessions the last item viewed says the
most. Fixed weights are right for one of those at best.

So the weights are learned online, test-then-learn, as a *choice model* (a
conditional logit): on each positive event, *before* the learners see it, the
ranking's normalized component scores of every candidate are at hand, and the item
the user engaged with is taken to be drawn with probability
``p_i = softmax(temperature * w . f_i)`` over the candidates. One step of gradient
ascent on ``log p_target`` moves the weights by ``temperature * (f_target - E_p[f])``:
towards the components on which the engaged item scored higher than what the blend
expected. The expectation is exact over up to ``max_exact`` candidates; over more, it
is estimated from the ranking's top (every one of them) and a uniform sample of the
rest (each standing for its share of it). Only differences to the expectation enter,
so the per-component offsets of the normalization cancel. The temperature is learned
the same way (its gradient is ``s_target - E_p[s]`` with ``s = w . f``), within
``[1, 100]``.

Why not pairwise losses against a few sampled items (BPR)? Tried here: against the top
of the ranking (the informative negatives) most pairs are lost whatever the weights,
so the step shrinks the weight of whatever put those items on top -- popularity, on
MovieTweetings, where popularity is the best single predictor: the learned blend lost
to popularity alone (HR@10 0.147 against 0.164). With random negatives it learns an
AUC, which says little about the top 10. The choice model weighs every candidate by how
likely the blend makes it, which is what a top-k list is about.

The weights live on a simplex (non-negative, sum 1; the temperature carries the
scale) and learn by exponentiated gradient (Kivinen and Warmuth, 1997):
``w_c *= exp(eta * g_c)``, renormalized among the components that had any score in
the step, so a component that was absent (no score for this user yet) keeps its share
for when it speaks. Each share stays above ``min_share`` of the sum, so a component
can always come back.

The likelihood is still not the hit rate: on MovieTweetings it kept a share for the
factorization machine that cost top-10 hits. So what is *served* is chosen by the
metric itself: per bucket, a few candidate weightings ("arms") -- the learned weights,
the learned weights without each one component, and popularity alone -- are scored on
every step, before it, by whether the engaged item would have been in the top ``k``
under each (the candidates' scores are at hand, so this is one small matrix product),
and the arm with the most (discounted, ``window``) hits serves, if it leads the learned
weights by ``min_lead`` hits and 2% (else the learned weights serve). That is the champion/challenger idea inside one ranking, and it makes
the blend never fall behind popularity alone for long on any log.

One weight vector per *history bucket* (how many events the user had): a component
can be worth much for regulars and nothing for newcomers. Every vector starts at the
``prior`` (normalized), so the first rankings are those of hand-set weights.

Guards: a step with non-finite features is skipped; the exponent of a step is clipped
to ``[-1, 1]``; a weight vector that still went non-finite is reset to the prior and
counted in :attr:`ChoiceBlend.n_resets`.
"""

from __future__ import annotations

import math
import typing

import numpy as np

__all__ = ["ChoiceBlend"]


class ChoiceBlend:
    """Online conditional-logit weights over component scores, one vector per bucket.

    Parameters
    ----------
    names
        The components, in the order of the feature vectors.
    prior
        Starting weight of each component (a mapping by name; missing names: 0); only
        the ratios matter, the vector is scaled to sum 1.
    n_buckets
        Number of independent weight vectors (e.g. by user history).
    learning_rate
        Exponentiated-gradient step size.
    temperature
        Starting scale of the blended score in the softmax (weights sum to 1 and scores
        are in [0, 1]); learned from there, within ``[1, 100]``.
    max_exact
        Up to this many candidates the softmax is exact; above, estimated.
    k
        Length of the list whose hits choose the served arm.
    window
        Discount of the arms' hit counts: each step multiplies them by
        ``1 - 1 / window``.
    min_lead
        Hits by which another arm must lead the learned weights to serve instead.
    popularity
        The component served alone by the popularity arm (``None``: no such arm).
    seed
        Seeds the sample of candidates over large catalogs.
    min_share
        Floor of every weight, as a share of the sum.

    Examples
    --------
    Two components over six candidates; users keep picking the item that scores high
    on the second one, not the most popular:

    >>> import numpy as np
    >>> blend = ChoiceBlend(("popularity", "content"), {"popularity": 1.0, "content": 1.0})
    >>> blend.weights(0).tolist()
    [0.5, 0.5]
    >>> features = np.array([[1.0, 0.0], [0.8, 0.1], [0.6, 0.2], [0.1, 0.9], [0.0, 0.5],
    ...                      [0.2, 0.3]])
    >>> for _ in range(200):
    ...     blend.learn_one(0, features, target=3)
    >>> weights = blend.weights(0)
    >>> bool(weights[1] > 2 * weights[0]), round(float(weights.sum()), 6), blend.n_learned
    (True, 1.0, 200)
    >>> features[0, 0] = np.nan
    >>> blend.learn_one(0, features, target=3)  # skipped
    >>> blend.n_learned
    200
    """

    def __init__(
        self,
        names: typing.Sequence[str],
        prior: typing.Mapping[str, float],
        n_buckets: int = 1,
        learning_rate: float = 0.05,
        temperature: float = 10.0,
        min_share: float = 0.01,
        max_exact: int = 4_096,
        k: int = 10,
        window: int = 1_000,
        min_lead: float = 3.0,
        popularity: str | None = "popularity",
        seed: int | None = 42,
    ) -> None:
        if n_buckets < 1:
            raise ValueError(f"n_buckets must be at least 1, got {n_buckets!r}")
        for name, value in (("learning_rate", learning_rate), ("temperature", temperature)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not 0 <= min_share < 1.0 / max(1, len(names)):
            raise ValueError(f"min_share must be in [0, 1/len(names)), got {min_share!r}")
        self.names = tuple(names)
        self.prior = dict(prior)
        self.n_buckets = n_buckets
        self.learning_rate = learning_rate
        self.temperature = temperature
        self.min_share = min_share
        self.max_exact = max_exact
        self.k = k
        self.window = window
        self.min_lead = min_lead
        self.popularity = popularity
        self.seed = seed
        start = np.array([max(0.0, float(prior.get(name, 0.0))) for name in self.names])
        if not (start.sum() > 0 and np.isfinite(start).all()):
            start = np.ones(len(self.names))
        self._prior = self._floored(start / start.sum())
        self._weights = np.tile(self._prior, (n_buckets, 1))
        self._log_temperature = np.full(n_buckets, math.log(min(max(temperature, 1.0), 100.0)))
        self._rng = np.random.default_rng(seed)
        self._n_arms = 1 + len(self.names) + (popularity in self.names)
        self._hits = np.zeros((n_buckets, self._n_arms), dtype=np.float64)
        self._counts = np.zeros(n_buckets, dtype=np.int64)
        self._n_resets = 0

    def _floored(self, weights: np.ndarray) -> np.ndarray:
        weights = np.maximum(weights, self.min_share * weights.sum())
        return weights / weights.sum()

    @property
    def n_learned(self) -> int:
        """Pairwise updates made (one per positive event, over all buckets)."""
        return int(self._counts.sum())

    @property
    def n_resets(self) -> int:
        return self._n_resets

    def counts(self) -> list[int]:
        """Updates made per bucket."""
        return self._counts.tolist()

    def weights(self, bucket: int) -> np.ndarray:
        """The weights served for ``bucket`` (its best arm), in the order of :attr:`names`."""
        return self._arms(bucket)[self.served(bucket)].copy()

    def learned(self, bucket: int) -> np.ndarray:
        """A copy of the learned (likelihood) weights of ``bucket``."""
        return self._weights[bucket].copy()

    def served(self, bucket: int) -> int:
        """Which arm serves ``bucket``: 0 the learned weights, ``1 + c`` the learned
        weights without component ``c``, the last popularity alone.

        Another arm replaces the learned weights only once it leads them by at least
        ``min_lead`` hits and 2% (a few lucky hits early on are no evidence).
        """
        hits = self._hits[bucket]
        best = int(np.argmax(hits))
        if hits[best] - hits[0] < max(self.min_lead, 0.02 * hits[0]):
            return 0
        return best

    def arm_names(self) -> list[str]:
        names = ["learned"] + [f"without {name}" for name in self.names]
        return names + (["popularity"] if self.popularity in self.names else [])

    def arm_hits(self, bucket: int) -> dict[str, float]:
        """The discounted hits of every arm of ``bucket``."""
        return dict(zip(self.arm_names(), self._hits[bucket].tolist()))

    def _arms(self, bucket: int) -> np.ndarray:
        cache = self.__dict__.setdefault("_arm_cache", {})
        arms = cache.get(bucket)
        if arms is None:
            arms = cache[bucket] = self._build_arms(bucket)
        return arms

    def _build_arms(self, bucket: int) -> np.ndarray:
        learned = self._weights[bucket]
        arms = np.tile(learned, (self._n_arms, 1))
        for c in range(len(self.names)):
            arms[1 + c, c] = 0.0
        if self.popularity in self.names:
            arms[-1] = 0.0
            arms[-1, self.names.index(self.popularity)] = 1.0
        totals = arms.sum(axis=1, keepdims=True)
        np.divide(arms, totals, out=arms, where=totals > 0)
        return arms

    def temperature_of(self, bucket: int) -> float:
        """The learned temperature of ``bucket``."""
        return float(math.exp(self._log_temperature[bucket]))

    def as_dict(self, bucket: int) -> dict[str, float]:
        """The weights of ``bucket`` by component name (for logs and dashboards)."""
        return dict(zip(self.names, self.weights(bucket).tolist()))

    def learn_one(self, bucket: int, features: np.ndarray, target: int,
                  counts: np.ndarray | None = None) -> None:
        """One step on the choice of row ``target`` among the rows of ``features``
        (candidates x components, normalized scores).

        ``counts`` (default: 1 each) is how many candidates each row stands for, when
        the rows are a sample (see :meth:`sample`). First every arm is scored on whether
        ``target`` would have been in its top ``k`` (ties count half); then the learned
        weights take their step. Components whose feature is 0 on every row (absent for
        this user) keep their weight; the others share the rest.
        """
        features = np.asarray(features, dtype=np.float64)
        n = len(features)
        if n < 2 or not 0 <= target < n or not np.isfinite(features).all():
            return
        counts = np.ones(n) if counts is None else np.asarray(counts, dtype=np.float64)
        weights = self._weights[bucket]
        active = (features != 0.0).any(axis=0)
        if not active.any():
            return
        arm_scores = features @ self._arms(bucket).T  # rows x arms
        own = arm_scores[target]
        rank = counts @ (arm_scores > own) + 0.5 * (counts @ (arm_scores == own) - counts[target])
        self._hits[bucket] *= 1.0 - 1.0 / self.window
        self._hits[bucket] += rank < self.k
        temperature = math.exp(self._log_temperature[bucket])
        scores = features @ weights
        logits = temperature * scores
        logits -= logits.max()
        mass = counts * np.exp(logits)
        p = mass / mass.sum()
        expected = p @ features
        positive = features[target]
        gradient = temperature * (positive - expected)
        step = np.clip(self.learning_rate * gradient, -1.0, 1.0)
        updated = weights.copy()
        total = weights[active].sum()
        moved = weights[active] * np.exp(step[active])
        updated[active] = moved * (total / moved.sum())
        updated = self._floored(updated)
        if not np.isfinite(updated).all():
            updated = self._prior.copy()
            self._n_resets += 1
        self._weights[bucket] = updated
        self.__dict__.get("_arm_cache", {}).pop(bucket, None)
        # d log p / d log T = T * (s_target - E_p[s])
        change = self.learning_rate * temperature * (float(scores[target]) - float(p @ scores))
        log_t = self._log_temperature[bucket] + min(max(change, -0.1), 0.1)
        self._log_temperature[bucket] = min(max(log_t, 0.0), math.log(100.0))
        self._counts[bucket] += 1

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_arm_cache", None)  # derived from the weights
        return state

    def sample(self, n: int, target: int, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of ``n`` candidates to take the expectation over, and how many each
        stands for: all of them up to ``max_exact``; above, ``target``, every row of
        ``top`` (the ranking's best, which carry most of the probability) and a uniform
        sample of the rest.

        >>> blend = ChoiceBlend(("a",), {"a": 1.0}, max_exact=10)
        >>> rows, counts = blend.sample(1_000, target=500, top=np.arange(3))
        >>> len(rows), rows[:4].tolist(), float(counts.sum())
        (10, [0, 1, 2, 500], 1000.0)
        """
        if n <= self.max_exact:
            return np.arange(n), np.ones(n)
        keep = np.zeros(n, dtype=bool)
        keep[np.asarray(top, dtype=np.intp)] = True
        keep[target] = True
        sure = np.flatnonzero(keep)
        rest = n - len(sure)
        size = min(rest, self.max_exact - len(sure))
        if size <= 0:
            return sure, np.ones(len(sure))
        drawn = np.sort(self._rng.integers(rest, size=size))  # with replacement: cheap
        sample = np.flatnonzero(~keep)[drawn]
        rows = np.concatenate((sure, sample))
        counts = np.concatenate((np.ones(len(sure)), np.full(size, rest / size)))
        return rows, counts
