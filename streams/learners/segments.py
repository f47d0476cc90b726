"""Online user segmentation: which kind of shopper is this, after one or two events?

Why it exists: a user with one or two events has no latent vector worth the name
(:class:`~streams.learners.ImplicitMF` needs several) and a thin content profile; the
global popularity list ignores what little they did. Grouping users by what they
engage with gives a middle ground: the user's *segment* -- the cluster of users whose
recent category mix (and activity level) looks like theirs -- is known from the first
event, and "what is popular with shoppers like you" (a
:class:`~streams.learners.KeyedPopularity` keyed by ``segment``) is a much better
cold-start list than "what is popular". Segment ids also make dashboards and A/B
slices possible without per-user data.

Each user keeps a compact, time-decayed profile: their event strengths per item
category in ``n_buckets`` buckets (each of the first ``n_buckets`` categories seen
gets its own; later ones share buckets by a stable hash), normalized to sum 1, plus
two activity features in ``[0, 1]``: the decayed number of events (log-scaled,
saturating at ``activity_saturation`` events) and the mean strength of their events
relative to ``max_strength``, both scaled by ``activity_weight``. Every key is always
present, so the vector has a fixed length.

The clustering is River's :class:`river.cluster.KMeans`, updated with the user's
profile on each of their events once they have ``min_events``; its nearest-center
search is done in numpy over a mirror of the centers (River's loops over every
coordinate of every center cost ~100 us per event here, the mirror ~25 us; same
rule, same answers, checked against the stock ``predict_one``). River seeds its
centers at random; here a profile farther than ``spawn_distance`` from every center
placed so far becomes the next center (see ``_VectorizedKMeans`` for why), so the
learner is deterministic given the event order (``seed`` only draws the unused
centers, far from any data).

Memory bound: one profile (at most ``n_buckets`` weights and three numbers) and one
segment id per user, for at most ``max_users`` users, each dropped ``user_ttl_s`` of
event time after their last event; the centers are ``n_segments x (n_buckets + 2)``
numbers.
"""

from __future__ import annotations

import collections
import math
import typing

import numpy as np
from river import cluster

from streams.catalog import Catalog
from streams.learners._common import Recency, clipped_strength, stable_hash
from streams.learners.base import event_time

__all__ = ["UserSegments"]

_EVENTS, _STRENGTH = "activity:events", "activity:strength"


class _VectorizedKMeans(cluster.KMeans):
    """River's ``KMeans`` over a fixed set of features, seeded from the data, its
    nearest-center search in numpy.

    Same update rule as River: the closest center (squared Euclidean distance, ties to
    the lowest index) moves ``halflife`` of the way towards the point. Seeding differs:
    River draws the centers at random around ``mu``; here they start far away (``mu``
    is large) and a point farther than ``spawn_distance`` (squared) from every center
    placed so far becomes the next center. Profiles live on a simplex, so a center that
    has moved towards *any* data is closer to *every* profile than one drawn near the
    origin: with random seeding all groups collapsed into one center. The centers are
    mirrored in a ``(n_clusters, n_features)`` matrix and River's ``centers`` dicts are
    kept equal to it, so the stock ``KMeans.predict_one`` gives the same answers.
    """

    def __init__(self, features: typing.Sequence[str], spawn_distance: float,
                 **params: typing.Any) -> None:
        super().__init__(**params)
        self.features = list(features)
        self.spawn_distance = spawn_distance
        for center in self.centers.values():  # draw every coordinate, in a fixed order
            for feature in self.features:  # (River's own first use iterates over a set,
                center[feature]  # noqa: B018 -- whose order changes with PYTHONHASHSEED)
        self._matrix = np.array([[center[f] for f in self.features]
                                 for center in self.centers.values()], dtype=np.float64)
        self._n_placed = 0

    @property
    def n_placed(self) -> int:
        """Centers placed on data so far (the others are unused)."""
        return self._n_placed

    def _closest(self, x: dict) -> tuple[int, float, np.ndarray]:
        point = np.fromiter((x.get(f, 0.0) for f in self.features), dtype=np.float64,
                            count=len(self.features))
        differences = self._matrix - point
        distances = np.einsum("ij,ij->i", differences, differences)
        closest = int(np.argmin(distances))
        return closest, float(distances[closest]), point

    def predict_one(self, x: dict) -> int:
        return self._closest(x)[0]

    def learn_predict_one(self, x: dict) -> int:
        closest, distance, point = self._closest(x)
        row = self._matrix[closest]
        if distance > self.spawn_distance and self._n_placed < self.n_clusters:
            closest, row = self._n_placed, self._matrix[self._n_placed]
            row[:] = point
            self._n_placed += 1
        else:
            row += self.halflife * (point - row)
        center = self.centers[closest]
        for feature, value in zip(self.features, row.tolist()):
            center[feature] = value
        return closest


class UserSegments:
    """Online k-means over each user's category mix and activity.

    Parameters
    ----------
    n_segments
        Number of segments (k-means centers).
    n_buckets
        Category buckets in the profile: the first ``n_buckets`` categories seen get
        one each, later ones share them by hash.
    half_life_s
        Event-time half-life of a user's profile.
    min_events
        Events a user needs before they are clustered and get a segment.
    learning_rate
        How far the closest center moves towards each profile (River's ``halflife``).
    spawn_distance
        A profile farther than this (squared Euclidean distance) from every center
        placed so far becomes a new center while unused ones remain. Two users of
        disjoint categories are 2 apart, a user half in the other's category 0.5.
    activity_weight
        Scale of the two activity features relative to the category mix (which sums to 1).
    activity_saturation
        Decayed event count at which the activity feature reaches 1.
    max_strength
        Strengths are clipped to ``[0, max_strength]``; non-positive ones are ignored.
    max_users, user_ttl_s
        Users held at most, and how long (event time) an inactive user is kept.
    seed
        Seeds the initial centers.
    catalog
        Where item categories are read from; a private one is created if omitted.

    Examples
    --------
    >>> from streams.records import ItemUpdate
    >>> catalog = Catalog()
    >>> for item, category in [("tent", "outdoor"), ("stove", "outdoor"),
    ...                        ("lipstick", "beauty"), ("mascara", "beauty")]:
    ...     _ = catalog.upsert(ItemUpdate(item, categories=(category,)))
    >>> segments = UserSegments(n_segments=4, seed=1, catalog=catalog)
    >>> for i in range(20):
    ...     x = {"timestamp": i}
    ...     segments.learn_one(f"hiker{i}", "tent" if i % 2 else "stove", 1.0, x)
    ...     segments.learn_one(f"glam{i}", "lipstick" if i % 2 else "mascara", 1.0, x)
    >>> hikers = {segments.segment_of(f"hiker{i}") for i in range(20)}
    >>> glams = {segments.segment_of(f"glam{i}") for i in range(20)}
    >>> len(hikers), len(glams), hikers == glams
    (1, 1, False)
    >>> segments.segment_of("nobody") is None, segments.top_categories(hikers.pop())
    (True, ['outdoor'])
    """

    def __init__(
        self,
        n_segments: int = 8,
        n_buckets: int = 32,
        half_life_s: float = 7 * 86_400.0,
        min_events: int = 1,
        learning_rate: float = 0.05,
        spawn_distance: float = 0.5,
        activity_weight: float = 0.3,
        activity_saturation: float = 50.0,
        max_strength: float = 5.0,
        max_users: int = 1_000_000,
        user_ttl_s: float = 30 * 86_400.0,
        seed: int | None = 42,
        catalog: Catalog | None = None,
    ) -> None:
        if n_segments < 1 or n_buckets < 1 or min_events < 1 or max_users < 1:
            raise ValueError("n_segments, n_buckets, min_events and max_users must be at least 1")
        if not (0 < learning_rate <= 1):
            raise ValueError(f"learning_rate must be in (0, 1], got {learning_rate!r}")
        if not min(half_life_s, user_ttl_s, max_strength, activity_saturation) > 0:
            raise ValueError(
                "half_life_s, user_ttl_s, max_strength and activity_saturation must be positive"
            )
        self.n_segments = n_segments
        self.n_buckets = n_buckets
        self.half_life_s = half_life_s
        self.min_events = min_events
        self.learning_rate = learning_rate
        self.spawn_distance = spawn_distance
        self.activity_weight = activity_weight
        self.activity_saturation = activity_saturation
        self.max_strength = max_strength
        self.max_users = max_users
        self.user_ttl_s = user_ttl_s
        self.seed = seed
        self.catalog = catalog
        self._catalog = Catalog() if catalog is None else catalog
        self._half_life_ms = float(half_life_s) * 1_000.0
        self._keys = [f"b{b}" for b in range(n_buckets)] + [_EVENTS, _STRENGTH]
        self._kmeans = _VectorizedKMeans(
            self._keys, spawn_distance, n_clusters=n_segments, halflife=learning_rate,
            mu=1_000.0, sigma=1.0, p=2, seed=seed,
        )
        # User -> [reference time ms, {bucket: weight}, decayed count, decayed strength sum,
        # number of events].
        self._profiles: dict[typing.Hashable, list] = {}
        self._segment: dict[typing.Hashable, int] = {}
        self._users = Recency()
        self._bucket_of: dict[str, int] = {}  # the first n_buckets categories seen
        self._bucket_names: dict[int, collections.Counter] = {}
        self._clock: float | None = None
        self._n_learned = 0

    # -- learned state, read-only -----------------------------------------------------

    @property
    def catalog_(self) -> Catalog:
        return self._catalog

    @property
    def model(self) -> cluster.KMeans:
        """The wrapped River clusterer."""
        return self._kmeans

    @property
    def n_learned(self) -> int:
        return self._n_learned

    @property
    def n_users(self) -> int:
        """Users with a profile: at most ``max_users``."""
        return len(self._profiles)

    def knows_user(self, user: typing.Hashable) -> bool:
        return user in self._profiles

    def forget_user(self, user: typing.Hashable) -> None:
        """Erase the user's profile and segment (the centers are aggregates, kept)."""
        self._profiles.pop(user, None)
        self._segment.pop(user, None)
        self._users.discard(user)

    def adopt_users(self, other: "UserSegments",
                    wanted: typing.Callable[[typing.Hashable], bool]) -> int:
        """Copy from ``other`` the profiles of ``wanted`` users this learner lacks.

        Used after a rebalance (see ``CategoryAffinity.adopt_users``). Bucket numbers are
        private to each learner (the first categories seen get their own), so each of
        the other's buckets is translated through the category most often filed in it;
        the user's segment is then this learner's closest center. Returns how many
        users were adopted.
        """
        adopted = 0
        for user, (t_ref, weights, count, strength, n_events) in other._profiles.items():
            if user in self._profiles or not wanted(user):
                continue
            translated: dict[int, float] = {}
            for bucket, weight in weights.items():
                names = other._bucket_names.get(bucket)
                if not names:
                    continue
                mine = self._bucket(names.most_common(1)[0][0])
                translated[mine] = translated.get(mine, 0.0) + weight
            self._profiles[user] = [t_ref, translated, count, strength, n_events]
            if n_events >= self.min_events and self._kmeans.n_placed:
                self._segment[user] = self._kmeans.predict_one(self.features(user))
            self._users.touch(user, t_ref)
            adopted += 1
        for gone in self._users.evict(self.max_users, self.user_ttl_s * 1_000.0, self._clock):
            self._profiles.pop(gone, None)
            self._segment.pop(gone, None)
        return adopted

    def segment_of(self, user: typing.Hashable) -> int | None:
        """The segment the user was assigned at their latest event (``None``: not yet)."""
        return self._segment.get(user)

    def segment_sizes(self) -> dict[int, int]:
        """How many known users are in each segment."""
        return dict(sorted(collections.Counter(self._segment.values()).items()))

    def top_categories(self, segment: int, k: int = 3) -> list[str]:
        """The categories that weigh most in a segment's center (for dashboards and labels).

        Categories sharing a bucket are listed by how often they were seen.
        """
        center = self._kmeans.centers.get(segment)
        if center is None:
            return []
        buckets = sorted(range(self.n_buckets), key=lambda b: -center[f"b{b}"])
        names: list[str] = []
        for bucket in buckets:
            if center[f"b{bucket}"] <= 1.0 / (2 * self.n_buckets) or len(names) >= k:
                break
            names += [name for name, _ in self._bucket_names.get(bucket, {}).most_common()
                      if name not in names][: k - len(names)]
        return names

    # -- features -----------------------------------------------------------------------

    def features(self, user: typing.Hashable, x: dict | None = None) -> dict[str, float] | None:
        """The user's profile vector (``None`` for an unknown user), at ``x["timestamp"]``
        if later than their last event (activity decays; the category mix is normalized).
        """
        profile = self._profiles.get(user)
        if profile is None:
            return None
        t_ref, weights, count, strength, _ = profile
        t = event_time(x)
        if t is not None and t > t_ref:
            decay = 2.0 ** ((t_ref - t) / self._half_life_ms)
            count, strength = count * decay, strength * decay
        total = sum(weights.values())
        vector = dict.fromkeys(self._keys, 0.0)
        if total > 0:
            for bucket, weight in weights.items():
                vector[f"b{bucket}"] = weight / total
        if count > 0:
            saturation = math.log1p(self.activity_saturation)
            vector[_EVENTS] = self.activity_weight * min(1.0, math.log1p(count) / saturation)
            mean_strength = strength / count / self.max_strength
            vector[_STRENGTH] = self.activity_weight * min(1.0, mean_strength)
        return vector

    # -- learning -----------------------------------------------------------------------

    def learn_one(
        self, user: typing.Hashable, item: str, y: float = 1.0, x: dict | None = None
    ) -> None:
        """Fold the event into the user's profile, then move the closest center towards it.

        Only positive, finite strengths count (clipped to ``max_strength``). An item
        without categories still counts towards the activity features.
        """
        y = clipped_strength(y, self.max_strength)
        if y is None or y <= 0.0:
            return
        t = event_time(x)
        if t is None:
            t = self._clock if self._clock is not None else 0.0
        if self._clock is None or t > self._clock:
            self._clock = t
        profile = self._profiles.get(user)
        if profile is None:
            profile = self._profiles[user] = [t, {}, 0.0, 0.0, 0]
        t_ref = profile[0]
        if t > t_ref:
            decay = 2.0 ** ((t_ref - t) / self._half_life_ms)
            weights = profile[1]
            for bucket in weights:
                weights[bucket] *= decay
            profile[0], profile[2], profile[3] = t, profile[2] * decay, profile[3] * decay
        elif t < t_ref:
            y *= 2.0 ** ((t - t_ref) / self._half_life_ms)
        categories = tuple(dict.fromkeys(self._catalog.categories_of(item)))
        weights = profile[1]
        for category in categories:
            bucket = self._bucket(category)
            weights[bucket] = weights.get(bucket, 0.0) + y / len(categories)
            names = self._bucket_names.setdefault(bucket, collections.Counter())
            if category in names or len(names) < 16:
                names[category] += 1
        profile[2] += 1.0 if t >= t_ref else 2.0 ** ((t - t_ref) / self._half_life_ms)
        profile[3] += y
        self._catalog.ensure(item)
        profile[4] += 1
        if profile[4] >= self.min_events:
            self._segment[user] = self._kmeans.learn_predict_one(self.features(user))
        self._users.touch(user, t)
        for gone in self._users.evict(self.max_users, self.user_ttl_s * 1_000.0, self._clock):
            self._profiles.pop(gone, None)
            self._segment.pop(gone, None)
        self._n_learned += 1

    def _bucket(self, category: str) -> int:
        """The category's own bucket while there are free ones, then a stable hash."""
        bucket = self._bucket_of.get(category)
        if bucket is None:
            if len(self._bucket_of) < self.n_buckets:
                bucket = self._bucket_of[category] = len(self._bucket_of)
            else:
                bucket = stable_hash(category) % self.n_buckets
        return bucket

    # -- prediction (no side effects) ------------------------------------------------------

    def predict_one(self, user: typing.Hashable, x: dict | None = None) -> int | None:
        """The segment closest to the user's current profile (``None``: unknown user).

        Unlike :meth:`segment_of` this uses the centers as they are now.
        """
        vector = self.features(user, x)
        if vector is None:
            return None
        return self._kmeans.predict_one(vector)
