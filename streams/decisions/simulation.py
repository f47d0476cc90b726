"""Synthetic decision environments whose best action per context is known.

Used by the tests and by the README's figures: a policy is good when its cumulative
reward approaches the optimum's (always the best action for the context) and beats a
uniform random policy and the caller's fixed baseline. Each environment also writes
logs in the format ``micromoment replay --format decisions`` reads, with the true value
of any policy computable exactly, to check the off-policy estimators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from streams.decisions.config import DecisionConfig, PointConfig
from streams.decisions.engine import DecisionEngine
from streams.decisions.records import Action, DecisionRequest, Reward

__all__ = ["BanditEnvironment", "SimulationResult", "simulate"]


class BanditEnvironment:
    """Users in segments on devices choosing among actions with Bernoulli rewards.

    The click rate of an action is a base rate plus a segment × action and a device ×
    action effect (the interactions a policy must learn); each segment has a planted
    best action, ahead by at least ``gap`` minus the device effects' range. Action 0
    is the caller's baseline (the best everywhere with ``baseline_best``). Actions carry
    a categorical and a numeric feature.

    >>> env = BanditEnvironment(seed=1)
    >>> ctx = env.context(np.random.default_rng(0))
    >>> best = env.best(ctx)
    >>> env.expected(ctx, best) == max(env.expected(ctx, a.id) for a in env.actions)
    True
    """

    def __init__(self, n_segments: int = 4, n_actions: int = 5,
                 devices: tuple[str, ...] = ("mobile", "desktop"), base: float = 0.05,
                 spread: float = 0.15, gap: float = 0.1, baseline_best: bool = False,
                 seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.segments = [f"s{i}" for i in range(n_segments)]
        self.devices = list(devices)
        self.actions = tuple(Action(f"a{i}", {"tone": ("warm", "cold")[i % 2], "size": (i % 3) / 2})
                             for i in range(n_actions))
        # Click rate = base + segment x action effect + device x action effect; each
        # segment has a planted best action ahead by `gap`, more than devices can move.
        segment_effect = rng.uniform(0.0, spread, (n_segments, n_actions))
        for s in range(n_segments):
            best = 0 if baseline_best else (s * 3 + 1) % n_actions
            segment_effect[s, best] = segment_effect[s].max() + gap
        device_effect = rng.uniform(0.0, gap / 3, (len(self.devices), n_actions))
        self.means: dict[tuple[str, str], np.ndarray] = {
            (segment, device): np.clip(base + segment_effect[s] + device_effect[d], 0.0, 1.0)
            for s, segment in enumerate(self.segments) for d, device in enumerate(self.devices)}
        self.index = {a.id: i for i, a in enumerate(self.actions)}

    def context(self, rng: np.random.Generator) -> dict[str, str]:
        return {"segment": self.segments[rng.integers(len(self.segments))],
                "device": self.devices[rng.integers(len(self.devices))]}

    def _means(self, context: dict[str, Any]) -> np.ndarray:
        return self.means[(context["segment"], context["device"])]

    def expected(self, context: dict[str, Any], action_id: str) -> float:
        return float(self._means(context)[self.index[action_id]])

    def best(self, context: dict[str, Any]) -> str:
        return self.actions[int(np.argmax(self._means(context)))].id

    def optimum(self, context: dict[str, Any]) -> float:
        return float(self._means(context).max())

    def uniform(self, context: dict[str, Any]) -> float:
        return float(self._means(context).mean())

    def baseline(self) -> str:
        return self.actions[0].id

    def reward(self, context: dict[str, Any], action_id: str, rng: np.random.Generator) -> float:
        return float(rng.random() < self.expected(context, action_id))


@dataclass
class SimulationResult:
    """Expected reward sums of the served policy and the references, over ``rounds``."""

    rounds: int
    served: float
    optimum: float
    random: float
    baseline: float
    served_last: float  # over the last quarter of the rounds
    optimum_last: float
    apprentice_rounds: int = 0

    @property
    def ratio(self) -> float:
        """Cumulative expected reward as a share of the optimum's."""
        return self.served / self.optimum

    @property
    def ratio_last(self) -> float:
        return self.served_last / self.optimum_last

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ratio": self.ratio, "ratio_last": self.ratio_last}


def simulate(config: PointConfig, env: BanditEnvironment | None = None, rounds: int = 5_000,
             seed: int = 0, with_baseline: bool = False,
             on_decision: Callable[[DecisionRequest, Any, float], None] | None = None,
             ) -> SimulationResult:
    """Run one decision point against ``env`` through a :class:`DecisionEngine`, rewarding
    each decision at once (a real 0/1 draw) and scoring its *expected* reward.

    >>> result = simulate(PointConfig(policy="linucb"), rounds=300, seed=1)
    >>> result.rounds, result.served > result.random
    (300, True)
    """
    env = env or BanditEnvironment(seed=seed)
    engine = DecisionEngine(DecisionConfig({"sim": config}), seed=seed)
    rng = np.random.default_rng((seed, 99))
    served = optimum = uniform = baseline = served_last = optimum_last = 0.0
    apprentice = 0
    last_from = rounds - rounds // 4
    for t in range(rounds):
        context = env.context(rng)
        request = DecisionRequest(f"d{t}", "sim", f"u{t % 97}", env.actions, context,
                                  baseline_action=env.baseline() if with_baseline else None)
        decision, _ = engine.decide(request, now_ms=t)
        shown = decision.actions[0].id  # type: ignore[union-attr]
        apprentice += decision.apprentice  # type: ignore[union-attr]
        reward = env.reward(context, shown, rng)
        if on_decision is not None:
            on_decision(request, decision, reward)
        engine.reward(Reward(request.decision_id, reward), request.user_id.encode(), now_ms=t)
        value = env.expected(context, shown)
        served += value
        optimum += env.optimum(context)
        uniform += env.uniform(context)
        baseline += env.expected(context, env.baseline())
        if t >= last_from:
            served_last += value
            optimum_last += env.optimum(context)
    return SimulationResult(rounds, served, optimum, uniform, baseline, served_last, optimum_last,
                            apprentice)
