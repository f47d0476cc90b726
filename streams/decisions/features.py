"""Action × context features: one row per candidate, so one linear model ranks them all.

A policy learns ``reward ≈ x(context, action) · θ``. For the best action to depend on
the context, ``x`` must hold *interactions*: besides a bias, the action's id and
features and the context's features, every (context feature, action feature or id)
pair gets its own column (VW's ``-q`` quadratic interactions). A string feature is a
category (``device=mobile`` → 1.0); a number keeps its value (scale numbers to about
[-1, 1] for the ridge prior to treat them fairly).

Columns are assigned to feature names as they first appear, until the ``dimensions``
are used up; later names share columns by a stable hash (CRC-32, so the same name maps
to the same column after a restart). Below capacity nothing collides; above it the
model degrades gracefully, as hashed features do.
"""

from __future__ import annotations

import zlib
from typing import Mapping, Sequence

import numpy as np

from streams.decisions.records import Action, FeatureValue

__all__ = ["Featurizer"]


def _named(prefix: str, features: Mapping[str, FeatureValue]) -> list[tuple[str, float]]:
    out = []
    for name, value in features.items():
        if type(value) is str:
            out.append((f"{prefix}{name}={value}", 1.0))
        elif value:
            out.append((f"{prefix}{name}", float(value)))
    return out


class Featurizer:
    """Maps (context, actions) to a dense matrix, one row per action.

    Parameters
    ----------
    dimensions
        Number of columns (the policy's model size).

    Examples
    --------
    >>> f = Featurizer(16)
    >>> X = f.transform({"device": "mobile"}, [Action("a"), Action("b", {"warm": 0.5})])
    >>> X.shape, float(X[0].sum())  # bias, context, id, id x context
    ((2, 16), 4.0)
    >>> float(X[1, f.column(("ctx:device=mobile", "af:warm"))])
    0.5
    """

    def __init__(self, dimensions: int = 256) -> None:
        self.dimensions = dimensions
        self._columns: dict[str, int] = {}

    @property
    def n_named(self) -> int:
        """Feature names with a column of their own (at most ``dimensions``)."""
        return len(self._columns)

    def column(self, name: str | tuple[str, str]) -> int:
        """The column of a feature name (a pair for a cross), assigning the next free one
        while any is left, else hashing."""
        col = self._columns.get(name)
        if col is None:
            if len(self._columns) < self.dimensions:
                col = self._columns[name] = len(self._columns)
            else:
                text = name if type(name) is str else "&".join(name)
                col = zlib.crc32(text.encode("utf-8")) % self.dimensions
        return col

    def transform(self, context: Mapping[str, FeatureValue],
                  actions: Sequence[Action]) -> np.ndarray:
        """The ``(len(actions), dimensions)`` feature matrix (learns new names' columns)."""
        ctx = _named("ctx:", context)
        columns, column = self._columns, self.column
        shared_cols = [column("bias")] + [column(name) for name, _ in ctx]
        shared_vals = [1.0] + [value for _, value in ctx]
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for r, action in enumerate(actions):
            side = [(f"a:{action.id}", 1.0)] + _named("af:", action.features)
            row_cols = shared_cols + [column(name) for name, _ in side]
            row_vals = shared_vals + [value for _, value in side]
            for name, value in side:
                for cname, cvalue in ctx:
                    key = (cname, name)
                    c = columns.get(key)
                    row_cols.append(column(key) if c is None else c)
                    row_vals.append(cvalue * value)
            rows += [r] * len(row_cols)
            cols += row_cols
            vals += row_vals
        n, d = len(actions), self.dimensions
        flat = np.asarray(rows, dtype=np.intp) * d + np.asarray(cols, dtype=np.intp)
        return np.bincount(flat, weights=vals, minlength=n * d).reshape(n, d)
