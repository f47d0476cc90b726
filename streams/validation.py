"""Validation at the edge: untrusted bytes in, typed records (or :class:`InvalidRecord`) out.

Every input record is checked once, here, so the state, learners and ranker can trust
what they get. A record that fails is never fatal: the agent catches
:class:`InvalidRecord` and dead-letters the original bytes with ``error_type`` (a
stable code) and ``reason`` (names the field, for the person reading the dead letter).

Error codes: ``empty``, ``oversized``, ``key_mismatch``, ``missing_field``,
``wrong_type``, ``invalid_value``, ``too_long``, ``too_many_entries``,
``unknown_event_type``, ``timestamp_out_of_range``, plus the decoding codes of
``streams.codecs`` (``invalid_json``, ``invalid_avro``, ``not_an_object``,
``invalid_utf8``).

Unknown extra fields are ignored, so producers can start sending a field before the
schema (and this module) learn about it. The checks are written out longhand,
without a generic schema walker, because they run per Kafka record.
"""

from __future__ import annotations

import math
from typing import Any

from streams.codecs import decode
from streams.errors import InvalidRecord
from streams.records import (DEFAULT_CONTROLS, EVENT_TYPES, Event, ItemUpdate, UserControls,
                             UserProfile)
from streams.settings import Settings

__all__ = [
    "InvalidRecord",
    "MAX_ENTRY_LENGTH",
    "Validator",
    "parse_event",
    "parse_item",
    "parse_user",
]

#: Longest key or value accepted in a context/attributes map, and longest category.
MAX_ENTRY_LENGTH = 1024

_EVENT_TYPES = frozenset(EVENT_TYPES)
_isfinite = math.isfinite


def _missing(kind: str, name: str) -> InvalidRecord:
    return InvalidRecord("missing_field", f"{kind} field {name!r} is missing (or null)")


def _wrong(kind: str, name: str, expected: str, got: Any) -> InvalidRecord:
    return InvalidRecord("wrong_type", f"{kind} field {name!r} must be {expected}, "
                         f"got {type(got).__name__}")


class Validator:
    """Turns decoded dicts into records, enforcing the limits of a :class:`Settings`.

    >>> v = Validator(Settings())
    >>> v.event({"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "rating",
    ...          "timestamp": 1_700_000_000_000, "value": 4}, now_ms=1_700_000_000_000)
    Event(event_id='e1', user_id='u1', item_id='i1', event_type='rating', timestamp=1700000000000, value=4.0, context={}, recommendation_id=None)
    >>> v.item({"item_id": "i1", "categories": ["shoes"]})
    ItemUpdate(item_id='i1', available=True, categories=('shoes',), attributes={}, text=None)
    >>> v.user({"user_id": "u1", "consent_personalization": False}).consent_personalization
    False
    >>> v.event({"event_id": "e1", "user_id": "u1", "event_type": "view",
    ...          "timestamp": 1_700_000_000_000}, now_ms=1_700_000_000_000)
    Traceback (most recent call last):
    ...
    streams.errors.InvalidRecord: event field 'item_id' is required for event_type 'view' (only recommendation_request may omit it)
    """

    __slots__ = ("settings", "max_id_length", "max_entries", "min_timestamp_ms", "max_skew_ms",
                 "max_record_bytes")

    def __init__(self, settings: Settings | None = None) -> None:
        settings = Settings() if settings is None else settings
        self.settings = settings
        self.max_id_length = settings.max_id_length
        self.max_entries = settings.max_context_entries
        self.min_timestamp_ms = settings.min_timestamp_ms
        self.max_skew_ms = int(settings.max_future_skew_s * 1000)
        self.max_record_bytes = settings.max_record_bytes

    # -- field checks -------------------------------------------------------------------

    def _id(self, value: Any, kind: str, name: str) -> str:
        if type(value) is not str:
            if value is None:
                raise _missing(kind, name)
            raise _wrong(kind, name, "a string", value)
        if not value:
            raise InvalidRecord("invalid_value", f"{kind} field {name!r} must not be empty")
        if len(value) > self.max_id_length:
            raise InvalidRecord("too_long", f"{kind} field {name!r} has {len(value)} characters, "
                                f"more than the limit of {self.max_id_length}")
        return value

    def _map(self, value: Any, kind: str, name: str) -> dict[str, str]:
        if not value:
            if value is None:
                return {}
            if type(value) is dict:
                return value
        if type(value) is not dict:
            raise _wrong(kind, name, "an object of string to string", value)
        if len(value) > self.max_entries:
            raise InvalidRecord("too_many_entries", f"{kind} field {name!r} has {len(value)} entries, "
                                f"more than the limit of {self.max_entries}")
        for k, v in value.items():
            if type(k) is not str or type(v) is not str:
                bad = k if type(k) is not str else v
                raise InvalidRecord("wrong_type", f"{kind} field {name!r} must map strings to strings; "
                                    f"entry {k!r} has a {type(bad).__name__}")
            if len(k) > MAX_ENTRY_LENGTH or len(v) > MAX_ENTRY_LENGTH:
                raise InvalidRecord("too_long", f"{kind} field {name!r} entry {k[:64]!r} is longer "
                                    f"than the limit of {MAX_ENTRY_LENGTH} characters")
        return value

    def _strings(self, value: Any, kind: str, name: str, max_length: int) -> tuple[str, ...]:
        """A bounded array of non-empty strings, each at most ``max_length`` characters."""
        if not value:
            if value is not None and type(value) not in (list, tuple):
                raise _wrong(kind, name, "an array of strings", value)
            return ()
        if type(value) not in (list, tuple):
            raise _wrong(kind, name, "an array of strings", value)
        if len(value) > self.max_entries:
            raise InvalidRecord("too_many_entries", f"{kind} field {name!r} has {len(value)} "
                                f"entries, more than the limit of {self.max_entries}")
        for entry in value:
            if type(entry) is not str:
                raise InvalidRecord("wrong_type", f"{kind} field {name!r} must be an array of "
                                    f"strings; found a {type(entry).__name__}")
            if not entry:
                raise InvalidRecord("invalid_value", f"{kind} field {name!r} has an empty entry")
            if len(entry) > max_length:
                raise InvalidRecord("too_long", f"{kind} field {name!r} has an entry longer than "
                                    f"the limit of {max_length} characters")
        return tuple(value)

    @staticmethod
    def _unit(value: Any, kind: str, name: str, default: float) -> float:
        """A number in [0, 1] (an integer 0 or 1 is accepted; NaN and booleans are not)."""
        if value is None:
            return default
        if type(value) is int:  # a JSON 0 or 1; bool, a subclass of int, is not accepted
            if value in (0, 1):
                return float(value)
        elif type(value) is not float:
            raise _wrong(kind, name, "a number from 0 to 1", value)
        if not 0.0 <= value <= 1.0:  # False for NaN too
            raise InvalidRecord("invalid_value", f"{kind} field {name!r} must be from 0 to 1, "
                                f"got {value}")
        return value

    @staticmethod
    def _bool(value: Any, kind: str, name: str, default: bool) -> bool:
        if value is None:
            return default
        if type(value) is not bool:
            raise _wrong(kind, name, "a boolean", value)
        return value

    # -- records --------------------------------------------------------------------------

    def event(self, data: dict[str, Any], now_ms: int) -> Event:
        """Validate a decoded event; ``now_ms`` bounds how far in the future it may be.

        >>> Validator().event({"event_id": "e1", "user_id": "u1", "event_type": "teleport"}, 0)
        Traceback (most recent call last):
        ...
        streams.errors.InvalidRecord: event field 'event_type' is 'teleport', not one of: view, click, add_to_cart, purchase, rating, like, dislike, dwell, recommendation_request
        """
        get = data.get
        event_id = self._id(get("event_id"), "event", "event_id")
        user_id = self._id(get("user_id"), "event", "user_id")

        event_type = get("event_type")
        if type(event_type) is not str:
            if event_type is None:
                raise _missing("event", "event_type")
            raise _wrong("event", "event_type", "a string", event_type)
        if event_type not in _EVENT_TYPES:
            raise InvalidRecord("unknown_event_type", f"event field 'event_type' is {event_type[:64]!r}, "
                                f"not one of: {', '.join(EVENT_TYPES)}")

        item_id = get("item_id")
        if item_id is None:
            if event_type != "recommendation_request":
                raise InvalidRecord("missing_field", f"event field 'item_id' is required for event_type "
                                    f"{event_type!r} (only recommendation_request may omit it)")
        else:
            item_id = self._id(item_id, "event", "item_id")

        timestamp = get("timestamp")
        if type(timestamp) is not int:  # also rejects bool, a subclass of int
            if timestamp is None:
                raise _missing("event", "timestamp")
            raise _wrong("event", "timestamp", "an integer (epoch milliseconds)", timestamp)
        latest = now_ms + self.max_skew_ms
        if timestamp < self.min_timestamp_ms or timestamp > latest:
            raise InvalidRecord("timestamp_out_of_range", f"event field 'timestamp' is {timestamp}, outside "
                                f"[{self.min_timestamp_ms}, {latest}] epoch ms (too old, too far in the "
                                "future, or not in milliseconds)")

        value = get("value")
        if value is not None:
            kind = type(value)
            if kind is int:
                try:
                    value = float(value)
                except OverflowError:
                    raise InvalidRecord("invalid_value", "event field 'value' is too large for a double") from None
            elif kind is not float:
                raise _wrong("event", "value", "a number", value)
            if not _isfinite(value):
                raise InvalidRecord("invalid_value", f"event field 'value' must be finite, got {value}")

        context = self._map(get("context"), "event", "context")

        recommendation_id = get("recommendation_id")
        if recommendation_id is not None:
            recommendation_id = self._id(recommendation_id, "event", "recommendation_id")

        return Event(event_id, user_id, item_id, event_type, timestamp, value, context, recommendation_id)

    def item(self, data: dict[str, Any]) -> ItemUpdate:
        """Validate a decoded catalog upsert (tombstones never get here: see :func:`parse_item`).

        >>> Validator().item({"item_id": "i1", "available": "yes"})
        Traceback (most recent call last):
        ...
        streams.errors.InvalidRecord: item field 'available' must be a boolean, got str
        """
        get = data.get
        item_id = self._id(get("item_id"), "item", "item_id")
        available = self._bool(get("available"), "item", "available", True)

        categories = get("categories")
        if not categories:
            if categories is not None and type(categories) not in (list, tuple):
                raise _wrong("item", "categories", "an array of strings", categories)
            categories = ()
        else:
            if type(categories) not in (list, tuple):
                raise _wrong("item", "categories", "an array of strings", categories)
            if len(categories) > self.max_entries:
                raise InvalidRecord("too_many_entries", f"item field 'categories' has {len(categories)} "
                                    f"entries, more than the limit of {self.max_entries}")
            for c in categories:
                if type(c) is not str:
                    raise InvalidRecord("wrong_type", "item field 'categories' must be an array of strings; "
                                        f"found a {type(c).__name__}")
                if len(c) > MAX_ENTRY_LENGTH:
                    raise InvalidRecord("too_long", f"item field 'categories' has an entry longer than the "
                                        f"limit of {MAX_ENTRY_LENGTH} characters")
            categories = tuple(categories)

        attributes = self._map(get("attributes"), "item", "attributes")
        text = get("text")
        if text is not None and type(text) is not str:
            raise _wrong("item", "text", "a string or null", text)
        return ItemUpdate(item_id, available, categories, attributes, text)

    def user(self, data: dict[str, Any]) -> UserProfile:
        """Validate a decoded profile/consent upsert, with the user's own controls.

        Muted lists hold at most ``max_context_entries`` entries (item ids within
        ``max_id_length``, categories within :data:`MAX_ENTRY_LENGTH`); the two
        strengths are numbers from 0 to 1 (NaN is rejected).

        >>> controls = Validator().user({"user_id": "u1", "muted_categories": ["shoes"],
        ...                              "personalization_strength": 0}).controls
        >>> controls.muted_categories, controls.personalization, controls.novelty
        (frozenset({'shoes'}), 0.0, 0.5)
        >>> Validator().user({"user_id": "u1", "novelty": 1.5})
        Traceback (most recent call last):
        ...
        streams.errors.InvalidRecord: user field 'novelty' must be from 0 to 1, got 1.5
        >>> Validator().user({"user_id": ""})
        Traceback (most recent call last):
        ...
        streams.errors.InvalidRecord: user field 'user_id' must not be empty
        """
        get = data.get
        user_id = self._id(get("user_id"), "user", "user_id")
        consent = self._bool(get("consent_personalization"), "user", "consent_personalization", True)
        attributes = self._map(get("attributes"), "user", "attributes")
        forget = self._bool(get("forget"), "user", "forget", False)
        reset = self._bool(get("reset_history"), "user", "reset_history", False)
        muted_items = self._strings(get("muted_items"), "user", "muted_items", self.max_id_length)
        muted_categories = self._strings(get("muted_categories"), "user", "muted_categories",
                                         MAX_ENTRY_LENGTH)
        personalization = self._unit(get("personalization_strength"), "user",
                                     "personalization_strength", 1.0)
        novelty = self._unit(get("novelty"), "user", "novelty", 0.5)
        if muted_items or muted_categories or personalization != 1.0 or novelty != 0.5:
            controls = UserControls(frozenset(muted_items), frozenset(muted_categories),
                                    personalization, novelty)
        else:
            controls = DEFAULT_CONTROLS
        return UserProfile(user_id, consent, attributes, forget, controls, reset)


# -- what the Faust agents call: size check -> decode -> validate -> key check -------------

def _decode(kind: str, value: bytes | None, headers: Any, validator: Validator) -> dict[str, Any]:
    if not value:
        raise InvalidRecord("empty", f"{kind} value is empty (null or zero bytes)")
    if len(value) > validator.max_record_bytes:
        raise InvalidRecord("oversized", f"{kind} value is {len(value)} bytes, more than the limit of "
                            f"{validator.max_record_bytes} (MICROMOMENT_MAX_RECORD_BYTES)")
    return decode(kind, value, headers)


def _check_key(key: bytes | str | None, expected: str, kind: str, name: str, why: str) -> None:
    if type(key) is str:
        if key == expected:
            return
    elif key is not None and key == expected.encode("utf-8"):
        return
    shown = "no key" if key is None else f"key {key[:64]!r}"
    raise InvalidRecord("key_mismatch", f"{kind} has {shown} but its {name} is {expected[:64]!r}; "
                        f"{kind}s must be keyed by {name} (UTF-8) {why}")


_USER_KEY_WHY = "so that all of a user's records stay in one partition and are applied in order"


def parse_event(key: bytes | None, value: bytes | None, headers: Any, validator: Validator,
                now_ms: int) -> Event:
    """Bytes of one ``events`` record -> :class:`Event`, or :class:`InvalidRecord`.

    >>> v = Validator()
    >>> parse_event(b"u1", b'{"event_id":"e1","user_id":"u1","event_type":"recommendation_request",'
    ...             b'"timestamp":1700000000000}', None, v, now_ms=1_700_000_000_000).item_id is None
    True
    >>> parse_event(b"u2", b'{"event_id":"e1","user_id":"u1","event_type":"recommendation_request",'
    ...             b'"timestamp":1700000000000}', None, v, now_ms=1_700_000_000_000)
    Traceback (most recent call last):
    ...
    streams.errors.InvalidRecord: event has key b'u2' but its user_id is 'u1'; events must be keyed by user_id (UTF-8) so that all of a user's records stay in one partition and are applied in order
    """
    event = validator.event(_decode("event", value, headers, validator), now_ms)
    _check_key(key, event.user_id, "event", "user_id", _USER_KEY_WHY)
    return event


def parse_item(key: bytes | None, value: bytes | None, headers: Any,
               validator: Validator) -> ItemUpdate | None:
    """Bytes of one ``items`` record -> :class:`ItemUpdate`, or None for a tombstone.

    None means "delete the item whose id is the key"; by then the key is known to be a
    valid item id (non-empty UTF-8 within ``max_id_length``), so ``key.decode()`` is safe.

    >>> v = Validator()
    >>> parse_item(b"i1", None, None, v) is None
    True
    >>> parse_item(b"i1", b'{"item_id": "i1", "text": "red shoes"}', None, v).text
    'red shoes'
    """
    if not value:
        _tombstone_id(key, "item", validator)
        return None
    item = validator.item(_decode("item", value, headers, validator))
    _check_key(key, item.item_id, "item", "item_id", "so that compaction keeps one record per item")
    return item


def _tombstone_id(key: bytes | str | None, kind: str, validator: Validator) -> str:
    """The id a tombstone (null value) deletes: its key, which must be a valid id."""
    if not key:
        raise InvalidRecord("key_mismatch", f"{kind} tombstone (null value) has no key, so there "
                            f"is no {kind} to delete; {kind}s must be keyed by {kind}_id")
    if type(key) is str:
        key_id = key
    else:
        try:
            key_id = bytes(key).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRecord("invalid_utf8", f"{kind} tombstone key is not valid UTF-8, "
                                f"so it cannot name a {kind}") from None
    validator._id(key_id, f"{kind} tombstone", "key")
    return key_id


def parse_user(key: bytes | None, value: bytes | None, headers: Any, validator: Validator) -> UserProfile:
    """Bytes of one ``users`` record -> :class:`UserProfile`, or :class:`InvalidRecord`.

    A tombstone (null value) keyed by a user id is Kafka's delete: it forgets that user,
    like a record with ``"forget": true``.

    >>> parse_user(b"u1", None, None, Validator()).forget
    True

    >>> parse_user(b"u1", b'{"user_id": "u1", "attributes": {"segment": "vip"}}', None,
    ...            Validator()).attributes
    {'segment': 'vip'}
    """
    if not value:
        return UserProfile(_tombstone_id(key, "user", validator), forget=True)
    user = validator.user(_decode("user", value, headers, validator))
    _check_key(key, user.user_id, "user", "user_id", _USER_KEY_WHY)
    return user
