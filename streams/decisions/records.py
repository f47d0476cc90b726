"""The records of the decision loop: requests in, decisions out, rewards back.

Field names match ``schemas/decision_request.avsc``, ``schemas/decision.avsc`` and
``schemas/reward.avsc`` (persisted contracts). Records are validated once, at the edge
(:mod:`streams.decisions.validation`), and trusted everywhere after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FeatureValue", "Action", "DecisionRequest", "RankedAction", "Decision", "Reward"]

#: A context or action feature: a category (string) or a finite number.
FeatureValue = str | float


@dataclass(frozen=True, slots=True)
class Action:
    """One candidate the caller offers: an id and its features.

    >>> Action("hero-beach", {"tone": "warm", "brightness": 0.8}).id
    'hero-beach'
    """

    id: str
    features: dict[str, FeatureValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """A request on the ``decisions`` topic, keyed by ``user_id``.

    ``actions`` are already resolved (a named ``action_set`` is expanded by the
    validator, which keeps its name in ``action_set``). ``slots`` leading actions are
    chosen, in order; ``baseline_action`` is what the caller would show without us
    (imitated in apprentice mode, and the reference of the regret estimate).
    """

    decision_id: str
    decision_point: str
    user_id: str
    actions: tuple[Action, ...]
    context: dict[str, FeatureValue] = field(default_factory=dict)
    slots: int = 1
    baseline_action: str | None = None
    action_set: str | None = None
    timestamp: int | None = None  # epoch milliseconds, when the caller asked


@dataclass(frozen=True, slots=True)
class RankedAction:
    """One action of a decision, in rank order.

    ``probability`` is the chance the policy gave it of being shown first: the values
    of a decision sum to 1, and the first action's is the propensity to log for
    off-policy evaluation. ``slot_probability`` is, for each of the ``slots`` chosen
    actions, the probability with which it was drawn for its slot given the ones
    before it (``None`` for actions not shown).
    """

    id: str
    probability: float
    reason: str
    slot_probability: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "probability": self.probability, "reason": self.reason,
                "slot_probability": self.slot_probability}


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer on ``decisions.out``, keyed by ``user_id``: show ``actions[0]``."""

    decision_id: str
    decision_point: str
    user_id: str
    actions: tuple[RankedAction, ...]
    policy_version: str
    slots: int = 1
    apprentice: bool = False
    created_at: int = 0  # epoch milliseconds

    @property
    def chosen(self) -> tuple[str, ...]:
        """The ids to show, slot by slot."""
        return tuple(action.id for action in self.actions[:self.slots])

    def to_dict(self) -> dict[str, Any]:
        return {"decision_id": self.decision_id, "decision_point": self.decision_point,
                "user_id": self.user_id, "actions": [a.to_dict() for a in self.actions],
                "policy_version": self.policy_version, "slots": self.slots,
                "apprentice": self.apprentice, "created_at": self.created_at}


@dataclass(frozen=True, slots=True)
class Reward:
    """A reward on the ``rewards`` topic, keyed by the decision's ``user_id``.

    ``action_id`` names the rewarded action of a multi-slot decision; ``None`` means
    the first (shown) one.
    """

    decision_id: str
    value: float
    timestamp: int | None = None
    action_id: str | None = None
