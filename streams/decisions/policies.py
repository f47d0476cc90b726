"""Contextual-bandit policies over one ridge-regression reward model, vectorized in numpy.

Every policy here scores all candidates at once from their action × context feature
rows ``X`` (see :mod:`streams.decisions.features`) and returns a probability for each:
the distribution it samples the shown action from. Those probabilities are exact (they
sum to 1 and are the frequencies the point will show actions with), so each logged
decision carries a correct propensity for off-policy evaluation.

The reward model is Bayesian linear (ridge) regression, ``r ≈ x · θ``, updated per reward
in O(d²) by the Sherman–Morrison identity (recursive least squares); ``A⁻¹`` is the
posterior covariance shape. The policies differ only in how they turn it into
probabilities, and all mix in ``epsilon`` of uniform exploration so that no action's
probability is ever 0:

* :class:`EpsilonGreedy` — the best predicted action, else uniform;
* :class:`Softmax` — Boltzmann exploration, ``p ∝ exp(x·θ / temperature)``;
* :class:`ThompsonSampling` — linear Thompson sampling, ``θ̃ ~ N(θ, scale² A⁻¹)``; its
  probabilities (the chance each action wins under the posterior) are estimated by
  sampling the *scores* ``X θ̃`` (an n×n covariance, not d×d), then the action is drawn
  from that estimate, so the logged probability is exactly the one used;
* :class:`LinUCB` — the highest upper confidence bound ``x·θ + alpha·sqrt(x A⁻¹ x)``.

Columns no feature uses yet hold only the prior and never change, so the algebra runs
on the leading block of columns in use (exact, and cheap while features are few).
River's LinUCB loops over arms in Python (~16 µs per arm); here one decision over 10
arms is a handful of numpy calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streams.decisions.config import PointConfig

__all__ = ["LinearPolicy", "EpsilonGreedy", "Softmax", "ThompsonSampling", "LinUCB",
           "make_policy"]


def _argmax_share(values: np.ndarray) -> np.ndarray:
    """One-hot of the maximum, ties shared equally (a cold model is uniform)."""
    best = values >= values.max() - 1e-12
    return best / best.sum()


class LinearPolicy:
    """Base: a ridge reward model and an ``epsilon`` uniform floor on probabilities.

    Parameters
    ----------
    dimensions
        Feature columns (the featurizer's ``dimensions``).
    l2
        Ridge prior strength (``A = l2·I`` before any reward).
    epsilon
        Share of uniform exploration mixed into every distribution.
    seed
        Seeds the policy's own sampling when no generator is passed in.
    """

    name = "linear"

    def __init__(self, dimensions: int = 256, l2: float = 1.0, epsilon: float = 0.05,
                 seed: int = 0) -> None:
        self.dimensions = dimensions
        self.l2 = l2
        self.epsilon = epsilon
        self.seed = seed
        self._A_inv = np.eye(dimensions) / l2
        self._theta = np.zeros(dimensions)
        self._k = 0  # columns in use by learned rows: the rest is untouched prior
        self.n_learned = 0

    # -- the reward model ------------------------------------------------------------------
    def _block(self, X: np.ndarray) -> int:
        used = np.flatnonzero(np.any(X != 0.0, axis=0))
        return max(self._k, int(used[-1]) + 1 if used.size else 0, 1)

    def predict_many(self, X: np.ndarray) -> np.ndarray:
        """Predicted reward of each row (no side effects).

        >>> p = LinUCB(dimensions=2)
        >>> p.learn_one(np.array([1.0, 0.0]), 1.0)
        >>> p.predict_many(np.array([[1.0, 0.0], [0.0, 1.0]])).round(2).tolist()
        [0.5, 0.0]
        """
        return X @ self._theta

    def _variances(self, X: np.ndarray) -> np.ndarray:
        k = self._block(X)
        Xk = X[:, :k]
        return ((Xk @ self._A_inv[:k, :k]) * Xk).sum(axis=1)

    def learn_one(self, x: np.ndarray, reward: float) -> None:
        """One recursive-least-squares step toward ``reward`` for feature row ``x``."""
        x = np.asarray(x, dtype=float)
        k = self._k = self._block(x[None, :])
        xk = x[:k]
        A = self._A_inv[:k, :k]
        Ax = A @ xk
        gain = Ax / (1.0 + xk @ Ax)
        self._theta[:k] += gain * (reward - xk @ self._theta[:k])
        A -= np.outer(gain, Ax)
        self.n_learned += 1

    # -- the policy ------------------------------------------------------------------------
    def _core(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def probabilities(self, X: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The distribution over the rows of ``X`` the policy samples from; sums to 1.

        Only Thompson sampling uses ``rng`` (without one, a generator seeded from
        ``seed`` and the number of rewards learned, so the call has no side effects).
        """
        n = X.shape[0]
        if rng is None:
            rng = np.random.default_rng((self.seed, self.n_learned))
        core = self._core(X, rng)
        p = (1.0 - self.epsilon) * core + self.epsilon / n
        return p / p.sum()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params()})"

    def params(self) -> dict[str, Any]:
        return {"dimensions": self.dimensions, "l2": self.l2, "epsilon": self.epsilon,
                "seed": self.seed}


class EpsilonGreedy(LinearPolicy):
    """Shows the best predicted action with probability ``1 - epsilon``, else a uniform one.

    >>> p = EpsilonGreedy(dimensions=2, epsilon=0.2)
    >>> X = np.eye(2)
    >>> p.probabilities(X).tolist()  # cold: every action ties
    [0.5, 0.5]
    >>> p.learn_one(X[1], 1.0)
    >>> p.probabilities(X).round(3).tolist()
    [0.1, 0.9]
    """

    name = "epsilon-greedy"

    def _core(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _argmax_share(self.predict_many(X))


class Softmax(LinearPolicy):
    """Boltzmann exploration: ``p ∝ exp(predicted reward / temperature)``.

    >>> p = Softmax(dimensions=2, temperature=0.5, epsilon=0.0)
    >>> for _ in range(20): p.learn_one(np.array([1.0, 0.0]), 1.0)
    >>> p.probabilities(np.eye(2)).round(3).tolist()
    [0.87, 0.13]
    """

    name = "softmax"

    def __init__(self, dimensions: int = 256, l2: float = 1.0, epsilon: float = 0.05,
                 seed: int = 0, temperature: float = 0.02) -> None:
        super().__init__(dimensions, l2, epsilon, seed)
        self.temperature = temperature

    def _core(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        z = self.predict_many(X) / self.temperature
        z = np.exp(z - z.max())
        return z / z.sum()

    def params(self) -> dict[str, Any]:
        return {**super().params(), "temperature": self.temperature}


class ThompsonSampling(LinearPolicy):
    """Linear Thompson sampling with Monte Carlo probabilities.

    ``samples`` posterior draws of the candidates' scores estimate each action's chance
    of being the best; the point then draws from that estimate (mixed with ``epsilon``),
    so the probability it logs is the one it really used.

    >>> p = ThompsonSampling(dimensions=2, epsilon=0.0, scale=0.1)
    >>> for _ in range(50): p.learn_one(np.array([1.0, 0.0]), 1.0)
    >>> probs = p.probabilities(np.eye(2))
    >>> float(probs.sum()), bool(probs[0] > 0.99)
    (1.0, True)
    """

    name = "thompson"

    def __init__(self, dimensions: int = 256, l2: float = 1.0, epsilon: float = 0.05,
                 seed: int = 0, scale: float = 0.25, samples: int = 512) -> None:
        super().__init__(dimensions, l2, epsilon, seed)
        self.scale = scale
        self.samples = samples

    def _core(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = X.shape[0]
        mean = self.predict_many(X)
        if n == 1:
            return np.ones(1)
        k = self._block(X)
        Xk = X[:, :k]
        cov = (self.scale ** 2) * (Xk @ self._A_inv[:k, :k] @ Xk.T)
        cov = (cov + cov.T) / 2 + 1e-9 * np.eye(n)
        try:
            L = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:  # not positive definite by rounding: eigen route
            w, V = np.linalg.eigh(cov)
            L = V * np.sqrt(np.clip(w, 0.0, None))
        draws = mean[:, None] + L @ rng.standard_normal((n, self.samples))
        wins = np.bincount(draws.argmax(axis=0), minlength=n)
        return wins / self.samples

    def params(self) -> dict[str, Any]:
        return {**super().params(), "scale": self.scale, "samples": self.samples}


class LinUCB(LinearPolicy):
    """Optimism: the action with the highest ``x·θ + alpha·sqrt(x A⁻¹ x)`` (ties shared).

    >>> p = LinUCB(dimensions=2, alpha=1.0, epsilon=0.0)
    >>> for _ in range(30): p.learn_one(np.array([1.0, 0.0]), 0.5)
    >>> p.probabilities(np.eye(2)).tolist()  # the untried action's bound is higher
    [0.0, 1.0]
    """

    name = "linucb"

    def __init__(self, dimensions: int = 256, l2: float = 1.0, epsilon: float = 0.05,
                 seed: int = 0, alpha: float = 1.0) -> None:
        super().__init__(dimensions, l2, epsilon, seed)
        self.alpha = alpha

    def upper_bounds(self, X: np.ndarray) -> np.ndarray:
        return self.predict_many(X) + self.alpha * np.sqrt(np.maximum(self._variances(X), 0.0))

    def _core(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _argmax_share(self.upper_bounds(X))

    def params(self) -> dict[str, Any]:
        return {**super().params(), "alpha": self.alpha}


def make_policy(config: PointConfig, seed: int = 0) -> LinearPolicy:
    """The policy a decision point's options ask for.

    >>> make_policy(PointConfig(policy="softmax", temperature=0.2)).temperature
    0.2
    """
    common = {"dimensions": config.dimensions, "l2": config.l2, "epsilon": config.epsilon,
              "seed": seed}
    if config.policy == "epsilon-greedy":
        return EpsilonGreedy(**common)
    if config.policy == "softmax":
        return Softmax(**common, temperature=config.temperature)
    if config.policy == "thompson":
        return ThompsonSampling(**common, scale=config.scale)
    if config.policy == "linucb":
        return LinUCB(**common, alpha=config.alpha)
    raise ValueError(f"unknown policy {config.policy!r}")
