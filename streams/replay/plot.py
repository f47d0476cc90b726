"""A PNG of how each strategy's score evolved over the replayed stream.

A single final number hides whether a learner was still improving at the end of the
log or won early and then fell behind; the running curve shows it. Drawn with
matplotlib's object API on the Agg canvas (no pyplot, no display, no global backend
switch), so it works on headless machines and never disturbs a caller's own plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["running_mean", "running_ratio", "save_running_plot"]


def running_mean(values: Sequence[float] | bytes | bytearray) -> np.ndarray:
    """Mean of the first ``n`` values, for every ``n``.

    >>> running_mean(bytearray([1, 0, 0, 1])).tolist()
    [1.0, 0.5, 0.3333333333333333, 0.5]
    """
    array = np.frombuffer(bytes(values), dtype=np.uint8) if isinstance(values, (bytes, bytearray)) \
        else np.asarray(values, dtype=float)
    if array.size == 0:
        return np.zeros(0)
    return np.cumsum(array, dtype=float) / np.arange(1, array.size + 1)


def running_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``cumsum(numerator) / cumsum(denominator)``, NaN while the denominator is 0.

    The running replay estimate: clicks over matched rows so far.

    >>> running_ratio(np.array([0, 1, 0]), np.array([0, 1, 1])).tolist()
    [nan, 1.0, 0.5]
    """
    top = np.cumsum(np.asarray(numerator, dtype=float))
    bottom = np.cumsum(np.asarray(denominator, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.nan)


def save_running_plot(path: str | Path, series: Mapping[str, np.ndarray], *, title: str,
                      ylabel: str, xlabel: str,
                      references: Mapping[str, float] | None = None) -> Path:
    """Save one line per series (x = 1..n) and a dashed line per reference value."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, values in series.items():
        values = np.asarray(values, dtype=float)
        axes.plot(np.arange(1, values.size + 1), values, label=name, linewidth=1.5)
    for (name, value), style in zip((references or {}).items(), ("--", ":", "-.") * 10):
        axes.axhline(value, linestyle=style, linewidth=1.2, color="grey", label=name)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path
