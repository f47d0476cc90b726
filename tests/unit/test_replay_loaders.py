"""Loaders: delimited and JSON-lines logs, gzip, header-less files, time units, catalogs."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from streams.replay.errors import ReplayError
from streams.replay.loaders import (
    ItemSpec,
    LogSpec,
    load_events,
    load_items,
    load_log,
    parse_time,
)


def write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_header_sorts_by_time_and_builds_worker_records(tmp_path):
    log = write(tmp_path / "log.csv", "user_id,item_id,timestamp,rating\n"
                                      "u1,i2,1700000002,4.5\n"
                                      "u2,i1,1700000001,3\n"
                                      "u1,i3,1700000002,\n")
    events = load_log(log)
    assert [(e.user_id, e.item_id, e.timestamp) for e in events] == [
        ("u2", "i1", 1_700_000_001_000), ("u1", "i2", 1_700_000_002_000),
        ("u1", "i3", 1_700_000_002_000)]  # ties keep file order
    assert [e.event_type for e in events] == ["rating"] * 3  # the "rating" column is used
    assert [e.value for e in events] == [3.0, 4.5, None]
    record = orjson.loads(events[1].record)
    assert record == {"event_id": "replay-2", "user_id": "u1", "item_id": "i2",
                      "event_type": "rating", "timestamp": 1_700_000_002_000, "value": 4.5}
    assert "value" not in orjson.loads(events[2].record)
    assert events[0].key == b"u2"


def test_tsv_gz_with_milliseconds_types_and_a_group(tmp_path):
    log = write(tmp_path / "log.tsv.gz", "who\twhat\twhen\tkind\tdevice\n"
                                         "a\tx\t1700000000500\tclick\tios\n"
                                         "b\ty\t1700000000100\tpurchase\tweb\n")
    spec = LogSpec(user_col="who", item_col="what", time_col="when", time_unit="ms",
                   type_col="kind", group_col="device")
    events = load_log(log, spec)
    assert [(e.user_id, e.event_type, e.timestamp, e.group) for e in events] == [
        ("b", "purchase", 1_700_000_000_100, "web"), ("a", "click", 1_700_000_000_500, "ios")]
    assert all(e.value is None for e in events)


def test_rows_without_rating_or_type_are_views(tmp_path):
    log = write(tmp_path / "log.csv", "user_id,item_id,timestamp\nu,i,1\nu,,2\n")
    first, second = load_log(log)
    assert first.event_type == "view"
    assert second.item_id is None and "item_id" not in orjson.loads(second.record)  # empty cell


def test_headerless_dat_with_named_columns_and_double_colon(tmp_path):
    # MovieTweetings' ratings.dat: user::item::rating::timestamp, no header.
    log = write(tmp_path / "ratings.dat", "1::0120735::9::1363245118\n2::2592910::10::1362901837\n")
    spec = LogSpec(columns=("user_id", "item_id", "rating", "timestamp"))
    events = load_log(log, spec)
    assert [(e.user_id, e.item_id, e.value) for e in events] == [("2", "2592910", 10.0),
                                                                 ("1", "0120735", 9.0)]


def test_columns_by_index(tmp_path):
    log = write(tmp_path / "log.csv", "a,b,c\nu1,i1,5\n")
    events = load_log(log, LogSpec(user_col="0", item_col="1", time_col="2"))
    assert (events[0].user_id, events[0].item_id, events[0].timestamp) == ("u1", "i1", 5000)


def test_explicit_separator_and_limit(tmp_path):
    log = write(tmp_path / "log.txt", "user_id;item_id;timestamp\nu;a;3\nu;b;2\nu;c;1\n")
    events = load_log(log, LogSpec(sep=";"), limit=2)
    assert [e.item_id for e in events] == ["b", "a"]  # the first two rows, then sorted


def test_generic_jsonl(tmp_path):
    log = write(tmp_path / "log.jsonl", '{"user": 7, "item": "i", "ts": "2019-11-24T00:00:00Z", '
                                        '"stars": 4}\n\n{"user": 8, "item": "j", '
                                        '"ts": "2019-11-23T00:00:00+00:00", "stars": 2}\n')
    spec = LogSpec(user_col="user", item_col="item", time_col="ts", time_unit="iso",
                   rating_col="stars")
    events = load_log(log, spec)
    assert [(e.user_id, e.value) for e in events] == [("8", 2.0), ("7", 4.0)]
    assert events[1].timestamp == 1_574_553_600_000
    assert events[1].event_type == "rating"


def test_time_units():
    assert parse_time("1.5", "s") == 1500
    assert parse_time(" 42 ", "ms") == 42
    assert parse_time("2019-11-24 00:00:34.762830+00:00", "iso") == 1_574_553_634_762
    with pytest.raises(ValueError):
        parse_time("yesterday", "s")


@pytest.mark.parametrize(
    ("content", "spec", "message"),
    [
        ("user_id,item_id,timestamp\nu,i,1\n", LogSpec(user_col="customer"),
         r"no user column 'customer'; the columns are: user_id, item_id, timestamp"),
        ("user_id,item_id,timestamp\nu,i,1\n", LogSpec(rating_col="stars"), r"no rating column 'stars'"),
        ("user_id,item_id,timestamp\nu,i,1\n", LogSpec(group_col="9"), r"no group column '9'"),
        ("1,2,3\n", LogSpec(), r"no user column 'user_id'.*--columns"),
        ("user_id,item_id,timestamp\nu,i,soon\n", LogSpec(), r"line 2: time 'soon'"),
        ("user_id,item_id,timestamp,rating\nu,i,1,great\n", LogSpec(), r"line 2: rating 'great'"),
        ("user_id,item_id,timestamp\nu,i\n", LogSpec(), r"line 2: 2 fields, expected at least 3"),
        ("user_id,item_id,timestamp\nu,i,1700000000000\n", LogSpec(),
         r"out of range \(milliseconds read as seconds\? try --time-unit ms\)"),
        ("", LogSpec(), r"is empty"),
    ],
)
def test_bad_input_names_the_problem(tmp_path, content, spec, message):
    log = write(tmp_path / "log.csv", content)
    with pytest.raises(ReplayError, match=message):
        load_log(log, spec)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_log(tmp_path / "absent.csv")
    with pytest.raises(ReplayError, match="is a directory"):
        load_log(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_events(tmp_path / "absent.jsonl")


def test_events_jsonl_keeps_each_line_byte_for_byte(tmp_path):
    lines = [b'{"event_id":"e2","user_id":"u","item_id":"b","event_type":"click","timestamp":20,'
             b'"context":{"page":"home"}}',
             b'{"event_id":"e1","user_id":"u","item_id":"a","event_type":"view","timestamp":10}',
             b'{"event_id":"e3","user_id":5,"event_type":"view","timestamp":"x"}']
    path = tmp_path / "events.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"\n".join(lines) + b"\n")
    events = load_events(path, group_col="page")
    assert [e.record for e in events] == [lines[2], lines[1], lines[0]]
    assert events[0].user_id is None and events[0].timestamp == -1  # invalid: the pipeline decides
    assert (events[2].item_id, events[2].event_type, events[2].group) == ("b", "click", "home")


def test_headerless_catalog_with_categories(tmp_path):
    movies = write(tmp_path / "movies.dat", "0002844::Fantômas (1913)::Crime|Drama\n"
                                            "0007264::The Rink (1916)::\n")
    records = load_items(movies, ItemSpec(columns=("item_id", "title", "categories")))
    assert [(key, orjson.loads(value)) for key, value in records] == [
        (b"0002844", {"item_id": "0002844", "categories": ["Crime", "Drama"]}),
        (b"0007264", {"item_id": "0007264", "categories": []})]


def test_catalog_jsonl_and_bad_columns(tmp_path):
    items = write(tmp_path / "items.jsonl", '{"item_id": "a", "categories": ["x"], "available": false}\n')
    assert load_items(items) == [(b"a", b'{"item_id": "a", "categories": ["x"], "available": false}')]
    table = write(tmp_path / "items.csv", "id,genres\na,x|y\n")
    with pytest.raises(ReplayError, match="no item id column 'item_id'"):
        load_items(table)
    records = load_items(table, ItemSpec(id_col="id", categories_col="genres"))
    assert orjson.loads(records[0][1])["categories"] == ["x", "y"]
