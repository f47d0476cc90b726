"""Helpers shared by the context, sequence, segment and anomaly learners.

* :class:`Recency`: the bounded "who was seen when" index every per-user (or per-key)
  store uses to evict what was least recently touched, by count and by event-time age.
* :func:`time_context`: hour of day, weekday and daypart of an event, from its
  timestamp (UTC unless the context names a timezone or gives the local hour).
* :func:`stable_hash`: a hash that is the same in every process (``hash(str)`` is
  salted per interpreter, so it must never decide anything that is checkpointed).
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import math
import typing
import zlib
import zoneinfo

import numpy as np

__all__ = [
    "DAYPARTS",
    "WEEKDAYS",
    "Recency",
    "clipped_strength",
    "daypart",
    "grown",
    "stable_hash",
    "time_context",
]

#: Daypart of each local hour: night 0-5, morning 6-11, afternoon 12-17, evening 18-23.
DAYPARTS: tuple[str, ...] = ("night", "morning", "afternoon", "evening")
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Recency:
    """Keys in the order they were last touched, with the event time of that touch.

    Both bounds are enforced by :meth:`evict`, which pops from the least recently
    touched end: at most ``max_size`` keys, and none whose last touch is more than
    ``ttl_ms`` before ``clock``. "Least recently touched" is arrival order, which is
    event-time order except for late events; a late event still refreshes its key.

    >>> seen = Recency()
    >>> for key, t in [("a", 0), ("b", 10), ("a", 20), ("c", 30)]:
    ...     seen.touch(key, t)
    >>> list(seen.evict(max_size=2, ttl_ms=None, clock=30))  # "b" was touched least recently
    ['b']
    >>> list(seen.evict(max_size=10, ttl_ms=15, clock=40))  # "a" (t=20) is older than 40 - 15
    ['a']
    >>> list(seen), seen.last_seen("c")
    (['c'], 30.0)
    """

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: collections.OrderedDict[typing.Hashable, float] = collections.OrderedDict()

    def touch(self, key: typing.Hashable, t: float) -> None:
        times = self._times
        t = float(t)
        previous = times.get(key)
        times[key] = t if previous is None else max(previous, t)
        times.move_to_end(key)

    def discard(self, key: typing.Hashable) -> None:
        self._times.pop(key, None)

    def last_seen(self, key: typing.Hashable) -> float | None:
        return self._times.get(key)

    def evict(self, max_size: int, ttl_ms: float | None, clock: float | None) -> typing.Iterator:
        """Pop and yield the keys past either bound, least recently touched first."""
        times = self._times
        while len(times) > max_size:
            yield times.popitem(last=False)[0]
        if ttl_ms is None or clock is None:
            return
        horizon = clock - ttl_ms
        while times:
            key, t = next(iter(times.items()))
            if t >= horizon:
                return
            del times[key]
            yield key

    def __len__(self) -> int:
        return len(self._times)

    def __contains__(self, key: object) -> bool:
        return key in self._times

    def __iter__(self) -> typing.Iterator:
        return iter(self._times)

    def __getstate__(self) -> dict:
        return {"times": list(self._times.items())}

    def __setstate__(self, state: dict) -> None:
        self._times = collections.OrderedDict(state["times"])


def clipped_strength(y: typing.Any, maximum: float) -> float | None:
    """``y`` as a float clipped to ``[-maximum, maximum]``, or ``None`` if not a finite number.

    >>> clipped_strength(2, 10.0), clipped_strength(1e300, 10.0), clipped_strength("nan", 10.0)
    (2.0, 10.0, None)
    """
    try:
        y = float(y)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(y):
        return None
    return min(max(y, -maximum), maximum)


def stable_hash(text: str) -> int:
    """A 32-bit hash of ``text`` that is identical across processes and runs.

    >>> stable_hash("shoes") == stable_hash("shoes"), stable_hash("shoes") != stable_hash("bags")
    (True, True)
    """
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> dt.tzinfo | None:
    try:
        return zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError, OSError):
        return None


def time_context(x: dict | None, t: float | None) -> tuple[int, int] | None:
    """``(hour 0-23, weekday 0=Monday)`` local to the event, or ``None`` without a time.

    ``t`` is the event time (epoch ms). The hour is read, in order of preference, from
    ``x["local_hour"]`` (an integer 0-23 the client computed), from ``x["timezone"]`` (an
    IANA name such as ``"Europe/Paris"``) or ``x["tz_offset_min"]`` (minutes east of UTC),
    and otherwise is the UTC hour. A ``local_hour`` without a timezone keeps the UTC
    weekday. Malformed values are ignored, never raised.

    >>> t = 1_700_000_000_000  # Tue 2023-11-14 22:13 UTC
    >>> time_context({}, t), time_context({"timezone": "Asia/Tokyo"}, t)
    ((22, 1), (7, 2))
    >>> time_context({"tz_offset_min": "-300"}, t), time_context({"local_hour": "9"}, t)
    ((17, 1), (9, 1))
    >>> time_context({"timezone": "Mars/Olympus"}, t), time_context({}, None)
    ((22, 1), None)
    """
    if t is None or not math.isfinite(t):
        return None
    x = x or {}
    try:
        when = dt.datetime.fromtimestamp(t / 1_000.0, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    zone = x.get("timezone")
    offset = x.get("tz_offset_min")
    if isinstance(zone, str) and (tz := _zone(zone)) is not None:
        when = when.astimezone(tz)
    elif offset is not None:
        try:
            minutes = float(offset)
            if math.isfinite(minutes) and abs(minutes) <= 14 * 60:
                when = when + dt.timedelta(minutes=minutes)
        except (TypeError, ValueError, OverflowError):
            pass
    hour = when.hour
    local = x.get("local_hour")
    if local is not None:
        try:
            value = int(float(local))
            if 0 <= value <= 23:
                hour = value
        except (TypeError, ValueError, OverflowError):
            pass
    return hour, when.weekday()


def daypart(hour: int) -> str:
    """``"night"`` (0-5), ``"morning"`` (6-11), ``"afternoon"`` (12-17) or ``"evening"`` (18-23).

    >>> daypart(7), daypart(19)
    ('morning', 'evening')
    """
    return DAYPARTS[hour // 6]


def grown(array: np.ndarray, needed: int) -> np.ndarray:
    """``array`` with at least ``needed`` rows (capacity doubles), new rows zero."""
    capacity = max(len(array), 1)
    if capacity >= needed:
        return array
    while capacity < needed:
        capacity *= 2
    bigger = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger
