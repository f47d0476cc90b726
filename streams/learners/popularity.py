"""Time-decayed item popularity: what is being interacted with *right now*.

An item's popularity at time ``t`` is the sum of its interaction weights, each decayed
by half every ``half_life_s`` seconds since it happened:

    pop_i(t) = sum_e  w_e * 2 ** (-(t - t_e) / half_life)

Time is *event* time (the events' own timestamps), never the wall clock, so replaying
the same log yields the same popularity, and a backlog consumed after an outage is
weighted as it happened rather than all at once.

Decaying every item on every event would cost O(catalog). Instead each item stores its
weights scaled to a shared reference time ``t0``: ``a_i = sum_e w_e * 2 ** ((t_e - t0) /
half_life)``. An update touches one row (O(1)) and scoring is one vectorized
multiplication ``a * 2 ** ((t0 - t) / half_life)``. As time advances the scale factors
grow exponentially, so once they pass ``2 ** 64`` the reference is moved forward and
every row is rescaled once (amortized: once per 64 half-lives).
"""

from __future__ import annotations

import math
import typing

import numpy as np

from streams.catalog import Catalog
from streams.learners.base import event_time

__all__ = ["DecayedPopularity"]

#: Move the reference time forward once scale factors pass 2 ** this (float64 is safe
#: to ~2 ** 1000; 64 leaves room for weights and sums without losing precision).
_RENORMALIZE_HALF_LIVES = 64.0


class DecayedPopularity:
    """Exponentially decayed interaction weight per catalog item (a River-style learner).

    Parameters
    ----------
    half_life_s
        Seconds after which an interaction counts half as much.
    catalog
        The item index that rows are aligned with; a private one is created if omitted.

    Examples
    --------
    >>> pop = DecayedPopularity(half_life_s=60.0)
    >>> pop.learn_one("u1", "a", 1.0, {"timestamp": 0})
    >>> pop.learn_one("u2", "b", 1.0, {"timestamp": 60_000})  # one half-life later
    >>> pop.predict_one("u3", "a"), pop.predict_one("u3", "b")
    (0.5, 1.0)
    >>> pop.score_all(3).tolist()  # rows follow the catalog; row 2 is not registered yet
    [0.5, 1.0, 0.0]
    """

    def __init__(self, half_life_s: float = 3_600.0, catalog: Catalog | None = None) -> None:
        if not half_life_s > 0 or not math.isfinite(half_life_s):
            raise ValueError(f"half_life_s must be a positive number, got {half_life_s!r}")
        self.half_life_s = half_life_s
        self.catalog = catalog
        self._catalog = Catalog() if catalog is None else catalog
        self._half_life_ms = float(half_life_s) * 1_000.0
        self._weights = np.zeros(64, dtype=np.float64)  # scaled to the reference time
        self._t0: float | None = None  # reference time (ms) of ``_weights``
        self._clock: float | None = None  # latest event timestamp seen (ms)
        self._n_learned = 0

    @property
    def clock(self) -> float | None:
        """The latest event timestamp seen (epoch ms): the "now" scores are decayed to."""
        return self._clock

    @property
    def n_learned(self) -> int:
        return self._n_learned

    def learn_one(
        self, user: typing.Hashable, item: str, y: float = 1.0, x: dict | None = None
    ) -> None:
        """Add interaction weight ``y`` to ``item`` at ``x["timestamp"]`` (epoch ms).

        Without a timestamp the interaction happens at the current clock. Non-positive
        or non-finite weights are ignored: popularity counts only positive interest.
        """
        t = event_time(x)
        if t is None:
            t = self._clock if self._clock is not None else 0.0
        if self._t0 is None:
            self._t0 = t
        if self._clock is None or t > self._clock:
            self._clock = t
            if (t - self._t0) / self._half_life_ms > _RENORMALIZE_HALF_LIVES:
                self._rebase(t)
        y = float(y)
        if not (y > 0.0 and math.isfinite(y)):
            return
        row = self._catalog.ensure(item)
        if row >= len(self._weights):
            self._weights = _grown(self._weights, len(self._catalog))
        self._weights[row] += y * 2.0 ** ((t - self._t0) / self._half_life_ms)
        self._n_learned += 1

    def predict_one(self, user: typing.Hashable, item: str, x: dict | None = None) -> float:
        """The item's popularity at ``x["timestamp"]`` (default, and at least, the clock).

        ``user`` is ignored (popularity is global); an unknown item scores 0.
        """
        row = self._catalog.index_of(item)
        if row is None or row >= len(self._weights) or self._t0 is None:
            return 0.0
        t = event_time(x)
        return float(self._weights[row] * self._decay_to(t))

    def score_all(self, n_items: int, x: dict | None = None) -> np.ndarray:
        """Popularity of catalog rows ``0 .. n_items - 1``, as one vectorized operation.

        Rows the learner has never seen (e.g. items the catalog gained since) score 0.
        """
        scores = np.zeros(n_items, dtype=np.float64)
        if self._t0 is None:
            return scores
        filled = min(n_items, len(self._weights))
        np.multiply(self._weights[:filled], self._decay_to(event_time(x)), out=scores[:filled])
        return scores

    # -- internals ------------------------------------------------------------------

    def _decay_to(self, t: float | None) -> float:
        # The weights already include every event up to the clock, so popularity can
        # only be decayed forward from it: earlier times are read as the clock. That
        # also keeps the exponent <= 0 (no overflow).
        t = self._clock if t is None else max(t, self._clock)
        return 2.0 ** ((self._t0 - t) / self._half_life_ms)

    def _rebase(self, t: float) -> None:
        self._weights *= 2.0 ** ((self._t0 - t) / self._half_life_ms)
        self._t0 = t


def _grown(array: np.ndarray, needed: int) -> np.ndarray:
    capacity = len(array)
    while capacity < needed:
        capacity *= 2
    grown = np.zeros(capacity, dtype=array.dtype)
    grown[: len(array)] = array
    return grown
