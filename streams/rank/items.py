"""Item categories and business rules as arrays aligned with the catalog rows.

Selection needs per-item facts for the whole catalog on every request -- "is this item
in a muted category", "is it in a category the user has seen", "how alike are these
two items" -- and a Python loop over 10,000 items costs milliseconds. So the categories
are coded once per item, as small integers in a ``(rows, width)`` array padded with
``-1`` (like :class:`~streams.learners.CategoryAffinity` keeps its features), and the
static business rules (excluded categories and attribute values from configuration)
are folded into one boolean per row when the item is indexed. A per-request question
is then a gather from a flag vector over the category codes.

Rows are read lazily (the first request after new items indexes them); an item whose
metadata changed is re-read by :meth:`ItemIndex.index_item`, which the recommender calls
from its catalog feed.
"""

from __future__ import annotations

import typing

import numpy as np

from streams.catalog import Catalog

__all__ = ["ItemIndex", "parse_attribute_rules"]


def parse_attribute_rules(rules: typing.Iterable[str]) -> frozenset[tuple[str, str]]:
    """``name=value`` strings as ``(name, value)`` pairs; raises ``ValueError`` on others.

    >>> sorted(parse_attribute_rules(["brand=acme", " adult = true "]))
    [('adult', 'true'), ('brand', 'acme')]
    >>> parse_attribute_rules(["brand"])
    Traceback (most recent call last):
    ...
    ValueError: attribute rule 'brand' must look like name=value
    """
    pairs = set()
    for rule in rules:
        name, sep, value = str(rule).partition("=")
        if not sep or not name.strip():
            raise ValueError(f"attribute rule {rule!r} must look like name=value")
        pairs.add((name.strip(), value.strip()))
    return frozenset(pairs)


class ItemIndex:
    """Category codes and business-rule exclusions per catalog row.

    Parameters
    ----------
    catalog
        The catalog whose rows the arrays follow.
    exclude_categories
        Items in any of these categories are never recommended.
    exclude_attributes
        ``name=value`` rules: items with any such attribute value are never recommended.

    Examples
    --------
    >>> from streams.records import ItemUpdate
    >>> catalog = Catalog()
    >>> for item, cats, attrs in [("boot", ("shoes",), {}), ("tote", ("bags", "sale"), {}),
    ...                           ("gun", ("toys",), {"adult": "true"})]:
    ...     _ = catalog.upsert(ItemUpdate(item, categories=cats, attributes=attrs))
    >>> index = ItemIndex(catalog, exclude_attributes=("adult=true",))
    >>> index.ruled_out(3).tolist()
    [False, False, True]
    >>> index.in_categories({"sale", "shoes"}, 3).tolist()
    [True, True, False]
    >>> index.categories_at(1)
    ('bags', 'sale')
    >>> _ = catalog.upsert(ItemUpdate("boot", categories=("sale",)))
    >>> index.index_item("boot")  # the catalog feed re-categorized it
    >>> index.in_categories({"shoes"}, 3).tolist()
    [False, False, False]
    """

    def __init__(
        self,
        catalog: Catalog,
        exclude_categories: typing.Iterable[str] = (),
        exclude_attributes: typing.Iterable[str] = (),
    ) -> None:
        self.catalog = catalog
        self.exclude_categories = frozenset(exclude_categories)
        self.exclude_attributes = frozenset(exclude_attributes)
        self._rules = parse_attribute_rules(self.exclude_attributes)
        self._code_of: dict[str, int] = {}
        self._names: list[str] = []
        self._codes = np.full((64, 1), -1, dtype=np.int32)
        self._ruled_out = np.zeros(64, dtype=bool)
        self._n_indexed = 0

    # -- indexing ------------------------------------------------------------------------

    def index_item(self, item_id: str) -> None:
        """(Re-)read ``item_id``'s categories and attributes from the catalog."""
        row = self.catalog.index_of(item_id)
        if row is None:
            return
        if row >= self._n_indexed:
            self.sync(row + 1)
        else:
            self._index_row(row)

    def sync(self, n_rows: int) -> None:
        """Index catalog rows up to ``n_rows`` (each row is read once)."""
        n_rows = min(n_rows, len(self.catalog))
        if n_rows <= self._n_indexed:
            return
        if n_rows > len(self._codes):
            capacity = len(self._codes)
            while capacity < n_rows:
                capacity *= 2
            codes = np.full((capacity, self._codes.shape[1]), -1, dtype=np.int32)
            codes[: len(self._codes)] = self._codes
            ruled_out = np.zeros(capacity, dtype=bool)
            ruled_out[: len(self._ruled_out)] = self._ruled_out
            self._codes, self._ruled_out = codes, ruled_out
        for row in range(self._n_indexed, n_rows):
            self._index_row(row)
        self._n_indexed = n_rows

    def _index_row(self, row: int) -> None:
        item_id = self.catalog.item_id_at(row)
        categories = tuple(dict.fromkeys(self.catalog.categories_of(item_id)))
        codes = [self.code(name) for name in categories]
        if len(codes) > self._codes.shape[1]:
            wider = np.full((len(self._codes), len(codes)), -1, dtype=np.int32)
            wider[:, : self._codes.shape[1]] = self._codes
            self._codes = wider
        self._codes[row] = -1
        self._codes[row, : len(codes)] = codes
        ruled_out = bool(self.exclude_categories.intersection(categories))
        if self._rules and not ruled_out:
            attributes = self.catalog.attributes_of(item_id)
            ruled_out = any(str(attributes.get(name)) == value for name, value in self._rules
                            if name in attributes)
        self._ruled_out[row] = ruled_out

    def code(self, name: str) -> int:
        """The code of category ``name``, allocated on first use."""
        code = self._code_of.get(name)
        if code is None:
            code = self._code_of[name] = len(self._names)
            self._names.append(name)
        return code

    # -- reads ---------------------------------------------------------------------------

    def codes(self, n_rows: int) -> np.ndarray:
        """Category codes of rows ``0 .. n_rows - 1``, shape ``(n_rows, width)``, ``-1`` pads."""
        self.sync(n_rows)
        return self._codes[:n_rows]

    def name(self, code: int) -> str:
        return self._names[code]

    def categories_at(self, row: int) -> tuple[str, ...]:
        """The categories of the item at ``row``, in catalog order."""
        self.sync(row + 1)
        return tuple(self._names[c] for c in self._codes[row].tolist() if c >= 0)

    def ruled_out(self, n_rows: int) -> np.ndarray:
        """Per row: excluded by the configured business rules (read-only view)."""
        self.sync(n_rows)
        return self._ruled_out[:n_rows]

    def flags(self, names: typing.Iterable[str]) -> np.ndarray:
        """A boolean vector over category codes (plus a trailing ``False`` pad slot)."""
        flags = np.zeros(len(self._names) + 1, dtype=bool)
        known = [self._code_of[n] for n in names if n in self._code_of]
        if known:
            flags[known] = True
        return flags

    def in_categories(self, names: typing.Iterable[str], n_rows: int) -> np.ndarray:
        """Per row: the item is in at least one of the categories ``names``."""
        return self.any_flagged(self.flags(names), n_rows)

    def any_flagged(self, flags: np.ndarray, n_rows: int, rows: np.ndarray | None = None
                    ) -> np.ndarray:
        """Per row (of ``rows``, default all): one of the item's categories is set in ``flags``."""
        codes = self.codes(n_rows)
        if rows is not None:
            codes = codes[rows]
        if len(flags) < len(self._names) + 1:  # categories coded since flags were built
            padded = np.zeros(len(self._names) + 1, dtype=bool)
            padded[: len(flags) - 1] = flags[:-1]
            flags = padded
        if codes.shape[1] == 1:
            return flags[codes[:, 0]]  # -1 reads the False pad slot
        return flags[codes].any(axis=1)

    def category_flags_of_rows(self, rows: typing.Iterable[int], n_rows: int) -> np.ndarray:
        """Flags of every category of the items at ``rows`` (e.g. the user's history)."""
        codes = self.codes(n_rows)
        rows = [r for r in rows if 0 <= r < n_rows]
        flags = np.zeros(len(self._names) + 1, dtype=bool)
        if rows:
            seen = codes[rows].ravel()
            flags[seen[seen >= 0]] = True
        return flags
