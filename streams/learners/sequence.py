"""Sequence-aware next item: what people open *after* the item a user is looking at.

Why it exists: the other learners score *what* a user likes (categories, latent
taste) or what everyone likes (popularity), but not *order*. A user who just added a
camera to their cart wants a memory card or a bag next, not a second camera, and
shoppers who view a sofa tend to view its matching armchair next. Those are
item-to-item transitions, visible in consecutive events of the same session, and
they are learned with no user profile at all: one event tells the learner what this
user is looking at now, so it helps anonymous and brand-new users too.

What is learned: for each source item ``i``, a time-decayed weight ``w(i -> j)`` of
transitions to successor ``j``, added whenever one user's positive event on ``j``
follows their positive event on ``i`` within ``session_gap_s`` seconds of event time
(and in the same session when events carry a ``session`` context key). Repeats
(``i -> i``), explicit negatives and late events (older than the user's previous one)
teach no transition. A transition weighs the strength of the event it leads to,
clipped to ``max_strength``.

Decay uses a shared reference time, as :class:`~streams.learners.DecayedPopularity`
does: weights are stored scaled by ``2 ** ((t - t0) / half_life)``, so an update is
O(1), and once the scale passes ``2 ** 64`` every weight is rescaled once (weights that
have decayed below ``min_weight`` are dropped then).

Scoring: given the user's recent items, most recent first, each of the first
``max_recent`` contributes ``recency_weight ** position * P(j | item)``, where
``P(j | i) = w(i -> j) / (sum_j w(i -> j) + smoothing)``: the share of ``i``'s
transitions that went to ``j``, damped for sources seen only a few times. The score
of an item nobody moved to from the user's recent items is 0.

Memory bound: at most ``max_items`` source items (least recently updated evicted
first) with at most ``max_successors`` successors each (on overflow the strongest
three quarters are kept), plus one ``(last item, time, session)`` entry per user for
at most ``max_users`` users, each dropped ``session_gap_s`` after that user's last
event (it can no longer start a transition). So at most
``max_items * max_successors + max_users`` entries, whatever the traffic.

Privacy: :meth:`ItemTransitions.forget_user` erases the user's last-item entry, the
only per-user data kept. Transition weights are item-to-item aggregates over all users
(like popularity) and are not attributed to users, so they are not erased; they decay.
"""

from __future__ import annotations

import collections
import math
import typing

import numpy as np

from streams.catalog import Catalog
from streams.learners._common import Recency, clipped_strength
from streams.learners.base import event_time

__all__ = ["ItemTransitions"]

_RENORMALIZE_HALF_LIVES = 64.0


class ItemTransitions:
    """Time-decayed item-to-item transitions, scoring what comes next after recent items.

    Parameters
    ----------
    half_life_s
        Seconds of event time after which a transition counts half as much.
    session_gap_s
        Longest pause between two events of a user for the second to count as
        following the first (also how long a user's last item is remembered).
    max_successors
        Most successors kept per source item; past it only the strongest three quarters
        are kept (the rest of the room lets new successors build up weight).
    max_items
        Source items tracked; past it the least recently updated is evicted.
    max_users
        Users whose last item is remembered; past it the least recently active go.
    max_recent
        How many of the recent items (most recent first) are used for scoring.
    recency_weight
        Weight of the recent item at position ``p`` is ``recency_weight ** p``, so the
        most recent item counts most.
    smoothing
        Pseudo-count (in units of decayed strength) added to each source's total:
        a source seen once predicts its successor with ``P < 1``.
    max_strength
        Strengths are clipped to this before they are added.
    min_weight
        Decayed weights (in units of strength) below this are dropped when the
        weights are rescaled.
    catalog
        The item index that rows are aligned with; a private one is created if omitted.

    Examples
    --------
    >>> catalog = Catalog()
    >>> seq = ItemTransitions(catalog=catalog, smoothing=0.0)
    >>> for user in ("ann", "bob", "cy"):
    ...     for step, item in enumerate(["camera", "memory-card", "bag"]):
    ...         seq.learn_one(user, item, 1.0, {"timestamp": step * 60_000})
    >>> seq.learn_one("dee", "camera", 1.0, {"timestamp": 0})
    >>> seq.learn_one("dee", "tripod", 1.0, {"timestamp": 30_000})
    >>> [(item, round(p, 2)) for item, p in seq.successors("camera")]
    [('memory-card', 0.75), ('tripod', 0.25)]
    >>> scores = seq.score_all("eve", len(catalog), recent_items=["camera"])
    >>> catalog.item_id_at(int(scores.argmax()))
    'memory-card'
    >>> seq.score_all("dee", len(catalog)).round(2).tolist()  # dee's last item: the tripod
    [0.0, 0.0, 0.0, 0.0]
    >>> seq.evidence("bag", ["memory-card", "camera"])  # why "bag"? it follows the card
    ('memory-card', 1.0)
    """

    def __init__(
        self,
        half_life_s: float = 86_400.0,
        session_gap_s: float = 1_800.0,
        max_successors: int = 50,
        max_items: int = 100_000,
        max_users: int = 1_000_000,
        max_recent: int = 5,
        recency_weight: float = 0.5,
        smoothing: float = 1.0,
        max_strength: float = 10.0,
        min_weight: float = 1e-3,
        catalog: Catalog | None = None,
    ) -> None:
        for name, value in (("half_life_s", half_life_s), ("session_gap_s", session_gap_s),
                            ("max_strength", max_strength)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name, value in (("max_successors", max_successors), ("max_items", max_items),
                            ("max_users", max_users), ("max_recent", max_recent)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value!r}")
        if not 0.0 <= recency_weight <= 1.0:
            raise ValueError(f"recency_weight must be in [0, 1], got {recency_weight!r}")
        if not (smoothing >= 0 and math.isfinite(smoothing)):
            raise ValueError(f"smoothing must be a non-negative number, got {smoothing!r}")
        self.half_life_s = half_life_s
        self.session_gap_s = session_gap_s
        self.max_successors = max_successors
        self.max_items = max_items
        self.max_users = max_users
        self.max_recent = max_recent
        self.recency_weight = recency_weight
        self.smoothing = smoothing
        self.max_strength = max_strength
        self.min_weight = min_weight
        self.catalog = catalog
        self._catalog = Catalog() if catalog is None else catalog
        self._half_life_ms = float(half_life_s) * 1_000.0
        self._gap_ms = float(session_gap_s) * 1_000.0
        # Source row -> {successor row: weight scaled to _t0}; least recently updated first.
        self._successors: collections.OrderedDict[int, dict[int, float]] = collections.OrderedDict()
        # User -> (last row, its time in ms, its session or None); bounded by _recency.
        self._last: dict[typing.Hashable, tuple[int, float, typing.Any]] = {}
        self._recency = Recency()
        self._t0: float | None = None
        self._clock: float | None = None
        self._n_learned = 0
        self._n_transitions = 0

    # -- learned state, read-only -----------------------------------------------------

    @property
    def catalog_(self) -> Catalog:
        return self._catalog

    @property
    def n_learned(self) -> int:
        """Positive events seen (each may or may not have made a transition)."""
        return self._n_learned

    @property
    def n_transitions(self) -> int:
        """Transitions counted so far."""
        return self._n_transitions

    @property
    def n_entries(self) -> int:
        """Stored (source, successor) weights: at most ``max_items * max_successors``."""
        return sum(len(successors) for successors in self._successors.values())

    @property
    def n_users(self) -> int:
        """Users whose last item is remembered: at most ``max_users``."""
        return len(self._last)

    def knows_user(self, user: typing.Hashable) -> bool:
        """Whether the user's last item is remembered (their session is still open)."""
        return user in self._last

    def last_item(self, user: typing.Hashable) -> str | None:
        entry = self._last.get(user)
        return None if entry is None else self._catalog.item_id_at(entry[0])

    def forget_user(self, user: typing.Hashable) -> None:
        """Erase the user's last item (the only per-user data; see the module docstring)."""
        self._last.pop(user, None)
        self._recency.discard(user)

    # -- learning -----------------------------------------------------------------------

    def learn_one(
        self, user: typing.Hashable, item: str, y: float = 1.0, x: dict | None = None
    ) -> None:
        """Count a transition from the user's previous item to ``item`` if it follows it.

        ``x["timestamp"]`` is the event time (epoch ms; default: the latest seen) and
        ``x["session"]``, if present, the session: a change of session breaks the chain.
        Only positive, finite strengths teach; others change nothing.
        """
        y = clipped_strength(y, self.max_strength)
        if y is None or y <= 0.0:
            return
        t = event_time(x)
        if t is None:
            t = self._clock if self._clock is not None else 0.0
        self._advance(t)
        row = self._catalog.ensure(item)
        session = x.get("session") if x else None
        previous = self._last.get(user)
        if previous is not None:
            prev_row, prev_t, prev_session = previous
            if t < prev_t:  # a late event: not "after" the previous one, teaches nothing
                self._n_learned += 1
                return
            if (
                prev_row != row
                and t - prev_t <= self._gap_ms
                and (session is None or prev_session is None or session == prev_session)
            ):
                self._add(prev_row, row, y * 2.0 ** ((t - self._t0) / self._half_life_ms))
        self._last[user] = (row, t, session)
        self._recency.touch(user, t)
        for gone in self._recency.evict(self.max_users, self._gap_ms, self._clock):
            self._last.pop(gone, None)
        self._n_learned += 1

    def _add(self, source: int, target: int, weight: float) -> None:
        successors = self._successors.get(source)
        if successors is None:
            successors = self._successors[source] = {}
            while len(self._successors) > self.max_items:
                self._successors.popitem(last=False)
        else:
            self._successors.move_to_end(source)
        successors[target] = successors.get(target, 0.0) + weight
        if len(successors) > self.max_successors:
            # Keep the strongest three quarters: the free quarter lets newcomers build up
            # weight before the next pruning, and pruning costs O(log) per new successor.
            keep = max(1, self.max_successors * 3 // 4)
            strongest = sorted(successors.items(), key=lambda p: (-p[1], p[0]))[:keep]
            self._successors[source] = dict(strongest)
        self._n_transitions += 1

    def _advance(self, t: float) -> None:
        if self._t0 is None:
            self._t0 = t
        if self._clock is None or t > self._clock:
            self._clock = t
            if (t - self._t0) / self._half_life_ms > _RENORMALIZE_HALF_LIVES:
                self._rebase(t)

    def _rebase(self, t: float) -> None:
        factor = 2.0 ** ((self._t0 - t) / self._half_life_ms)
        threshold = self.min_weight
        for source in list(self._successors):
            successors = self._successors[source]
            kept = {s: w * factor for s, w in successors.items() if w * factor >= threshold}
            if kept:
                self._successors[source] = kept
            else:
                del self._successors[source]
        self._t0 = t

    # -- prediction (no side effects) ------------------------------------------------------

    def successors(self, item: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` most likely next items after ``item`` with ``P(next | item)``."""
        row = self._catalog.index_of(item)
        successors = self._successors.get(row) if row is not None else None
        if not successors:
            return []
        denominator = sum(successors.values()) + self._smoothing_scaled()
        best = sorted(successors.items(), key=lambda p: (-p[1], p[0]))[:k]
        return [(self._catalog.item_id_at(s), w / denominator) for s, w in best]

    def score_all(
        self,
        user: typing.Hashable,
        n_items: int,
        recent_items: typing.Sequence[str] | None = None,
        x: dict | None = None,
    ) -> np.ndarray:
        """Next-item scores of catalog rows ``0 .. n_items - 1``, vectorized.

        ``recent_items`` are the user's recent items, most recent first (e.g.
        ``UserState.recent_items``); when omitted, the user's last item as remembered
        by the learner is used (nothing once their session gap has passed). ``x`` is
        accepted for a uniform signature; scores do not depend on time (decay cancels
        out of ``P(j | i)``).
        """
        if recent_items is None:
            entry = self._last.get(user)
            rows = [] if entry is None else [entry[0]]
        else:
            rows = self._rows_of(recent_items)
        return self._score_rows(rows, n_items)

    def predict_one(
        self,
        user: typing.Hashable,
        item: str,
        x: dict | None = None,
        recent_items: typing.Sequence[str] | None = None,
    ) -> float:
        """The score of one item (as in :meth:`score_all`); 0 for an unknown item."""
        row = self._catalog.index_of(item)
        if row is None:
            return 0.0
        return float(self.score_all(user, row + 1, recent_items, x)[row])

    def evidence(self, item: str, recent_items: typing.Sequence[str]) -> tuple[str, float] | None:
        """Which recent item contributed most to ``item``'s score, and how much.

        For the explanation "because you viewed X". ``None`` when no recent item
        leads to ``item``.
        """
        target = self._catalog.index_of(item)
        if target is None:
            return None
        best, best_score = None, 0.0
        for weight, row in zip(self._position_weights(), self._rows_of(recent_items)):
            successors = self._successors.get(row)
            if not successors or target not in successors:
                continue
            share = successors[target] / (sum(successors.values()) + self._smoothing_scaled())
            if weight * share > best_score:
                best, best_score = row, weight * share
        if best is None:
            return None
        return self._catalog.item_id_at(best), best_score

    # -- internals ------------------------------------------------------------------------

    def _rows_of(self, items: typing.Sequence[str]) -> list[int]:
        index_of = self._catalog.index_of
        rows = []
        for item in items:
            row = index_of(item)
            if row is not None:
                rows.append(row)
                if len(rows) == self.max_recent:
                    break
        return rows

    def _position_weights(self) -> list[float]:
        return [self.recency_weight ** p for p in range(self.max_recent)]

    def _smoothing_scaled(self) -> float:
        if self._t0 is None or self._clock is None:
            return self.smoothing
        return self.smoothing * 2.0 ** ((self._clock - self._t0) / self._half_life_ms)

    def _score_rows(self, rows: list[int], n_items: int) -> np.ndarray:
        scores = np.zeros(n_items, dtype=np.float64)
        smoothing = self._smoothing_scaled()
        for weight, row in zip(self._position_weights(), rows):
            successors = self._successors.get(row)
            if not successors or weight == 0.0:
                continue
            targets = np.fromiter(successors.keys(), dtype=np.intp, count=len(successors))
            values = np.fromiter(successors.values(), dtype=np.float64, count=len(successors))
            denominator = values.sum() + smoothing
            if not (denominator > 0 and math.isfinite(denominator)):
                continue
            inside = targets < n_items
            np.add.at(scores, targets[inside], values[inside] * (weight / denominator))
        return scores
