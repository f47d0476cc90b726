"""Off-policy estimators: what would a *new* policy have earned on a log another policy chose?

A bandit log holds, per round, the action the logging policy took, the reward it got,
and the probability (propensity) with which the logger took it. A new policy's value
can be estimated from it without deploying it:

* **replay** (rejection sampling, Li et al. 2011): keep the rounds where the new
  policy would have taken the logged action, average their rewards. Unbiased only when
  the logger chose *uniformly at random* (otherwise the kept rounds are a skewed
  sample); wasteful, since it keeps about ``1 / n_actions`` of the rounds.
* **IPS** (inverse propensity scoring): weight each reward by
  ``w = pi_new(a | x) / pi_log(a | x)``; unbiased for any logger with full support.
* **SNIPS** (self-normalized IPS): ``sum(w r) / sum(w)``, slightly biased, far less
  variance when weights are large; equals replay for a deterministic policy on a
  uniform log.
* **DR** (doubly robust): a reward model ``q(x, a)`` plus an IPS correction of its
  error; unbiased when either the propensities or the model are right, and with less
  variance than IPS when the model is decent.

Everything takes plain arrays, one entry per logged round (numpy, no loops), so the
same functions score the Open Bandit Dataset here and the worker's own decision logs.
Each returns an :class:`Estimate` with a two-sided confidence interval: the Wilson
score interval for a proportion of 0/1 rewards (it stays honest when the rewards are
rare, where the normal one collapses to a point), a normal (CLT) interval on the
per-round terms otherwise (delta method for SNIPS). Intervals and estimates are
clipped to ``bounds``, the known range of the policy value (``(0, 1)`` for clicks),
when given. Policies that keep learning during the log are fine for IPS/SNIPS/DR as
long as each round's ``target_probabilities`` come from the policy as it was *before*
that round's reward: the terms then form a martingale and the same CLT applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = [
    "Estimate",
    "z_value",
    "wilson_interval",
    "proportion",
    "mean_estimate",
    "deterministic_probabilities",
    "replay",
    "ips",
    "snips",
    "doubly_robust",
]

Bounds = tuple[float, float] | None


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with its confidence interval, standard error and sample size.

    ``n`` is the number of rounds the estimate rests on: the matched rounds for replay,
    all rounds for the weighted estimators. ``value`` is NaN when there is nothing to
    estimate from (e.g. no matched round).
    """

    value: float
    ci_low: float
    ci_high: float
    std_error: float
    n: int
    level: float = 0.95

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high)

    def covers(self, truth: float) -> bool:
        """Whether ``truth`` lies inside the interval (bounds included)."""
        return self.ci_low <= truth <= self.ci_high

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes ``None``."""
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {"estimate": clean(self.value), "ci": [clean(self.ci_low), clean(self.ci_high)],
                "std_error": clean(self.std_error), "n": self.n, "level": self.level}


_NAN = float("nan")


def z_value(level: float = 0.95) -> float:
    """The two-sided standard-normal quantile for a confidence ``level``.

    >>> round(z_value(0.95), 3)
    1.96
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson_interval(successes: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; ``(nan, nan)`` for ``n == 0``.

    Unlike the normal interval it is not a single point when no success was seen:

    >>> [round(x, 4) for x in wilson_interval(0, 100)]
    [0.0, 0.037]
    >>> [round(x, 4) for x in wilson_interval(38, 10_000)]
    [0.0028, 0.0052]
    """
    if n <= 0:
        return (_NAN, _NAN)
    z = z_value(level)
    p = successes / n
    z2n = z * z / n
    center = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    return (max(0.0, center - half), min(1.0, center + half))


def _clip(value: float, low: float, high: float, bounds: Bounds) -> tuple[float, float, float]:
    if bounds is None or math.isnan(value):
        return value, low, high
    lo, hi = bounds
    return (min(max(value, lo), hi), min(max(low, lo), hi), min(max(high, lo), hi))


def _is_binary(values: np.ndarray) -> bool:
    return bool(np.all((values == 0) | (values == 1)))


def proportion(rewards: np.ndarray, level: float = 0.95) -> Estimate:
    """Mean of 0/1 rewards (e.g. a logged CTR) with its Wilson interval.

    >>> est = proportion(np.array([0, 1, 0, 0]))
    >>> est.value, est.n, [round(x, 3) for x in est.ci]
    (0.25, 4, [0.046, 0.699])
    """
    rewards = np.asarray(rewards, dtype=float)
    n = int(rewards.size)
    if n == 0:
        return Estimate(_NAN, _NAN, _NAN, _NAN, 0, level)
    if not _is_binary(rewards):
        raise ValueError("proportion() needs rewards that are all 0 or 1; use mean_estimate()")
    successes = float(rewards.sum())
    p = successes / n
    low, high = wilson_interval(successes, n, level)
    return Estimate(p, low, high, math.sqrt(p * (1 - p) / n), n, level)


def mean_estimate(terms: np.ndarray, level: float = 0.95, bounds: Bounds = None) -> Estimate:
    """Mean of i.i.d. (or martingale-difference) terms with a normal interval.

    >>> est = mean_estimate(np.array([1.0, 2.0, 3.0, 4.0]))
    >>> est.value, round(est.std_error, 4), [round(x, 3) for x in est.ci]
    (2.5, 0.6455, [1.235, 3.765])
    """
    terms = np.asarray(terms, dtype=float)
    n = int(terms.size)
    if n == 0:
        return Estimate(_NAN, _NAN, _NAN, _NAN, 0, level)
    value = float(terms.mean())
    se = float(terms.std(ddof=1) / math.sqrt(n)) if n > 1 else _NAN
    half = z_value(level) * se if n > 1 else _NAN
    value, low, high = _clip(value, value - half, value + half, bounds)
    return Estimate(value, low, high, se, n, level)


def deterministic_probabilities(policy_actions: np.ndarray, logged_actions: np.ndarray) -> np.ndarray:
    """``pi_new(logged action | x)`` for a deterministic policy: 1 where it agrees, else 0.

    >>> deterministic_probabilities(np.array([1, 2, 3]), np.array([1, 0, 3])).tolist()
    [1.0, 0.0, 1.0]
    """
    return (np.asarray(policy_actions) == np.asarray(logged_actions)).astype(float)


def _check(rewards: np.ndarray, *arrays: np.ndarray) -> np.ndarray:
    rewards = np.asarray(rewards, dtype=float)
    for array in arrays:
        if np.shape(array) != rewards.shape:
            raise ValueError(f"arrays must have one entry per round: {np.shape(array)} vs {rewards.shape}")
    return rewards


def replay(policy_actions: np.ndarray, logged_actions: np.ndarray, rewards: np.ndarray,
           level: float = 0.95, bounds: Bounds = (0.0, 1.0)) -> Estimate:
    """Rejection-sampling replay: mean reward over the rounds where the policy agrees.

    Only unbiased on a uniformly random log. With 0/1 rewards the interval is Wilson's
    over the matched rounds, otherwise normal.

    >>> est = replay(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), np.array([1, 0, 1, 1]))
    >>> est.value, est.n
    (0.6666666666666666, 3)
    """
    rewards = _check(rewards, policy_actions, logged_actions)
    matched = rewards[np.asarray(policy_actions) == np.asarray(logged_actions)]
    if matched.size and _is_binary(matched):
        est = proportion(matched, level)
        value, low, high = _clip(est.value, est.ci_low, est.ci_high, bounds)
        return Estimate(value, low, high, est.std_error, est.n, level)
    return mean_estimate(matched, level, bounds)


def _weights(logged_propensities: np.ndarray, target_probabilities: np.ndarray) -> np.ndarray:
    propensities = np.asarray(logged_propensities, dtype=float)
    if np.any(propensities <= 0):
        raise ValueError("logged propensities must be > 0 (the logger must have full support)")
    return np.asarray(target_probabilities, dtype=float) / propensities


def ips(rewards: np.ndarray, logged_propensities: np.ndarray, target_probabilities: np.ndarray,
        level: float = 0.95, bounds: Bounds = None) -> Estimate:
    """Inverse propensity scoring: the mean of ``w * r``, ``w = pi_new / pi_log``.

    >>> r, p = np.array([1.0, 0.0, 1.0, 0.0]), np.full(4, 0.5)
    >>> ips(r, p, np.array([1.0, 1.0, 0.0, 0.0])).value  # picks the first two rounds' action
    0.5
    """
    rewards = _check(rewards, logged_propensities, target_probabilities)
    return mean_estimate(_weights(logged_propensities, target_probabilities) * rewards, level, bounds)


def snips(rewards: np.ndarray, logged_propensities: np.ndarray, target_probabilities: np.ndarray,
          level: float = 0.95, bounds: Bounds = None) -> Estimate:
    """Self-normalized IPS, ``sum(w r) / sum(w)``, with a delta-method normal interval.

    >>> r, p = np.array([1.0, 0.0, 1.0, 0.0]), np.full(4, 0.5)
    >>> snips(r, p, np.array([1.0, 1.0, 0.0, 0.0])).value
    0.5
    """
    rewards = _check(rewards, logged_propensities, target_probabilities)
    w = _weights(logged_propensities, target_probabilities)
    n, total = int(rewards.size), float(w.sum())
    if n == 0 or total <= 0:
        return Estimate(_NAN, _NAN, _NAN, _NAN, n, level)
    value = float((w * rewards).sum() / total)
    residual = w * (rewards - value)
    se = float(math.sqrt(float((residual**2).sum()) * n / max(n - 1, 1)) / total)
    half = z_value(level) * se
    value, low, high = _clip(value, value - half, value + half, bounds)
    return Estimate(value, low, high, se, n, level)


def doubly_robust(rewards: np.ndarray, logged_propensities: np.ndarray,
                  target_probabilities: np.ndarray, q_logged: np.ndarray, q_target: np.ndarray,
                  level: float = 0.95, bounds: Bounds = None) -> Estimate:
    """Doubly robust: ``q_target + w * (r - q_logged)`` averaged over rounds.

    ``q_logged`` is the reward model's prediction for the logged action, ``q_target``
    its expectation under the new policy (``sum_a pi_new(a|x) q(x, a)``; for a
    deterministic policy, the prediction for the policy's action). Fit the model on
    other rounds than it corrects (cross-fitting) to keep the estimate unbiased.

    >>> r, p = np.array([1.0, 0.0, 1.0, 0.0]), np.full(4, 0.5)
    >>> q = np.full(4, 0.5)  # a model that knows nothing
    >>> doubly_robust(r, p, np.array([1.0, 1.0, 0.0, 0.0]), q, q).value
    0.5
    """
    rewards = _check(rewards, logged_propensities, target_probabilities, q_logged, q_target)
    w = _weights(logged_propensities, target_probabilities)
    terms = np.asarray(q_target, dtype=float) + w * (rewards - np.asarray(q_logged, dtype=float))
    return mean_estimate(terms, level, bounds)
