"""The test-then-learn (prequential) loop: score each interaction before learning it.

For every logged event, in timestamp order:

1. read the user's state as it was *before* the event (the ``user_state`` dict);
2. if the event is a **test target** (below), ask the pipeline's own
   :class:`~streams.ranking.Recommender` for the top K for that user — the hybrid
   (``personalized=True``), its non-personalized path (the **popularity** baseline) —
   and draw K items uniformly from the same candidates (the seeded **random**
   baseline); if the recommender can predict ratings (``predict_rating``, optional),
   predict this rating too;
3. hand the event's record bytes to :meth:`Pipeline.process_event
   <streams.pipeline.Pipeline.process_event>` with the state table as a plain dict and
   a clock that reads the event's own timestamp — the worker's code path: decode,
   validate, dedupe, update state, learn — and store the new state;
4. count the scores only if the pipeline applied the event (an event it dead-letters
   or drops as a duplicate is not a target: the worker would not learn it either).

So no recommendation is ever scored on an event the model has already learned.

**Test targets** are the interactions a recommendation could have anticipated: an
event with an item, of a positive type (view, click, add_to_cart, purchase, like,
dwell, rating — but not a rating below ``positive_threshold``, when one is given, and
never a dislike), on an item the recommender would not filter out anyway — not one of
the user's purchases or (unless ``exclude_recent`` is 0) recent items (a re-rating, a
second view; :meth:`Recommender.excludes <streams.ranking.Recommender.excludes>`) and
not an item the catalog marks unavailable. Skipped events are counted by reason; they are still
learned. An item nobody has mentioned yet (not in the catalog) stays a target: no
strategy can recommend it, and ``cold_targets`` says how many such misses are built in.

Per strategy the scores are HR@K, NDCG@K and MRR (truncated at K) over the targets,
and coverage, exposure Gini and novelty of the lists shown at the targets. HR@K is also
broken down by user history (``new``: fewer than ``new_user_events`` prior events,
``returning`` otherwise) and by an optional group column of the log.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import orjson

from streams.pipeline import Pipeline, RawRecord
from streams.ranking import Recommender
from streams.replay import metrics
from streams.replay.loaders import LogEvent
from streams.settings import Settings
from streams.state import UserState

__all__ = [
    "POSITIVE_TYPES",
    "NEW_USER_EVENTS",
    "STRATEGIES",
    "replay_settings",
    "StrategyScores",
    "ReplayResult",
    "Prequential",
    "EventClock",
    "settings_summary",
]

#: Event types that express interest in their item (``dislike`` and
#: ``recommendation_request`` do not; ratings are judged by the threshold).
POSITIVE_TYPES = frozenset({"view", "click", "add_to_cart", "purchase", "like", "dwell", "rating"})
#: Users with fewer prior events than this are "new" in the per-group breakdown.
NEW_USER_EVENTS = 5
#: The scored strategies, the pipeline's hybrid first.
STRATEGIES = ("hybrid", "popularity", "random")


def replay_settings(base: Settings | None = None, *, k: int = 10, seed: int | None = None) -> Settings:
    """The worker's settings, adjusted for replaying an old log.

    No trigger types (the replay asks for its own recommendation before each event, so
    ``process_event`` must not rank a second time), no lower bound on timestamps (logs
    are old; the clock is the event's own time), ``top_k`` = ``k``, and the learned blend
    steps on every positive event (``blend_every`` 1: every event follows its own
    ranking, whose scores the step reuses, so it costs no extra scoring; the worker
    samples every 16th by default).

    >>> s = replay_settings(Settings(), k=5, seed=1)
    >>> s.trigger_event_types, s.min_timestamp_ms, s.top_k, s.seed, s.blend_every
    (frozenset(), 0, 5, 1, 1)
    """
    base = Settings() if base is None else base
    overrides: dict[str, Any] = {"trigger_event_types": frozenset(), "min_timestamp_ms": 0,
                                 "top_k": k, "blend_every": 1}
    if seed is not None:
        overrides["seed"] = seed
    return base.with_overrides(**overrides)


@dataclass
class StrategyScores:
    """Running scores of one strategy: a 0/1 hit per target, sums, and exposure counts.

    >>> s = StrategyScores()
    >>> s.add(["a", "b"], "b", k=2), s.add(["a", "c"], "z", k=2)
    (True, False)
    >>> s.targets, s.hit_rate, s.mrr, dict(s.exposures)
    (2, 0.5, 0.25, {'a': 2, 'b': 1, 'c': 1})
    """

    hits: bytearray = field(default_factory=bytearray)
    ndcg_sum: float = 0.0
    rr_sum: float = 0.0
    exposures: Counter = field(default_factory=Counter)

    def add(self, recommended: list[str], target: str, k: int) -> bool:
        position = metrics.rank_of(recommended, target, k)
        hit = position is not None
        self.hits.append(hit)
        if hit:
            self.ndcg_sum += 1.0 / math.log2(position + 2)
            self.rr_sum += 1.0 / (position + 1)
        self.exposures.update(recommended[:k])
        return hit

    @property
    def targets(self) -> int:
        return len(self.hits)

    @property
    def n_hits(self) -> int:
        return sum(self.hits)

    @property
    def hit_rate(self) -> float:
        return self.n_hits / self.targets if self.hits else 0.0

    @property
    def ndcg(self) -> float:
        return self.ndcg_sum / self.targets if self.hits else 0.0

    @property
    def mrr(self) -> float:
        return self.rr_sum / self.targets if self.hits else 0.0

    def summary(self, k: int, catalog_size: int, users_per_item: dict[str, int],
                n_users: int) -> dict[str, float | int]:
        return {
            f"hr@{k}": self.hit_rate,
            f"ndcg@{k}": self.ndcg,
            "mrr": self.mrr,
            "coverage": metrics.catalog_coverage(self.exposures, catalog_size),
            "gini": metrics.exposure_gini(self.exposures, catalog_size),
            "novelty": metrics.novelty(self.exposures, users_per_item, n_users),
            "targets": self.targets,
        }


@dataclass
class ReplayResult:
    """Everything a replay measured; :meth:`to_json` is what ``--json`` writes."""

    dataset: str
    k: int
    events: int
    applied: int
    duplicates: int
    dead_letters: Counter
    skipped: Counter
    cold_targets: int
    scores: dict[str, StrategyScores]
    groups: dict[str, dict[str, list[int]]]  # name -> value -> [targets, hits per strategy]
    catalog_size: int
    n_users: int
    users_per_item: dict[str, int]
    rating_predictions: list[tuple[float, float]] | None
    seconds: float
    settings: dict[str, Any]
    invalid_items: int = 0
    rating_events: int = 0

    @property
    def targets(self) -> int:
        return self.scores["hybrid"].targets

    def strategy(self, name: str) -> dict[str, float | int]:
        return self.scores[name].summary(self.k, self.catalog_size, self.users_per_item, self.n_users)

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "dataset": self.dataset,
            "events": self.events,
            "k": self.k,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "dead_lettered": sum(self.dead_letters.values()),
            "dead_letters": dict(self.dead_letters),
            "targets": self.targets,
            "skipped": dict(self.skipped),
            "cold_targets": self.cold_targets,
            "catalog_size": self.catalog_size,
            "users": self.n_users,
            "metrics": self.strategy("hybrid"),
            "baselines": {name: self.strategy(name) for name in STRATEGIES[1:]},
            "groups": self.groups_json(),
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events / self.seconds, 1) if self.seconds > 0 else None,
            "settings": self.settings,
        }
        if self.invalid_items:
            result["invalid_items"] = self.invalid_items
        if self.rating_predictions is not None and self.rating_events:  # a log with ratings
            predicted = [p for p, _ in self.rating_predictions]
            actual = [a for _, a in self.rating_predictions]
            result["metrics"]["rated"] = len(predicted)
            if predicted:
                result["metrics"]["mae"] = metrics.mae(predicted, actual)
                result["metrics"]["rmse"] = metrics.rmse(predicted, actual)
        return result

    def groups_json(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for name, values in self.groups.items():
            out[name] = {}
            for value, counts in sorted(values.items()):
                targets = counts[0]
                out[name][value] = {
                    "targets": targets,
                    f"hr@{self.k}": {s: (counts[1 + i] / targets if targets else 0.0)
                                     for i, s in enumerate(STRATEGIES)},
                }
        return out


class EventClock:
    """The pipeline's clock during a replay: the time of the event being processed."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class Prequential:
    """Drives one :class:`~streams.pipeline.Pipeline` over a log, test-then-learn.

    Parameters
    ----------
    settings
        Use :func:`replay_settings` (no triggers, no minimum timestamp).
    k
        Length of the scored lists.
    positive_threshold
        Ratings below it are negative feedback, not targets; ``None``: every rating is.
    seed
        Seed of the random baseline.
    group_name
        Name of the log column whose value is each event's ``group`` (per-group HR).
    recommender
        The recommender to drive (default: the one ``Pipeline`` builds from ``settings``).
    new_user_events
        A user with fewer prior events is ``new`` in the ``history`` breakdown.

    Examples
    --------
    >>> import orjson
    >>> from streams.replay.loaders import LogEvent
    >>> def event(n, user, item):
    ...     record = orjson.dumps({"event_id": f"e{n}", "user_id": user, "item_id": item,
    ...                            "event_type": "click", "timestamp": 1_000 * n})
    ...     return LogEvent(1_000 * n, user, item, "click", None, None, record)
    >>> run = Prequential(replay_settings(k=2), k=2)
    >>> result = run.run([event(1, "u1", "a"), event(2, "u2", "a"), event(3, "u2", "a")])
    >>> result.targets, dict(result.skipped), result.cold_targets  # u2's 2nd "a" is a repeat
    (2, {'repeat': 1}, 1)
    >>> result.scores["popularity"].hits  # "a" was unknown at first, then the bestseller
    bytearray(b'\\x00\\x01')
    """

    def __init__(self, settings: Settings, *, k: int = 10, positive_threshold: float | None = None,
                 seed: int = 0, group_name: str | None = None, recommender: Recommender | None = None,
                 new_user_events: int = NEW_USER_EVENTS) -> None:
        self.settings = settings
        self.k = k
        self.positive_threshold = positive_threshold
        self.group_name = group_name
        self.new_user_events = new_user_events
        self.clock = EventClock()
        self.pipeline = Pipeline(settings, recommender=recommender, clock=self.clock)
        self.recommender = self.pipeline.recommender
        self.states: dict[str, dict] = {}
        self.profiles: dict[str, dict] = {}
        self.rng = np.random.default_rng(seed)
        self.scores = {name: StrategyScores() for name in STRATEGIES}
        self.groups: dict[str, dict[str, list[int]]] = defaultdict(
            lambda: defaultdict(lambda: [0] * (1 + len(STRATEGIES))))
        self.skipped: Counter = Counter()
        self.dead_letters: Counter = Counter()
        self.events = self.applied = self.duplicates = self.cold_targets = 0
        self.invalid_items = 0
        self.rating_events = 0  # rating events with a value (MAE/RMSE are reported if any)
        self._item_users: dict[str, set[str]] = defaultdict(set)
        self._predict_rating: Callable[[str, str], float | None] | None = getattr(
            self.recommender, "predict_rating", None)
        self.rating_predictions: list[tuple[float, float]] | None = (
            [] if self._predict_rating is not None else None)

    # -- catalog ---------------------------------------------------------------------------

    def add_items(self, records: Iterable[tuple[bytes, bytes]]) -> int:
        """Feed ``items`` records ``(key, value)`` through the pipeline; return how many applied."""
        applied = 0
        for offset, (key, value) in enumerate(records):
            if self.pipeline.apply_item(RawRecord("items", 0, offset, key, value)):
                applied += 1
            else:
                self.invalid_items += 1
        return applied

    # -- the loop ----------------------------------------------------------------------------

    def run(self, events: Iterable[LogEvent], dataset: str = "",
            on_progress: Callable[["Prequential", int], None] | None = None,
            progress_every: int = 250) -> ReplayResult:
        """Replay ``events`` (already in timestamp order) and return the scores."""
        started = time.perf_counter()
        pending = 0
        for event in events:
            self.step(event)
            pending += 1
            if on_progress is not None and pending >= progress_every:
                on_progress(self, pending)
                pending = 0
        if on_progress is not None and pending:
            on_progress(self, pending)
        return self.result(dataset, time.perf_counter() - started)

    def _skip_reason(self, event: LogEvent, before: UserState) -> str | None:
        item = event.item_id
        if item is None:
            return "no_item"
        kind = event.event_type
        if kind not in POSITIVE_TYPES:
            return "negative"
        if (kind == "rating" and self.positive_threshold is not None and event.value is not None
                and event.value < self.positive_threshold):
            return "negative"
        if self.recommender.excludes(item, before):
            return "repeat"
        catalog = self.recommender.catalog_
        if item in catalog and not catalog.is_available(item):
            return "unavailable"
        return None

    def _recommend(self, user: str, before: UserState,
                   context: dict) -> tuple[list[str], list[str], list[str]]:
        rec, k = self.recommender, self.k
        hybrid = [r.item_id for r in rec.recommend(user, before, context, k, personalized=True,
                                                   explain=False)]
        popular = [r.item_id for r in rec.recommend(user, before, context, k, personalized=False,
                                                    explain=False)]
        catalog = rec.catalog_
        n_items = len(catalog)
        random_items: list[str] = []
        if n_items:
            rows = np.flatnonzero(rec.candidates(before, n_items))
            if rows.size:
                picked = self.rng.choice(rows, size=min(k, rows.size), replace=False)
                random_items = [catalog.item_id_at(row) for row in picked.tolist()]
        return hybrid, popular, random_items

    def step(self, event: LogEvent) -> None:
        """Score ``event`` if it is a target, then let the pipeline learn it."""
        self.events += 1
        if event.timestamp >= 0:
            self.clock.now = event.timestamp
        user, item = event.user_id, event.item_id
        before = UserState.from_dict(self.states.get(user) if user is not None else None)
        reason = "no_item" if user is None else self._skip_reason(event, before)
        lists = None
        cold = False
        if reason is None:
            cold = item not in self.recommender.catalog_
            lists = self._recommend(user, before, _context_of(event.record))
        predicted = None
        if (self._predict_rating is not None and event.event_type == "rating" and user is not None
                and item is not None and event.value is not None):
            self.rating_events += 1
            predicted = self._predict_rating(user, item)
        record = RawRecord("events", 0, self.events - 1, event.key, event.record)
        outcome = self.pipeline.process_event(record, self.states.get, self.profiles.get)
        if outcome.dead_letter is not None:
            self.dead_letters[outcome.dead_letter.error_type] += 1
            self.skipped["invalid"] += 1
            return
        if not outcome.applied:
            self.duplicates += 1
            self.skipped["duplicate"] += 1
            return
        self.applied += 1
        self.states[outcome.user_id] = outcome.state.to_dict()
        if item is not None:
            self._item_users[item].add(outcome.user_id)
        if predicted is not None and math.isfinite(predicted):
            self.rating_predictions.append((float(predicted), float(event.value)))
        if lists is None:
            self.skipped[reason] += 1
            return
        self.cold_targets += cold
        hits = [self.scores[name].add(items, item, self.k) for name, items in zip(STRATEGIES, lists)]
        history = "new" if before.event_count < self.new_user_events else "returning"
        keys = [("history", history)]
        if self.group_name:
            keys.append((self.group_name, "(none)" if event.group is None else event.group))
        for name, value in keys:
            counts = self.groups[name][value]
            counts[0] += 1
            for i, hit in enumerate(hits):
                counts[1 + i] += hit

    def result(self, dataset: str = "", seconds: float = 0.0) -> ReplayResult:
        catalog = self.recommender.catalog_
        return ReplayResult(
            dataset=dataset, k=self.k, events=self.events, applied=self.applied,
            duplicates=self.duplicates, dead_letters=self.dead_letters, skipped=self.skipped,
            cold_targets=self.cold_targets, scores=self.scores,
            groups={name: dict(values) for name, values in self.groups.items()},
            catalog_size=int(np.count_nonzero(catalog.available_mask())) if len(catalog) else 0,
            n_users=len(self.states),
            users_per_item={item: len(users) for item, users in self._item_users.items()},
            rating_predictions=self.rating_predictions, seconds=seconds,
            rating_events=self.rating_events,
            settings=settings_summary(self.settings), invalid_items=self.invalid_items,
        )


def _context_of(record: bytes) -> dict:
    """The event's context, as the worker would see it with the trigger (``{}`` if none).

    >>> _context_of(b'{"context": {"device": "ios"}}'), _context_of(b'not json')
    ({'device': 'ios'}, {})
    """
    try:
        context = orjson.loads(record).get("context")
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    return context if isinstance(context, dict) else {}


def settings_summary(settings: Settings) -> dict[str, Any]:
    """The settings a replay's numbers depend on, for the record."""
    return {"popularity_half_life_s": settings.popularity_half_life_s,
            "popularity_pace_events": settings.popularity_pace_events,
            "n_factors": settings.n_factors, "seed": settings.seed,
            "recent_items_max": settings.recent_items_max,
            "exclude_recent": settings.exclude_recent, "skip_bursts": settings.skip_bursts,
            "blend_every": settings.blend_every}
