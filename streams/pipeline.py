"""What happens to one record, without Kafka: decode → validate → dedupe → learn → rank.

The Faust agents (``streams.agents``) only move bytes between topics and tables and call
this; the replay tool and the unit tests call it too, so there is one implementation of
the per-event logic, testable without a broker.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from streams.ranking import Recommender
from streams.records import DeadLetter, Event, ItemUpdate, Recommendation, UserProfile
from streams.settings import Settings
from streams.state import UserState
from streams.validation import InvalidRecord, Validator, parse_event, parse_item, parse_user

__all__ = ["RawRecord", "EventOutcome", "Pipeline", "recommendation_id_for"]

#: Namespace of recommendation ids: a trigger always maps to the same id, so a
#: recommendation re-emitted after a crash can be recognised downstream.
_RECOMMENDATION_NS = uuid.UUID("5f0b6c1e-8f4e-4a53-9f7e-6d1f3c2a9b10")


def recommendation_id_for(trigger_event_id: str) -> str:
    """Deterministic id of the recommendation answering one trigger event.

    >>> recommendation_id_for("e1") == recommendation_id_for("e1")
    True
    """
    return str(uuid.uuid5(_RECOMMENDATION_NS, trigger_event_id))


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A Kafka record as it arrived, kept whole so a dead letter can carry it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any = None


@dataclass(slots=True)
class EventOutcome:
    """What one event did: the new state (to write), a recommendation or a dead letter."""

    user_id: str | None = None
    state: UserState | None = None
    applied: bool = False  # False for a duplicate (already applied) or an invalid event
    recommendation: Recommendation | None = None
    dead_letter: DeadLetter | None = None
    event: Event | None = None
    personalized: bool = True


def _now_ms() -> int:
    return int(time.time() * 1000)


class Pipeline:
    """The per-record logic of a worker: one per process, shared by its agents.

    ``load_state`` and ``load_profile`` read the tables (plain dicts, or Faust tables).
    """

    def __init__(self, settings: Settings, recommender: Recommender | None = None,
                 clock: Callable[[], int] = _now_ms) -> None:
        self.settings = settings
        self.validator = Validator(settings)
        self.recommender = recommender or Recommender(settings)
        self.clock = clock

    # -- events -------------------------------------------------------------------------
    def process_event(self, record: RawRecord,
                      load_state: Callable[[str], dict | None],
                      load_profile: Callable[[str], dict | None]) -> EventOutcome:
        now = self.clock()
        try:
            event = parse_event(record.key, record.value, record.headers, self.validator, now)
        except InvalidRecord as exc:
            return EventOutcome(dead_letter=self.dead_letter(record, exc, now))
        state = UserState.from_dict(load_state(event.user_id))
        applied = state.apply(event, recent_max=self.settings.recent_items_max,
                              dedupe_window=self.settings.dedupe_window)
        personalized = self.consents(load_profile(event.user_id))
        if applied and personalized:
            self.recommender.learn_one(event, state)
        outcome = EventOutcome(user_id=event.user_id, state=state, applied=applied,
                               event=event, personalized=personalized)
        if event.event_type in self.settings.trigger_event_types:
            # Re-emitted for a duplicate too: the first attempt may have died before its
            # send, and the deterministic recommendation_id lets consumers drop repeats.
            outcome.recommendation = self.recommend(event, state, personalized, now)
        return outcome

    def recommend(self, event: Event, state: UserState, personalized: bool, now: int) -> Recommendation:
        items = self.recommender.recommend(event.user_id, state, event.context,
                                           self.settings.top_k, personalized=personalized)
        return Recommendation(
            recommendation_id=recommendation_id_for(event.event_id),
            user_id=event.user_id,
            trigger_event_id=event.event_id,
            items=tuple(items),
            model_version=self.recommender.model_version,
            created_at=now,
            event_timestamp=event.timestamp,
            context=dict(event.context),
        )

    @staticmethod
    def consents(profile: dict | None) -> bool:
        """Personalize unless the user's latest profile record opted out."""
        return True if profile is None else bool(profile.get("consent_personalization", True))

    # -- catalog and profiles -------------------------------------------------------------
    def process_item(self, record: RawRecord) -> tuple[ItemUpdate | str | None, DeadLetter | None]:
        """Validate a catalog record: an update, the id of a deleted item, or a dead letter."""
        try:
            item = parse_item(record.key, record.value, record.headers, self.validator)
        except InvalidRecord as exc:
            return None, self.dead_letter(record, exc, self.clock())
        if item is None:  # tombstone: the key names the deleted item
            return record.key.decode("utf-8"), None  # type: ignore[union-attr]
        return item, None

    def apply_item(self, record: RawRecord) -> bool:
        """Apply a catalog record to this worker's catalog; ``False`` if it was invalid."""
        item, dead = self.process_item(record)
        if dead is not None:
            return False
        if isinstance(item, str):
            self.recommender.remove_item(item)
        elif item is not None:
            self.recommender.apply_item(item)
        return True

    def apply_forget(self, record: RawRecord) -> str | None:
        """Erase a user from this worker's learners if ``record`` asks to; return the id."""
        profile, dead = self.process_user(record)
        if dead is not None or profile is None or not profile.forget:
            return None
        self.recommender.forget_user(profile.user_id)
        return profile.user_id

    def process_user(self, record: RawRecord) -> tuple[UserProfile | None, DeadLetter | None]:
        try:
            return parse_user(record.key, record.value, record.headers, self.validator), None
        except InvalidRecord as exc:
            return None, self.dead_letter(record, exc, self.clock())

    # -- errors ---------------------------------------------------------------------------
    @staticmethod
    def dead_letter(record: RawRecord, exc: InvalidRecord, now: int) -> DeadLetter:
        return DeadLetter(topic=record.topic, partition=record.partition, offset=record.offset,
                          key=record.key, value=record.value, reason=exc.reason,
                          error_type=exc.error_type, failed_at=now)


def profile_to_dict(profile: UserProfile, now: int) -> dict[str, Any]:
    return {"consent_personalization": profile.consent_personalization,
            "attributes": dict(profile.attributes), "updated_at": now}
