"""What the learners share: reading event time from River's ``x`` features dict."""

from __future__ import annotations

import math

__all__ = ["event_time"]


def event_time(x: dict | None) -> float | None:
    """The event's timestamp (ms) from ``x``, or ``None`` when absent or not finite.

    Learners decay by event time, not wall-clock time, so a replay of a log gives the
    same model as the live stream did.

    >>> event_time({"timestamp": 1_000}), event_time({}), event_time({"timestamp": float("nan")})
    (1000.0, None, None)
    """
    if x is not None and x.get("timestamp") is not None:
        t = float(x["timestamp"])
        if math.isfinite(t):
            return t
    return None
