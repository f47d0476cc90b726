"""The recommender: the one object that learns from events and ranks the catalog.

The stream worker and offline replay both drive a :class:`Recommender`, so there is a
single implementation of "what does an event teach us" and "what do we show next".

**Learning, per event** (:meth:`Recommender.learn_one`): first the burst detector
(:class:`~streams.learners.BurstDetector`) sees every event; one it judges a bot-like
burst teaches nothing (counted in :attr:`Recommender.bursts_skipped`). Then, for a
positive event and *before* any learner sees it, the blend learns from it (below).
Then every learner: popularity, the user's segment
(:class:`~streams.learners.UserSegments`) and the popularity per context and segment
(:class:`~streams.learners.KeyedPopularity`), item-to-item transitions
(:class:`~streams.learners.ItemTransitions`), matrix factorization, content affinity,
the context-aware factorization machine (:class:`~streams.learners.ContextualFM`), and
for ratings a rating predictor (:class:`~streams.learners.ratings.RatingBaseline`, for
MAE/RMSE in replays).

**Ranking** treats the whole catalog as the candidate set (:meth:`Recommender.candidates`:
available, not purchased, not among the user's ``exclude_recent`` latest items) and
does everything with vectorized numpy over catalog rows. Each component gives a score
per row, normalized over the candidates:

* **popularity**: time-decayed interaction weight (its half-life follows the log's
  pace); the cold-start fallback and, within a liked category, the tie-breaker;
* **context**: popularity in the request's context (device, daypart: "popular on mobile
  this evening"), with a week's half-life, since such patterns recur daily;
* **segment**: popularity among the users of the user's segment ("popular with shoppers
  like you"), the segment being the user's online k-means cluster;
* **content**: the user's time-decayed affinity for the item's categories; meaningful
  after one event, and it scores new items by their category (item cold start);
* **collaborative**: the matrix-factorization score, once the user has a few events;
* **sequence**: what people open next after the user's recent items, *not* min-max
  stretched: ``P(next | recent)`` in [0, 1], so weak evidence stays weak;
* **fm**: the factorization machine's predicted engagement in this context, once it
  has learned from enough events (over large catalogs it re-scores only a pool of the
  best candidates of the other components, with ``score_rows``).

They are added with **learned weights** (:class:`~streams.learners.blend.ChoiceBlend`,
one weight vector per user-history bucket, starting from hand-set priors): on each
positive event, the item the user engaged with is read as a choice among the
candidates, and the weights (and the softmax temperature) take one step of a
conditional-logit model of that choice, by the normalized scores of the candidates.
The blend learns from a uniform sample of the positive events (every
``MICROMOMENT_BLEND_EVERY``-th, to keep learning cheap: each step needs the catalog's
scores as they were before the event); when the event follows a ranking of the same
user with nothing learned in between (always, in a replay, which therefore learns from
every event), that ranking's scores are reused instead of recomputed. Then boolean
masks for what must not be shown and ``argpartition`` for the top k. Each item's
``source`` is the component that contributed most to its score, and its ``reason``
gives that component's evidence.
Users with no history get popularity and context; requests that opt out of
personalization get popularity alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streams.catalog import Catalog
from streams.learners import (
    BurstDetector,
    CategoryAffinity,
    ContextualFM,
    DecayedPopularity,
    ImplicitMF,
    ItemTransitions,
    KeyedPopularity,
    UserSegments,
)
from streams.learners.blend import ChoiceBlend
from streams.learners.ratings import RatingBaseline
from streams.rank.controls import NONPERSONAL_SOURCES, personalization_of
from streams.rank.selection import CHALLENGERS, Request, Selector
from streams.records import Event, ItemUpdate, RecommendedItem, UserControls
from streams.settings import Settings
from streams.state import UserState

__all__ = ["COMPONENTS", "EVENT_WEIGHTS", "PRIOR_WEIGHTS", "Recommender", "event_strength"]

#: Learning signal of each positive event type: purchase > add_to_cart ~ like > click >
#: dwell > view. The same weight feeds popularity and is the MF regression target.
EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 1.5,
    "like": 2.0,
    "add_to_cart": 2.0,
    "purchase": 3.0,
}
#: Dwell is a view with evidence of attention: 1.0 plus up to 0.4, reached at 60 s, so
#: even a long dwell stays below a click (an explicit action).
DWELL_BONUS, DWELL_SATURATION_S = 0.4, 60.0
#: A rating above the running mean of all ratings seen counts like a "like".
RATING_POSITIVE = EVENT_WEIGHTS["like"]
#: Explicit negatives (dislike, rating below the running mean); any value <= 0 would do.
NEGATIVE = -1.0

SOURCE_POPULARITY = "popularity"
SOURCE_CONTEXT = "context"
SOURCE_SEGMENT = "segment"
SOURCE_CONTENT = "content"
SOURCE_COLLABORATIVE = "collaborative"
SOURCE_SEQUENCE = "sequence"
SOURCE_FM = "fm"
#: The blended components, in the order of the learned weight vectors.
COMPONENTS = (SOURCE_POPULARITY, SOURCE_CONTEXT, SOURCE_SEGMENT, SOURCE_CONTENT,
              SOURCE_COLLABORATIVE, SOURCE_SEQUENCE, SOURCE_FM)
#: Starting weights of the learned blend. Content, MF and popularity are the weights the
#: fixed blend used (``tests/unit/test_quality.py``), so the first events rank as before.
PRIOR_WEIGHTS = {SOURCE_POPULARITY: 0.3, SOURCE_CONTEXT: 0.1, SOURCE_SEGMENT: 0.1,
                 SOURCE_CONTENT: 0.6,
                 SOURCE_COLLABORATIVE: 0.1, SOURCE_SEQUENCE: 0.3, SOURCE_FM: 0.1}
#: ``model_version`` names the enabled components in this order (the historical prefix
#: ``content+mf+pop`` first).
_VERSION_NAMES = ((SOURCE_CONTENT, "content"), (SOURCE_COLLABORATIVE, "mf"),
                  (SOURCE_POPULARITY, "pop"), (SOURCE_SEQUENCE, "seq"), (SOURCE_CONTEXT, "ctx"),
                  (SOURCE_SEGMENT, "segment"),
                  (SOURCE_FM, "fm"))
#: A user's history bucket for the learned blend: 0 events, 1-2, 3-9, 10 or more.
HISTORY_BUCKETS = (1, 3, 10)


def event_strength(event: Event, rating_mean: float | None = None) -> float | None:
    """The learning signal of ``event``: > 0 positive, < 0 explicit negative, ``None``: none.

    Ratings come on different scales (1-5, 1-10), so a rating is judged against
    ``rating_mean``, the mean of the ratings seen before it: above is a positive, below
    a negative, equal (or the very first rating, with nothing to compare to) a weak
    positive, like a view: the user did engage with the item.

    >>> from streams.records import Event
    >>> event_strength(Event("e", "u", "i", "purchase", 0))
    3.0
    >>> event_strength(Event("e", "u", "i", "dwell", 0, value=30.0))
    1.2
    >>> [event_strength(Event("e", "u", "i", "rating", 0, value=v), rating_mean=3.5)
    ...  for v in (5.0, 2.0)]
    [2.0, -1.0]
    >>> event_strength(Event("e", "u", None, "recommendation_request", 0)) is None
    True
    """
    kind = event.event_type
    if event.item_id is None or kind == "recommendation_request":
        return None
    if kind in EVENT_WEIGHTS:
        return EVENT_WEIGHTS[kind]
    if kind == "dislike":
        return NEGATIVE
    value = event.value
    has_value = value is not None and math.isfinite(value)
    if kind == "dwell":
        seconds = min(max(value, 0.0), DWELL_SATURATION_S) if has_value else 0.0
        return EVENT_WEIGHTS["view"] + DWELL_BONUS * seconds / DWELL_SATURATION_S
    if kind == "rating":
        if not has_value or rating_mean is None or value == rating_mean:
            return EVENT_WEIGHTS["view"]
        return RATING_POSITIVE if value > rating_mean else NEGATIVE
    return None  # an unknown type teaches nothing (validation dead-letters them anyway)


@dataclass
class _Scores:
    """One ranking's component scores: what the blend learns from if the user acts next."""

    user: str
    version: int
    n_items: int
    bucket: int
    features: dict[str, np.ndarray]  # component -> normalized scores (catalog rows)
    candidates: np.ndarray
    blended: np.ndarray


class Recommender:
    """Learns from events and ranks the whole catalog for a user, with reasons.

    Parameters
    ----------
    settings
        Reads ``popularity_half_life_s``, ``popularity_pace_events``, ``n_factors``,
        ``seed``, ``exclude_recent``, ``skip_bursts``, ``user_ttl_s``, ``blend_every``
        and ``top_k``.
    catalog
        The item index to share; a new one is created if omitted.
    components
        The blended components (a subset of :data:`COMPONENTS`); the others are neither
        learned nor scored. Popularity is always kept: it is the cold-start fallback.
    prior_weights
        Starting weights of the learned blend by component (default
        :data:`PRIOR_WEIGHTS`).
    learn_blend
        Learn the blend's weights (default); ``False`` keeps the priors fixed.
    min_events
        Users with fewer events than this get no collaborative (MF) score: their
        latent vector is still mostly its random initialization.
    content_min_events
        Users with fewer events than this get no content score. At 1, a user's first
        event already makes the next ranking category-aware.
    fm_min_events
        The factorization machine scores only once it has learned this many events.
    fm_full_max
        Over catalogs larger than this, the factorization machine re-scores only the
        ``fm_pool`` best candidates of the other components (``score_rows``).
    n_negatives
        Negatives sampled per positive event by the MF learner.
    content_half_life_s
        Event-time half-life of the users' category affinities.
    content_attributes
        Item attributes (e.g. ``("brand",)``) learned as content features alongside
        the categories; none by default.
    context_half_life_s
        Event-time half-life of the popularity per context and segment. Long (a week)
        by default: what is popular on mobile in the evening recurs every evening, so
        it must outlive the day in between (with an hour, it was no better than plain
        popularity on the planted context log).
    blend_learning_rate
        Step size of the blend's weights.
    blend_every
        The blend learns from every ``blend_every``-th positive event (default: the
        ``blend_every`` setting): each step needs the scores of the catalog as they were
        before the event, reused from the user's ranking if nothing was learned since,
        else recomputed.

    Examples
    --------
    >>> from streams.records import Event, ItemUpdate
    >>> from streams.settings import Settings
    >>> from streams.state import UserState
    >>> rec = Recommender(Settings())
    >>> for item, category in [("a", "shoes"), ("b", "bags"), ("c", "shoes")]:
    ...     rec.apply_item(ItemUpdate(item, categories=(category,)))
    >>> state = UserState()
    >>> event = Event("e1", "u1", "a", "purchase", 1_700_000_000_000)
    >>> _ = state.apply(event, recent_max=50, dedupe_window=64)
    >>> rec.learn_one(event, state)
    >>> for r in rec.recommend("u1", state, {}, k=5):  # "a" was bought: not shown again
    ...     print(r.item_id, r.source, "|", r.reason)
    c content | more shoes: you bought a
    b popularity | available now
    >>> rec.recommend("new-user", None, {}, k=1)[0].reason
    'popular right now'
    >>> rec.model_version
    'content+mf+pop+seq+ctx+segment+fm:1'
    """

    def __init__(
        self,
        settings: Settings | None = None,
        catalog: Catalog | None = None,
        *,
        components: tuple[str, ...] = COMPONENTS,
        prior_weights: dict[str, float] | None = None,
        learn_blend: bool = True,
        min_events: int = 3,
        content_min_events: int = 1,
        fm_min_events: int = 2_000,
        fm_full_max: int = 20_000,
        fm_pool: int = 1_000,
        n_negatives: int = 3,
        content_half_life_s: float = 1_800.0,
        content_attributes: tuple[str, ...] = (),
        context_half_life_s: float = 7 * 86_400.0,
        blend_learning_rate: float = 0.05,
        blend_every: int | None = None,
    ) -> None:
        unknown = set(components) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"unknown components {sorted(unknown)}; known: {COMPONENTS}")
        self.settings = settings
        self.catalog = catalog
        self.components = components
        self.prior_weights = prior_weights
        self.learn_blend = learn_blend
        self.min_events = min_events
        self.content_min_events = content_min_events
        self.fm_min_events = fm_min_events
        self.fm_full_max = fm_full_max
        self.fm_pool = fm_pool
        self.n_negatives = n_negatives
        self.content_half_life_s = content_half_life_s
        self.content_attributes = content_attributes
        self.context_half_life_s = context_half_life_s
        self.blend_learning_rate = blend_learning_rate
        self.blend_every = blend_every
        settings = Settings() if settings is None else settings
        self._blend_every = max(1, int(blend_every or settings.blend_every))
        self._enabled = frozenset(components) | {SOURCE_POPULARITY}
        self._exclude_recent = settings.exclude_recent
        self._skip_bursts = settings.skip_bursts
        ttl = settings.user_ttl_s
        self._catalog = Catalog() if catalog is None else catalog
        self._popularity = DecayedPopularity(
            settings.popularity_half_life_s, catalog=self._catalog,
            pace_events=settings.popularity_pace_events or None,
        )
        self._mf = ImplicitMF(
            n_factors=settings.n_factors,
            n_negatives=n_negatives,
            seed=settings.seed,
            catalog=self._catalog,
        )
        self._content = CategoryAffinity(
            content_half_life_s, attributes=content_attributes, catalog=self._catalog,
            user_ttl_s=ttl,
        )
        self._keyed = KeyedPopularity(
            context_half_life_s, keys=(("device", "daypart"), ("device",), ("daypart",)),
            catalog=self._catalog)
        self._by_segment = KeyedPopularity(context_half_life_s, keys=(("segment",),),
                                           catalog=self._catalog)
        self._segments = UserSegments(seed=settings.seed, user_ttl_s=ttl, catalog=self._catalog)
        self._sequence = ItemTransitions(catalog=self._catalog)
        self._fm = ContextualFM(
            n_negatives=1, attributes=content_attributes, user_ttl_s=ttl, seed=settings.seed,
            catalog=self._catalog,
        )
        self._bursts = BurstDetector(seed=settings.seed)
        self._ratings = RatingBaseline(user_ttl_s=ttl)
        self._selector = Selector(settings, self._catalog)  # selection, feedback loop
        prior = dict(PRIOR_WEIGHTS if prior_weights is None else prior_weights)
        self._blend = ChoiceBlend(
            COMPONENTS, prior, n_buckets=len(HISTORY_BUCKETS) + 1,
            learning_rate=blend_learning_rate, k=settings.top_k, seed=settings.seed,
        )
        self._rng = np.random.default_rng(settings.seed)
        self._last: _Scores | None = None  # the latest personalized ranking (not pickled)
        self._version = 0  # bumped by anything that changes a score
        self._blend_tick = 0
        self._n_learned = 0
        self._rating_sum = 0.0
        self._n_ratings = 0
        self.bursts_skipped = 0

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_last"] = None  # scratch: catalog-sized arrays of one ranking
        return state

    # -- components (read-only) ------------------------------------------------------------

    @property
    def catalog_(self) -> Catalog:
        return self._catalog

    @property
    def popularity(self) -> DecayedPopularity:
        return self._popularity

    @property
    def mf(self) -> ImplicitMF:
        return self._mf

    @property
    def content(self) -> CategoryAffinity:
        return self._content

    @property
    def keyed_popularity(self) -> KeyedPopularity:
        return self._keyed

    @property
    def segment_popularity(self) -> KeyedPopularity:
        return self._by_segment

    @property
    def segments(self) -> UserSegments:
        return self._segments

    @property
    def sequence(self) -> ItemTransitions:
        return self._sequence

    @property
    def fm(self) -> ContextualFM:
        return self._fm

    @property
    def bursts(self) -> BurstDetector:
        return self._bursts

    @property
    def ratings(self) -> RatingBaseline:
        return self._ratings

    @property
    def blend(self) -> ChoiceBlend:
        return self._blend

    @property
    def n_learned(self) -> int:
        """Events that taught the learners something."""
        return self._n_learned

    def blend_weights(self, event_count: int = 10) -> dict[str, float]:
        """The learned weights used for a user with ``event_count`` events."""
        return self._blend.as_dict(_bucket(event_count))

    def forget_user(self, user_id: str) -> None:
        """Remove the user from every learner that keeps per-user data.

        Popularity, context popularity and transitions keep only aggregates over
        everyone (transitions keep the user's last item, erased here too).
        """
        self._mf.forget_user(user_id)
        self._content.forget_user(user_id)
        self._segments.forget_user(user_id)
        self._sequence.forget_user(user_id)
        self._fm.forget_user(user_id)
        self._bursts.forget_user(user_id)
        self._ratings.forget_user(user_id)
        self._selector.forget_user(user_id)  # their pending impressions, unlearned
        if self._last is not None and self._last.user == user_id:
            self._last = None
        self._version += 1

    def adopt_users(self, other: "Recommender", wanted) -> int:
        """Take over from ``other`` (another worker's model) what it learned about the
        ``wanted`` users (a predicate), where this model knows nothing of them yet.

        Only portable per-user knowledge moves: content affinities and segment profiles
        are over named features (categories). Latent vectors (MF, factorization
        machine) do not: two independently trained models have unrelated latent
        spaces, so they are relearned from the user's next events. Transitions are
        item-level, so there is nothing of the user to move. Returns the number of
        users whose content profile was adopted.
        """
        self._segments.adopt_users(other._segments, wanted)
        self._version += 1
        return self._content.adopt_users(other._content, wanted)

    @property
    def model_version(self) -> str:
        """Strategy and number of learned events, e.g. ``"content+mf+pop+seq+ctx+segment+fm:1234"``."""
        names = "+".join(short for name, short in _VERSION_NAMES if name in self._enabled)
        return f"{names}:{self._n_learned}"

    # -- catalog feed ------------------------------------------------------------------------

    def apply_item(self, item: ItemUpdate) -> None:
        """An upsert from the catalog feed (re-lists the item if it had been deleted)."""
        self._catalog.upsert(item)
        self._content.index_item(item.item_id)
        self._fm.index_item(item.item_id)
        self._selector.index_item(item.item_id)
        self._version += 1

    def remove_item(self, item_id: str) -> None:
        """A tombstone from the catalog feed: never recommended again unless re-listed."""
        self._catalog.remove(item_id)
        self._version += 1

    # -- learning ------------------------------------------------------------------------------

    def learn_one(self, event: Event, state: UserState | None = None) -> None:
        """Teach every learner one event.

        ``state`` is the user's state after the event (its recent items feed the
        blend's view of the ranking before the event). ``recommendation_request``
        events, events without an item and bot-like bursts teach nothing. An item
        first seen here is registered in the catalog; a deleted one stays deleted.
        Positive events add popularity (global, per context and segment) and
        transitions; both signs train the MF, the factorization machine and the
        content affinities (a negative lowers the item's categories).
        """
        rating_mean = self._rating_sum / self._n_ratings if self._n_ratings else None
        strength = event_strength(event, rating_mean)
        user, item = event.user_id, event.item_id
        x = {"timestamp": event.timestamp}
        if self._skip_bursts and self._bursts.observe(user, item, x) and strength is not None:
            self.bursts_skipped += 1
            return
        self._selector.learn_one(event)  # rewards of recommendations; expired impressions
        is_rating = event.event_type == "rating" and event.value is not None
        if is_rating and math.isfinite(event.value):
            self._rating_sum += event.value
            self._n_ratings += 1
            if item is not None:
                self._ratings.learn_one(user, item, event.value, x)
        if strength is None:
            return
        self._catalog.ensure(item)
        context = _context_of(event, self._clock())
        positive = strength > 0 or event.event_type == "rating"
        if positive and self.learn_blend and state is not None:
            self._learn_blend(event, state, context)
        enabled = self._enabled
        # A rating, even a low one, says the user consumed the item: for what everyone
        # engages with (popularity, per context, transitions) it counts as a view; its
        # sign is for the taste models below.
        engagement = strength if strength > 0 or event.event_type != "rating" else 1.0
        if engagement > 0:
            self._popularity.learn_one(user, item, engagement, x)
            if SOURCE_CONTEXT in enabled:
                self._keyed.learn_one(user, item, engagement, dict(context,
                                                                   timestamp=event.timestamp))
            if SOURCE_SEGMENT in enabled:
                self._segments.learn_one(user, item, engagement, x)
                segment = self._segments.segment_of(user)
                if segment is not None:
                    self._by_segment.learn_one(user, item, engagement,
                                               {"timestamp": event.timestamp,
                                                "segment": str(segment)})
            if SOURCE_SEQUENCE in enabled:
                session = event.context.get("session_id") if event.context else None
                self._sequence.learn_one(user, item, engagement,
                                         {"timestamp": event.timestamp, "session": session})
        if SOURCE_COLLABORATIVE in enabled:
            self._mf.learn_one(user, item, strength, x)
        if SOURCE_CONTENT in enabled:
            self._content.learn_one(user, item, strength, x)
        if SOURCE_FM in enabled:
            self._fm.learn_one(user, item, strength, dict(context, timestamp=event.timestamp))
        self._n_learned += 1
        self._version += 1

    def _learn_blend(self, event: Event, state: UserState, context: dict) -> None:
        """One step of the learned blend on the event's item, scored as before the event."""
        n_items = len(self._catalog)
        row = self._catalog.index_of(event.item_id)
        # A uniform sample of the positive events: learning only from events that follow
        # their user's ranking (whose scores are at hand) would over-learn session
        # continuations, so the cached scores only save the recomputation.
        self._blend_tick += 1
        if self._blend_tick % self._blend_every:
            return
        last = self._last
        if (last is not None and last.user == event.user_id and last.version == self._version
                and last.n_items == n_items):
            scores = last
        else:
            before = _state_before(state, event)
            candidates = self.candidates(before, n_items)
            features, _, _ = self._components(event.user_id, before, context, candidates,
                                              n_items, personalized=True)
            bucket = _bucket(before.event_count)
            blended = self._blended(features, bucket, candidates, n_items)
            scores = _Scores(event.user_id, self._version, n_items, bucket, features, candidates,
                             blended)
        if row is None or row >= scores.n_items or not scores.candidates[row]:
            return  # an item the ranking could not have shown (a repeat, unavailable...)
        candidates = np.flatnonzero(scores.candidates)
        target = int(np.searchsorted(candidates, row))
        blended = scores.blended[candidates]
        size = min(len(candidates), 64)
        top = np.argpartition(-blended, size - 1)[:size]
        rows, counts = self._blend.sample(len(candidates), target, top)
        picked = candidates[rows]
        matrix = np.zeros((len(rows), len(COMPONENTS)), dtype=np.float64)
        for j, name in enumerate(COMPONENTS):
            vector = scores.features.get(name)
            if vector is not None:
                matrix[:, j] = vector[picked]
        self._blend.learn_one(scores.bucket, matrix, int(np.flatnonzero(rows == target)[0]),
                              counts)

    def _clock(self) -> float | None:
        return self._popularity.clock

    # -- rating prediction --------------------------------------------------------------------

    def predict_rating(self, user_id: str, item_id: str) -> float | None:
        """The rating ``user_id`` would give ``item_id`` on the log's own scale, or ``None``
        before any rating was learned (what replay scores as MAE/RMSE)."""
        return self._ratings.predict_one(user_id, item_id)

    # -- ranking -------------------------------------------------------------------------------

    def candidates(self, state: UserState | None, n_items: int | None = None) -> np.ndarray:
        """Which catalog rows may be recommended to the user of ``state`` (a bool mask).

        Not: unavailable (or deleted) items, the user's purchases, and their
        ``exclude_recent`` most recent items (setting ``MICROMOMENT_EXCLUDE_RECENT``; 0
        lets them come back, for repeat-consumption domains).
        """
        n_items = len(self._catalog) if n_items is None else n_items
        mask = np.array(self._catalog.available_mask()[:n_items], dtype=bool)
        if state is not None:
            index_of = self._catalog.index_of
            recent = state.recent_items[: self._exclude_recent] if self._exclude_recent else []
            seen = [index_of(item) for item in (*state.purchased, *recent)]
            seen = [row for row in seen if row is not None and row < n_items]
            if seen:
                mask[seen] = False
        return mask

    def excludes(self, item_id: str, state: UserState | None) -> bool:
        """Whether ``item_id`` is filtered out for the user of ``state`` because they
        bought it or saw it recently (see :meth:`candidates`)."""
        if state is None:
            return False
        if item_id in state.purchased:
            return True
        return bool(self._exclude_recent) and item_id in state.recent_items[: self._exclude_recent]

    def recommend(
        self,
        user_id: str,
        state: UserState | None,
        context: dict | None = None,
        k: int = 10,
        personalized: bool = True,
        explain: bool = True,
        *,
        controls: UserControls | None = None,
        recommendation_id: str | None = None,
        explore: bool = True,
    ) -> list[RecommendedItem]:
        """The top ``k`` items for ``user_id`` right now, best first, each with a reason.

        Only :meth:`candidates` are recommended. Fewer than ``k`` come back only when
        fewer candidates remain. ``context`` is the trigger's context (device, page...):
        it steers the context popularity and the factorization machine. ``explain=False``
        leaves every ``reason`` empty (what a replay needs: faster).

        After scoring, :mod:`streams.rank` selects: business rules and the user's
        ``controls`` (mutes, personalization and novelty dials), diversity, exploration
        and distinct reasons. With a ``recommendation_id`` the list is remembered as an
        impression for reward attribution, and (``explore``, exploration rate > 0) the
        contextual bandit may put items it wants to learn about into it, source
        ``"explore"``; every item's ``propensity`` is the probability that this policy
        lists it (at any position; 1.0 for a list that does not explore).
        """
        if personalization_of(controls) <= 0.0:
            personalized = False  # popularity and context only
        n_items = len(self._catalog)
        if n_items == 0 or k <= 0:
            return []
        candidates = self.candidates(state, n_items)
        n_candidates = int(np.count_nonzero(candidates))
        if n_candidates == 0:
            return []

        x = _context_of(None, self._clock(), context)
        features, evidence, popularity = self._components(user_id, state, x, candidates, n_items,
                                                          personalized)
        bucket = _bucket(state.event_count if state is not None else 0)
        blended = self._blended(features, bucket, candidates, n_items)
        if personalized and state is not None:  # (the selection below changes ``blended``)
            self._last = _Scores(user_id, self._version, n_items, bucket, features, candidates,
                                 blended.copy())
        np.copyto(blended, -np.inf, where=~candidates)

        def describe(rows: np.ndarray) -> list[RecommendedItem]:  # source and reason per row
            sources = self._dominant(rows, features, evidence, bucket)
            if not explain:
                return [RecommendedItem(self._catalog.item_id_at(row), float(blended[row]), "",
                                        source) for row, source in zip(rows.tolist(), sources)]
            return self._explain(user_id, rows, blended, popularity, sources, state, x)

        return self._selector.select(Request(
            user_id, state, x, k, blended, candidates, popularity,
            personal=lambda: self._personal(features, bucket, n_items), describe=describe,
            similarity=self._mf.item_similarity if SOURCE_COLLABORATIVE in features else None,
            controls=controls, recommendation_id=recommendation_id, explore=explore,
            personalized=personalized, explain=explain))

    def _personal(self, features: dict[str, np.ndarray], bucket: int, n_items: int
                  ) -> np.ndarray:
        """The weighted sum of the personalized components (what the personalization dial
        of :class:`~streams.records.UserControls` scales)."""
        weights = self._blend.as_dict(bucket)
        personal = np.zeros(n_items, dtype=np.float64)
        for name, vector in features.items():
            if name not in NONPERSONAL_SOURCES and weights.get(name, 0.0) != 0.0:
                personal += weights[name] * vector
        return personal

    # -- the feedback loop, challengers and user controls (streams.rank) ---------------------

    @property
    def selector(self) -> Selector:
        """Selection and the feedback loop: the bandit, pending impressions, ``stats()``."""
        return self._selector

    def close_expired(self, now_ms: int) -> int:
        """Resolve the remembered impressions whose attribution window closed before
        ``now_ms`` (event time, the clock of the events' timestamps): their items without
        feedback are zero rewards for the bandit. Returns how many were resolved."""
        return self._selector.close_expired(now_ms)

    def challenger_lists(
        self,
        user_id: str,
        state: UserState | None,
        context: dict | None = None,
        k: int = 10,
        controls: UserControls | None = None,
        *,
        personalized: bool = True,
    ) -> dict[str, list[str]]:
        """Item ids each challenger strategy would show for this request, by name
        (``streams.rank.selection.CHALLENGERS``: ``popularity``, ``no-explore``,
        ``no-diversity``). Nothing is served, remembered or drawn at random. Called right
        after :meth:`recommend` for the same request, it reuses that ranking's scores."""
        if personalization_of(controls) <= 0.0:
            personalized = False
        x = _context_of(None, self._clock(), context)
        selector = self._selector
        if not selector.has_request(user_id, state, x, k, controls, personalized):
            self.recommend(user_id, state, context, k, personalized, explain=False,
                           controls=controls, explore=False)
            if not selector.has_request(user_id, state, x, k, controls, personalized):
                return {name: [] for name in CHALLENGERS}  # nothing to rank
        return selector.challengers()

    def reset_user(self, user_id: str) -> None:
        """"Reset my history": clear everything learned about the user (every learner's
        per-user parameters) and their pending impressions, as :meth:`forget_user` does;
        their next events start from scratch. (The user's state table entry is the
        pipeline's to clear.)"""
        self.forget_user(user_id)

    def _components(
        self,
        user_id: str,
        state: UserState | None,
        x: dict,
        candidates: np.ndarray,
        n_items: int,
        personalized: bool,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
        """Per component, its normalized scores; where a score counts as evidence (for
        the explanation); and the raw popularity."""
        enabled = self._enabled
        popularity = self._popularity.score_all(n_items)
        features = {SOURCE_POPULARITY: _normalized(popularity, candidates)}
        evidence: dict[str, np.ndarray] = {}
        if not personalized:
            return features, evidence, popularity
        if SOURCE_CONTEXT in enabled and self._keyed.n_learned and self._keyed.keys_of(x):
            keyed = self._keyed.score_all(n_items, x)
            features[SOURCE_CONTEXT] = _normalized(keyed, candidates, out=keyed)
        segment = self._segments.segment_of(user_id) if SOURCE_SEGMENT in enabled else None
        if segment is not None and self._by_segment.n_learned:
            by_segment = self._by_segment.score_all(n_items, {"segment": str(segment)})
            features[SOURCE_SEGMENT] = _normalized(by_segment, candidates, out=by_segment)
        if state is None:
            return features, evidence, popularity
        if SOURCE_CONTENT in enabled and self._content_is_warm(user_id, state):
            content = self._content.score_all(user_id, n_items)
            evidence[SOURCE_CONTENT] = content > 0
            features[SOURCE_CONTENT] = _normalized(content, candidates, out=content)
        if SOURCE_COLLABORATIVE in enabled and self._mf_is_warm(user_id, state):
            mf = self._mf.score_all(user_id, n_items)
            features[SOURCE_COLLABORATIVE] = _normalized(mf, candidates, out=mf)
        if SOURCE_SEQUENCE in enabled and state.recent_items and self._sequence.n_transitions:
            sequence = self._sequence.score_all(user_id, n_items, recent_items=state.recent_items)
            if sequence.any():
                np.minimum(sequence, 1.0, out=sequence)  # P(next | recent), not stretched
                evidence[SOURCE_SEQUENCE] = sequence > 0
                features[SOURCE_SEQUENCE] = sequence
        if SOURCE_FM in enabled and self._fm.n_learned >= self.fm_min_events:
            fm_x = x
            if n_items <= self.fm_full_max:
                fm = self._fm.score_all(user_id, n_items, fm_x)
                features[SOURCE_FM] = _normalized(fm, candidates, out=fm)
            else:  # a pool: the best candidates of the other components
                bucket = _bucket(state.event_count)
                partial = self._blended(features, bucket, candidates, n_items)
                np.copyto(partial, -np.inf, where=~candidates)
                size = min(self.fm_pool, int(np.count_nonzero(candidates)))
                pool = np.argpartition(-partial, size - 1)[:size]
                fm = np.zeros(n_items, dtype=np.float64)
                fm[pool] = self._fm.score_rows(user_id, pool, fm_x)
                in_pool = np.zeros(n_items, dtype=bool)
                in_pool[pool] = True
                features[SOURCE_FM] = _normalized(fm, in_pool, out=fm)
                features[SOURCE_FM][~in_pool] = 0.0
        return features, evidence, popularity

    def _blended(self, features: dict[str, np.ndarray], bucket: int, candidates: np.ndarray,
                 n_items: int) -> np.ndarray:
        if len(features) == 1:  # popularity alone (cold, or not personalized): as it is
            return features[SOURCE_POPULARITY].copy()
        weights = self._blend.weights(bucket)
        blended = np.zeros(n_items, dtype=np.float64)
        for j, name in enumerate(COMPONENTS):
            vector = features.get(name)
            if vector is not None and weights[j] != 0.0:
                blended += weights[j] * vector
        return blended

    def _content_is_warm(self, user_id: str, state: UserState) -> bool:
        return (
            state.event_count >= self.content_min_events
            and self._content.knows_user(user_id)
        )

    def _mf_is_warm(self, user_id: str, state: UserState) -> bool:
        return state.event_count >= self.min_events and self._mf.knows_user(user_id)

    def _dominant(
        self,
        rows: np.ndarray,
        features: dict[str, np.ndarray],
        evidence: dict[str, np.ndarray],
        bucket: int,
    ) -> list[str]:
        """Per ranked row, the component that contributed most (popularity on ties).

        Content and sequence count only where they have evidence: a high normalized
        score that merely means "not a category you disliked" is no reason.
        """
        if len(features) == 1:
            return [SOURCE_POPULARITY] * len(rows)
        weights = self._blend.as_dict(bucket)
        names = list(features)  # popularity first
        contributions = []
        for name in names:
            part = weights[name] * features[name][rows]
            if name in evidence:
                part = np.where(evidence[name][rows], part, 0.0)
            contributions.append(part)
        winner = np.argmax(np.vstack(contributions), axis=0)
        return [names[n] for n in winner.tolist()]

    def _explain(
        self,
        user_id: str,
        rows: np.ndarray,
        scores: np.ndarray,
        popularity: np.ndarray,
        sources: list[str],
        state: UserState | None,
        x: dict,
    ) -> list[RecommendedItem]:
        item_id_at = self._catalog.item_id_at
        item_ids = [item_id_at(row) for row in rows.tolist()]
        picked = dict(zip(item_ids, sources))
        collaborative = [r for r, s in zip(rows.tolist(), sources) if s == SOURCE_COLLABORATIVE]
        because = self._because(np.array(collaborative, dtype=np.intp), state)
        liked = self._liked_categories(
            user_id, [i for i, s in picked.items() if s == SOURCE_CONTENT], state
        )
        context_reason = self._keyed.describe(x) if SOURCE_CONTEXT in sources else ""
        recent = state.recent_items if state is not None else []
        purchased = set(state.purchased) if state is not None else set()
        items = []
        for row, item_id, source in zip(rows.tolist(), item_ids, sources):
            if source == SOURCE_CONTENT:
                reason = liked[item_id]
            elif source == SOURCE_COLLABORATIVE:
                reason = because[row]
            elif source == SOURCE_SEQUENCE:
                reason = self._after(item_id, recent, purchased)
            elif source == SOURCE_CONTEXT:
                reason = context_reason
            elif source == SOURCE_SEGMENT:
                reason = "popular with shoppers like you"
            elif source == SOURCE_FM:
                reason = self._fm_reason(user_id, item_id, x)
            else:
                reason = "popular right now" if popularity[row] > 0 else "available now"
            items.append(RecommendedItem(item_id, float(scores[row]), reason, source))
        return items

    def _after(self, item_id: str, recent: list[str], purchased: set[str]) -> str:
        """Reason of a sequence pick: the recent item it most often follows."""
        found = self._sequence.evidence(item_id, recent)
        if found is None:
            return "often viewed next"
        verb = "bought" if found[0] in purchased else "viewed"
        return f"often {verb} after {found[0]}"

    def _fm_reason(self, user_id: str, item_id: str, x: dict) -> str:
        """Reason of a factorization-machine pick: the context feature that spoke most."""
        for name, value in self._fm.explain(user_id, item_id, x):
            if value <= 0:
                break
            if name.startswith("x:"):
                key, _, setting = name[2:].partition("=")
                return f"picked for {setting}" if key == "device" else f"picked for this {key}"
            if name.startswith("t:daypart="):
                daypart = name.partition("=")[2]
                return "picked for tonight" if daypart == "night" else f"picked for this {daypart}"
            if name.startswith("t:"):
                return "picked for this time of day"
        return "matches your taste"

    def _liked_categories(
        self, user_id: str, item_ids: list[str], state: UserState | None
    ) -> dict[str, str]:
        """Reason of each content pick: ``more <category>: you viewed <item>``, naming the
        item's best-liked category and the user's most recent item in it."""
        category_of = {item: self._content.top_category(user_id, item) for item in item_ids}
        wanted = {c for c in category_of.values() if c is not None}
        evidence: dict[str, str] = {}
        categories_of = self._catalog.categories_of
        for recent in state.recent_items if state is not None and wanted else ():
            for category in wanted.intersection(categories_of(recent)):
                evidence.setdefault(category, recent)
            if len(evidence) == len(wanted):
                break
        purchased = set(state.purchased) if state is not None else set()
        reasons = {}
        for item, category in category_of.items():
            if category is None:  # liked through an attribute, not a category
                reasons[item] = "matches what you like"
            elif category in evidence:
                verb = "bought" if evidence[category] in purchased else "viewed"
                reasons[item] = f"more {category}: you {verb} {evidence[category]}"
            else:
                reasons[item] = f"because you like {category}"
        return reasons

    def _because(self, rows: np.ndarray, state: UserState | None) -> dict[int, str]:
        """Reason of each collaborative pick: the most similar of the user's recent items."""
        if len(rows) == 0:
            return {}
        recent = [item for item in (state.recent_items if state else ()) if item in self._catalog]
        if not recent:
            return {row: "matches your taste" for row in rows.tolist()}
        recent_rows = [self._catalog.index_of(item) for item in recent]
        similarity = self._mf.item_similarity(rows, recent_rows)
        best = similarity.argmax(axis=1)
        purchased = set(state.purchased)
        reasons = {}
        for row, j, sim in zip(rows.tolist(), best.tolist(), similarity.max(axis=1).tolist()):
            if sim <= 0:
                reasons[row] = "matches your taste"
            else:
                verb = "bought" if recent[j] in purchased else "viewed"
                reasons[row] = f"because you {verb} {recent[j]}"
        return reasons


def _bucket(event_count: int) -> int:
    """The learned blend's history bucket of a user with ``event_count`` events.

    >>> [_bucket(n) for n in (0, 1, 2, 3, 9, 10, 500)]
    [0, 1, 1, 2, 2, 3, 3]
    """
    bucket = 0
    for threshold in HISTORY_BUCKETS:
        if event_count >= threshold:
            bucket += 1
    return bucket


def _context_of(event: Event | None, clock: float | None, context: dict | None = None) -> dict:
    """The features the context-aware learners read: the context's string values and
    the time (the event's, else the latest event time seen)."""
    context = event.context if event is not None else context
    x = {key: value for key, value in (context or {}).items() if isinstance(value, str)}
    x["timestamp"] = event.timestamp if event is not None else clock
    return x


def _state_before(state: UserState, event: Event) -> UserState:
    """The parts of ``state`` the ranking reads, as they were before ``event`` (applied)."""
    before = UserState()
    before.event_count = max(0, state.event_count - 1)
    recent = state.recent_items
    before.recent_items = recent[1:] if recent and recent[0] == event.item_id else list(recent)
    purchased = state.purchased
    if event.event_type == "purchase" and purchased and purchased[-1] == event.item_id:
        purchased = purchased[:-1]
    before.purchased = list(purchased)
    before.last_context = state.last_context
    return before


def _normalized(scores: np.ndarray, mask: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Min-max scale ``scores`` to [0, 1] over the candidates in ``mask`` (0 if constant).

    ``out=scores`` scales in place: ranking a large catalog is dominated by allocating
    and touching catalog-sized temporaries, so the hot path avoids them. Non-finite
    scores among the candidates (a diverged learner) are neutralized to the candidates'
    finite minimum first; rows outside ``mask`` are never read by the ranking.
    """
    low = float(np.min(scores, where=mask, initial=np.inf))
    high = float(np.max(scores, where=mask, initial=-np.inf))
    if not (math.isfinite(low) and math.isfinite(high)) and mask.any():  # NaN fails too
        finite = np.isfinite(scores)
        floor = float(np.min(scores, where=mask & finite, initial=np.inf))
        scores = np.where(finite, scores, floor if math.isfinite(floor) else 0.0)
        out = None
        low = float(np.min(scores, where=mask, initial=np.inf))
        high = float(np.max(scores, where=mask, initial=-np.inf))
    if out is None:
        out = np.empty_like(scores)
    if not high > low:
        out.fill(0.0)
        return out
    np.subtract(scores, low, out=out)
    out *= 1.0 / (high - low)
    return out
