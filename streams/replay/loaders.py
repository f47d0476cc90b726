"""Logs and catalogs on disk → the JSON records the worker would receive.

Three kinds of input become one list of :class:`LogEvent`, sorted by timestamp:

* a **generic interaction log**: delimited text (CSV, TSV, ``::``-separated ``.dat``
  files like MovieLens/MovieTweetings) or JSON lines, gzipped or not, with columns
  named by a header, by ``columns=`` for header-less files, or by 0-based index;
  each row becomes an ``events`` record (``event_id`` ``replay-<line>``);
* the project's own **event JSONL** (what ``micromoment produce --file`` sends):
  each line is passed on byte for byte, so invalid lines are dead-lettered by the
  pipeline exactly as the worker would;
* an **item catalog** (:func:`load_items`): JSONL ``items`` records as they are, or a
  delimited file with an id column and a categories column (e.g. MovieTweetings'
  ``movies.dat``, ``id::title::Genre|Genre``), so the content learner sees categories.

Every event keeps the fields the scorer needs (user, item, type, value, group) next to
its record bytes, so the replay loop never decodes a record twice. Bad input (missing
file, unknown column, unparsable time or rating) raises :class:`ReplayError` naming the
file, line and column.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import orjson

from streams.replay.errors import ReplayError

__all__ = [
    "LogEvent",
    "LogSpec",
    "ItemSpec",
    "detect_format",
    "default_sep",
    "parse_time",
    "read_table",
    "load_log",
    "load_events",
    "load_items",
]

#: Epoch milliseconds past year 3000: a seconds log read as milliseconds never gets
#: there, a milliseconds log read as seconds always does.
_MAX_MS = 32_503_680_000_000
_JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}


@dataclass(slots=True)
class LogEvent:
    """One interaction to replay: its record bytes plus the fields the scorer needs.

    ``user_id``, ``item_id`` and ``event_type`` are what the line says (``None`` when
    it says nothing usable); the pipeline's validation has the last word on whether the
    record is valid.
    """

    timestamp: int
    user_id: str | None
    item_id: str | None
    event_type: str | None
    value: float | None
    group: str | None
    record: bytes
    line: int = 0

    @property
    def key(self) -> bytes | None:
        """The Kafka key a producer would send: the user id as UTF-8."""
        return None if self.user_id is None else self.user_id.encode("utf-8")


@dataclass(frozen=True, slots=True)
class LogSpec:
    """How to read a generic interaction log (each field is a ``micromoment replay`` flag).

    Column names may also be 0-based indices (``"0"``). ``rating_col`` and ``type_col``
    default to ``rating`` and ``event_type`` when the file has such columns. Rows become
    ``rating`` events when a rating column is used, ``view`` events otherwise, unless a
    type column names the event type.
    """

    fmt: str = "auto"  # auto, csv or jsonl
    sep: str | None = None
    columns: tuple[str, ...] | None = None
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    time_unit: str = "s"  # s, ms or iso
    rating_col: str | None = None
    type_col: str | None = None
    group_col: str | None = None


@dataclass(frozen=True, slots=True)
class ItemSpec:
    """How to read an item catalog file (``--items`` and its flags)."""

    sep: str | None = None
    columns: tuple[str, ...] | None = None
    id_col: str = "item_id"
    categories_col: str = "categories"
    categories_sep: str = "|"


# -- files ------------------------------------------------------------------------------


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def detect_format(path: str | Path) -> str:
    """``jsonl`` for ``.jsonl``/``.ndjson``/``.json`` (gzipped or not), else ``csv``.

    >>> detect_format("log.jsonl.gz"), detect_format("ratings.dat")
    ('jsonl', 'csv')
    """
    return "jsonl" if _suffix(Path(path)) in _JSONL_SUFFIXES else "csv"


def default_sep(path: str | Path) -> str:
    """The separator a file's extension implies: tab for ``.tsv``, ``::`` for ``.dat``.

    >>> default_sep("a.tsv.gz"), default_sep("ratings.dat"), default_sep("x.csv")
    ('\\t', '::', ',')
    """
    suffix = _suffix(Path(path))
    return {".tsv": "\t", ".tab": "\t", ".dat": "::"}.get(suffix, ",")


def _open_text(path: Path) -> io.TextIOBase:
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise ReplayError(f"{path} is a directory, not a log file (for the Open Bandit Dataset "
                          "use --format open-bandit)")
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def _split_lines(handle: io.TextIOBase, sep: str) -> Iterator[tuple[int, list[str]]]:
    if len(sep) == 1:
        reader = csv.reader(handle, delimiter=sep)
        for fields in reader:
            if fields and any(f.strip() for f in fields):
                yield reader.line_num, fields
    else:  # multi-character separators (``::``) are beyond the csv module
        for n, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield n, line.split(sep)


def read_table(path: str | Path, sep: str | None = None, columns: Sequence[str] | None = None,
               fmt: str = "auto") -> tuple[list[str] | None, Iterator[tuple[int, Any]]]:
    """Column names and an iterator of ``(line number, row)``.

    Delimited rows are lists of strings and the names come from the header line, or
    from ``columns`` when the file has none. JSON-lines rows are dicts (names ``None``:
    each object carries its own). The file is opened before returning, so a missing
    file fails here and not on first use.
    """
    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    handle = _open_text(path)
    if fmt == "jsonl":
        return None, _json_rows(handle, path)
    rows = _split_lines(handle, sep or default_sep(path))
    if columns:
        return list(columns), _closing(rows, handle)
    try:
        _, header = next(rows)
    except StopIteration:
        handle.close()
        raise ReplayError(f"{path} is empty") from None
    return [h.strip() for h in header], _closing(rows, handle)


def _closing(rows: Iterator[tuple[int, Any]], handle: io.TextIOBase) -> Iterator[tuple[int, Any]]:
    with handle:
        yield from rows


def _json_rows(handle: io.TextIOBase, path: Path) -> Iterator[tuple[int, dict]]:
    with handle:
        for n, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ReplayError(f"{path} line {n}: not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise ReplayError(f"{path} line {n}: not a JSON object")
            yield n, row


# -- values -----------------------------------------------------------------------------


def parse_time(text: Any, unit: str) -> int:
    """A timestamp in ``unit`` (``s``, ``ms`` or ``iso`` 8601) → epoch milliseconds.

    >>> parse_time("1363245118", "s"), parse_time(1363245118123, "ms")
    (1363245118000, 1363245118123)
    >>> parse_time("2019-11-24 00:00:34.762830+00:00", "iso")
    1574553634762
    >>> parse_time("2019-11-24T00:00:00", "iso")  # no zone: UTC
    1574553600000
    """
    if unit == "iso":
        stamp = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        return int(stamp.timestamp() * 1000)
    if isinstance(text, str):
        text = text.strip()
        number = int(text) if text.lstrip("-").isdigit() else float(text)
    elif isinstance(text, (int, float)) and not isinstance(text, bool):
        number = text
    else:
        raise ValueError(f"not a number: {text!r}")
    if unit == "s":
        ms = number * 1000 if isinstance(number, int) else round(number * 1000)
    elif unit == "ms":
        ms = number
    else:
        raise ValueError(f"unknown time unit {unit!r}: use s, ms or iso")
    if isinstance(ms, float) and not math.isfinite(ms):
        raise ValueError(f"not a finite time: {text!r}")
    return int(ms)


def _column(name: str, header: list[str], path: Path, what: str, hint: str = "") -> int:
    if name in header:
        return header.index(name)
    if name.isdigit() and int(name) < len(header):
        return int(name)
    shown = ", ".join(header) if len(header) <= 30 else ", ".join(header[:30]) + ", …"
    raise ReplayError(f"{path}: no {what} column {name!r}; the columns are: {shown or '(none)'}"
                      + hint)


def _hint(columns: Sequence[str] | None, flag: str) -> str:
    return "" if columns else f" (read from the first line; name a header-less file's columns with {flag})"


def _optional(name: str | None, default: str, header: list[str], path: Path, what: str,
              hint: str) -> int | None:
    if name is not None:
        return _column(name, header, path, what, hint)
    return header.index(default) if default in header else None


def _check_range(ms: int, path: Path, line: int, unit: str) -> int:
    if ms < 0 or ms > _MAX_MS:
        hint = " (milliseconds read as seconds? try --time-unit ms)" if unit == "s" and ms > 0 else ""
        raise ReplayError(f"{path} line {line}: timestamp {ms} ms is out of range{hint}")
    return ms


# -- generic logs -----------------------------------------------------------------------


def load_log(path: str | Path, spec: LogSpec = LogSpec(), limit: int = 0) -> list[LogEvent]:
    """Read a generic interaction log into events sorted by time (ties keep file order).

    ``limit`` > 0 keeps the first ``limit`` rows of the file (before sorting).
    """
    path = Path(path)
    fmt = detect_format(path) if spec.fmt == "auto" else spec.fmt
    if fmt not in ("csv", "jsonl"):
        raise ReplayError(f"unknown log format {fmt!r}")
    if spec.time_unit not in ("s", "ms", "iso"):
        raise ReplayError(f"--time-unit must be s, ms or iso, not {spec.time_unit!r}")
    header, rows = read_table(path, spec.sep, spec.columns, fmt)
    events = (_json_events(path, rows, spec, limit) if header is None
              else _table_events(path, header, rows, spec, limit))
    events.sort(key=_by_time)
    return events


def _by_time(event: LogEvent) -> int:
    return event.timestamp


def _record(line: int, user: str, item: str | None, kind: str, ms: int, value: float | None) -> bytes:
    record: dict[str, Any] = {"event_id": f"replay-{line}", "user_id": user, "event_type": kind,
                              "timestamp": ms}
    if item is not None:  # an empty cell: no item (valid only for recommendation_request)
        record["item_id"] = item
    if value is not None:
        record["value"] = value
    return orjson.dumps(record)


def _number(text: Any, path: Path, line: int, what: str) -> float | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ReplayError(f"{path} line {line}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ReplayError(f"{path} line {line}: {what} {text!r} is not finite")
    return value


def _time(text: Any, path: Path, line: int, spec: LogSpec) -> int:
    try:
        ms = parse_time(text, spec.time_unit)
    except (TypeError, ValueError, OverflowError):
        raise ReplayError(f"{path} line {line}: time {text!r} is not a {spec.time_unit} timestamp "
                          "(see --time-unit)") from None
    return _check_range(ms, path, line, spec.time_unit)


def _table_events(path: Path, header: list[str], rows: Iterator[tuple[int, list[str]]],
                  spec: LogSpec, limit: int) -> list[LogEvent]:
    hint = _hint(spec.columns, "--columns")
    user = _column(spec.user_col, header, path, "user", hint)
    item = _column(spec.item_col, header, path, "item", hint)
    when = _column(spec.time_col, header, path, "time", hint)
    rating = _optional(spec.rating_col, "rating", header, path, "rating", hint)
    kind = _optional(spec.type_col, "event_type", header, path, "event type", hint)
    group = _column(spec.group_col, header, path, "group", hint) if spec.group_col else None
    needed = max(i for i in (user, item, when, rating, kind, group) if i is not None) + 1
    default_kind = "rating" if rating is not None else "view"
    events: list[LogEvent] = []
    for line, fields in rows:
        if len(fields) < needed:
            raise ReplayError(f"{path} line {line}: {len(fields)} fields, expected at least {needed} "
                              "(wrong --sep or --columns?)")
        user_id, item_id = fields[user].strip(), fields[item].strip() or None
        ms = _time(fields[when], path, line, spec)
        value = None if rating is None else _number(fields[rating], path, line, "rating")
        event_type = fields[kind].strip() if kind is not None else default_kind
        events.append(LogEvent(ms, user_id, item_id, event_type, value,
                               None if group is None else fields[group].strip(),
                               _record(line, user_id, item_id, event_type, ms, value), line))
        if limit and len(events) >= limit:
            break
    return events


def _json_events(path: Path, rows: Iterator[tuple[int, dict]], spec: LogSpec,
                 limit: int) -> list[LogEvent]:
    events: list[LogEvent] = []
    rating_col = spec.rating_col or "rating"
    type_col = spec.type_col or "event_type"
    for line, row in rows:
        for name, what in ((spec.user_col, "user"), (spec.item_col, "item"), (spec.time_col, "time")):
            if row.get(name) is None:
                raise ReplayError(f"{path} line {line}: no {what} field {name!r}; the fields are: "
                                  f"{', '.join(map(str, row))}")
        for name in (spec.rating_col, spec.type_col, spec.group_col):
            if name is not None and name not in row:
                raise ReplayError(f"{path} line {line}: no field {name!r}; the fields are: "
                                  f"{', '.join(map(str, row))}")
        user_id, item_id = str(row[spec.user_col]), str(row[spec.item_col])
        ms = _time(row[spec.time_col], path, line, spec)
        value = _number(row.get(rating_col), path, line, "rating")
        default_kind = "rating" if value is not None else "view"
        event_type = str(row.get(type_col) or default_kind)
        group = row.get(spec.group_col) if spec.group_col else None
        events.append(LogEvent(ms, user_id, item_id, event_type, value,
                               None if group is None else str(group),
                               _record(line, user_id, item_id, event_type, ms, value), line))
        if limit and len(events) >= limit:
            break
    return events


# -- the project's own events --------------------------------------------------------------


def load_events(path: str | Path, group_col: str | None = None, limit: int = 0) -> list[LogEvent]:
    """Read an ``events`` JSONL file (README "Producing events"), sorted by timestamp.

    Each line's bytes are kept as the record value, invalid or not: the pipeline
    dead-letters what the worker would. ``group_col`` names a top-level field or a
    ``context`` key. Lines without an integer timestamp sort first.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
    ...     _ = f.write('{"event_id": "b", "user_id": "u", "item_id": "i", "event_type": "view",'
    ...                 ' "timestamp": 2000, "context": {"device": "ios"}}\\n'
    ...                 '{"event_id": "a", "user_id": "u", "item_id": "j", "event_type": "click",'
    ...                 ' "timestamp": 1000}\\nnot json\\n')
    >>> [(e.item_id, e.group) for e in load_events(f.name, group_col="device")]
    [(None, None), ('j', None), ('i', 'ios')]
    >>> os.unlink(f.name)
    """
    from streams.produce import read_event_lines

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise ReplayError(f"{path} is a directory, not an events file")
    events: list[LogEvent] = []
    for line, (raw, obj) in enumerate(read_event_lines(path), 1):
        obj = obj or {}
        ms = obj.get("timestamp")
        ms = ms if type(ms) is int else -1
        value = obj.get("value")
        value = float(value) if type(value) in (int, float) else None
        group = None
        if group_col:
            context = obj.get("context")
            group = obj.get(group_col)
            if group is None and isinstance(context, dict):
                group = context.get(group_col)
        events.append(LogEvent(ms, _text(obj.get("user_id")), _text(obj.get("item_id")),
                               _text(obj.get("event_type")), value,
                               None if group is None else str(group), bytes(raw), line))
        if limit and len(events) >= limit:
            break
    events.sort(key=_by_time)
    return events


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# -- catalogs -------------------------------------------------------------------------------


def load_items(path: str | Path, spec: ItemSpec = ItemSpec()) -> list[tuple[bytes, bytes]]:
    """Catalog records ``(key, value)`` for the ``items`` topic, in file order.

    JSON lines are passed on as they are; a delimited file gives
    ``{"item_id", "categories"}`` records (categories split on ``categories_sep``;
    an empty field means none).
    """
    path = Path(path)
    if detect_format(path) == "jsonl":
        from streams.produce import read_event_lines

        if not path.exists():
            raise FileNotFoundError(f"no such file: {path}")
        records = []
        for raw, obj in read_event_lines(path):
            item_id = (obj or {}).get("item_id")
            key = item_id.encode("utf-8") if isinstance(item_id, str) else b""
            records.append((key, bytes(raw)))
        return records
    header, rows = read_table(path, spec.sep, spec.columns)
    assert header is not None
    hint = _hint(spec.columns, "--item-columns")
    id_at = _column(spec.id_col, header, path, "item id", hint)
    categories_at = _column(spec.categories_col, header, path, "categories", hint)
    needed = max(id_at, categories_at) + 1
    records = []
    for line, fields in rows:
        if len(fields) < needed:
            raise ReplayError(f"{path} line {line}: {len(fields)} fields, expected at least {needed} "
                              "(wrong --item-sep or --item-columns?)")
        item_id = fields[id_at].strip()
        categories = [c.strip() for c in fields[categories_at].split(spec.categories_sep) if c.strip()]
        records.append((item_id.encode("utf-8"),
                        orjson.dumps({"item_id": item_id, "categories": categories})))
    return records
