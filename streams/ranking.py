"""The recommender: the one object that learns from events and ranks the catalog.

The stream worker and offline replay both drive a :class:`Recommender`, so there is a
single implementation of "what does an event teach us" and "what do we show next".

Ranking treats the whole catalog as the candidate set and does everything with
vectorized numpy over catalog rows: a weighted blend of three scores, each min-max
normalized over the candidates,

* **content**: the user's time-decayed affinity for the item's categories
  (:class:`~streams.learners.CategoryAffinity`); it is meaningful after one event and
  scores new items by their category (item cold start);
* **collaborative**: the matrix-factorization score (:class:`~streams.learners.ImplicitMF`),
  which needs a few events per user before its latent vector means anything;
* **popularity**: time-decayed interaction weight; besides being the cold-start
  fallback it breaks ties inside a liked category, so its bestsellers come first,

then boolean masks for what must not be shown and ``argpartition`` for the top k.
Each item's ``source`` is the component that contributed most to its score, and its
``reason`` gives that component's evidence. Users with no history (and requests that
opt out of personalization) get popularity alone.
"""

from __future__ import annotations

import math

import numpy as np

from streams.catalog import Catalog
from streams.learners import CategoryAffinity, DecayedPopularity, ImplicitMF
from streams.records import Event, ItemUpdate, RecommendedItem
from streams.settings import Settings
from streams.state import UserState

__all__ = ["EVENT_WEIGHTS", "Recommender", "event_strength"]

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

SOURCE_CONTENT = "content"
SOURCE_COLLABORATIVE = "collaborative"
SOURCE_POPULARITY = "popularity"


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


class Recommender:
    """Learns from events and ranks the whole catalog for a user, with reasons.

    Parameters
    ----------
    settings
        Reads ``popularity_half_life_s``, ``n_factors`` and ``seed``.
    catalog
        The item index to share; a new one is created if omitted.
    min_events
        Users with fewer events than this get no collaborative (MF) score: their
        latent vector is still mostly its random initialization.
    content_min_events
        Users with fewer events than this get no content score. At 1, a user's first
        event already makes the next ranking category-aware.
    content_weight, mf_weight, popularity_weight
        Weights of the three min-max normalized scores in the blend (see
        ``tests/unit/test_quality.py`` for how they were chosen). Popularity must stay
        above 0 for the bestsellers of a liked category to rank first within it. A user
        without content affinity (e.g. a catalog without categories) gets the content
        weight moved to the MF score; users with no personalized component get
        popularity alone.
    n_negatives
        Negatives sampled per positive event by the MF learner.
    content_half_life_s
        Event-time half-life of the users' category affinities.
    content_attributes
        Item attributes (e.g. ``("brand",)``) learned as content features alongside
        the categories; none by default.

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
    'content+mf+pop:1'
    """

    def __init__(
        self,
        settings: Settings | None = None,
        catalog: Catalog | None = None,
        *,
        min_events: int = 3,
        content_min_events: int = 1,
        content_weight: float = 0.6,
        mf_weight: float = 0.1,
        popularity_weight: float = 0.3,
        n_negatives: int = 3,
        content_half_life_s: float = 1_800.0,
        content_attributes: tuple[str, ...] = (),
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.min_events = min_events
        self.content_min_events = content_min_events
        self.content_weight = content_weight
        self.mf_weight = mf_weight
        self.popularity_weight = popularity_weight
        self.n_negatives = n_negatives
        self.content_half_life_s = content_half_life_s
        self.content_attributes = content_attributes
        settings = Settings() if settings is None else settings
        self._catalog = Catalog() if catalog is None else catalog
        self._popularity = DecayedPopularity(settings.popularity_half_life_s, catalog=self._catalog)
        self._mf = ImplicitMF(
            n_factors=settings.n_factors,
            n_negatives=n_negatives,
            seed=settings.seed,
            catalog=self._catalog,
        )
        self._content = CategoryAffinity(
            content_half_life_s, attributes=content_attributes, catalog=self._catalog
        )
        self._n_learned = 0
        self._rating_sum = 0.0
        self._n_ratings = 0

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
    def n_learned(self) -> int:
        """Events that taught the learners something."""
        return self._n_learned

    def forget_user(self, user_id: str) -> None:
        """Remove the user from every learner that keeps per-user parameters.

        Popularity holds only item aggregates, so it has nothing of the user to erase.
        """
        self._mf.forget_user(user_id)
        self._content.forget_user(user_id)

    def adopt_users(self, other: "Recommender", wanted) -> int:
        """Take over from ``other`` (another worker's model) what it learned about the
        ``wanted`` users (a predicate), where this model knows nothing of them yet.

        Only portable per-user knowledge moves: content affinities are named features.
        Matrix-factorization user vectors do not: two independently trained models have
        unrelated latent spaces, so the user's vector is relearned from their next events.
        """
        return self._content.adopt_users(other._content, wanted)

    @property
    def model_version(self) -> str:
        """Strategy and number of learned events, e.g. ``"content+mf+pop:1234"``."""
        return f"content+mf+pop:{self._n_learned}"

    # -- catalog feed ------------------------------------------------------------------------

    def apply_item(self, item: ItemUpdate) -> None:
        """An upsert from the catalog feed (re-lists the item if it had been deleted)."""
        self._catalog.upsert(item)
        self._content.index_item(item.item_id)

    def remove_item(self, item_id: str) -> None:
        """A tombstone from the catalog feed: never recommended again unless re-listed."""
        self._catalog.remove(item_id)

    # -- learning ------------------------------------------------------------------------------

    def learn_one(self, event: Event, state: UserState | None = None) -> None:
        """Teach every learner one event.

        ``state`` is the user's state after the event; it is part of the signature so
        that a learner needing the user's history can have it, though none does yet.
        ``recommendation_request`` events, and events without an item, teach nothing.
        An item first seen here is registered in the catalog; a deleted one stays
        deleted. Positive events add popularity; both signs train the MF learner and
        the content affinities (a negative lowers the item's categories).
        """
        rating_mean = self._rating_sum / self._n_ratings if self._n_ratings else None
        strength = event_strength(event, rating_mean)
        if event.event_type == "rating" and event.value is not None and math.isfinite(event.value):
            self._rating_sum += event.value
            self._n_ratings += 1
        if strength is None:
            return
        self._catalog.ensure(event.item_id)
        x = {"timestamp": event.timestamp}
        if strength > 0:
            self._popularity.learn_one(event.user_id, event.item_id, strength, x)
        self._mf.learn_one(event.user_id, event.item_id, strength, x)
        self._content.learn_one(event.user_id, event.item_id, strength, x)
        self._n_learned += 1

    # -- ranking -------------------------------------------------------------------------------

    def recommend(
        self,
        user_id: str,
        state: UserState | None,
        context: dict | None = None,
        k: int = 10,
        personalized: bool = True,
    ) -> list[RecommendedItem]:
        """The top ``k`` items for ``user_id`` right now, best first, each with a reason.

        Never recommended: unavailable (or deleted) items, items the user purchased,
        and the user's recent items. Fewer than ``k`` come back only when fewer
        candidates remain. ``context`` is the trigger's context; it is accepted so
        every caller passes it, but does not influence the ranking yet.
        """
        n_items = len(self._catalog)
        if n_items == 0 or k <= 0:
            return []
        candidates = self._candidate_mask(state, n_items)
        n_candidates = int(np.count_nonzero(candidates))
        if n_candidates == 0:
            return []

        popularity = self._popularity.score_all(n_items)
        popular = _normalized(popularity, candidates)
        # Per component: its weighted normalized score, and where it counts as evidence.
        parts: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        if personalized and state is not None:
            if self._content_is_warm(user_id, state):
                content = self._content.score_all(user_id, n_items)
                evidence = content > 0
                parts[SOURCE_CONTENT] = (_normalized(content, candidates, out=content), evidence)
            if self._mf_is_warm(user_id, state):
                mf = self._mf.score_all(user_id, n_items)
                parts[SOURCE_COLLABORATIVE] = (_normalized(mf, candidates, out=mf), None)
        if parts:
            weights = {SOURCE_CONTENT: self.content_weight, SOURCE_COLLABORATIVE: self.mf_weight}
            if SOURCE_CONTENT not in parts:  # e.g. a catalog without categories
                weights[SOURCE_COLLABORATIVE] += self.content_weight
            popular *= self.popularity_weight
            blended = popular.copy()
            for name, (score, _) in parts.items():
                score *= weights[name]
                blended += score
        else:
            blended = popular
        np.copyto(blended, -np.inf, where=~candidates)

        k = min(k, n_candidates)
        top = np.argpartition(-blended, k - 1)[:k] if k < n_items else np.arange(n_items)
        top = top[np.lexsort((top, -blended[top]))]  # best first, ties by row: deterministic
        sources = self._dominant(top, popular, parts)
        return self._explain(user_id, top, blended, popularity, sources, state)

    def _content_is_warm(self, user_id: str, state: UserState) -> bool:
        return (
            self.content_weight > 0
            and state.event_count >= self.content_min_events
            and self._content.knows_user(user_id)
        )

    def _mf_is_warm(self, user_id: str, state: UserState) -> bool:
        return (
            self.mf_weight > 0
            and state.event_count >= self.min_events
            and self._mf.knows_user(user_id)
        )

    def _dominant(
        self,
        rows: np.ndarray,
        popular: np.ndarray,
        parts: dict[str, tuple[np.ndarray, np.ndarray | None]],
    ) -> list[str]:
        """Per ranked row, the component that contributed most (popularity on ties).

        Content counts only where the user's affinity is positive: a high normalized
        score that merely means "not a category you disliked" is no evidence.
        """
        if not parts:
            return [SOURCE_POPULARITY] * len(rows)
        names = [SOURCE_POPULARITY, *parts]
        contributions = [popular[rows]] + [
            score[rows] if evidence is None else np.where(evidence[rows], score[rows], 0.0)
            for score, evidence in parts.values()
        ]
        winner = np.argmax(np.vstack(contributions), axis=0)
        return [names[n] for n in winner.tolist()]

    def _candidate_mask(self, state: UserState | None, n_items: int) -> np.ndarray:
        mask = np.array(self._catalog.available_mask(), dtype=bool)
        if state is not None:
            index_of = self._catalog.index_of
            seen = [index_of(item) for item in (*state.purchased, *state.recent_items)]
            seen = [row for row in seen if row is not None and row < n_items]
            if seen:
                mask[seen] = False
        return mask

    def _explain(
        self,
        user_id: str,
        rows: np.ndarray,
        scores: np.ndarray,
        popularity: np.ndarray,
        sources: list[str],
        state: UserState | None,
    ) -> list[RecommendedItem]:
        item_id_at = self._catalog.item_id_at
        item_ids = [item_id_at(row) for row in rows.tolist()]
        collaborative = [r for r, s in zip(rows.tolist(), sources) if s == SOURCE_COLLABORATIVE]
        because = self._because(np.array(collaborative, dtype=np.intp), state)
        liked = self._liked_categories(
            user_id, [i for i, s in zip(item_ids, sources) if s == SOURCE_CONTENT], state
        )
        items = []
        for row, item_id, source in zip(rows.tolist(), item_ids, sources):
            if source == SOURCE_CONTENT:
                reason = liked[item_id]
            elif source == SOURCE_COLLABORATIVE:
                reason = because[row]
            else:
                reason = "popular right now" if popularity[row] > 0 else "available now"
            items.append(RecommendedItem(item_id, float(scores[row]), reason, source))
        return items

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


def _normalized(scores: np.ndarray, mask: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Min-max scale ``scores`` to [0, 1] over the candidates in ``mask`` (0 if constant).

    ``out=scores`` scales in place: ranking a large catalog is dominated by allocating
    and touching catalog-sized temporaries, so the hot path avoids them.
    """
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
