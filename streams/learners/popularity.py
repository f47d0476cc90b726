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

**The pace of the log.** A fixed half-life suits one traffic level only: an hour is
thousands of events in a busy shop, but a dozen in a slow log (MovieTweetings has ~23
ratings an hour), where an hour-old "trend" is noise and all-time popularity wins
(prequential HR@10 there: 0.087 with a 1 h half-life, 0.164 without decay). With
``pace_events`` set, the half-life is at least the event time that many events take
at the current pace (a running mean of the gaps between events): a busy stream keeps
``half_life_s``, a slow log decays per ``pace_events`` events. When that lengthens or
shortens the effective half-life by more than 10%, the weights are brought to the
clock and re-referenced with the new one (one O(catalog) pass, rare once the pace is
steady).

**Guards.** Strengths are clipped to ``max_strength`` before they are added (a
``1e308`` strength would overflow to ``inf`` once scaled), and a row that still became
non-finite is reset to 0 and counted in :attr:`DecayedPopularity.n_resets`.
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
    pace_events
        If set, the half-life is at least the time this many events take at the
        current pace (see the module docstring); ``None``: always ``half_life_s``.
    max_strength
        Strengths are clipped to this.

    Examples
    --------
    >>> pop = DecayedPopularity(half_life_s=60.0)
    >>> pop.learn_one("u1", "a", 1.0, {"timestamp": 0})
    >>> pop.learn_one("u2", "b", 1.0, {"timestamp": 60_000})  # one half-life later
    >>> pop.predict_one("u3", "a"), pop.predict_one("u3", "b")
    (0.5, 1.0)
    >>> pop.score_all(3).tolist()  # rows follow the catalog; row 2 is not registered yet
    [0.5, 1.0, 0.0]

    A slow log (one event an hour) with ``pace_events=10``: the half-life stretches to
    about ten hours, so yesterday's hit is not forgotten by lunchtime.

    >>> slow = DecayedPopularity(half_life_s=60.0, pace_events=10)
    >>> for n in range(30):
    ...     slow.learn_one("u", "hit" if n < 5 else f"other{n}", 1.0, {"timestamp": n * 3_600_000})
    >>> round(slow.effective_half_life_s / 3_600), slow.predict_one("u", "hit") > 0.1
    (10, True)
    """

    def __init__(
        self,
        half_life_s: float = 3_600.0,
        catalog: Catalog | None = None,
        pace_events: int | None = None,
        max_strength: float = 100.0,
    ) -> None:
        if not half_life_s > 0 or not math.isfinite(half_life_s):
            raise ValueError(f"half_life_s must be a positive number, got {half_life_s!r}")
        if pace_events is not None and pace_events < 1:
            raise ValueError(f"pace_events must be None or at least 1, got {pace_events!r}")
        if not (max_strength > 0 and math.isfinite(max_strength)):
            raise ValueError(f"max_strength must be a positive number, got {max_strength!r}")
        self.half_life_s = half_life_s
        self.catalog = catalog
        self.pace_events = pace_events
        self.max_strength = max_strength
        self._catalog = Catalog() if catalog is None else catalog
        self._half_life_ms = float(half_life_s) * 1_000.0
        self._mean_gap_ms = 0.0  # running mean of the gaps between events (pace_events)
        self._n_gaps = 0
        self._n_resets = 0
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

    @property
    def n_resets(self) -> int:
        """Rows reset to 0 after becoming non-finite (should stay 0)."""
        return self._n_resets

    @property
    def effective_half_life_s(self) -> float:
        """The half-life in use: ``half_life_s``, or longer when the log is slow."""
        return self._half_life_ms / 1_000.0

    def learn_one(
        self, user: typing.Hashable, item: str, y: float = 1.0, x: dict | None = None
    ) -> None:
        """Add interaction weight ``y`` to ``item`` at ``x["timestamp"]`` (epoch ms).

        Without a timestamp the interaction happens at the current clock. Non-positive
        or non-finite weights are ignored: popularity counts only positive interest;
        larger ones are clipped to ``max_strength``.
        """
        t = event_time(x)
        if t is None:
            t = self._clock if self._clock is not None else 0.0
        if self._t0 is None:
            self._t0 = t
        try:
            y = float(y)
        except (TypeError, ValueError):
            return
        if not (y > 0.0 and math.isfinite(y)):
            return
        y = min(y, self.max_strength)
        if self._clock is None or t > self._clock:
            if self.pace_events is not None and self._clock is not None:
                self._follow_pace(t - self._clock)
            self._clock = t
            if (t - self._t0) / self._half_life_ms > _RENORMALIZE_HALF_LIVES:
                self._rebase(t)
        elif self.pace_events is not None:
            self._follow_pace(0.0)
        row = self._catalog.ensure(item)
        if row >= len(self._weights):
            self._weights = _grown(self._weights, len(self._catalog))
        weight = self._weights[row] + y * 2.0 ** ((t - self._t0) / self._half_life_ms)
        if not math.isfinite(weight):  # only reachable through absurd timestamps
            weight = 0.0
            self._n_resets += 1
        self._weights[row] = weight
        self._n_learned += 1

    def _follow_pace(self, gap_ms: float) -> None:
        """Fold one inter-event gap into the pace; switch half-life if it moved > 10%."""
        self._n_gaps += 1
        n = min(self._n_gaps, self.pace_events)
        self._mean_gap_ms += (min(gap_ms, 1e15) - self._mean_gap_ms) / n
        wanted = max(float(self.half_life_s) * 1_000.0, self.pace_events * self._mean_gap_ms)
        if abs(wanted - self._half_life_ms) > 0.1 * self._half_life_ms and self._clock is not None:
            # Bring every weight to the clock under the old half-life, then re-reference.
            self._weights *= 2.0 ** ((self._t0 - self._clock) / self._half_life_ms)
            self._t0 = self._clock
            self._half_life_ms = wanted

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
