"""A person's own controls applied to the blended scores: personalization and novelty.

:class:`~streams.records.UserControls` carries two dials besides the mutes (which are
filters, see :mod:`streams.rank.selection`):

* ``personalization`` in ``[0, 1]``: the personalized components of the blend (everything
  learned about *this* user: content affinity, collaborative factors, sequences, the
  factorization machine) are scaled by it, the non-personal ones
  (:data:`NONPERSONAL_SOURCES`: popularity, popularity in this context) are not. At 0
  the recommender ranks as for ``personalized=False`` (it is mapped to it before
  scoring); at 1 it is unchanged. An item's ``source`` still names the component with
  the largest *unscaled* contribution.
* ``novelty`` in ``[0, 1]``, 0.5 neutral: adds ``shift * strength * top * novelty_i`` to
  each score, with ``shift = 2 * (novelty - 0.5)`` in ``[-1, 1]``, ``top`` the best
  blended score (so the effect is relative to the scale of the blend) and ``strength``
  1. ``novelty_i`` (:func:`novelty_of`) starts from ``unseen_i``, 1 when the item's
  categories are all new to the user (none in their recent items or purchases): at
  novelty 1 an item from a new category gains the best score, so new categories lead;
  at 0.75 they mix with the familiar. Popularity enters by its log-scaled level
  ``level_i`` in ``[0, 1]``: towards "new", ``+ 4 level (1 - level)`` favours the
  middle of the long tail (neither the bestsellers nor items nobody touched: the
  popularity component alone cannot be outweighed by an item merely being obscure);
  towards "familiar", ``+ (1 - level) / 2`` is subtracted, so the bestsellers rise. For
  a user without history every category is new, so only the popularity term moves.
"""

from __future__ import annotations

import math
import typing

import numpy as np

from streams.records import UserControls

__all__ = [
    "NONPERSONAL_SOURCES",
    "apply_controls",
    "novelty_of",
    "novelty_shift",
    "personalization_of",
    "popularity_level",
]

#: Components of the blend that know nothing about the user: kept whole at any
#: personalization. Every other component is scaled by ``personalization``.
NONPERSONAL_SOURCES: frozenset[str] = frozenset(
    {"popularity", "context", "trending", "keyed_popularity", "context_popularity"}
)


def _unit(value: typing.Any, default: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else default


def personalization_of(controls: UserControls | None) -> float:
    """The personalization dial clipped to ``[0, 1]`` (1 without controls or if malformed).

    >>> personalization_of(None), personalization_of(UserControls(personalization=1.7))
    (1.0, 1.0)
    """
    return 1.0 if controls is None else _unit(controls.personalization, 1.0)


def novelty_shift(controls: UserControls | None) -> float:
    """``2 * (novelty - 0.5)``: -1 (familiar) .. 0 (neutral) .. 1 (new).

    >>> novelty_shift(None), novelty_shift(UserControls(novelty=1.0))
    (0.0, 1.0)
    """
    return 0.0 if controls is None else 2.0 * (_unit(controls.novelty, 0.5) - 0.5)


def popularity_level(popularity: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Popularity log-scaled to ``[0, 1]`` by the most popular candidate.

    >>> popularity_level(np.array([0.0, 9.0, 99.0]), np.array([True, True, True])).round(2)
    array([0. , 0.5, 1. ])
    """
    clean = np.log1p(np.maximum(np.nan_to_num(popularity, nan=0.0, posinf=0.0), 0.0))
    top = float(np.max(clean, where=candidates, initial=0.0))
    return clean / top if top > 0 else np.zeros_like(clean)


def novelty_of(unseen: np.ndarray, level: np.ndarray, shift: float) -> np.ndarray:
    """Per item, what the novelty dial adds (times ``shift * strength * top``).

    >>> unseen, level = np.array([1.0, 1.0, 1.0, 0.0]), np.array([0.0, 0.5, 1.0, 1.0])
    >>> novelty_of(unseen, level, 1.0).tolist()  # new: a new category, mid-tail first
    [1.0, 2.0, 1.0, 0.0]
    >>> novelty_of(unseen, level, -1.0).tolist()  # familiar: subtracted, so -> popular, seen
    [1.5, 1.25, 1.0, 0.0]
    """
    if shift > 0:
        return unseen + 4.0 * level * (1.0 - level)
    return unseen + 0.5 * (1.0 - level)


def apply_controls(
    blended: np.ndarray,
    personal: typing.Callable[[], np.ndarray],
    controls: UserControls | None,
    candidates: np.ndarray,
    novelty: typing.Callable[[float], np.ndarray],
    strength: float = 1.0,
) -> np.ndarray:
    """Scale the personalized part and shift by novelty, in place on ``blended``.

    ``personal()`` returns the weighted sum of the personalized components that were
    added into ``blended``, ``novelty(shift)`` the per-item :func:`novelty_of`; each is
    called only when its dial is off its neutral value. Returns ``blended``.

    >>> blended = np.array([1.0, 0.6, 0.2])  # popularity [0.2, 0.6, 0.2] + content [0.8, 0, 0]
    >>> content = lambda: np.array([0.8, 0.0, 0.0])
    >>> mask = np.ones(3, dtype=bool)
    >>> apply_controls(blended.copy(), content, UserControls(personalization=0.0), mask,
    ...                lambda shift: np.zeros(3)).round(2).tolist()
    [0.2, 0.6, 0.2]
    >>> apply_controls(blended.copy(), content, UserControls(novelty=1.0), mask,
    ...                lambda shift: np.array([0.0, 0.0, 1.0])).round(2).tolist()
    [1.0, 0.6, 1.2]
    """
    scale = personalization_of(controls)
    if scale < 1.0:
        blended -= (1.0 - scale) * personal()
    shift = novelty_shift(controls)
    if shift != 0.0 and strength > 0:
        top = float(np.max(blended, where=candidates, initial=-np.inf))
        top = top if math.isfinite(top) and top > 0 else 1.0
        blended += (shift * strength * top) * novelty(shift)
    return blended
