"""What one user costs in a worker's memory with 100k users in state (``bytes_per_user``).

In-process, without Kafka: everything a worker keeps *per user*, built by the worker's own
per-event code path for each event (``parse_event`` on the JSON bytes, so every string is
a fresh object as in the worker; ``UserState.apply``; ``Recommender.learn_one``; the
``user_state`` value as ``UserState.to_dict()`` in a dict standing in for Faust's memory
store, which keeps the value object; the quality monitor's last-recommendation entry,
``OnlineQuality.on_recommendation``, once per user, as a trigger does).

How it is measured:

1. ``n_users - sample`` *filler* users get one event each, untraced. They only give the
   per-user containers (the table, the learners' per-user dicts, the quality LRU) their
   size at 100k users; their own objects are not measured. (The MF learner skips its
   sampled negatives for them, which only touch item parameters: it is faster.)
2. The last ``sample`` users get ``events_per_user`` synthetic events each (20 by
   default: a couple of sessions), under ``tracemalloc``: their traced growth divided by
   ``sample`` is what their own objects cost.
3. Added to that: each per-user container's own bytes over the users at 100k users,
   ``sys.getsizeof(container) / users`` (a dict's hash table, sized for all the entries it
   held even if it expired some since), and each per-user numpy array's,
   ``array.nbytes / users`` (spare capacity included): a learner that keeps its users'
   parameters in rows of an array allocates them before the window.
   (Containers are found by walking the objects reachable from the table, the
   recommender and the quality monitor, for any dict or collection with at least 90% as
   many entries as there are users, and any array with as many rows; none of them is
   resized inside the traced window, and the stage checks it.)

``bytes_per_user`` = 2 + 3. Details break it down per container (the value and key of the
entry, by a ``sys.getsizeof`` walk: approximate, since objects shared between users, like
catalog item ids, are not counted) and give ``state_bytes_after_300_events``: the traced
size of one user's ``user_state`` value once its dedupe window (256 event ids) and recent
items (50) are full, i.e. of a heavy user.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from collections import OrderedDict, deque
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import Any, Callable, Iterable

import numpy as np

from streams.bench.workload import CATALOG_ITEMS, UniformShop
from streams.codecs import encode_event
from streams.quality import OnlineQuality
from streams.ranking import Recommender
from streams.settings import Settings
from streams.state import UserState
from streams.validation import Validator, parse_event

__all__ = ["run_memory", "per_user_containers", "deep_size"]


class _OneUserShop(UniformShop):
    """The bench's shop, generating the events of one chosen user at a time."""

    current = "user-00000"

    def _pick_user(self) -> str:
        return self.current


_SKIP = (str, bytes, int, float, bool, type(None), np.ndarray, np.generic, type, ModuleType,
         FunctionType, BuiltinFunctionType, MethodType)


def per_user_containers(roots: dict[str, Any], min_len: int) -> dict[str, Any]:
    """Collections with at least ``min_len`` entries reachable from ``roots``, by path;
    numpy arrays too, with at least ``min_len`` rows (a learner's per-user parameters).

    Walks instance attributes, dict values and sequence items (not into the large
    collections themselves).

    >>> class Box: pass
    >>> box = Box(); box.users = {n: n for n in range(10)}; box.small = {"a": [1]}
    >>> box.rows = np.zeros((16, 3)); box.items = np.zeros((4, 3))
    >>> sorted(per_user_containers({"box": box}, min_len=10))
    ['box.rows', 'box.users']
    """
    found: dict[str, Any] = {}
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = list(roots.items())
    while stack:
        path, obj = stack.pop()
        if id(obj) in seen:
            continue
        if isinstance(obj, np.ndarray) and obj.ndim and len(obj) >= min_len and obj.base is None:
            found[path] = obj  # per-user rows (a learner's user parameters), not a view
            continue
        if isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        if isinstance(obj, (dict, list, set, frozenset, tuple, deque)) and len(obj) >= min_len:
            found[path] = obj
            continue
        if isinstance(obj, dict):
            stack.extend((f"{path}[{key!r}]", value) for key, value in obj.items())
        elif isinstance(obj, (list, tuple, set, frozenset, deque)):
            stack.extend((f"{path}[{n}]", value) for n, value in enumerate(obj))
        else:
            attributes = getattr(obj, "__dict__", None)
            if isinstance(attributes, dict):
                stack.extend((f"{path}.{name}", value) for name, value in attributes.items())
            for name in getattr(type(obj), "__slots__", ()):
                if hasattr(obj, name):
                    stack.append((f"{path}.{name}", getattr(obj, name)))
    return found


def deep_size(obj: Any, seen: set[int]) -> int:
    """``sys.getsizeof`` of ``obj`` and everything in it not in ``seen`` (which it extends).

    >>> deep_size(["ab", "ab"], set()) == sys.getsizeof(["ab", "ab"]) + sys.getsizeof("ab")
    True
    """
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset, deque)):
        size += sum(deep_size(item, seen) for item in obj)
    return size


def _user_records(shop: _OneUserShop, users: Iterable[str], per_user: int,
                  start_ms: int) -> list[tuple[bytes, bytes]]:
    records = []
    for user_id in users:
        shop.current = user_id
        for n in range(per_user):
            event = shop.event(start_ms + n * 60_000)
            records.append((user_id.encode(), encode_event(event, "json")[0]))
    return records


class _Worker:
    """The per-user part of a worker: the table, the learners, the quality monitor."""

    def __init__(self, settings: Settings, shop: UniformShop) -> None:
        self.settings = settings
        self.validator = Validator(settings)
        self.recommender = Recommender(settings)
        for item in shop.catalog():
            self.recommender.apply_item(item)
        self.table: dict[str, dict] = {}
        self.quality = OnlineQuality()
        catalog = self.recommender.catalog_
        self.top_items = [catalog.item_id_at(row) for row in range(min(10, len(catalog)))]
        self.now_ms = int(time.time() * 1000)
        self._recommendations = 0

    def process(self, key: bytes, value: bytes) -> str:
        event = parse_event(key, value, None, self.validator, self.now_ms)
        state = UserState.from_dict(self.table.get(event.user_id))
        if state.apply(event, recent_max=self.settings.recent_items_max,
                       dedupe_window=self.settings.dedupe_window):
            self.recommender.learn_one(event, state)
            self.table[event.user_id] = state.to_dict()
        return event.user_id

    def recommended(self, user_id: str) -> None:
        self._recommendations += 1
        self.quality.on_recommendation(user_id, self.top_items, f"rec-{self._recommendations:032d}")


def _traced(build: Callable[[], Any], inspect: Callable[[], Any] | None = None) -> tuple[int, Any]:
    """Bytes ``build()`` allocated and kept, under tracemalloc; and ``inspect()``'s result,
    called while still tracing (so it can ask which objects were allocated by ``build``)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        build()
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - before
        return traced, inspect() if inspect is not None else None
    finally:
        tracemalloc.stop()


def _new_size(obj: Any, seen: set[int]) -> int:
    """Like :func:`deep_size`, counting only objects allocated while tracing (so not the
    interned, cached or catalog objects that users share)."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj) if tracemalloc.get_object_traceback(obj) is not None else 0
    if isinstance(obj, dict):
        size += sum(_new_size(k, seen) + _new_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset, deque)):
        size += sum(_new_size(item, seen) for item in obj)
    return size


def _new_outside(roots: dict[str, Any], exclude: Iterable[Any]) -> int:
    """Bytes of objects allocated while tracing that are reachable from ``roots`` without
    going through ``exclude`` (the per-user containers): bounded windows (recent
    recommendation ids, exposures) whose old entries were swapped for new ones, not
    anything a user keeps."""
    excluded = {id(obj) for obj in exclude}
    seen: set[int] = set()
    total = 0
    stack: list[Any] = list(roots.values())
    while stack:
        obj = stack.pop()
        if id(obj) in seen or id(obj) in excluded:
            continue
        seen.add(id(obj))
        if isinstance(obj, (type, ModuleType, FunctionType, BuiltinFunctionType, MethodType)):
            continue
        if tracemalloc.get_object_traceback(obj) is not None:
            total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset, deque)):
            stack.extend(obj)
        elif not isinstance(obj, _SKIP):
            attributes = getattr(obj, "__dict__", None)
            if isinstance(attributes, dict):
                stack.extend(attributes.values())
            stack.extend(getattr(obj, name) for name in getattr(type(obj), "__slots__", ())
                         if hasattr(obj, name))
    return total


def _resolve(roots: dict[str, Any], path: str) -> Any:
    """The object at a :func:`per_user_containers` path made only of attributes (else
    ``None``): where an array was found, to see whether it is still the one there."""
    root, _, rest = path.partition(".")
    if "[" in path or root not in roots:
        return None
    obj = roots[root]
    for name in rest.split(".") if rest else ():
        obj = getattr(obj, name, None)
    return obj


def _state_bytes_saturated(settings: Settings, shop: _OneUserShop, users: int = 200,
                           events: int = 300) -> float:
    """Traced bytes of a ``user_state`` value (with its key) after ``events`` events."""
    worker = _Worker(settings, shop)
    records = _user_records(shop, [f"heavy-{n:05d}" for n in range(users)], events,
                            worker.now_ms - events * 60_000)
    validator, table = worker.validator, {}

    def build() -> dict:
        for key, value in records:
            event = parse_event(key, value, None, validator, worker.now_ms)
            state = UserState.from_dict(table.get(event.user_id))
            state.apply(event, recent_max=settings.recent_items_max, dedupe_window=settings.dedupe_window)
            table[event.user_id] = state.to_dict()
        return table

    traced, _ = _traced(build)
    return traced / users


def run_memory(n_users: int = 100_000, sample: int = 2_000, events_per_user: int = 20,
               seed: int = 42, heavy_users: int = 200,
               progress: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Measure; see the module docstring. ``heavy_users`` users measure a full state."""
    if not 0 < sample < n_users:
        raise ValueError("sample must be between 0 and n_users")
    settings = Settings()
    shop = _OneUserShop(n_users=n_users, n_items=CATALOG_ITEMS, seed=seed, request_share=0.0)
    worker = _Worker(settings, shop)
    fillers = n_users - sample
    progress(f"{fillers:,} filler users")
    mf = worker.recommender.mf
    negatives, mf.n_negatives = mf.n_negatives, 0
    try:
        chunk = 10_000
        for start in range(0, fillers, chunk):
            users = [shop.user_id(n) for n in range(start, min(fillers, start + chunk))]
            for key, value in _user_records(shop, users, 1, worker.now_ms - 3_600_000):
                worker.recommended(worker.process(key, value))
    finally:
        mf.n_negatives = negatives
    sampled = [shop.user_id(n) for n in range(fillers, n_users)]
    progress(f"{sample:,} users × {events_per_user} events, traced")
    records = _user_records(shop, sampled, events_per_user,
                            worker.now_ms - events_per_user * 60_000)
    roots = {"user_state": worker.table, "recommender": worker.recommender,
             "quality": worker.quality}
    containers = per_user_containers(roots, min_len=int(0.9 * fillers))
    sizes_before = {path: sys.getsizeof(c) for path, c in containers.items()}

    def build() -> None:
        for key, value in records:
            worker.process(key, value)
        for user_id in sampled:
            worker.recommended(user_id)

    def breakdown() -> dict[str, float]:
        """Per container, the objects of a sampled user's entry that are the user's own
        (allocated for them); ``"user id"``: the key string, which the containers share."""
        totals = dict.fromkeys(["user id", *containers], 0)
        seen: set[int] = set()
        wanted = set(sampled)
        for key in worker.table:
            if key in wanted:
                totals["user id"] += _new_size(key, seen)  # the object stored as key
        for user_id in sampled:
            for path, container in containers.items():
                if isinstance(container, dict) and user_id in container:
                    totals[path] += _new_size(container[user_id], seen)
        totals["churn"] = _new_outside(roots, containers.values())
        return {path: total / sample for path, total in totals.items()}

    traced, values = _traced(build, breakdown)
    records.clear()
    growth = {path: sys.getsizeof(c) - sizes_before[path] for path, c in containers.items()}
    # A plain dict grows only by resizing its hash table: not expected inside the window.
    # (An array that grows is replaced by a new one: the learner's attribute no longer
    # points at the array found here.)
    resized = [path for path, c in containers.items() if growth[path] and type(c) is not OrderedDict]
    resized += [path for path, c in containers.items()
                if isinstance(c, np.ndarray) and _resolve(roots, path) is not c]
    # Growth seen by getsizeof (an OrderedDict's per-entry nodes) is in the entry share below.
    churn = values.pop("churn")
    objects = (traced - sum(growth.values())) / sample - churn
    # Each container's own bytes (a dict's hash table, an array's rows, spare capacity
    # included) over the users: per user, whether it holds one entry per user, more (keys
    # other than users too), or fewer (users it expired, in a table sized for all of them).
    users = len(worker.table)
    shares = {path: (c.nbytes if isinstance(c, np.ndarray) else sys.getsizeof(c)) / users
              for path, c in containers.items()}
    bytes_per_user = objects + sum(shares.values())
    progress("a heavy user's state")
    return {
        "bytes_per_user": bytes_per_user,
        "traced_objects_per_user": objects,
        "container_share_per_user": sum(shares.values()),
        "users": len(worker.table),
        "sample": sample,
        "events_per_user": events_per_user,
        # For an array, "entries" is its rows (capacity, at least one per user).
        "containers": {path: {"kind": "array" if isinstance(c, np.ndarray) else type(c).__name__,
                              "entries": len(c), "share_per_user": shares[path],
                              "value_objects": values[path]} for path, c in containers.items()},
        "user_id_key": values["user id"],
        "bounded_windows_excluded_per_user": churn,
        "unattributed_per_user": objects - sum(values.values()),
        "resized_in_window": resized,
        "state_bytes_after_300_events": _state_bytes_saturated(settings, shop, users=heavy_users),
    }
