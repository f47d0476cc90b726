"""The catalog keeps rows stable and aligned, and deletions stick."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from streams.catalog import Catalog
from streams.records import ItemUpdate


def test_rows_are_dense_stable_and_survive_growth():
    catalog = Catalog(initial_capacity=2)
    rows = [catalog.ensure(f"item-{i}") for i in range(100)]
    assert rows == list(range(100))
    assert len(catalog) == 100
    assert len(catalog.available_mask()) == 100
    assert catalog.available_mask().all()
    for i in range(100):
        assert catalog.index_of(f"item-{i}") == i
        assert catalog.item_id_at(i) == f"item-{i}"
    # Re-registering or upserting a known item never moves it.
    assert catalog.ensure("item-42") == 42
    assert catalog.upsert(ItemUpdate("item-7", categories=("x",))) == 7
    assert len(catalog) == 100


def test_upsert_sets_and_replaces_metadata():
    catalog = Catalog()
    row = catalog.upsert(
        ItemUpdate("shoe", categories=("footwear", "sale"), attributes={"brand": "acme"})
    )
    assert catalog.categories_of("shoe") == ("footwear", "sale")
    assert catalog.attributes_of("shoe") == {"brand": "acme"}
    catalog.upsert(ItemUpdate("shoe", available=False, categories=("footwear",)))
    assert catalog.categories_of("shoe") == ("footwear",)
    assert catalog.attributes_of("shoe") == {}
    assert not catalog.available_mask()[row]
    assert not catalog.is_deleted("shoe")  # unavailable is not deleted


def test_item_first_seen_in_an_event_is_available_without_metadata():
    catalog = Catalog()
    row = catalog.ensure("mystery")
    assert catalog.available_mask()[row]
    assert catalog.categories_of("mystery") == ()
    assert catalog.attributes_of("mystery") == {}
    # Its metadata arrives later from the feed, on the same row.
    assert catalog.upsert(ItemUpdate("mystery", categories=("toys",))) == row
    assert catalog.categories_of("mystery") == ("toys",)


def test_deleted_item_is_not_revived_by_an_event_but_is_by_the_feed():
    catalog = Catalog()
    catalog.upsert(ItemUpdate("a"))
    catalog.upsert(ItemUpdate("b"))
    catalog.remove("a")
    assert catalog.available_mask().tolist() == [False, True]
    assert catalog.is_deleted("a")
    assert catalog.ensure("a") == 0  # same row ...
    assert catalog.available_mask().tolist() == [False, True]  # ... still unavailable
    assert catalog.is_deleted("a")
    catalog.upsert(ItemUpdate("a"))
    assert catalog.available_mask().tolist() == [True, True]
    assert not catalog.is_deleted("a")


def test_tombstone_for_an_unknown_item_blocks_a_later_event():
    catalog = Catalog()
    catalog.remove("ghost")
    row = catalog.ensure("ghost")
    assert row == catalog.index_of("ghost")
    assert not catalog.available_mask()[row]
    assert not catalog.is_available("ghost")


def test_unknown_lookups():
    catalog = Catalog()
    assert catalog.index_of("nope") is None
    assert catalog.categories_of("nope") == ()
    assert catalog.attributes_of("nope") == {}
    assert "nope" not in catalog
    assert len(catalog) == 0
    assert catalog.available_mask().shape == (0,)
    with pytest.raises(IndexError):
        catalog.item_id_at(0)


def test_available_mask_is_read_only():
    catalog = Catalog()
    catalog.ensure("a")
    mask = catalog.available_mask()
    with pytest.raises(ValueError):
        mask[0] = False
    assert catalog.available_mask()[0]


def test_pickle_round_trip():
    catalog = Catalog(initial_capacity=1)
    for i in range(10):
        catalog.upsert(ItemUpdate(f"i{i}", available=i % 3 != 0, categories=(f"c{i % 2}",)))
    catalog.remove("i4")
    clone = pickle.loads(pickle.dumps(catalog))
    assert len(clone) == len(catalog)
    np.testing.assert_array_equal(clone.available_mask(), catalog.available_mask())
    assert clone.categories_of("i5") == ("c1",)
    assert clone.is_deleted("i4")
    assert clone.ensure("new") == 10
