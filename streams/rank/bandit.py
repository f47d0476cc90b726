"""A linear contextual bandit (LinUCB) over context x candidate features, in numpy.

Why not one arm per item: a catalog has thousands of items and most are shown too
rarely to learn a value each. The bandit instead learns how the *kind* of candidate
pays off in the *kind* of request -- "items from a category new to the user, on mobile
in the evening", "just-listed items on the home page" -- and that transfers to every item
of that kind, including new ones. The feature vector of a (request, item) pair is the
Kronecker product of a small context vector (a bias plus hashed one-hot device, page and
daypart) and a small candidate vector (:data:`CANDIDATE_FEATURES`): every candidate
feature gets its own weight per context.

River's ``LinUCBDisjoint`` costs ~16 us per arm; here a request costs two small matrix
products over the candidates. The product structure is what makes that possible: with
``x = ctx (x) cand``, ``x . theta = cand . (ctx^T Theta)`` and
``x^T A^-1 x = cand^T M cand`` where ``M`` (``c x c``) folds the context into ``A^-1``
once per request. Learning is ridge regression kept as ``A^-1`` (Sherman-Morrison, one
``d x d`` update per observation, ``d = 8 x 6``), refreshed from ``A`` every
``refresh_every`` updates so rounding does not accumulate.

An observation is ``A += x x^T, b += r x``. A reward that grows after it was learned
(a click, then a purchase of the same item) adds only ``(r_new - r_old) x`` to ``b``:
exactly the state of having learned the final reward once.
"""

from __future__ import annotations

import math

import numpy as np

from streams.learners._common import daypart, stable_hash, time_context

__all__ = ["CANDIDATE_FEATURES", "CONTEXT_FIELDS", "LinearUCB"]

#: What the bandit knows of a candidate, each in [0, 1]: a bias; the champion's
#: relevance (blended score over the best); popularity (log-scaled over the most
#: popular); "from a category the user has not engaged with"; freshness of exposure
#: (1 / sqrt(1 + times shown)); "no interactions yet" (a new item).
CANDIDATE_FEATURES: tuple[str, ...] = (
    "bias", "relevance", "popularity", "unseen_category", "rarely_shown", "new_item",
)
#: Context fields hashed into the context vector (``daypart`` derived from the time).
CONTEXT_FIELDS: tuple[str, ...] = ("device", "page", "daypart")


class LinearUCB:
    """Ridge-regression reward model with upper confidence bounds, shared by all items.

    Parameters
    ----------
    n_buckets
        Hashed one-hot buckets of the context fields (plus one bias slot).
    alpha
        Width of the confidence bound: ``ucb = mean + alpha * std``.
    ridge
        Prior precision (``A`` starts as ``ridge * I``).
    refresh_every
        Updates between recomputing ``A^-1`` from ``A``.

    Examples
    --------
    >>> bandit = LinearUCB()
    >>> ctx = bandit.context_vector({"device": "mobile"}, None)
    >>> cands = np.array([[1, 0.9, 0.8, 0, 0.1, 0], [1, 0.2, 0.0, 1, 1.0, 1]])
    >>> mean, width = bandit.estimate(ctx, cands)
    >>> mean.tolist(), bool(width[1] > width[0])  # nothing learned: all uncertainty
    ([0.0, 0.0], True)
    >>> for _ in range(50):  # new items in new categories get clicked, the others not
    ...     bandit.learn_one(ctx, cands[1], 1.0)
    ...     bandit.learn_one(ctx, cands[0], 0.0)
    >>> mean, width = bandit.estimate(ctx, cands)
    >>> [round(m, 2) for m in mean.tolist()], bool(width[1] < 0.2)
    ([0.0, 1.0], True)
    """

    def __init__(self, n_buckets: int = 7, alpha: float = 1.0, ridge: float = 1.0,
                 refresh_every: int = 1_024) -> None:
        if n_buckets < 1:
            raise ValueError("n_buckets must be at least 1")
        if not (ridge > 0 and math.isfinite(ridge)):
            raise ValueError(f"ridge must be a positive number, got {ridge!r}")
        self.n_buckets = n_buckets
        self.alpha = alpha
        self.ridge = ridge
        self.refresh_every = refresh_every
        self._h = n_buckets + 1
        self._c = len(CANDIDATE_FEATURES)
        d = self._h * self._c
        self._A = np.eye(d) * ridge
        self._A_inv = np.eye(d) / ridge
        self._b = np.zeros(d)
        self._theta: np.ndarray | None = np.zeros(d)
        self._n_learned = 0
        self._since_refresh = 0

    @property
    def n_learned(self) -> int:
        """Observations learned (a reward upgrade is not a new observation)."""
        return self._n_learned

    @property
    def dimension(self) -> int:
        return self._h * self._c

    def context_vector(self, context: dict | None, t_ms: float | None) -> np.ndarray:
        """The request's context vector: a bias and the hashed context fields.

        ``daypart`` comes from ``context["daypart"]`` or else from the time ``t_ms``
        (local to ``context``'s timezone fields, see ``streams.learners._common``).
        """
        context = context or {}
        vector = np.zeros(self._h)
        vector[0] = 1.0
        for name in CONTEXT_FIELDS:
            value = context.get(name)
            if value is None and name == "daypart":
                when = time_context(context, t_ms)
                value = daypart(when[0]) if when is not None else None
            if value is not None:
                vector[1 + stable_hash(f"{name}={value}") % self.n_buckets] += 1.0
        return vector

    def _theta_matrix(self) -> np.ndarray:
        if self._theta is None:
            self._theta = self._A_inv @ self._b
        return self._theta.reshape(self._h, self._c)

    def estimate(self, context: np.ndarray, candidates: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Expected reward and its standard deviation for each row of ``candidates``.

        ``candidates`` is ``(n, len(CANDIDATE_FEATURES))``; no side effects.
        """
        weights = context @ self._theta_matrix()  # (c,)
        blocks = self._A_inv.reshape(self._h, self._c, self._h, self._c)
        folded = np.einsum("a,acbd,b->cd", context, blocks, context)  # (c, c)
        mean = candidates @ weights
        variance = np.einsum("nc,nc->n", candidates @ folded, candidates)
        np.maximum(variance, 0.0, out=variance)
        return mean, np.sqrt(variance)

    def upper_bounds(self, context: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """``mean + alpha * std`` per candidate (optimism in the face of uncertainty)."""
        mean, width = self.estimate(context, candidates)
        return mean + self.alpha * width

    def learn_one(self, context: np.ndarray, candidate: np.ndarray, reward: float) -> None:
        """One observation: this candidate, in this context, earned ``reward``."""
        x = np.kron(context, candidate)
        reward = float(reward)
        if not (np.all(np.isfinite(x)) and math.isfinite(reward)):
            return
        self._A += np.outer(x, x)
        self._b += reward * x
        a_inv_x = self._A_inv @ x
        self._A_inv -= np.outer(a_inv_x, a_inv_x) / (1.0 + float(x @ a_inv_x))
        self._theta = None
        self._n_learned += 1
        self._since_refresh += 1
        if self._since_refresh >= self.refresh_every or not np.all(np.isfinite(self._A_inv)):
            self._refresh()

    def add_reward(self, context: np.ndarray, candidate: np.ndarray, delta: float) -> None:
        """Raise the reward of an observation already learned by ``delta``."""
        x = np.kron(context, candidate)
        delta = float(delta)
        if delta == 0.0 or not (np.all(np.isfinite(x)) and math.isfinite(delta)):
            return
        self._b += delta * x
        self._theta = None

    def _refresh(self) -> None:
        self._since_refresh = 0
        try:
            inverse = np.linalg.inv(self._A)
        except np.linalg.LinAlgError:
            inverse = None
        if inverse is None or not np.all(np.isfinite(inverse)):  # start over rather than NaN
            d = self.dimension
            self._A, self._A_inv = np.eye(d) * self.ridge, np.eye(d) / self.ridge
            self._b = np.zeros(d)
        else:
            self._A_inv = inverse
        self._theta = None
