"""Content-based affinity: what kinds of item a user has been engaging with lately.

Matrix factorization needs many interactions per user and per item before its latent
vectors mean anything; a live session gives a handful. The catalog, however, already
says what each item *is* (its categories, optionally attributes such as ``brand``), so
one event is enough to learn "this user is into shoes right now" and to score every
shoe, including one listed a second ago that nobody has touched (item cold start).

Each user keeps a small map ``feature -> weight``: the sum of the strengths of their
events on items with that feature, decayed by half every ``half_life_s`` seconds of
*event* time (the events' own timestamps, never the wall clock, so a replay gives the
same result). Negative strengths (a dislike, a low rating) subtract. All of one user's
weights share a reference time, so decaying them is one multiplication per feature
when the user's next event arrives, and ranking within a user is unaffected by decay
between events.

Scoring is vectorized: the learner keeps, aligned with the shared
:class:`~streams.catalog.Catalog` rows, an array of feature ids per item (padded with
``-1``). A user's weights are scattered into a dense vector with a trailing zero slot,
the padded id array gathers from it, and an item's category score is the *mean* of its
categories' weights (an item in ``("clothing", "jackets")`` gets half credit from a
user who only bought dresses filed under ``("clothing", "dresses")``). Attribute
affinities, if enabled, are averaged the same way over the configured attributes and
added with ``attribute_weight``. Unknown features score 0.

Guards and bounds: strengths are clipped to ``max_strength`` (a ``1e308`` strength
would add up to ``inf``, and ``inf - inf`` to NaN), and a profile that still went
non-finite is dropped (the user starts over) and counted in ``n_resets``. At most
``max_users`` profiles are kept, and a user not seen for ``user_ttl_s`` of event time
is forgotten (least recently seen first): after a month idle an affinity decayed with
a half-hour half-life is zero anyway.
"""

from __future__ import annotations

import math
import typing

import numpy as np

from streams.catalog import Catalog
from streams.learners._common import Recency
from streams.learners.base import event_time

__all__ = ["CategoryAffinity"]


class CategoryAffinity:
    """Per-user, time-decayed affinity over item categories (and attribute values).

    Parameters
    ----------
    half_life_s
        Seconds of event time after which an interaction counts half as much.
    max_features
        Most features (categories and attribute values) remembered per user; past it
        the weakest (smallest absolute weight) are forgotten, so memory per user is
        bounded whatever the catalog.
    attributes
        Names of item attributes whose values are learned as features too, e.g.
        ``("brand",)``. Empty (the default): categories only.
    attribute_weight
        Weight of the (mean) attribute affinity added to the category affinity.
    catalog
        The item index that rows are aligned with; a private one is created if omitted.
        Item features are read from it: rows are indexed when first needed, and
        :meth:`index_item` re-reads an item whose metadata changed.
    max_users, user_ttl_s
        Profiles kept at most, and how long (event time) an idle user's profile is kept.
    max_strength
        Strengths are clipped to ``[-max_strength, max_strength]``.

    Examples
    --------
    >>> from streams.records import ItemUpdate
    >>> catalog = Catalog()
    >>> for item, category in [("boot", "shoes"), ("sneaker", "shoes"), ("tote", "bags")]:
    ...     _ = catalog.upsert(ItemUpdate(item, categories=(category,)))
    >>> content = CategoryAffinity(half_life_s=60.0, catalog=catalog)
    >>> content.learn_one("ann", "boot", 1.0, {"timestamp": 0})
    >>> content.learn_one("ann", "tote", 1.0, {"timestamp": 60_000})  # a half-life later
    >>> content.score_all("ann", 3).tolist()  # the older shoe interest has halved
    [0.5, 0.5, 1.0]
    >>> content.learn_one("ann", "tote", -2.0, {"timestamp": 60_000})  # a dislike
    >>> content.predict_one("ann", "tote"), content.top_category("ann", "sneaker")
    (-1.0, 'shoes')
    >>> _ = catalog.upsert(ItemUpdate("sandal", categories=("shoes",)))  # brand new item
    >>> content.predict_one("ann", "sandal")
    0.5
    >>> content.score_all("nobody", 4).tolist()
    [0.0, 0.0, 0.0, 0.0]
    """

    def __init__(
        self,
        half_life_s: float = 1_800.0,
        max_features: int = 32,
        attributes: typing.Sequence[str] = (),
        attribute_weight: float = 0.5,
        catalog: Catalog | None = None,
        max_users: int = 1_000_000,
        user_ttl_s: float = 30 * 86_400.0,
        max_strength: float = 100.0,
    ) -> None:
        if not half_life_s > 0 or not math.isfinite(half_life_s):
            raise ValueError(f"half_life_s must be a positive number, got {half_life_s!r}")
        if max_features < 1:
            raise ValueError(f"max_features must be at least 1, got {max_features!r}")
        self.half_life_s = half_life_s
        self.max_features = max_features
        self.attributes = tuple(attributes)
        self.attribute_weight = attribute_weight
        self.catalog = catalog
        if max_users < 1 or not (user_ttl_s > 0 and max_strength > 0):
            raise ValueError("max_users must be at least 1, user_ttl_s and max_strength positive")
        self.max_users = max_users
        self.user_ttl_s = user_ttl_s
        self.max_strength = max_strength
        self._catalog = Catalog() if catalog is None else catalog
        self._half_life_ms = float(half_life_s) * 1_000.0
        # Feature vocabulary: ("c", category) or ("a", attribute, value) -> dense id.
        self._feature_id: dict[tuple, int] = {}
        self._feature_key: list[tuple] = []
        # Per user: [reference time (ms), {feature id: weight at the reference time}].
        self._users: dict[typing.Hashable, list] = {}
        # Item rows -> feature ids, padded with -1; rows >= _n_indexed are not read yet.
        self._item_categories = np.full((64, 1), -1, dtype=np.int32)
        self._item_attributes = np.full((64, len(self.attributes)), -1, dtype=np.int32)
        self._n_indexed = 0
        self._n_learned = 0
        self._n_resets = 0
        self._recency = Recency()
        self._clock: float | None = None

    # -- learned state, read-only -----------------------------------------------------

    @property
    def catalog_(self) -> Catalog:
        """The catalog rows are aligned with (the one given, or the private one)."""
        return self._catalog

    @property
    def n_learned(self) -> int:
        return self._n_learned

    @property
    def n_resets(self) -> int:
        """Profiles dropped after going non-finite (should stay 0)."""
        return self._n_resets

    @property
    def n_users(self) -> int:
        """Users with a profile: at most ``max_users``."""
        return len(self._users)

    def knows_user(self, user: typing.Hashable) -> bool:
        """Whether ``user`` has any affinity (positive or negative) remembered."""
        profile = self._users.get(user)
        return profile is not None and bool(profile[1])

    def forget_user(self, user: typing.Hashable) -> None:
        """Erase the user's affinity profile (privacy: forget-a-user)."""
        self._users.pop(user, None)
        self._recency.discard(user)

    def adopt_users(self, other: "CategoryAffinity", wanted: typing.Callable[[typing.Hashable], bool]
                    ) -> int:
        """Copy from ``other`` the profiles of ``wanted`` users this learner lacks.

        Used after a rebalance: another worker's checkpoint knows the users whose
        partitions this worker now owns. Feature ids are private to each learner, so
        profiles are translated through the feature keys. Returns how many were adopted.
        """
        adopted = 0
        for user, (reference, weights) in other._users.items():
            if user in self._users or not wanted(user):
                continue
            self._users[user] = [reference, {self._feature(other._feature_key[f]): w
                                             for f, w in weights.items()}]
            self._recency.touch(user, reference)
            adopted += 1
        self._evict()
        return adopted

    def affinities(self, user: typing.Hashable) -> dict[str, float]:
        """The user's category affinities at their last event, strongest first."""
        profile = self._users.get(user)
        if profile is None:
            return {}
        pairs = [(self._feature_key[f][1], w) for f, w in profile[1].items()
                 if self._feature_key[f][0] == "c"]
        return dict(sorted(pairs, key=lambda p: (-p[1], p[0])))

    # -- catalog -------------------------------------------------------------------------

    def index_item(self, item_id: str) -> None:
        """(Re-)read ``item_id``'s categories and attributes from the catalog.

        Call it after the catalog's metadata of an already indexed item changed; rows
        the learner has not read yet are read on first use anyway.
        """
        row = self._catalog.index_of(item_id)
        if row is None:
            return
        if row >= self._n_indexed:
            self._sync(row + 1)
        else:
            self._index_row(row)

    def _sync(self, n_rows: int) -> None:
        """Index catalog rows up to ``n_rows`` (amortized: each row is read once)."""
        n_rows = min(n_rows, len(self._catalog))
        if n_rows <= self._n_indexed:
            return
        if n_rows > len(self._item_categories):
            capacity = len(self._item_categories)
            while capacity < n_rows:
                capacity *= 2
            self._item_categories = _grown(self._item_categories, capacity)
            self._item_attributes = _grown(self._item_attributes, capacity)
        for row in range(self._n_indexed, n_rows):
            self._index_row(row)
        self._n_indexed = n_rows

    def _index_row(self, row: int) -> None:
        item_id = self._catalog.item_id_at(row)
        unique = dict.fromkeys(self._catalog.categories_of(item_id))
        categories = [self._feature(("c", category)) for category in unique]
        if len(categories) > self._item_categories.shape[1]:  # a wider item: widen the array
            wider = np.full((len(self._item_categories), len(categories)), -1, dtype=np.int32)
            wider[:, : self._item_categories.shape[1]] = self._item_categories
            self._item_categories = wider
        self._item_categories[row] = -1
        self._item_categories[row, : len(categories)] = categories
        if self.attributes:
            values = self._catalog.attributes_of(item_id)
            self._item_attributes[row] = [
                self._feature(("a", name, str(values[name]))) if name in values else -1
                for name in self.attributes
            ]

    def _feature(self, key: tuple) -> int:
        feature = self._feature_id.get(key)
        if feature is None:
            feature = self._feature_id[key] = len(self._feature_key)
            self._feature_key.append(key)
        return feature

    def _features_of(self, row: int) -> list[int]:
        if row >= self._n_indexed:
            self._sync(row + 1)
        features = self._item_categories[row]
        features = features[features >= 0].tolist()
        if self.attributes:
            attributes = self._item_attributes[row]
            features += attributes[attributes >= 0].tolist()
        return features

    # -- learning -----------------------------------------------------------------------

    def learn_one(
        self, user: typing.Hashable, item: str, y: float = 1.0, x: dict | None = None
    ) -> None:
        """Add strength ``y`` (negative: subtract) to the features of ``item`` for ``user``,
        at ``x["timestamp"]`` (epoch ms; default: the user's latest event time).

        A zero or non-finite ``y``, or an item without categories or attributes, teaches
        nothing; ``|y|`` is clipped to ``max_strength``. An event older than the user's
        latest is added already decayed.
        """
        try:
            y = float(y)
        except (TypeError, ValueError):
            return
        if y == 0.0 or not math.isfinite(y):
            return
        y = min(max(y, -self.max_strength), self.max_strength)
        row = self._catalog.ensure(item)
        features = self._features_of(row)
        if not features:
            return
        profile = self._users.get(user)
        t = event_time(x)
        if profile is None:
            profile = self._users[user] = [t if t is not None else 0.0, {}]
        t_ref, weights = profile
        if t is not None and t > t_ref:
            decay = 2.0 ** ((t_ref - t) / self._half_life_ms)
            for feature in weights:
                weights[feature] *= decay
            profile[0] = t
        elif t is not None and t < t_ref:
            y *= 2.0 ** ((t - t_ref) / self._half_life_ms)
        for feature in features:
            weights[feature] = weights.get(feature, 0.0) + y
        if len(weights) > self.max_features:
            keep = sorted(weights, key=lambda f: (-abs(weights[f]), f))[: self.max_features]
            profile[1] = {f: weights[f] for f in keep}
        if not all(math.isfinite(w) for w in profile[1].values()):
            del self._users[user]  # reset: the user starts over
            self._recency.discard(user)
            self._n_resets += 1
        else:
            self._recency.touch(user, profile[0])
        if t is not None and (self._clock is None or t > self._clock):
            self._clock = t
        self._evict()
        self._n_learned += 1

    def _evict(self) -> None:
        ttl_ms = self.user_ttl_s * 1_000.0
        for gone in self._recency.evict(self.max_users, ttl_ms, self._clock):
            self._users.pop(gone, None)

    # -- prediction (no side effects on what was learned) ----------------------------------

    def predict_one(self, user: typing.Hashable, item: str, x: dict | None = None) -> float:
        """The user's affinity for ``item``'s features; 0 for an unknown user or item."""
        row = self._catalog.index_of(item)
        if row is None:
            return 0.0
        return float(self.score_all(user, row + 1, x)[row])

    def score_all(self, user: typing.Hashable, n_items: int, x: dict | None = None) -> np.ndarray:
        """Affinity of catalog rows ``0 .. n_items - 1`` for ``user``, vectorized.

        Scores are at the user's latest event time, or decayed further to
        ``x["timestamp"]`` if that is later. An unknown user scores 0 everywhere.
        """
        scores = np.zeros(n_items, dtype=np.float64)
        profile = self._users.get(user)
        if profile is None or not profile[1] or n_items == 0:
            return scores
        self._sync(n_items)
        filled = min(n_items, self._n_indexed)
        t_ref, weights = profile
        vector = np.zeros(len(self._feature_key) + 1, dtype=np.float64)  # last slot: padding
        vector[list(weights)] = list(weights.values())
        t = event_time(x)
        if t is not None and t > t_ref:
            vector *= 2.0 ** ((t_ref - t) / self._half_life_ms)
        categories = self._item_categories[:filled]
        if categories.shape[1] == 1:  # the common case, without temporaries
            np.take(vector, categories[:, 0], out=scores[:filled], mode="wrap")  # -1: padding
        else:
            scores[:filled] = _mean_of(vector, categories)
        if self.attributes and self.attribute_weight:
            attributes = _mean_of(vector, self._item_attributes[:filled])
            scores[:filled] += self.attribute_weight * attributes
        return scores

    def top_category(self, user: typing.Hashable, item: str) -> str | None:
        """The category of ``item`` the user likes most, if they like any (weight > 0)."""
        row = self._catalog.index_of(item)
        profile = self._users.get(user)
        if row is None or profile is None:
            return None
        weights = profile[1]
        best, best_weight = None, 0.0
        for feature in self._features_of(row):
            key = self._feature_key[feature]
            if key[0] == "c" and weights.get(feature, 0.0) > best_weight:
                best, best_weight = key[1], weights[feature]
        return best


def _mean_of(vector: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per row, the mean of ``vector`` over the row's ids (``-1`` padding excluded; 0 if none)."""
    if ids.shape[1] == 1:
        return vector[ids[:, 0]]  # -1 reads the zero padding slot
    valid = np.count_nonzero(ids >= 0, axis=1)
    total = vector[ids].sum(axis=1)
    return np.divide(total, valid, out=np.zeros(len(ids)), where=valid > 0)



def _grown(array: np.ndarray, capacity: int) -> np.ndarray:
    grown = np.full((capacity, array.shape[1]), -1, dtype=array.dtype)
    grown[: len(array)] = array
    return grown
