"""Popularity per context and per segment: what is popular *on mobile this evening*.

Why it exists: :class:`~streams.learners.DecayedPopularity` knows what everyone engages
with right now, but one global list serves nobody in particular: people on phones in
the evening and people at a desk in the morning browse different things, and so do
different kinds of shoppers. For a user with no or little history (the cold start),
"popular among people in your situation" beats "popular". This learner keeps one
time-decayed popularity per *key* -- a value of one or more context fields (``device``,
``page``, the daypart, hour or weekday derived from the event time, or a ``segment``
id the pipeline puts in ``x``, e.g. from :class:`~streams.learners.UserSegments`) --
with the global popularity as the fallback, and says which key it used so the
explanation can read "popular on mobile this evening".

Each key's popularity is shrunk towards the next, less specific applicable key and
finally towards the global one: with ``m`` the key's decayed mass (events, weighted
by strength) and ``share_i`` item ``i``'s share of it,

    score_i = lambda * share_i + (1 - lambda) * parent_i,   lambda = m / (m + prior_mass)

so a key seen a handful of times barely moves the global list, and a busy key speaks
for itself. Scores are shares (between 0 and 1), comparable across users and keys.

Decay is by event time with a shared reference time, as in ``DecayedPopularity``
(O(1) per update, one rescale per 64 half-lives); weights that have decayed below
``min_weight`` are dropped at the rescale and a key whose mass fell below it goes.

Memory bound: at most ``max_keys`` keys (least recently updated evicted first), each
with at most ``max_items_per_key`` items (past it the strongest three quarters are
kept), plus one dense float per catalog row for the global popularity. Nothing is kept
per user.
"""

from __future__ import annotations

import collections
import math
import typing

import numpy as np

from streams.catalog import Catalog
from streams.learners._common import WEEKDAYS, clipped_strength, daypart, grown, time_context
from streams.learners.base import event_time

__all__ = ["KeyedPopularity"]

_RENORMALIZE_HALF_LIVES = 64.0
_DERIVED = ("hour", "daypart", "weekday")
_WEEKDAY_NAMES = dict(zip(WEEKDAYS, ("Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays",
                                     "Saturdays", "Sundays")))
Key = tuple[tuple[str, str], ...]


class KeyedPopularity:
    """Time-decayed popularity per context/segment key, shrunk towards the global one.

    Parameters
    ----------
    half_life_s
        Seconds of event time after which an interaction counts half as much.
    keys
        The keys, most specific first: each a tuple of field names of ``x``
        (``"hour"``, ``"daypart"`` and ``"weekday"`` are derived from the event time, in
        ``x["timezone"]`` if given). A key applies to an event or request only if all its
        fields are present.
    prior_mass
        Decayed mass at which a key's own popularity and its fallback weigh equally.
    max_keys
        Keys held at most; past it the least recently updated is evicted.
    max_items_per_key
        Items held per key at most; past it the strongest three quarters are kept.
    max_strength
        Strengths are clipped to this; non-positive ones are ignored.
    min_weight
        Decayed weights below this are dropped when weights are rescaled.
    catalog
        The item index that rows are aligned with; a private one is created if omitted.

    Examples
    --------
    >>> pop = KeyedPopularity(keys=(("device", "daypart"), ("device",)), prior_mass=1.0)
    >>> evening = 1_700_074_800_000  # 19:00 UTC
    >>> for i in range(6):
    ...     pop.learn_one(f"u{i}", "dress", 1.0, {"timestamp": evening, "device": "mobile"})
    ...     pop.learn_one(f"v{i}", "stapler", 1.0, {"timestamp": evening, "device": "desktop"})
    >>> pop.learn_one("w", "stapler", 1.0, {"timestamp": evening})  # no device: global only
    >>> x = {"timestamp": evening, "device": "mobile"}
    >>> scores = pop.score_all(2, x)  # rows: dress, stapler
    >>> [round(s, 3) for s in scores.tolist()]
    [0.989, 0.011]
    >>> pop.score_all(2, {"timestamp": evening}).round(3).tolist()  # no device: global shares
    [0.462, 0.538]
    >>> pop.describe(x)
    'popular on mobile this evening'
    """

    def __init__(
        self,
        half_life_s: float = 3_600.0,
        keys: typing.Sequence[typing.Sequence[str]] = (
            ("segment",),
            ("device", "daypart"),
            ("device",),
            ("daypart",),
        ),
        prior_mass: float = 5.0,
        max_keys: int = 1_000,
        max_items_per_key: int = 500,
        max_strength: float = 10.0,
        min_weight: float = 1e-3,
        catalog: Catalog | None = None,
    ) -> None:
        if not (half_life_s > 0 and math.isfinite(half_life_s)):
            raise ValueError(f"half_life_s must be a positive number, got {half_life_s!r}")
        if not (prior_mass > 0 and math.isfinite(prior_mass)):
            raise ValueError(f"prior_mass must be a positive number, got {prior_mass!r}")
        if max_keys < 1 or max_items_per_key < 1:
            raise ValueError("max_keys and max_items_per_key must be at least 1")
        if not keys or any(not spec for spec in keys):
            raise ValueError("keys must be a non-empty sequence of non-empty field tuples")
        self.half_life_s = half_life_s
        self.keys = tuple(tuple(spec) for spec in keys)
        self.prior_mass = prior_mass
        self.max_keys = max_keys
        self.max_items_per_key = max_items_per_key
        self.max_strength = max_strength
        self.min_weight = min_weight
        self.catalog = catalog
        self._catalog = Catalog() if catalog is None else catalog
        self._half_life_ms = float(half_life_s) * 1_000.0
        # Key -> [mass, {row: weight}], weights scaled to _t0; least recently updated first.
        self._by_key: collections.OrderedDict[Key, list] = collections.OrderedDict()
        self._global = np.zeros(64, dtype=np.float64)
        self._global_mass = 0.0
        self._t0: float | None = None
        self._clock: float | None = None
        self._n_learned = 0

    # -- learned state, read-only -----------------------------------------------------

    @property
    def catalog_(self) -> Catalog:
        return self._catalog

    @property
    def n_learned(self) -> int:
        return self._n_learned

    @property
    def n_keys(self) -> int:
        """Keys held: at most ``max_keys``."""
        return len(self._by_key)

    def mass(self, key: Key | None = None) -> float:
        """Decayed mass of ``key`` (``None``: global) at the latest event time."""
        if self._t0 is None:
            return 0.0
        entry = self._by_key.get(key) if key is not None else None
        raw = self._global_mass if key is None else (entry[0] if entry else 0.0)
        return raw * 2.0 ** ((self._t0 - self._clock) / self._half_life_ms)

    def keys_of(self, x: dict | None) -> list[Key]:
        """The keys that apply to ``x``, most specific first.

        >>> pop = KeyedPopularity(keys=(("device", "daypart"), ("segment",)))
        >>> pop.keys_of({"timestamp": 1_700_074_800_000, "device": "ios"})
        [(('device', 'ios'), ('daypart', 'evening'))]
        """
        x = x or {}
        derived: dict[str, str] = {}
        when = time_context(x, event_time(x)) if any(
            f in _DERIVED for spec in self.keys for f in spec) else None
        if when is not None:
            hour, weekday = when
            derived = {"hour": str(hour), "daypart": daypart(hour), "weekday": WEEKDAYS[weekday]}
        keys = []
        for spec in self.keys:
            values = []
            for field in spec:
                value = derived.get(field) if field in _DERIVED else x.get(field)
                if value is None:
                    break
                values.append((field, str(value)))
            else:
                keys.append(tuple(values))
        return keys

    # -- learning -----------------------------------------------------------------------

    def learn_one(
        self, user: typing.Hashable, item: str, y: float = 1.0, x: dict | None = None
    ) -> None:
        """Add strength ``y`` to ``item`` globally and under every key that applies to ``x``.

        ``x`` holds ``"timestamp"`` (epoch ms; default: the latest seen) and the context
        fields (and ``"segment"`` if the pipeline knows the user's). ``user`` is unused.
        """
        y = clipped_strength(y, self.max_strength)
        if y is None or y <= 0.0:
            return
        t = event_time(x)
        if t is None:
            t = self._clock if self._clock is not None else 0.0
        self._advance(t)
        weight = y * 2.0 ** ((t - self._t0) / self._half_life_ms)
        row = self._catalog.ensure(item)
        if row >= len(self._global):
            self._global = grown(self._global, len(self._catalog))
        self._global[row] += weight
        self._global_mass += weight
        for key in self.keys_of(x):
            entry = self._by_key.get(key)
            if entry is None:
                entry = self._by_key[key] = [0.0, {}]
                while len(self._by_key) > self.max_keys:
                    self._by_key.popitem(last=False)
            else:
                self._by_key.move_to_end(key)
            items = entry[1]
            items[row] = items.get(row, 0.0) + weight
            entry[0] += weight
            if len(items) > self.max_items_per_key:
                keep = max(1, self.max_items_per_key * 3 // 4)
                entry[1] = dict(sorted(items.items(), key=lambda p: (-p[1], p[0]))[:keep])
                # The mass stays: it is the key's engagement, and pruned items keep their
                # share of it (they score 0 for the key, falling back to its parent).
        self._n_learned += 1

    def _advance(self, t: float) -> None:
        if self._t0 is None:
            self._t0 = t
        if self._clock is None or t > self._clock:
            self._clock = t
            if (t - self._t0) / self._half_life_ms > _RENORMALIZE_HALF_LIVES:
                self._rebase(t)

    def _rebase(self, t: float) -> None:
        factor = 2.0 ** ((self._t0 - t) / self._half_life_ms)
        self._global *= factor
        self._global[self._global < self.min_weight] = 0.0
        self._global_mass *= factor
        for key in list(self._by_key):
            mass, items = self._by_key[key]
            if mass * factor < self.min_weight:
                del self._by_key[key]
                continue
            kept = {r: w * factor for r, w in items.items() if w * factor >= self.min_weight}
            self._by_key[key] = [mass * factor, kept]
        self._t0 = t

    # -- prediction (no side effects) ------------------------------------------------------

    def score_all(self, n_items: int, x: dict | None = None) -> np.ndarray:
        """Shrunk popularity shares of catalog rows ``0 .. n_items - 1`` in context ``x``.

        The most specific applicable key is shrunk towards the next one and so on down
        to the global share. Without any event yet, every row scores 0.
        """
        scores = np.zeros(n_items, dtype=np.float64)
        if self._global_mass <= 0.0:
            return scores
        filled = min(n_items, len(self._global))
        np.multiply(self._global[:filled], 1.0 / self._global_mass, out=scores[:filled])
        decay = 2.0 ** ((self._t0 - self._clock) / self._half_life_ms)
        for key in reversed(self.keys_of(x)):
            entry = self._by_key.get(key)
            if entry is None or entry[0] <= 0.0:
                continue
            mass, items = entry
            lam = mass * decay / (mass * decay + self.prior_mass)
            scores *= 1.0 - lam
            rows = np.fromiter(items.keys(), dtype=np.intp, count=len(items))
            weights = np.fromiter(items.values(), dtype=np.float64, count=len(items))
            inside = rows < n_items
            scores[rows[inside]] += weights[inside] * (lam / mass)
        return scores

    def predict_one(self, user: typing.Hashable, item: str, x: dict | None = None) -> float:
        """``item``'s score in context ``x`` (``user`` is unused); 0 for an unknown item."""
        row = self._catalog.index_of(item)
        if row is None:
            return 0.0
        return float(self.score_all(row + 1, x)[row])

    def dominant_key(self, x: dict | None) -> Key | None:
        """The most specific applicable key whose own popularity outweighs its fallback
        (mass at least ``prior_mass``), or ``None``: the scores are essentially global."""
        for key in self.keys_of(x):
            if self.mass(key) >= self.prior_mass:
                return key
        return None

    def describe(self, x: dict | None) -> str:
        """The explanation for a pick from :meth:`score_all`, e.g. ``"popular on mobile
        this evening"``, ``"popular with shoppers like you"``, or ``"popular right now"``."""
        key = self.dominant_key(x)
        if key is None:
            return "popular right now"
        return "popular " + " ".join(_phrase(field, value) for field, value in key)


def _phrase(field: str, value: str) -> str:
    if field == "daypart":
        return "tonight" if value == "night" else f"this {value}"
    if field == "weekday":
        return f"on {_WEEKDAY_NAMES.get(value, value)}"
    if field == "hour":
        return f"around {int(value):02d}:00"
    if field == "segment":
        return "with shoppers like you"
    if field == "page":
        return "on this page"
    if field == "device":
        return f"on {value}"
    return f"for {field} {value}"
