"""What happens to one record, without Kafka: decode → validate → dedupe → learn → rank.

The Faust agents (``streams.agents``) only move bytes between topics and tables and call
this; the replay tool and the unit tests call it too, so there is one implementation of
the per-event logic, testable without a broker.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from streams.quality import CHAMPION
from streams.ranking import Recommender
from streams.records import (DEFAULT_CONTROLS, DeadLetter, Event, ItemUpdate, Recommendation,
                             UserControls, UserProfile)
from streams.settings import Settings
from streams.state import UserState
from streams.validation import InvalidRecord, Validator, parse_event, parse_item, parse_user

__all__ = ["RawRecord", "EventOutcome", "Pipeline", "recommendation_id_for", "profile_to_dict",
           "controls_from_profile", "REWARD_TYPES", "CHAMPION"]

#: Feedback event types that carry a reward to the recommendation named by their
#: ``recommendation_id`` (the ranker weighs them; no-feedback impressions count as zero).
REWARD_TYPES = frozenset({"click", "add_to_cart", "purchase"})
#: Event time between two closings of expired impressions (see :meth:`Pipeline.tick`).
TICK_INTERVAL_MS = 1_000

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
    timestamp_ms: int | None = None  # the Kafka record's timestamp, when the caller has it


@dataclass(slots=True)
class EventOutcome:
    """What one event did: the new state (to write), a recommendation or a dead letter.

    ``challengers`` holds, for a trigger, each challenger strategy's list (item ids) for
    the same user and moment: never sent, only scored by the online quality monitor.
    """

    user_id: str | None = None
    state: UserState | None = None
    applied: bool = False  # False for a duplicate (already applied) or an invalid event
    recommendation: Recommendation | None = None
    dead_letter: DeadLetter | None = None
    event: Event | None = None
    personalized: bool = True
    challengers: dict[str, list[str]] = field(default_factory=dict)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Pipeline:
    """The per-record logic of a worker: one per process, shared by its agents.

    ``load_state`` and ``load_profile`` read the tables (plain dicts, or Faust tables).
    The user's profile carries their consent and controls (see :func:`profile_to_dict`),
    applied from their next recommendation on.

    ``counts`` are cumulative figures for the monitor (``rewards:<event type>``: feedback
    events carrying a ``recommendation_id``, learned from; ``expired``: impressions closed
    with zero reward; ``resets``: histories reset here).

    ``reset_replay_before_ms``: a ``reset_history`` request with a Kafka timestamp before
    this is not applied again when the users topic is replayed from the start after a
    restart (the restored model already reflects it; see :meth:`replicate_user`).
    """

    def __init__(self, settings: Settings, recommender: Recommender | None = None,
                 clock: Callable[[], int] = _now_ms) -> None:
        self.settings = settings
        self.validator = Validator(settings)
        self.recommender = recommender or Recommender(settings)
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.reset_replay_before_ms: int | None = None
        self._ticked_at = 0

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
        profile = load_profile(event.user_id)
        consents = self.consents(profile)
        controls = controls_from_profile(profile)
        # Impressions whose attribution window closed before this event are zero rewards,
        # on event time (capped by the clock, so one event stamped far ahead cannot close
        # everybody's windows); replay gets the same behaviour as the worker.
        self._maybe_tick(min(event.timestamp, now))
        if applied and consents:
            feedback = event.recommendation_id is not None and event.event_type in REWARD_TYPES
            attributed = self._attributed() if feedback else 0
            self.recommender.learn_one(event, state)
            if feedback and self._attributed() > attributed:  # it matched a remembered list
                self.counts[f"rewards:{event.event_type}"] += 1
        # Strength 0 is the user's "not personalized" (still learned from: only consent
        # stops learning, so raising the strength later has something to work with).
        personalized = consents and controls.personalization > 0.0
        outcome = EventOutcome(user_id=event.user_id, state=state, applied=applied,
                               event=event, personalized=personalized)
        if event.event_type in self.settings.trigger_event_types:
            # Re-emitted for a duplicate too: the first attempt may have died before its
            # send, and the deterministic recommendation_id lets consumers drop repeats.
            outcome.recommendation = self.recommend(event, state, personalized, now, controls)
            outcome.challengers = self.challengers(event, state, personalized, controls)
        return outcome

    def recommend(self, event: Event, state: UserState, personalized: bool, now: int,
                  controls: UserControls = DEFAULT_CONTROLS) -> Recommendation:
        """The champion's list for the trigger ``event``, as sent.

        Its ``recommendation_id`` is passed to the ranker, which remembers the
        impressions so that later feedback carrying the id is attributed to them. Not
        for a user without consent: nothing is learned from their events, so their
        lists would only ever close with zero rewards and bias the exploration.
        """
        recommendation_id = recommendation_id_for(event.event_id)
        remembered = recommendation_id if personalized else None
        items = self.recommender.recommend(event.user_id, state, event.context,
                                           self.settings.top_k, personalized=personalized,
                                           controls=controls, recommendation_id=remembered)
        return Recommendation(
            recommendation_id=recommendation_id,
            user_id=event.user_id,
            trigger_event_id=event.event_id,
            items=tuple(items),
            model_version=self.recommender.model_version,
            created_at=now,
            event_timestamp=event.timestamp,
            context=dict(event.context),
            strategy=CHAMPION,
        )

    def challengers(self, event: Event, state: UserState, personalized: bool,
                    controls: UserControls = DEFAULT_CONTROLS) -> dict[str, list[str]]:
        """Each challenger strategy's list for the same trigger (not sent: scored only).

        A user who is not personalized (no consent, or strength 0) is evaluated with
        non-personalized challengers too, so that all strategies see the same requests
        under the same rules. Called right after :meth:`recommend` with the same
        arguments, the ranker reuses that ranking's scores.
        """
        lists = self.recommender.challenger_lists(event.user_id, state, event.context,
                                                  self.settings.top_k, controls=controls,
                                                  personalized=personalized)
        return {name: list(items) for name, items in lists.items() if name != CHAMPION}

    # -- feedback windows -------------------------------------------------------------------
    def tick(self, now_ms: int) -> int:
        """Close the impressions whose attribution window ended by ``now_ms`` (epoch ms):
        each is a zero reward for the ranker. Returns how many were closed.

        :meth:`process_event` already calls this on event time, at most once per
        second of it; a worker may also call it from a timer so that windows close on
        an idle stream.
        """
        closed = int(self.recommender.close_expired(now_ms))
        self._ticked_at = max(self._ticked_at, now_ms)
        return closed

    def stats(self) -> dict[str, int]:
        """Cumulative counts for the monitor (``Monitor.observe_pipeline``): ``counts``
        (``rewards:<event type>``, ``resets``), and from the ranker ``expired``
        (impressions whose attribution window closed), ``zero_rewards`` (their items that
        earned nothing) and ``bursts_skipped`` (events not learned from as bot-like)."""
        stats = dict(self.counts)
        recommender = self.recommender
        feedback = recommender.selector.stats()
        stats["expired"] = int(feedback["resolved"] - feedback["resolved_early"])
        stats["zero_rewards"] = int(feedback["zero_rewards"])
        stats["bursts_skipped"] = int(recommender.bursts_skipped)
        return stats

    def _attributed(self) -> int:
        """Rewards the ranker attributed so far (first ones and upgrades, e.g. a purchase
        after a click of the same item)."""
        feedback = self.recommender.selector.stats()
        return int(feedback["rewards"] + feedback["reward_upgrades"])

    def _maybe_tick(self, now_ms: int) -> None:
        if now_ms - self._ticked_at >= TICK_INTERVAL_MS:
            self.tick(now_ms)

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
        done = self.replicate_user(record)
        return done[1] if done is not None and done[0] == "forget" else None

    def replicate_user(self, record: RawRecord) -> tuple[str, str] | None:
        """This worker's part of a ``users`` record that every worker must apply.

        Any worker may hold learned parameters of any user, so a forget or a history
        reset is applied to every worker's learners (the partition's owner also clears
        the tables). Returns ``("forget" | "reset", user_id)`` when it did something.

        A reset older than ``reset_replay_before_ms`` is skipped: after a restart the
        users topic is read again from the start, and resetting again would erase what
        was learned about the user since their request. A forget is always applied.
        """
        profile, dead = self.process_user(record)
        if dead is not None or profile is None:
            return None
        if profile.forget:
            self.recommender.forget_user(profile.user_id)
            return "forget", profile.user_id
        if profile.reset_history:
            cutoff, stamp = self.reset_replay_before_ms, record.timestamp_ms
            if cutoff is not None and stamp is not None and stamp < cutoff:
                return None
            self.reset_user(profile.user_id)
            return "reset", profile.user_id
        return None

    def reset_user(self, user_id: str) -> None:
        """Clear what this worker's learners hold about the user ("reset my history").

        The user's table state is the caller's to delete; their profile, consent and
        controls stay. Popularity keeps the user's past contribution: it is an aggregate
        over everybody, not something about them.
        """
        self.recommender.reset_user(user_id)
        self.counts["resets"] += 1

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
    """The ``user_profiles`` table value of a profile upsert (JSON-serializable).

    Controls are stored only when they differ from the defaults (most users never set
    any), under the ``users`` schema's field names. ``forget`` and ``reset_history`` are
    requests, not state: they are never stored, so nothing replays them.

    >>> from streams.records import UserControls, UserProfile
    >>> profile = UserProfile("u1", controls=UserControls(frozenset({"i2", "i1"}), novelty=0.8))
    >>> stored = profile_to_dict(profile, now=5)["controls"]
    >>> stored["muted_items"], stored["personalization_strength"], stored["novelty"]
    (['i1', 'i2'], 1.0, 0.8)
    >>> controls_from_profile(profile_to_dict(profile, now=5)) == profile.controls
    True
    """
    data: dict[str, Any] = {"consent_personalization": profile.consent_personalization,
                            "attributes": dict(profile.attributes), "updated_at": now}
    controls = profile.controls
    if not controls.is_default:
        data["controls"] = {"muted_items": sorted(controls.muted_items),
                            "muted_categories": sorted(controls.muted_categories),
                            "personalization_strength": controls.personalization,
                            "novelty": controls.novelty}
    return data


def controls_from_profile(profile: Mapping[str, Any] | None) -> UserControls:
    """The user's controls from their stored profile (defaults without one).

    >>> controls_from_profile(None).is_default
    True
    >>> controls_from_profile({"controls": {"muted_categories": ["hats"],
    ...                                     "personalization_strength": 0.0}}).muted_categories
    frozenset({'hats'})
    """
    stored = profile.get("controls") if profile else None
    if not stored:
        return DEFAULT_CONTROLS
    return UserControls(frozenset(stored.get("muted_items", ())),
                        frozenset(stored.get("muted_categories", ())),
                        float(stored.get("personalization_strength", 1.0)),
                        float(stored.get("novelty", 0.5)))

