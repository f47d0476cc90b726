"""Typed, validated records: what every topic carries once decoded.

The stream code, the learners and the ranker share these types so that a record is
validated once, at the edge (``streams.validation``), and trusted everywhere after.
Field names match the Avro schemas in ``schemas/`` (they are persisted contracts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EVENT_TYPES",
    "Event",
    "ItemUpdate",
    "UserProfile",
    "UserControls",
    "RecommendedItem",
    "Recommendation",
    "DeadLetter",
]

#: Every event type the pipeline understands; anything else is dead-lettered.
EVENT_TYPES: tuple[str, ...] = (
    "view",
    "click",
    "add_to_cart",
    "purchase",
    "rating",
    "like",
    "dislike",
    "dwell",
    "recommendation_request",
)


@dataclass(frozen=True, slots=True)
class Event:
    """One user interaction (topic ``events``, keyed by ``user_id``).

    ``item_id`` is ``None`` only for ``recommendation_request`` (a page with no item).
    """

    event_id: str
    user_id: str
    item_id: str | None
    event_type: str
    timestamp: int  # epoch milliseconds
    value: float | None = None
    context: dict[str, str] = field(default_factory=dict)
    recommendation_id: str | None = None


@dataclass(frozen=True, slots=True)
class ItemUpdate:
    """A catalog upsert (topic ``items``, keyed by ``item_id``); deletes are tombstones."""

    item_id: str
    available: bool = True
    categories: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)
    text: str | None = None


@dataclass(frozen=True, slots=True)
class UserControls:
    """A person's own say over their recommendations, applied from the next one on.

    ``personalization`` runs from 0 (popularity and context only) to 1 (fully
    personalized); ``novelty`` from 0 (familiar: more of what they engage with) to 1
    (new: unseen categories, less popular items), 0.5 being the default balance.
    Muted items and categories are never shown.
    """

    muted_items: frozenset[str] = frozenset()
    muted_categories: frozenset[str] = frozenset()
    personalization: float = 1.0
    novelty: float = 0.5

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_CONTROLS


DEFAULT_CONTROLS = UserControls()


@dataclass(frozen=True, slots=True)
class UserProfile:
    """A profile and consent upsert (topic ``users``, keyed by ``user_id``).

    ``forget`` asks for the user to be erased everywhere (also sent as a tombstone).
    ``reset_history`` clears what was learned about the user (state and per-user
    learner parameters) but keeps the profile: they are treated as new from then on.
    """

    user_id: str
    consent_personalization: bool = True
    attributes: dict[str, str] = field(default_factory=dict)
    forget: bool = False
    controls: UserControls = DEFAULT_CONTROLS
    reset_history: bool = False


@dataclass(frozen=True, slots=True)
class RecommendedItem:
    """One ranked item with the evidence for it.

    ``propensity`` is the probability that the serving policy would show this item in
    this list (1.0 for a deterministic choice), kept so that later policies can be
    evaluated offline by inverse propensity scoring.
    """

    item_id: str
    score: float
    reason: str
    source: str
    propensity: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "score": self.score, "reason": self.reason,
                "source": self.source, "propensity": self.propensity}


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One micro-moment recommendation (topic ``recommendations``, keyed by ``user_id``)."""

    recommendation_id: str
    user_id: str
    trigger_event_id: str
    items: tuple[RecommendedItem, ...]
    model_version: str
    created_at: int  # epoch milliseconds
    event_timestamp: int  # the trigger event's timestamp, epoch milliseconds
    context: dict[str, str] = field(default_factory=dict)
    strategy: str = "champion"  # the ranking strategy that served this list

    def to_dict(self) -> dict[str, Any]:
        return {
            "recommendation_id": self.recommendation_id,
            "user_id": self.user_id,
            "trigger_event_id": self.trigger_event_id,
            "items": [item.to_dict() for item in self.items],
            "model_version": self.model_version,
            "created_at": self.created_at,
            "event_timestamp": self.event_timestamp,
            "context": dict(self.context),
            "strategy": self.strategy,
        }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be used, kept with its original bytes and the reason."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    error_type: str
    failed_at: int  # epoch milliseconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "value": self.value,
            "reason": self.reason,
            "error_type": self.error_type,
            "failed_at": self.failed_at,
        }
