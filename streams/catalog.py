"""The item index shared by the learners and the ranker.

Every per-item quantity in the pipeline (popularity weights, latent factors, the
availability mask) lives in a numpy array whose row ``r`` is the item
``catalog.item_id_at(r)``. Ranking a whole catalog is then a handful of vectorized
operations instead of a Python loop over items. Two rules keep those arrays aligned:

* a row, once given to an item, is never reused (a deleted item keeps its row, marked
  unavailable), so a learner's matrix never silently changes meaning under it;
* rows only grow (capacity doubles), so ``len(catalog)`` is the length every aligned
  array is read at.

Deletions are tombstones: the catalog remembers that an item was deleted so that a
late or replayed event mentioning it cannot bring it back. Only the catalog feed (an
explicit :meth:`Catalog.upsert`) can re-list it.
"""

from __future__ import annotations

import numpy as np

from streams.records import ItemUpdate

__all__ = ["Catalog"]

class Catalog:
    """Maps item ids to dense, stable row indices, with per-row metadata.

    Parameters
    ----------
    initial_capacity
        Rows allocated up front; the arrays double whenever they fill.

    Examples
    --------
    >>> from streams.records import ItemUpdate
    >>> catalog = Catalog()
    >>> catalog.upsert(ItemUpdate("shoe", categories=("footwear",)))
    0
    >>> catalog.ensure("hat")  # first seen in an event: available, no metadata
    1
    >>> catalog.remove("shoe")
    >>> catalog.ensure("shoe")  # an event does not revive a deleted item
    0
    >>> catalog.available_mask().tolist(), catalog.is_deleted("shoe")
    ([False, True], True)
    >>> catalog.upsert(ItemUpdate("shoe"))  # the catalog feed can re-list it
    0
    >>> catalog.available_mask().tolist(), len(catalog)
    ([True, True], 2)
    """

    def __init__(self, initial_capacity: int = 64) -> None:
        self.initial_capacity = initial_capacity
        capacity = max(1, int(initial_capacity))
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self._available = np.zeros(capacity, dtype=bool)
        self._deleted = np.zeros(capacity, dtype=bool)
        self._categories = np.empty(capacity, dtype=object)
        self._attributes = np.empty(capacity, dtype=object)

    # -- writes ---------------------------------------------------------------------

    def upsert(self, item: ItemUpdate) -> int:
        """Insert or replace ``item``'s metadata and return its row.

        The catalog feed is authoritative, so an upsert re-lists a deleted item.
        """
        row = self._row_for(item.item_id)
        self._available[row] = bool(item.available)
        self._deleted[row] = False
        self._categories[row] = tuple(item.categories)
        self._attributes[row] = dict(item.attributes)
        return row

    def remove(self, item_id: str) -> None:
        """Tombstone ``item_id``: unavailable from now on, and remembered as deleted.

        Removing an item never seen before still allocates its row, so that an event
        arriving later for it does not register it as a new, available item.
        """
        row = self._row_for(item_id)
        self._available[row] = False
        self._deleted[row] = True

    def ensure(self, item_id: str) -> int:
        """Return ``item_id``'s row, registering it (available, no metadata) if unknown.

        This is what an event does with the item it mentions: items can reach the
        event stream before the catalog feed. A known item, deleted or not, is left as
        it is.
        """
        row = self._index.get(item_id)
        if row is None:
            row = self._row_for(item_id)
            self._available[row] = True
        return row

    # -- reads ----------------------------------------------------------------------

    def index_of(self, item_id: str) -> int | None:
        """The row of ``item_id``, or ``None`` if the catalog has never seen it."""
        return self._index.get(item_id)

    def item_id_at(self, row: int) -> str:
        """The item id stored at ``row`` (raises ``IndexError`` past the end)."""
        return self._ids[row]

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def available_mask(self) -> np.ndarray:
        """A read-only boolean view, one entry per row: can this item be recommended?"""
        view = self._available[: len(self._ids)]
        view.flags.writeable = False
        return view

    def is_available(self, item_id: str) -> bool:
        row = self._index.get(item_id)
        return row is not None and bool(self._available[row])

    def is_deleted(self, item_id: str) -> bool:
        row = self._index.get(item_id)
        return row is not None and bool(self._deleted[row])

    def categories_of(self, item_id: str) -> tuple[str, ...]:
        """The item's categories; ``()`` when unknown or never described by the feed."""
        row = self._index.get(item_id)
        if row is None:
            return ()
        return self._categories[row] or ()

    def attributes_of(self, item_id: str) -> dict[str, str]:
        """A copy of the item's attributes; ``{}`` when unknown or never described."""
        row = self._index.get(item_id)
        if row is None:
            return {}
        return dict(self._attributes[row] or {})

    # -- internals ------------------------------------------------------------------

    def _row_for(self, item_id: str) -> int:
        row = self._index.get(item_id)
        if row is not None:
            return row
        row = len(self._ids)
        if row == len(self._available):
            self._grow()
        self._index[item_id] = row
        self._ids.append(item_id)
        self._categories[row] = ()
        self._attributes[row] = None
        return row

    def _grow(self) -> None:
        capacity = 2 * len(self._available)
        self._available = _resized(self._available, capacity)
        self._deleted = _resized(self._deleted, capacity)
        self._categories = _resized(self._categories, capacity)
        self._attributes = _resized(self._attributes, capacity)


def _resized(array: np.ndarray, capacity: int) -> np.ndarray:
    if array.dtype == object:
        grown = np.empty(capacity, dtype=object)
    else:
        grown = np.zeros(capacity, dtype=array.dtype)
    grown[: len(array)] = array
    return grown
