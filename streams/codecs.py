"""Bytes <-> dicts for every topic, in JSON or Avro, detected per record.

Producers differ: a web tier writes JSON, a JVM service writes Confluent-framed Avro,
a script writes plain Avro. Rather than configure a format per topic (and dead-letter
everything when one producer changes), the format is detected per record:

1. a ``content-type`` header wins: ``application/json`` -> JSON;
   ``application/avro`` or ``avro/binary`` -> Avro (Confluent-framed if the body starts
   with the magic byte 0x00 and is at least 5 bytes long);
2. without one, a first byte 0x00 means the Confluent wire format (magic byte, 4-byte
   schema id that we ignore, then Avro binary written with *our* schema);
3. anything else is JSON.

So plain, unframed Avro must carry the ``content-type: application/avro`` header: it
cannot be told from garbage otherwise. The 0x00 rule is unambiguous for our schemas
because each starts with a non-empty id string, whose Avro length prefix is never 0x00.

Schemas are loaded once: parsed by the ``avro`` package (strict: bad names, types or
defaults fail at startup, not on the first record) and by ``fastavro`` for the hot
path. ``timestamp-millis`` logical types are dropped from the fastavro copy so
timestamps decode as the epoch-millisecond ints the rest of the pipeline uses (the
binary encoding is the same long either way).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import fastavro
import orjson

from streams.errors import DecodeError, InvalidRecord
from streams.records import DeadLetter, Event, Recommendation

__all__ = [
    "SCHEMA_KINDS",
    "DecodeError",
    "InvalidRecord",
    "schema_dir",
    "load_schema",
    "avro_schema",
    "detect_format",
    "decode",
    "encode",
    "encode_event",
    "encode_recommendation",
    "encode_dead_letter",
    "DEAD_LETTER_MAX_BYTES",
    "decode_recommendation",
    "decode_dead_letter",
]

Format = Literal["json", "avro", "avro-confluent"]

#: Every schema kind, named after its file ``schemas/<kind>.avsc``.
SCHEMA_KINDS: tuple[str, ...] = ("event", "item", "user", "recommendation", "dead_letter",
                                  "decision_request", "decision", "reward")

_JSON_HEADERS = [("content-type", b"application/json")]
_AVRO_HEADERS = [("content-type", b"application/avro")]
_CONTENT_TYPES: dict[Any, str] = {  # header value (str or bytes, as sent) -> format
    ctype: fmt
    for name, fmt in (("application/json", "json"), ("application/avro", "avro"), ("avro/binary", "avro"))
    for ctype in (name, name.encode())
}
_NOT_JSON_HINT = ("; Avro records must start with the Confluent magic byte 0x00 "
                  "or carry the header content-type: application/avro")


def schema_dir() -> Path:
    """Where the ``.avsc`` files are: inside the package when installed from a wheel
    (pyproject force-includes ``schemas/`` as ``streams/_schemas``), else the repo's
    top-level ``schemas/`` (editable install, source checkout).

    >>> (schema_dir() / "event.avsc").is_file()
    True
    """
    packaged = Path(__file__).resolve().parent / "_schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "schemas"


def _check_kind(kind: str) -> None:
    if kind not in SCHEMA_KINDS:
        raise ValueError(f"unknown schema kind {kind!r}; known: {', '.join(SCHEMA_KINDS)}")


@lru_cache(maxsize=None)
def _schema_text(kind: str) -> str:
    _check_kind(kind)
    return (schema_dir() / f"{kind}.avsc").read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def avro_schema(kind: str) -> Any:
    """The schema parsed by the reference ``avro`` package, which validates it strictly.

    >>> avro_schema("user").fullname
    'io.micromoment.User'
    """
    import avro.schema  # only needed once per kind, at startup

    return avro.schema.parse(_schema_text(kind))


def _drop_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _drop_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_drop_logical_types(v) for v in node]
    return node


@lru_cache(maxsize=None)
def load_schema(kind: str) -> dict[str, Any]:
    """The fastavro-parsed schema of ``kind`` (one of :data:`SCHEMA_KINDS`), parsed once.

    Also parses it with ``avro`` first, so a broken schema file fails loudly here.
    The result is shared: do not mutate it.

    >>> load_schema("event")["name"]
    'io.micromoment.Event'
    """
    avro_schema(kind)
    raw = _drop_logical_types(json.loads(_schema_text(kind)))
    return fastavro.parse_schema(raw)


@lru_cache(maxsize=None)
def _bytes_fields(kind: str) -> tuple[str, ...]:
    """Top-level fields of Avro type ``bytes`` (or a union with it): base64 in JSON."""

    def is_bytes(t: Any) -> bool:
        return t == "bytes" or (isinstance(t, list) and "bytes" in t)

    return tuple(f["name"] for f in json.loads(_schema_text(kind))["fields"] if is_bytes(f["type"]))


def _header_content_type(headers: Any) -> str | bytes | None:
    """The raw ``content-type`` header value, or None. Lists first: that is what Faust gives."""
    if type(headers) is list or type(headers) is tuple:
        items: Iterable[Any] = headers
    elif isinstance(headers, Mapping):
        items = headers.items()
    else:
        items = headers
    for name, value in items:
        if name == "content-type" or (
                (name.decode("latin-1") if isinstance(name, bytes) else name).lower() == "content-type"):
            return value
    return None


def _format_from_content_type(value: Any) -> str | None:
    """'json', 'avro' or None (unknown or absent: fall back to sniffing the bytes)."""
    try:
        fmt = _CONTENT_TYPES.get(value)
    except TypeError:  # unhashable, e.g. a bytearray
        fmt = None
    if fmt is None and value is not None:
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = bytes(value).decode("latin-1")
        fmt = _CONTENT_TYPES.get(value.split(";", 1)[0].strip().lower())
    return fmt


def detect_format(value: bytes, headers: Any = None) -> Format:
    """Which wire format ``value`` is in (see the module docstring for the rules).

    ``headers`` may be a list of ``(name, value)`` pairs (as aiokafka and Faust give
    them), a mapping, or None; the header name is matched case-insensitively, and an
    unknown content type falls back to sniffing the bytes.

    >>> detect_format(b'{"a": 1}')
    'json'
    >>> detect_format(b"\\x00\\x00\\x00\\x00\\x07\\x04e1")
    'avro-confluent'
    >>> detect_format(b"\\x04e1", [("Content-Type", b"application/avro")])
    'avro'
    >>> detect_format(b"\\x00\\x00", {"content-type": "application/json; charset=utf-8"})
    'json'
    """
    if headers:
        fmt = _format_from_content_type(_header_content_type(headers))
        if fmt == "json":
            return "json"
        if fmt == "avro":
            return "avro-confluent" if len(value) >= 5 and value[0] == 0 else "avro"
    if value[:1] == b"\x00":
        return "avro-confluent"
    return "json"


def _decode_json(kind: str, value: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("invalid_utf8", f"{kind} value is not valid UTF-8, so not valid JSON"
                              f"{_NOT_JSON_HINT}") from None
        raise DecodeError("invalid_json", f"{kind} value is not valid JSON{_NOT_JSON_HINT} ({exc})") from None
    if type(data) is not dict:
        raise DecodeError("not_an_object",
                          f"{kind} value must be a JSON object, got a JSON {_json_type(data)}")
    for name in _bytes_fields(kind):
        raw = data.get(name)
        if raw is None:
            continue
        if not isinstance(raw, str):
            raise InvalidRecord("wrong_type", f"{kind} field {name!r} must be a base64 string or null "
                                f"in JSON, got {_json_type(raw)}")
        try:
            data[name] = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRecord("invalid_value", f"{kind} field {name!r} is not valid base64") from None
    return data


def _json_type(data: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null", dict: "object"}.get(type(data), type(data).__name__)


def _decode_avro(kind: str, value: bytes, confluent: bool) -> dict[str, Any]:
    schema = load_schema(kind)
    if confluent:
        if len(value) < 5:
            raise DecodeError("invalid_avro", f"{kind} value of {len(value)} bytes is too short for the "
                              "Confluent wire format (magic byte 0x00 + 4-byte schema id + Avro)")
        start = 5
    else:
        start = 0
    buf = io.BytesIO(value)
    buf.seek(start)
    try:
        data = fastavro.schemaless_reader(buf, schema)
    except UnicodeDecodeError:
        raise DecodeError("invalid_utf8", f"{kind} Avro value has a string that is not valid UTF-8") from None
    except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, ... on bad input
        raise DecodeError("invalid_avro", f"{kind} value is not valid Avro for schema "
                          f"{schema['name']} ({type(exc).__name__}: {exc})") from None
    extra = len(value) - buf.tell()
    if extra:
        raise DecodeError("invalid_avro", f"{kind} value has {extra} trailing bytes after the "
                          f"Avro record (wrong schema, or several records in one message?)")
    return data


def decode(kind: str, value: bytes, headers: Any = None) -> dict[str, Any]:
    """Decode one record of ``kind`` into a plain dict (not yet validated).

    Raises :class:`DecodeError` with ``error_type`` one of ``invalid_json``,
    ``invalid_avro``, ``not_an_object``, ``invalid_utf8`` (and, for base64 fields of a
    JSON dead letter, ``wrong_type``/``invalid_value`` as :class:`InvalidRecord`).

    >>> decode("user", b'{"user_id": "u1"}')
    {'user_id': 'u1'}
    >>> decode("user", b"[1]")
    Traceback (most recent call last):
    ...
    streams.errors.DecodeError: user value must be a JSON object, got a JSON array
    """
    fmt = detect_format(value, headers)
    if fmt == "json":
        return _decode_json(kind, value)
    return _decode_avro(kind, value, fmt == "avro-confluent")


def encode(kind: str, record: Mapping[str, Any],
           fmt: Literal["json", "avro"] = "json") -> tuple[bytes, list[tuple[str, bytes]]]:
    """Encode ``record`` as ``fmt``; returns the value bytes and the headers to send.

    JSON carries ``bytes`` fields as standard base64. Avro is schemaless (no framing),
    which is why the ``content-type`` header must travel with it.

    >>> encode("user", {"user_id": "u1", "consent_personalization": True, "attributes": {}})
    (b'{"user_id":"u1","consent_personalization":true,"attributes":{}}', [('content-type', b'application/json')])
    >>> value, headers = encode("user", {"user_id": "u1", "muted_categories": ["shoes"]}, "avro")
    >>> value[:14], decode("user", value, headers)["muted_categories"]  # defaults filled in
    (b'\\x04u1\\x01\\x00\\x00\\x00\\x02\\nshoes', ['shoes'])
    """
    if fmt == "json":
        fields = _bytes_fields(kind)
        if fields:
            record = dict(record)
            for name in fields:
                if record.get(name) is not None:
                    record[name] = base64.b64encode(record[name]).decode("ascii")
        return orjson.dumps(record), list(_JSON_HEADERS)
    if fmt == "avro":
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, load_schema(kind), record, strict_allow_default=True)
        return buf.getvalue(), list(_AVRO_HEADERS)
    raise ValueError(f"unknown wire format {fmt!r}; expected 'json' or 'avro'")


def _event_dict(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "item_id": event.item_id,
        "event_type": event.event_type,
        "timestamp": event.timestamp,
        "value": event.value,
        "context": dict(event.context),
        "recommendation_id": event.recommendation_id,
    }


def encode_event(event: Event, fmt: Literal["json", "avro"] = "json") -> tuple[bytes, list[tuple[str, bytes]]]:
    """Encode an :class:`~streams.records.Event` (producers, tests, the demo generator).

    >>> encode_event(Event("e1", "u1", "i1", "view", 1_700_000_000_000))[0]
    b'{"event_id":"e1","user_id":"u1","item_id":"i1","event_type":"view","timestamp":1700000000000,"value":null,"context":{},"recommendation_id":null}'
    """
    return encode("event", _event_dict(event), fmt)


def encode_recommendation(rec: Recommendation,
                          fmt: Literal["json", "avro"] = "json") -> tuple[bytes, list[tuple[str, bytes]]]:
    """Encode a :class:`~streams.records.Recommendation` for the recommendations topic.

    >>> from streams.records import RecommendedItem
    >>> rec = Recommendation("r1", "u1", "e1", (RecommendedItem("i1", 0.5, "popular", "pop"),),
    ...                      "v1", 2_000, 1_000)
    >>> decode_recommendation(*encode_recommendation(rec, "avro"))["items"]
    [{'item_id': 'i1', 'score': 0.5, 'reason': 'popular', 'source': 'pop', 'propensity': 1.0}]
    """
    return encode("recommendation", rec.to_dict(), fmt)


#: Largest dead letter sent, counting the Kafka key it is sent with (the original key):
#: under Faust's producer_max_request_size (1,000,000) and Kafka's default max.message.bytes.
DEAD_LETTER_MAX_BYTES = 990_000


def encode_dead_letter(dl: DeadLetter, fmt: Literal["json", "avro"] = "json",
                       max_bytes: int = DEAD_LETTER_MAX_BYTES) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Encode a :class:`~streams.records.DeadLetter`; in JSON its key/value bytes are base64.

    A dead letter embeds the original key and value (in JSON as base64, 4/3 their size), so
    for a record near Kafka's 1 MB limit it would be too large to send, and the worker would
    crash on that record again after every restart. When it would exceed ``max_bytes``, the
    embedded value, then the embedded key, are cut to a prefix that fits, and the reason
    says so with their full sizes and SHA-256 (topic, partition and offset still point to
    the original record).

    >>> dl = DeadLetter("events", 0, 7, b"u1", b"\\xff", "not JSON", "invalid_utf8", 1_000)
    >>> encode_dead_letter(dl)[0][:60]
    b'{"topic":"events","partition":0,"offset":7,"key":"dTE=","val'
    >>> big = DeadLetter("events", 0, 7, b"u1", b"x" * 10_000, "too big", "oversized", 1_000)
    >>> value, _ = encode_dead_letter(big, max_bytes=5_000)
    >>> len(value) <= 5_000, decode_dead_letter(value)["reason"][:67]
    (True, 'too big [dead letter shortened to fit a Kafka message: value cut to')
    """
    value, headers = encode("dead_letter", dl.to_dict(), fmt)
    excess = len(value) + len(dl.key or b"") - max_bytes
    if excess > 0:
        value, headers = encode("dead_letter", _shortened(dl, excess, fmt).to_dict(), fmt)
    return value, headers


def _shortened(dl: DeadLetter, excess: int, fmt: str) -> DeadLetter:
    """``dl`` with its embedded value (then key) cut by enough bytes to lose ``excess``."""
    cut = -(-excess * 3 // 4) if fmt == "json" else excess  # base64: 4 bytes per 3 in JSON
    cut += 1024  # room for the longer reason
    value, key = dl.value or b"", dl.key or b""
    keep_value = max(0, len(value) - cut)
    keep_key = max(0, len(key) - max(0, cut - len(value)))
    notes = [f"{name} cut to its first {keep} of {len(data)} bytes "
             f"(sha256 {hashlib.sha256(data).hexdigest()})"
             for name, data, keep in (("value", value, keep_value), ("key", key, keep_key))
             if keep < len(data)]
    return replace(dl, key=None if dl.key is None else key[:keep_key],
                   value=None if dl.value is None else value[:keep_value],
                   reason=f"{dl.reason} [dead letter shortened to fit a Kafka message: {'; '.join(notes)}; "
                          f"the original is {dl.topic}[{dl.partition}]@{dl.offset}]")


def decode_recommendation(value: bytes, headers: Any = None) -> dict[str, Any]:
    """Decode a record of the recommendations topic (JSON or Avro) into a dict."""
    return decode("recommendation", value, headers)


def decode_dead_letter(value: bytes, headers: Any = None) -> dict[str, Any]:
    """Decode a dead letter; ``key`` and ``value`` come back as the original bytes.

    >>> dl = DeadLetter("events", 0, 7, None, b"\\xff", "not JSON", "invalid_utf8", 1_000)
    >>> decode_dead_letter(*encode_dead_letter(dl))["value"]
    b'\\xff'
    """
    return decode("dead_letter", value, headers)
