"""The one exception type for a record that cannot be used.

Decoding (``streams.codecs``) and validation (``streams.validation``) both raise
:class:`InvalidRecord`, so a Faust agent needs a single ``except`` to turn any bad
input into a dead letter, and the dead letter gets a stable machine code
(``error_type``) next to a human-readable ``reason``. It lives in its own module
because codecs and validation import each other's ends of the pipeline.
"""

from __future__ import annotations

__all__ = ["InvalidRecord", "DecodeError"]


class InvalidRecord(Exception):
    """A record that cannot be used; ``error_type`` is a stable code, ``reason`` is for people.

    >>> err = InvalidRecord("missing_field", "event field 'user_id' is missing")
    >>> err.error_type, str(err)
    ('missing_field', "event field 'user_id' is missing")
    """

    __slots__ = ("error_type", "reason")

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(error_type, reason)
        self.error_type = error_type
        self.reason = reason

    def __str__(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error_type!r}, {self.reason!r})"


class DecodeError(InvalidRecord):
    """The bytes are not a well-formed record at all (bad JSON, bad Avro, bad UTF-8).

    A subclass, not a sibling, so ``except InvalidRecord`` catches both.

    >>> isinstance(DecodeError("invalid_json", "not JSON"), InvalidRecord)
    True
    """

    __slots__ = ()
