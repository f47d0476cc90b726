"""One decision point: its featurizer, its policy, apprentice mode and its running estimates.

Everything a decision point knows is in this one picklable object, so a worker can
checkpoint it and resume warm. :meth:`DecisionPoint.decide` chooses (it draws from its
own seeded generator); :meth:`DecisionPoint.learn_one` takes one reward for one shown
action and returns None.

Estimates kept per point, both doubly robust (DR) with the point's own reward model:

* **regret versus the baseline**: ``V(baseline) - V(served)``, over decisions whose
  request named a ``baseline_action`` (negative: the point beats what the caller would
  have done);
* **lift of the learned policy** over the baseline: ``V(learned) - V(baseline)``, where
  the learned policy is the model's best predicted action (with the ``epsilon`` floor),
  not its exploration; in apprentice mode the point graduates (stops imitating) once
  the lift's lower one-sided 95% bound exceeds ``apprentice_margin``. One-way.

In apprentice mode the point shows the baseline with probability ``1 - epsilon`` and
a uniformly drawn action otherwise: that exploration is what the lift is estimated
from (inverse propensity weights up to ``n / epsilon``), so a larger ``epsilon``
graduates sooner when the learned policy is better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.decisions.config import PointConfig
from streams.decisions.features import Featurizer
from streams.decisions.policies import LinearPolicy, LinUCB, make_policy
from streams.decisions.records import Decision, DecisionRequest, RankedAction

__all__ = ["Shown", "RunningMean", "DecisionPoint"]

#: One-sided 95% normal quantile: graduation needs the lift's lower bound above the margin.
_Z_ONE_SIDED = 1.6448536269514722


@dataclass(slots=True)
class Shown:
    """What is remembered about one shown action until its reward comes (or the window ends).

    Only the first slot carries the off-policy terms (``p_served`` is also its
    ``slot_probability``); ``baseline`` is ``None`` when the request named none.
    """

    action_id: str
    x: np.ndarray
    slot_probability: float
    p_learned: float = math.nan  # learned policy's probability of this action (slot 1)
    q_chosen: float = math.nan  # reward model's prediction for it
    q_learned: float = math.nan  # expected predicted reward under the learned policy
    q_baseline: float = math.nan  # prediction for the baseline action
    is_baseline: bool = False
    has_baseline: bool = False


class RunningMean:
    """Welford's running mean and variance, with a standard error.

    >>> m = RunningMean()
    >>> for x in (1.0, 2.0, 3.0): m.add(x)
    >>> m.n, m.mean, round(m.std_error, 4)
    (3, 2.0, 0.5774)
    """

    __slots__ = ("n", "mean", "_m2")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self._m2 = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self._m2 += delta * (x - self.mean)

    @property
    def std_error(self) -> float:
        return math.sqrt(self._m2 / (self.n - 1) / self.n) if self.n > 1 else math.inf

    def __getstate__(self) -> tuple:
        return (self.n, self.mean, self._m2)

    def __setstate__(self, state: tuple) -> None:
        self.n, self.mean, self._m2 = state


def _fmt(x: float) -> str:
    return f"{x:.3g}"


class DecisionPoint:
    """A named decision point: policy, features, apprentice mode, estimates.

    Parameters
    ----------
    name
        The decision point's name (as in requests).
    config
        Its options.
    seed
        Seeds its sampling.

    Examples
    --------
    >>> from streams.decisions.records import Action, DecisionRequest
    >>> point = DecisionPoint("hero", PointConfig(policy="epsilon-greedy", epsilon=0.1), seed=1)
    >>> request = DecisionRequest("d1", "hero", "u1", (Action("a"), Action("b")),
    ...                           {"device": "mobile"})
    >>> decision, shown = point.decide(request, now_ms=0)
    >>> [a.probability for a in decision.actions], decision.policy_version
    ([0.5, 0.5], 'epsilon-greedy@0')
    >>> point.learn_one(shown[0], 1.0)
    >>> decision, _ = point.decide(request, now_ms=0)
    >>> decision.actions[0].id == shown[0].action_id, round(decision.actions[0].probability, 3)
    (True, 0.95)
    """

    def __init__(self, name: str, config: PointConfig, seed: int = 0) -> None:
        self.name = name
        self.config = config
        self.seed = seed
        self.featurizer = Featurizer(config.dimensions)
        self.policy: LinearPolicy = make_policy(config, seed)
        self.apprentice_active = config.apprentice
        self.graduated_at: int | None = None  # rewards learned when apprentice mode ended
        self.regret = RunningMean()  # V(baseline) - V(served), DR terms
        self.lift = RunningMean()  # V(learned) - V(baseline), DR terms
        self.decisions = 0
        self.rewards_received = 0
        self.rewards_defaulted = 0
        self.reward_sum = 0.0
        self._rng = np.random.default_rng((seed, 7))

    @property
    def policy_version(self) -> str:
        prefix = "apprentice:" if self.apprentice_active else ""
        return f"{prefix}{self.policy.name}@{self.policy.n_learned}"

    @property
    def reward_rate(self) -> float | None:
        """Mean reward over closed shown actions (default rewards included)."""
        n = self.rewards_received + self.rewards_defaulted
        return self.reward_sum / n if n else None

    # -- deciding ---------------------------------------------------------------------------
    def _reason(self, p: np.ndarray, core_best: int, chosen: int, q: np.ndarray) -> str:
        if chosen == core_best:
            what = ("highest upper confidence bound" if isinstance(self.policy, LinUCB)
                    else "best predicted reward")
            return f"exploit: {what} (predicted {_fmt(q[chosen])})"
        return f"explore: drawn with probability {_fmt(p[chosen])} (predicted {_fmt(q[chosen])})"

    def decide(self, request: DecisionRequest, now_ms: int) -> tuple[Decision, list[Shown]]:
        """Choose ``request.slots`` actions; returns the decision and what to remember."""
        actions = request.actions
        n = len(actions)
        X = self.featurizer.transform(request.context, actions)
        q = self.policy.predict_many(X)
        learned = self.policy.probabilities(X, self._rng)
        # What the learned model would exploit (its best predicted action, with the
        # epsilon floor): the policy the lift estimate evaluates against the baseline.
        greedy = np.full(n, self.config.epsilon / n)
        greedy[int(np.argmax(q))] += 1.0 - self.config.epsilon
        baseline = -1
        if request.baseline_action is not None:
            baseline = next(i for i, a in enumerate(actions) if a.id == request.baseline_action)
        imitate = self.apprentice_active and baseline >= 0
        if imitate:  # the baseline, and epsilon of uniform exploration to learn from
            served = np.full(n, self.config.epsilon / n)
            served[baseline] += 1.0 - self.config.epsilon
        else:
            served = learned
        served = served / served.sum()

        remaining = np.arange(n)
        chosen: list[int] = []
        shown: list[Shown] = []
        reasons: dict[int, str] = {}
        for slot in range(request.slots):
            if slot == 0:
                p = served
            else:
                p = self.policy.probabilities(X[remaining], self._rng)
            pick = int(self._rng.choice(len(remaining), p=p))
            index = int(remaining[pick])
            if imitate and slot == 0 and index == baseline:
                reasons[index] = "baseline: apprentice mode imitates the caller's choice"
            else:
                core_best = int(np.argmax(learned if slot == 0 else p))
                reasons[index] = self._reason(p, core_best, pick, q[remaining])
            entry = Shown(actions[index].id, X[index].copy(), float(p[pick]))
            if slot == 0:
                entry.p_learned = float(greedy[index])
                entry.q_chosen = float(q[index])
                entry.q_learned = float(greedy @ q)
                if baseline >= 0:
                    entry.has_baseline = True
                    entry.q_baseline = float(q[baseline])
                    entry.is_baseline = index == baseline
            shown.append(entry)
            chosen.append(index)
            remaining = np.delete(remaining, pick)
        rest = sorted(remaining.tolist(), key=lambda i: -q[i])
        ranked = tuple(
            [RankedAction(actions[i].id, float(served[i]), reasons[i], shown[s].slot_probability)
             for s, i in enumerate(chosen)]
            + [RankedAction(actions[i].id, float(served[i]), f"not chosen (predicted {_fmt(q[i])})")
               for i in rest])
        self.decisions += 1
        decision = Decision(request.decision_id, self.name, request.user_id, ranked,
                            self.policy_version, request.slots, imitate, now_ms)
        return decision, shown

    # -- learning ---------------------------------------------------------------------------
    def learn_one(self, shown: Shown, reward: float, defaulted: bool = False) -> None:
        """Learn one reward for one shown action; update the estimates (slot 1 only)."""
        if shown.has_baseline and not math.isnan(shown.p_learned):
            # DR terms; the logged probability of the shown action is its slot probability.
            w_base = (1.0 if shown.is_baseline else 0.0) / shown.slot_probability
            v_baseline = shown.q_baseline + w_base * (reward - shown.q_baseline)
            v_learned = shown.q_learned + (shown.p_learned / shown.slot_probability) * (
                reward - shown.q_chosen)
            self.regret.add(v_baseline - reward)
            self.lift.add(v_learned - v_baseline)
        self.policy.learn_one(shown.x, reward)
        if defaulted:
            self.rewards_defaulted += 1
        else:
            self.rewards_received += 1
        self.reward_sum += reward
        if self.apprentice_active and self.learned_beats_baseline():
            self.apprentice_active = False
            self.graduated_at = self.policy.n_learned

    def learned_beats_baseline(self) -> bool:
        """Whether the learned policy's lift over the baseline is significant by the margin."""
        lift = self.lift
        if lift.n < self.config.apprentice_min_rewards:
            return False
        return lift.mean - _Z_ONE_SIDED * lift.std_error > self.config.apprentice_margin

    def stats(self) -> dict[str, Any]:
        """JSON-ready figures for metrics and ``GET /decisions``."""
        return {
            "policy": self.policy.name, "policy_version": self.policy_version,
            "apprentice": self.apprentice_active, "graduated_at": self.graduated_at,
            "decisions": self.decisions, "rewards_received": self.rewards_received,
            "rewards_defaulted": self.rewards_defaulted, "reward_rate": self.reward_rate,
            "regret_vs_baseline": self.regret.mean if self.regret.n else None,
            "regret_samples": self.regret.n,
            "learned_lift_vs_baseline": self.lift.mean if self.lift.n else None,
            "features": self.featurizer.n_named,
        }
