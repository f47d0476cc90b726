"""From blended scores to the served list: filter, controls, diversify, explore, explain.

:class:`Selector` is the part of :class:`~streams.ranking.Recommender` after scoring. The
scoring part hands it a :class:`Request`: the blended score of every catalog row, the
mask of rows it allows (available, not purchased, not just seen), raw popularity, the
personalized components of the blend, and a callback naming each item's source and
reason. The selector then

1. **filters** business rules (``MICROMOMENT_EXCLUDE_CATEGORIES`` and
   ``MICROMOMENT_EXCLUDE_ATTRIBUTES``) and the user's muted items and categories;
2. applies the user's **controls** (personalization and novelty dials,
   :mod:`streams.rank.controls`);
3. **diversifies** the best ``pool_size`` items with MMR over categories and item
   embeddings (:mod:`streams.rank.diversity`, ``MICROMOMENT_DIVERSITY``);
4. **explores** (only for a list served with a ``recommendation_id``, whose feedback can
   be learned from): the contextual bandit's pool of other candidates, Poisson-sampled
   into the list with exact propensities (:mod:`streams.rank.explore`,
   :mod:`streams.rank.bandit`, ``MICROMOMENT_EXPLORATION_RATE``); the randomness is
   seeded by ``(seed, recommendation_id)``, so a re-emitted trigger gets the same list;
5. **explains** every item with a distinct sentence (:mod:`streams.rank.explain`);
6. **remembers** the impression for reward attribution (:mod:`streams.rank.feedback`).

It also keeps the last request's arrays so :meth:`Selector.challengers` can say, at no
extra scoring cost, what other strategies would have shown for it.
"""

from __future__ import annotations

import random
import typing
from dataclasses import dataclass

import numpy as np

from streams.catalog import Catalog
from streams.learners._common import stable_hash
from streams.rank.bandit import LinearUCB
from streams.rank.controls import (
    apply_controls,
    novelty_of,
    novelty_shift,
    popularity_level,
)
from streams.rank.diversity import category_similarity, mmr
from streams.rank.explain import Facts, distinct_reasons
from streams.rank.explore import (
    exploit_propensities,
    inclusion_probabilities,
    sample_slate,
)
from streams.rank.feedback import Impression, ImpressionLog, parse_reward_weights
from streams.rank.items import ItemIndex
from streams.records import Event, RecommendedItem, UserControls
from streams.settings import Settings
from streams.state import UserState

__all__ = ["CHALLENGERS", "SOURCE_EXPLORE", "Request", "Selector"]

SOURCE_EXPLORE = "explore"
#: The strategies :meth:`Selector.challengers` evaluates beside the champion.
CHALLENGERS: tuple[str, ...] = ("popularity", "no-explore", "no-diversity")


@dataclass(slots=True)
class Request:
    """One ranking request, as the scoring part leaves it.

    ``blended`` is modified in place (controls, masks). ``personal()`` returns the
    weighted sum of the personalized components in ``blended``. ``describe(rows)``
    returns the scoring part's :class:`RecommendedItem` (source, reason) for exploit
    rows. ``similarity(a, b)``, if given, is an item-embedding cosine similarity matrix.
    ``explain=False`` leaves every reason empty (replays: faster).
    """

    user_id: str
    state: UserState | None
    context: dict | None
    k: int
    blended: np.ndarray
    candidates: np.ndarray
    popularity: np.ndarray
    personal: typing.Callable[[], np.ndarray]
    describe: typing.Callable[[np.ndarray], list[RecommendedItem]]
    similarity: typing.Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    controls: UserControls | None = None
    recommendation_id: str | None = None
    explore: bool = True
    personalized: bool = True
    explain: bool = True


class Selector:
    """Selection and the feedback loop of one recommender (pickled with it).

    Parameters
    ----------
    settings
        Reads ``exploration_rate``, ``diversity``, ``exclude_categories``,
        ``exclude_item_attributes``, ``reward_weights``, ``attribution_window_s``,
        ``max_pending_impressions`` and ``seed``.
    catalog
        The catalog whose rows the score arrays follow.
    pool_size
        Items (at least ``4 k``) re-ranked by MMR.
    embedding_weight
        Weight of the embedding cosine in the MMR similarity (the rest: categories).
    novelty_strength
        Largest novelty shift, relative to the best score (see ``streams.rank.controls``).
    alpha, temperature
        The bandit's confidence width, and the softmax temperature (in standard
        deviations of the pool's upper bounds) of the exploration probabilities.
    explore_block
        Other candidates (besides the relevance pool) the bandit scores per request
        (see :meth:`_explore_candidates`).
    new_item_s
        An item the catalog feed listed less than this many seconds (event time) ago is
        "just listed" in explanations. Items listed before the first event (the initial
        catalog) never are.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        catalog: Catalog | None = None,
        *,
        pool_size: int = 50,
        embedding_weight: float = 0.3,
        novelty_strength: float = 1.0,
        alpha: float = 1.0,
        temperature: float = 1.0,
        new_item_s: float = 259_200.0,
        explore_block: int = 1_000,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.pool_size = pool_size
        self.embedding_weight = embedding_weight
        self.novelty_strength = novelty_strength
        self.alpha = alpha
        self.temperature = temperature
        self.new_item_s = new_item_s
        self.explore_block = explore_block
        settings = Settings() if settings is None else settings
        self._catalog = Catalog() if catalog is None else catalog
        self._rate = float(settings.exploration_rate)
        self._diversity = float(settings.diversity)
        self._seed = settings.seed
        self._index = ItemIndex(self._catalog, settings.exclude_categories,
                                settings.exclude_item_attributes)
        self._bandit = LinearUCB(alpha=alpha)
        self._rewards = parse_reward_weights(settings.reward_weights)
        self._log = ImpressionLog(settings.attribution_window_s * 1_000.0,
                                  settings.max_pending_impressions)
        self._exposure = np.zeros(64, dtype=np.float64)
        self._listed_at = np.full(64, np.nan)  # event time the feed first listed each row
        self._clock: float | None = None
        self._counts = dict.fromkeys(
            ("impressions", "explored_items", "rewards", "reward_upgrades", "resolved",
             "resolved_early", "zero_rewards"), 0)
        self._reward_sum = 0.0
        self._last: dict | None = None  # the last request, for challengers; never pickled

    def __getstate__(self) -> dict:
        state = {name: getattr(self, name) for name in self.__dict__}
        state["_last"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    # -- read-only ---------------------------------------------------------------------------

    @property
    def bandit(self) -> LinearUCB:
        return self._bandit

    @property
    def items(self) -> ItemIndex:
        return self._index

    @property
    def n_pending(self) -> int:
        """Impressions awaiting feedback (bounded by ``max_pending_impressions``)."""
        return len(self._log)

    def stats(self) -> dict[str, float]:
        """Counters of the feedback loop, for metrics: impressions remembered, explored
        items served, rewards attributed (and upgrades, e.g. click then purchase),
        impressions resolved (early: evicted over the cap), zero rewards, pending."""
        out: dict[str, float] = dict(self._counts)
        out["reward_sum"] = self._reward_sum
        out["pending"] = len(self._log)
        out["bandit_observations"] = self._bandit.n_learned
        return out

    # -- hooks from the recommender ----------------------------------------------------------

    def index_item(self, item_id: str) -> None:
        """The catalog feed changed ``item_id``: re-read its categories and attributes."""
        self._index.index_item(item_id)
        self._last = None
        row = self._catalog.index_of(item_id)
        if row is None or self._clock is None:
            return
        self._listed_at = _grown(self._listed_at, row + 1, np.nan)
        if np.isnan(self._listed_at[row]):
            self._listed_at[row] = self._clock

    def is_new(self, row: int) -> bool:
        """Whether the item at ``row`` was listed less than ``new_item_s`` ago."""
        if row >= len(self._listed_at) or self._clock is None:
            return False
        listed = self._listed_at[row]
        return bool(not np.isnan(listed) and self._clock - listed <= self.new_item_s * 1_000.0)

    def forget_user(self, user_id: str) -> int:
        """Drop the user's pending impressions (not learned from); return how many."""
        self._last = None
        return self._log.pop_user(user_id)

    def learn_one(self, event: Event) -> None:
        """Resolve impressions expired by ``event``'s time; attribute its reward if any."""
        self._last = None
        t = float(event.timestamp)
        self._clock = t if self._clock is None else max(self._clock, t)
        self.close_expired(t)
        weight = self._rewards.get(event.event_type)
        if weight is None or event.recommendation_id is None:
            return
        row = self._catalog.index_of(event.item_id) if event.item_id is not None else None
        found = self._log.find(event.recommendation_id, event.user_id, row, t)
        if found is None:
            return
        impression, position = found
        old = float(impression.rewards[position])
        if weight <= old:
            return  # counted once per impression and item
        impression.rewards[position] = weight
        self._reward_sum += weight - old
        if impression.learned[position]:
            self._bandit.add_reward(impression.context, impression.features[position], weight - old)
            self._counts["reward_upgrades"] += 1
        else:
            self._learn_item(impression, position)
            self._counts["rewards"] += 1

    def close_expired(self, now_ms: float) -> int:
        """Resolve impressions whose attribution window closed before ``now_ms`` (event
        time): items without feedback are zero rewards. Returns how many were resolved."""
        resolved = 0
        for impression in self._log.expired(float(now_ms)):
            self._resolve(impression)
            resolved += 1
        return resolved

    def _resolve(self, impression: Impression, early: bool = False) -> None:
        for position in np.flatnonzero(~impression.learned).tolist():
            self._learn_item(impression, position)
            self._counts["zero_rewards"] += 1
        self._counts["resolved_early" if early else "resolved"] += 1

    def _learn_item(self, impression: Impression, position: int) -> None:
        self._bandit.learn_one(impression.context, impression.features[position],
                               float(impression.rewards[position]))
        impression.learned[position] = True
        row = int(impression.rows[position])
        self._exposure = _grown(self._exposure, row + 1, 0.0)
        self._exposure[row] += 1.0

    # -- selection ---------------------------------------------------------------------------

    def allowed(self, candidates: np.ndarray, controls: UserControls | None) -> np.ndarray:
        """``candidates`` minus business rules and the user's muted items and categories."""
        n_rows = len(candidates)
        allowed = candidates & ~self._index.ruled_out(n_rows)
        if controls is not None:
            if controls.muted_categories:
                allowed &= ~self._index.in_categories(controls.muted_categories, n_rows)
            index_of = self._catalog.index_of
            for item in controls.muted_items:
                row = index_of(item)
                if row is not None and row < n_rows:
                    allowed[row] = False
        return allowed

    def select(self, request: Request) -> list[RecommendedItem]:
        """The served list for ``request`` (see the module docstring for the steps)."""
        blended, n_rows = request.blended, len(request.blended)
        allowed = self.allowed(request.candidates, request.controls)
        facts = _RequestFacts(self, request, allowed)
        self._exposure = _grown(self._exposure, n_rows, 0.0)
        apply_controls(blended, request.personal, request.controls, allowed,
                       novelty=lambda shift: novelty_of(facts.unseen_all(), popularity_level(
                           request.popularity, allowed), shift),
                       strength=self.novelty_strength)
        np.copyto(blended, -np.inf, where=~allowed)
        n_allowed = int(np.count_nonzero(allowed))
        k = min(request.k, n_allowed)
        if k <= 0:
            self._remember_request(request, allowed, np.empty(0, dtype=np.intp))
            return []
        pool = _top(blended, min(n_allowed, max(self.pool_size, 4 * k)))
        facts.top_score = float(blended[pool[0]])
        exploit = pool[self._diversify(pool, blended, k, request.similarity)]
        self._remember_request(request, allowed, exploit)

        rows, explored, propensity = exploit, [False] * k, np.ones(k)
        context = self._bandit.context_vector(request.context, facts.time_ms)
        if (request.explore and request.recommendation_id is not None and self._rate > 0
                and k >= 2):
            other_rows = self._explore_candidates(request, allowed, pool, exploit)
            if len(other_rows):
                other_features = facts.features(other_rows)
                upper = self._bandit.upper_bounds(context, other_features)
                upper += _tie_breaker(request.user_id, other_rows)
                picked = _top(upper, min(k - 1, len(other_rows)))  # positions in other_rows
                pi = inclusion_probabilities(upper[picked], self._rate * k, self.temperature)
                rng = random.Random(f"{self._seed}|{request.recommendation_id}")
                slots, explored = sample_slate(k, pi, rng)
                kept = exploit_propensities(k, pi)
                pool_rows = other_rows[picked]
                rows = np.array([pool_rows[s] if e else exploit[s]
                                 for s, e in zip(slots, explored)], dtype=np.intp)
                propensity = np.array([pi[s] if e else kept[s] for s, e in zip(slots, explored)])

        exploit_rows = np.array([r for r, e in zip(rows.tolist(), explored) if not e],
                                dtype=np.intp)
        scored = iter(request.describe(exploit_rows))
        listed = []
        for row, is_explored in zip(rows.tolist(), explored):
            if is_explored:
                listed.append((row, SOURCE_EXPLORE, "", float(blended[row])))
            else:
                item = next(scored)
                listed.append((row, item.source, item.reason, item.score))
        facts.listed = rows.tolist()
        if request.explain:
            reasons = distinct_reasons([facts.facts(row, source, base)
                                        for row, source, base, _ in listed])
        else:
            reasons = [""] * len(listed)
        item_id_at = self._catalog.item_id_at
        items = [RecommendedItem(item_id_at(row), score, reason, source, float(p))
                 for (row, source, _, score), reason, p in zip(listed, reasons, propensity)]
        if request.recommendation_id is not None:
            self._remember_impression(request, rows, context, facts)
            self._counts["explored_items"] += sum(explored)
        return items

    def _explore_candidates(self, request: Request, allowed: np.ndarray, pool: np.ndarray,
                            exploit: np.ndarray) -> np.ndarray:
        """Rows the bandit may explore: the relevance pool's rest and the allowed items in a
        block of ``explore_block`` catalog rows, placed by the user and their event count.

        Scoring every candidate would cost catalog-sized passes per request; the block
        moves through the catalog as the user acts, so over time every item gets its
        chance. It depends only on the request (not on the random draw), so the
        propensities stay exact.
        """
        n_rows = len(allowed)
        if n_rows <= self.explore_block:
            chosen = allowed.copy()
        else:
            state = request.state
            position = f"{request.user_id}|{state.event_count if state is not None else 0}"
            start = stable_hash(position) % n_rows
            end = start + self.explore_block
            chosen = np.zeros(n_rows, dtype=bool)
            chosen[start:end] = True
            chosen[: max(0, end - n_rows)] = True  # the block wraps around
            chosen[pool] = True
            chosen &= allowed
        chosen[exploit] = False
        return np.flatnonzero(chosen)

    def _diversify(self, pool: np.ndarray, blended: np.ndarray, k: int,
                   similarity: typing.Callable | None) -> np.ndarray:
        if self._diversity <= 0 or k < 2:
            return np.arange(k)
        n_rows = len(blended)
        sim = category_similarity(self._index.codes(n_rows)[pool])
        if similarity is not None and self.embedding_weight > 0:
            embedded = np.clip(similarity(pool, pool), 0.0, 1.0)
            sim = (1.0 - self.embedding_weight) * sim + self.embedding_weight * embedded
        return mmr(blended[pool], sim, k, self._diversity)

    def _remember_impression(self, request: Request, rows: np.ndarray, context: np.ndarray,
                             facts: _RequestFacts) -> None:
        """Hold the served list with the features each item was judged by (the same the
        bandit saw when it drew the explored ones: nothing changed in between)."""
        rid = request.recommendation_id
        if rid in self._log:
            return
        features = facts.features(rows)
        impression = Impression(
            user_id=request.user_id, created_ms=facts.time_ms if facts.time_ms is not None
            else 0.0, rows=rows.astype(np.int32), context=context.astype(np.float32),
            features=features.astype(np.float32), rewards=np.zeros(len(rows), np.float32),
            learned=np.zeros(len(rows), dtype=bool))
        self._counts["impressions"] += 1
        for old in self._log.remember(rid, impression):
            self._resolve(old, early=True)

    # -- challengers -------------------------------------------------------------------------

    def _remember_request(self, request: Request, allowed: np.ndarray, exploit: np.ndarray
                          ) -> None:
        self._last = {"key": _request_key(request.user_id, request.state, request.context,
                                          request.k, request.controls, request.personalized),
                      "allowed": allowed, "blended": request.blended,
                      "popularity": request.popularity, "exploit": exploit, "k": request.k}

    def has_request(self, user_id: str, state: UserState | None, context: dict | None, k: int,
                    controls: UserControls | None, personalized: bool = True) -> bool:
        """Whether the last ranked request is this one (so challengers reuse its scores)."""
        return self._last is not None and self._last["key"] == _request_key(
            user_id, state, context, k, controls, personalized)

    def challengers(self) -> dict[str, list[str]]:
        """Item ids each challenger would have shown for the last ranked request.

        ``popularity``: the most popular allowed items; ``no-explore``: the champion
        without exploration; ``no-diversity``: the champion's scores in plain order.
        Same filters and controls as the champion; nothing is remembered or drawn.
        """
        last = self._last
        if last is None:
            return {name: [] for name in CHALLENGERS}
        n_rows = len(last["allowed"])
        allowed = last["allowed"] & self._catalog.available_mask()[:n_rows]
        k = min(last["k"], int(np.count_nonzero(allowed)))
        item_id_at = self._catalog.item_id_at
        popular = np.where(allowed, last["popularity"][:n_rows], -np.inf)
        relevance = np.where(allowed, last["blended"], -np.inf)
        lists = {
            "popularity": _top(popular, k),
            "no-explore": [r for r in last["exploit"].tolist() if allowed[r]],
            "no-diversity": _top(relevance, k),
        }
        return {name: [item_id_at(int(r)) for r in rows] for name, rows in lists.items()}


class _RequestFacts:
    """Per-request facts about items, each computed once and only when needed."""

    def __init__(self, selector: Selector, request: Request, allowed: np.ndarray) -> None:
        self.selector = selector
        self.request = request
        self.allowed = allowed
        self.n_rows = len(allowed)
        state = request.state
        context = request.context or {}
        t = context.get("timestamp")
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            self.time_ms: float | None = float(t)
        elif state is not None and state.last_seen:
            self.time_ms = float(state.last_seen)
        else:
            self.time_ms = selector._clock
        index_of = selector._catalog.index_of
        history = (*state.recent_items, *state.purchased) if state is not None else ()
        self.history_rows = [r for r in (index_of(i) for i in history) if r is not None]
        self._seen_flags: np.ndarray | None = None
        self._seen_codes: set[int] | None = None
        self._unseen_all: np.ndarray | None = None
        self._evidence: dict[str, tuple] | None = None
        self._ranked: np.ndarray | None = None
        self._top_level: float | None = None
        self._top_popularity: float | None = None
        self._similar_to_recent: dict[int, tuple] | None = None
        self.listed: list[int] = []  # rows of the served list, once known
        self.top_score: float | None = None  # the best allowed blended score, once known
        self._members: dict[str, np.ndarray] = {}

    def seen_flags(self) -> np.ndarray:
        if self._seen_flags is None:
            self._seen_flags = self.selector._index.category_flags_of_rows(
                self.history_rows, self.n_rows)
        return self._seen_flags

    def unseen_all(self) -> np.ndarray:
        """Per row: the item has categories, none of which the user engaged with."""
        if self._unseen_all is None:
            index = self.selector._index
            codes = index.codes(self.n_rows)
            has = codes[:, 0] >= 0  # codes are packed from the left
            self._unseen_all = has & ~index.any_flagged(self.seen_flags(), self.n_rows)
        return self._unseen_all

    def unseen(self, rows: np.ndarray) -> np.ndarray:
        """:meth:`unseen_all` for some rows only."""
        if self._unseen_all is not None:
            return self._unseen_all[rows]
        index = self.selector._index
        has = index.codes(self.n_rows)[rows, 0] >= 0
        return has & ~index.any_flagged(self.seen_flags(), self.n_rows, rows)

    def unseen_row(self, row: int) -> bool:
        """:meth:`unseen_all` for one row, in plain Python (a few codes per item)."""
        if self._seen_codes is None:
            self._seen_codes = set(np.flatnonzero(self.seen_flags()).tolist())
        codes = [c for c in self.selector._index.codes(self.n_rows)[row].tolist() if c >= 0]
        return bool(codes) and self._seen_codes.isdisjoint(codes)

    def features(self, rows: np.ndarray) -> np.ndarray:
        """The bandit's candidate features (``CANDIDATE_FEATURES``) of ``rows``."""
        request = self.request
        if self._top_level is None:
            top = self.top_score if self.top_score is not None else float(
                np.max(request.blended, initial=-np.inf))  # -inf outside ``allowed`` by now
            self._top_level = top if np.isfinite(top) and top > 0 else 1.0
            top_pop = float(np.max(request.popularity, initial=0.0))
            self._top_popularity = float(np.log1p(top_pop)) if np.isfinite(top_pop) else 0.0
        out = np.empty((len(rows), 6))
        out[:, 0] = 1.0
        np.clip(request.blended[rows] * (1.0 / self._top_level), 0.0, 1.0, out=out[:, 1])
        popularity = np.fmax(request.popularity[rows], 0.0)  # fmax: NaN -> 0
        if self._top_popularity:
            np.clip(np.log1p(popularity) * (1.0 / self._top_popularity), 0.0, 1.0, out=out[:, 2])
        else:
            out[:, 2] = 0.0
        out[:, 3] = self.unseen(rows)
        out[:, 4] = 1.0 / np.sqrt(1.0 + self.selector._exposure[rows])
        out[:, 5] = popularity == 0
        return out

    def evidence(self) -> dict[str, tuple]:
        """Category -> the user's recent items in it, most recent first, with verbs."""
        if self._evidence is None:
            state = self.request.state
            out: dict[str, list] = {}
            if state is not None:
                purchased = set(state.purchased)
                categories_of = self.selector._catalog.categories_of
                for item in state.recent_items:
                    verb = "bought" if item in purchased else "viewed"
                    for category in categories_of(item):
                        out.setdefault(category, []).append((verb, item))
            self._evidence = {c: tuple(v) for c, v in out.items()}
        return self._evidence

    def ranks(self, row: int, category: str | None) -> tuple[int | None, int | None]:
        popularity = self.request.popularity
        value = float(popularity[row])
        if not value > 0:
            return None, None
        if self._ranked is None:
            self._ranked = np.where(self.allowed, popularity, -np.inf)
        overall = 1 + int(np.count_nonzero(self._ranked > value))
        in_category = None
        if category is not None:
            members = self._members.get(category)
            if members is None:
                members = self._members[category] = self._ranked[
                    self.selector._index.in_categories((category,), self.n_rows)]
            in_category = 1 + int(np.count_nonzero(members > value))
        return in_category, overall

    def facts(self, row: int, source: str, base: str) -> Facts:
        index = self.selector._index
        categories = index.categories_at(row)
        evidence = self.evidence()
        liked = next((c for c in categories if c in evidence), None)
        category = liked or (categories[0] if categories else None)
        similar = None
        if self.request.similarity is not None and self.request.state is not None:
            similar = lambda row=row: self._similar(row)
        return Facts(
            item_id=self.selector._catalog.item_id_at(row), source=source, base=base,
            category=category, liked=liked, evidence=evidence.get(liked, ()) if liked else (),
            new_item=self.selector.is_new(row), unseen=self.unseen_row(row),
            undiscovered=not float(self.request.popularity[row]) > 0,
            asked_new=novelty_shift(self.request.controls) > 0,
            similar=similar, ranks=lambda row=row, category=category: self.ranks(row, category))

    def _similar(self, row: int) -> tuple[tuple[str, str], ...]:
        """The user's recent items by embedding similarity to ``row`` (positive only);
        computed for the whole served list at the first call."""
        if self._similar_to_recent is None:
            self._similar_to_recent = {}
            state = self.request.state
            index_of = self.selector._catalog.index_of
            recent = [(i, index_of(i)) for i in state.recent_items]
            recent = [(i, r) for i, r in recent if r is not None]
            rows = self.listed or [row]
            if recent:
                sims = self.request.similarity(np.array(rows), np.array([r for _, r in recent]))
                purchased = set(state.purchased)
                for listed_row, line in zip(rows, sims):
                    order = np.argsort(-line, kind="stable").tolist()
                    self._similar_to_recent[listed_row] = tuple(
                        ("bought" if recent[j][0] in purchased else "viewed", recent[j][0])
                        for j in order if line[j] > 0)
        return self._similar_to_recent.get(row, ())


def _grown(array: np.ndarray, needed: int, fill: float) -> np.ndarray:
    """``array`` with at least ``needed`` entries (capacity doubles), new ones ``fill``."""
    if len(array) >= needed:
        return array
    capacity = max(len(array), 1)
    while capacity < needed:
        capacity *= 2
    bigger = np.full(capacity, fill, dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest ``scores``, best first, ties by index."""
    if n <= 0:
        return np.empty(0, dtype=np.intp)
    if n < len(scores):
        top = np.argpartition(-scores, n - 1)[:n]  # (faster than kth=len-n on many ties)
    else:
        top = np.arange(len(scores))
    return top[np.lexsort((top, -scores[top]))]


def _tie_breaker(user_id: str, rows: np.ndarray) -> np.ndarray:
    """A tiny per-user, per-item offset (below 1e-9): items the bandit cannot tell apart
    (the same features, as in a catalog's long tail) are explored in a different order
    for each user instead of always the lowest rows first. Deterministic, so the
    propensities stay exact."""
    mixed = (rows.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             + np.uint64(stable_hash(user_id))) >> np.uint64(40)
    return mixed.astype(np.float64) * (1e-9 / 2.0**24)


def _request_key(user_id: str, state: UserState | None, context: dict | None, k: int,
                 controls: UserControls | None, personalized: bool) -> tuple:
    context_key = tuple(sorted((str(a), str(b)) for a, b in (context or {}).items()))
    state_key = (id(state), state.event_count, state.last_seen) if state is not None else None
    return (user_id, state_key, context_key, k, controls, personalized)
